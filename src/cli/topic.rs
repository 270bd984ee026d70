//! `herald topic create|list|describe|delete|add-partitions`; `alter-config`
//! and `trim` are in `topic_ops`.

use std::collections::BTreeMap;

use clap::Subcommand;
use herald::client::ErrorCode;
use herald::protocol::{ConfigValue, PartitionMetadata, TopicState};

use super::output::{print_json, Table};
use super::topic_ops::{self, AlterConfigArgs, TrimArgs};
use super::{BrokerArgs, CliResult, UsageError};

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i64,
        /// A per-topic setting, KEY=VALUE (repeatable), e.g. retention_ms=3600000.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Succeed when the topic already exists (whatever its settings).
        #[arg(long)]
        if_not_exists: bool,
        /// Replicas of each partition (a cluster's default when not given).
        #[arg(long, short = 'r')]
        replication_factor: Option<i32>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// List topics.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Show a topic's settings and, per partition, its offsets and size.
    Describe {
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Delete a topic and all its data.
    Delete {
        name: String,
        /// Succeed when there is no such topic.
        #[arg(long)]
        if_exists: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Grow a topic to a new total number of partitions.
    AddPartitions {
        name: String,
        /// The new total partition count (greater than the current one).
        #[arg(long, short = 'p')]
        partitions: i64,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Change a topic's settings (--set KEY=VALUE, --delete KEY back to the
    /// broker's default) and print them all.
    AlterConfig(AlterConfigArgs),
    /// Delete a partition's records before an offset (`--before end`: all).
    Trim(TrimArgs),
}

/// `1 partition`, `3 partitions`.
pub fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `KEY=VALUE` pairs as settings: an integer value as an integer, any other
/// as a string. `flag` names the option in an error.
pub fn parse_config(pairs: &[String], flag: &str) -> CliResult<BTreeMap<String, ConfigValue>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) =
                pair.split_once('=').ok_or_else(|| UsageError(format!("{flag} `{pair}` is not KEY=VALUE")))?;
            let value = value.parse::<i64>().map(ConfigValue::Int).unwrap_or_else(|_| ConfigValue::Str(value.into()));
            Ok((key.to_string(), value))
        })
        .collect()
}

pub async fn run(command: TopicCommand) -> CliResult {
    match command {
        TopicCommand::Create { name, partitions, config, if_not_exists, replication_factor, broker } => {
            let config = parse_config(&config, "--config")?;
            let client = broker.connect().await?;
            match client.create_replicated_topic(&name, partitions, replication_factor, config).await {
                Ok(()) => println!("created topic {name} with {}", plural(partitions, "partition")),
                Err(err) if if_not_exists && err.code() == Some(ErrorCode::TOPIC_ALREADY_EXISTS.code()) => {
                    println!("topic {name} already exists")
                }
                Err(err) => return Err(err.into()),
            }
        }
        TopicCommand::List { json, broker } => {
            let topics = broker.connect().await?.list_topics().await?;
            if json {
                let rows: Vec<_> = topics
                    .iter()
                    .map(|t| {
                        let mut row =
                            serde_json::json!({"topic": t.topic, "partitions": t.partitions, "state": t.state});
                        if let Some(error) = &t.error {
                            row["error"] = error.clone().into();
                        }
                        row
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                // A damaged topic's reason is the last column: it can be long.
                let mut table = Table::new(&["TOPIC", "PARTITIONS", "STATE", "ERROR"]);
                for t in &topics {
                    let state = match t.state {
                        TopicState::Ok => "ok",
                        TopicState::Damaged => "damaged",
                    };
                    let error = t.error.clone().unwrap_or_default();
                    table.row(vec![t.topic.clone(), t.partitions.to_string(), state.to_string(), error]);
                }
                table.print();
            }
        }
        TopicCommand::Describe { name, json, broker } => {
            let client = broker.connect().await?;
            let d = client.describe_topic(&name).await?;
            let placed = placement(&client, &name).await?;
            let place = |p: u32| placed.iter().find(|m| m.partition == p);
            if json {
                print_json(&serde_json::json!({
                    "topic": d.topic,
                    "config": d.config.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<BTreeMap<_, _>>(),
                    "partitions": d.partitions.iter().map(|p| serde_json::json!({
                        "partition": p.partition,
                        "log_start_offset": p.log_start_offset,
                        "log_end_offset": p.log_end_offset,
                        "high_watermark": p.high_watermark,
                        "size_bytes": p.size_bytes,
                        "segments": p.segments,
                        "leader": place(p.partition).map(|m| m.leader),
                        "leader_epoch": place(p.partition).map(|m| m.leader_epoch),
                        "replicas": place(p.partition).map(|m| m.replicas.clone()),
                        "isr": place(p.partition).map(|m| m.isr.clone()),
                        "damaged": p.damaged.iter().map(|d| serde_json::json!({
                            "first_offset": d.first_offset,
                            "next_offset": d.next_offset,
                            "segment": d.segment,
                            "reason": d.reason,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                println!("Topic: {}  Partitions: {}", d.topic, d.partitions.len());
                let settings: Vec<String> = d.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("Config: {}", settings.join(" "));
                let mut table = Table::new(&[
                    "PARTITION",
                    "LOG-START-OFFSET",
                    "LOG-END-OFFSET",
                    "HIGH-WATERMARK",
                    "SIZE-BYTES",
                    "SEGMENTS",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "STATE",
                ]);
                let ids = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                for p in &d.partitions {
                    let (leader, replicas, isr, state) = match place(p.partition) {
                        Some(m) => (m.leader.to_string(), ids(&m.replicas), ids(&m.isr), replication_state(m)),
                        None => ("-".into(), "-".into(), "-".into(), "-"),
                    };
                    table.row(vec![
                        p.partition.to_string(),
                        p.log_start_offset.to_string(),
                        p.log_end_offset.to_string(),
                        p.high_watermark.to_string(),
                        p.size_bytes.to_string(),
                        p.segments.to_string(),
                        leader,
                        replicas,
                        isr,
                        state.into(),
                    ]);
                }
                table.print();
                for p in &d.partitions {
                    for r in &p.damaged {
                        println!(
                            "Damaged: partition {} offsets {} to {} (segment {}): {}",
                            p.partition,
                            r.first_offset,
                            r.next_offset - 1,
                            r.segment,
                            r.reason
                        );
                    }
                }
            }
        }
        TopicCommand::Delete { name, if_exists, broker } => match broker.connect().await?.delete_topic(&name).await {
            Ok(()) => println!("deleted topic {name}"),
            Err(err) if if_exists && err.code() == Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()) => {
                println!("no topic {name}")
            }
            Err(err) => return Err(err.into()),
        },
        TopicCommand::AddPartitions { name, partitions, broker } => {
            let count = broker.connect().await?.add_partitions(&name, partitions).await?;
            println!("topic {name} now has {}", plural(i64::from(count), "partition"));
        }
        TopicCommand::AlterConfig(args) => topic_ops::alter_config(args).await?,
        TopicCommand::Trim(args) => topic_ops::trim(args).await?,
    }
    Ok(())
}

/// Where each partition of `topic` is led (empty from a broker without the
/// `metadata` request).
async fn placement(client: &herald::client::Client, topic: &str) -> CliResult<Vec<PartitionMetadata>> {
    match client.metadata(Some(vec![topic.to_string()])).await {
        Ok(mut m) => Ok(m.topics.pop().map(|t| t.partitions).unwrap_or_default()),
        Err(err) if err.code() == Some(ErrorCode::UNKNOWN_OPERATION.code()) => Ok(Vec::new()),
        Err(err) => Err(err.into()),
    }
}

/// `offline` without a leader, `under-replicated` with replicas out of
/// sync, `ok` otherwise.
fn replication_state(m: &PartitionMetadata) -> &'static str {
    if m.leader < 0 {
        "offline"
    } else if m.isr.len() < m.replicas.len() {
        "under-replicated"
    } else {
        "ok"
    }
}
