//! A consumer group reading a topic of the cluster while the faults go on:
//! its members (the real `GroupConsumer`, bootstrapped from the live
//! brokers) poll and commit until told to stop, and the values they read
//! are gathered, so a test can check that the group carried on.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::client::{AutoOffsetReset, Cluster, ConnectOptions, GroupConsumer, GroupConsumerConfig};
use tokio::task::JoinHandle;

use super::Seeds;

pub struct Group {
    stop: Arc<AtomicBool>,
    members: Vec<JoinHandle<()>>,
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl Group {
    /// Starts `members` members of `group` consuming `topic` from its start.
    pub fn start(seeds: &Seeds, group: &str, topic: &str, members: usize) -> Group {
        let stop = Arc::new(AtomicBool::new(false));
        let read = Arc::new(Mutex::new(BTreeSet::new()));
        let members = (0..members)
            .map(|_| {
                let (stop, read, seeds) = (stop.clone(), read.clone(), seeds.clone());
                let mut config = GroupConsumerConfig::new(group, &[topic]);
                config.auto_offset_reset = AutoOffsetReset::Earliest;
                tokio::spawn(async move {
                    let mut consumer = None;
                    while !stop.load(Ordering::SeqCst) {
                        let Some(member) = consumer.as_mut() else {
                            consumer = join(&seeds, config.clone()).await;
                            continue;
                        };
                        match member.poll().await {
                            Ok(records) => read.lock().unwrap().extend(
                                records.into_iter().filter_map(|r| String::from_utf8(r.record.value?.to_vec()).ok()),
                            ),
                            Err(err) => tracing::info!(%err, "a group member's poll failed; polling again"),
                        }
                    }
                    if let Some(member) = consumer {
                        let _ = member.close().await;
                    }
                })
            })
            .collect();
        Group { stop, members, read }
    }

    /// Waits until the group has read every one of `values`, at most
    /// `within`; then stops its members. Returns the values it never read.
    pub async fn read_all(self, values: &BTreeSet<String>, within: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + within;
        let missing = loop {
            let missing: BTreeSet<String> = values.difference(&self.read.lock().unwrap()).cloned().collect();
            if missing.is_empty() || Instant::now() > deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.stop.store(true, Ordering::SeqCst);
        for member in self.members {
            member.await.expect("a group member's task");
        }
        missing
    }
}

/// Joins through the live brokers; `None` while none answers.
async fn join(seeds: &Seeds, config: GroupConsumerConfig) -> Option<GroupConsumer> {
    let bootstrap: Vec<String> = seeds.lock().unwrap().iter().map(ToString::to_string).collect();
    let joined = async {
        let brokers = Cluster::connect(&bootstrap, "fault-group", ConnectOptions::default()).await?;
        GroupConsumer::join_with_cluster(brokers, config).await
    };
    match joined.await {
        Ok(member) => Some(member),
        Err(err) => {
            tracing::info!(%err, "a group member could not join yet");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}
