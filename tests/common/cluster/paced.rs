//! A producer task that sends a record about every millisecond, round the
//! partitions of a topic, until told to stop: the load of the failover and
//! rolling-restart tests, each record's answer and when it came kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::client::{ClientError, Producer, RecordMetadata};
use tokio::task::JoinHandle;

use crate::common::value;

/// Each record sent: its number `i` (its value is `v{i}`), its partition,
/// and a task that ends with its answer and when it came.
pub type Sent = Arc<Mutex<Vec<(u32, u32, JoinHandle<(Result<RecordMetadata, ClientError>, Instant)>)>>>;

/// The task and what it sent; [`Paced::stop`] ends it.
pub struct Paced {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
    pub sent: Sent,
}

impl Paced {
    /// Sends `v{i}` to partition `i % partitions` of `topic`, about every
    /// millisecond, several batches in flight.
    pub fn start(producer: Arc<Producer>, topic: &'static str, partitions: u32) -> Paced {
        let (stop, sent): (Arc<AtomicBool>, Sent) = (Arc::default(), Arc::default());
        let task = {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let p = i % partitions;
                    let answer = producer.send(topic, Some(p), value(format!("v{i}"))).await.unwrap();
                    let answered = tokio::spawn(async move {
                        let result = answer.await.unwrap_or(Err(ClientError::Closed));
                        (result, Instant::now())
                    });
                    sent.lock().unwrap().push((i, p, answered));
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        Paced { stop, task, sent }
    }

    /// Stops sending; returns what was sent.
    pub async fn stop(self) -> Vec<(u32, u32, JoinHandle<(Result<RecordMetadata, ClientError>, Instant)>)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        sent
    }
}
