//! `herald group list|describe|reset-offsets|delete`.
//!
//! Each request about a group goes to the group's coordinator, which the
//! brokers of `--broker` name (in a cluster, the leader of the group's
//! partition of `__consumer_offsets`; a broker alone coordinates every
//! group). `list` asks every broker of the cluster and merges the answers.

use clap::{Args, Subcommand};
use herald::client::Cluster;
use herald::protocol::*;

use super::output::{print_json, Table};
use super::{BrokerArgs, CliResult};

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Show a group's members and, per partition, its committed offset and lag.
    Describe {
        group: String,
        /// Only the members: id, instance id, host, client id, generation, assignment.
        #[arg(long, conflicts_with = "state")]
        members: bool,
        /// Only the group's state, generation, assignor and member count.
        #[arg(long)]
        state: bool,
        /// Print JSON instead of a table (always everything).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Move a group's committed offsets (the group must have no members).
    /// Prints the plan; applies it only with --execute.
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (the group must have no members).
    Delete {
        group: String,
        /// Succeed when there is no such group.
        #[arg(long)]
        if_exists: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

#[derive(Args, Debug)]
#[group(id = "target", required = true, multiple = false, args = ["to_earliest", "to_latest", "to_offset", "to_timestamp", "to_datetime", "by_duration", "shift_by"])]
#[command(group(clap::ArgGroup::new("topics").required(true).multiple(false).args(["topic", "all_topics"])))]
pub struct ResetArgs {
    group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    topic: Option<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// Only these partitions (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    partitions: Option<Vec<u32>>,
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the high watermark.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the log's bounds).
    #[arg(long)]
    to_offset: Option<i64>,
    /// To the first record at or after this time, in ms since the epoch.
    #[arg(long)]
    to_timestamp: Option<i64>,
    /// To the first record at or after this time, RFC 3339 (2026-11-30T12:00:00Z).
    #[arg(long, value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// To the first record at or after this long ago (e.g. 90m, 2h, 1day 12h).
    #[arg(long, value_parser = parse_duration)]
    by_duration: Option<std::time::Duration>,
    /// Move by this many records (negative: back).
    #[arg(long, allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Apply the plan (without it, a dry run).
    #[arg(long)]
    execute: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// An RFC 3339 time as ms since the epoch.
fn parse_datetime(text: &str) -> Result<i64, String> {
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|err| format!("`{text}` is not a time like 2026-11-30T12:00:00Z: {err}"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?;
    i64::try_from(since.as_millis()).map_err(|_| format!("`{text}` is too far ahead"))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("`{text}` is not a duration like 90m or 2h: {err}"))
}

fn dash(value: Option<i64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The cluster `--broker` starts from: requests about a group go to its
/// coordinator.
pub(super) async fn cluster(broker: &BrokerArgs) -> CliResult<Cluster> {
    Ok(Cluster::of(broker.connect().await?))
}

pub async fn run(command: GroupCommand) -> CliResult {
    match command {
        GroupCommand::List { json, broker } => {
            let groups = cluster(&broker).await?.list_groups().await?;
            if json {
                let rows: Vec<_> = groups
                    .iter()
                    .map(|g| serde_json::json!({"group": g.group_id, "state": g.state, "members": g.members, "assignor": g.assignor}))
                    .collect();
                print_json(&rows)?;
            } else {
                let mut table = Table::new(&["GROUP", "STATE", "MEMBERS", "ASSIGNOR"]);
                for g in groups {
                    table.row(vec![g.group_id, g.state, g.members.to_string(), g.assignor]);
                }
                table.print();
            }
        }
        GroupCommand::Describe { group, members, state, json, broker } => {
            let d = cluster(&broker).await?.describe_group(&group).await?;
            if json {
                print_json(&describe_json(&d))?;
            } else if members {
                print_members(&d);
            } else if state {
                let mut table = Table::new(&["GROUP", "STATE", "GENERATION", "ASSIGNOR", "MEMBERS"]);
                let generation = d.generation_id.to_string();
                table.row(vec![d.group_id, d.state, generation, d.assignor, d.members.len().to_string()]);
                table.print();
            } else {
                print_describe(&d);
            }
        }
        GroupCommand::ResetOffsets(args) => {
            let ago = |d: &std::time::Duration| herald_actors::now_ms().saturating_sub(d.as_millis() as i64);
            let timestamp = args.to_timestamp.or(args.to_datetime).or(args.by_duration.as_ref().map(ago));
            let (to, value) = match (&args.to_offset, timestamp, &args.shift_by) {
                (Some(o), _, _) => ("offset", Some(*o)),
                (_, Some(t), _) => ("timestamp", Some(t)),
                (_, _, Some(s)) => ("shift", Some(*s)),
                _ if args.to_earliest => ("earliest", None),
                _ => ("latest", None),
            };
            let cluster = cluster(&args.broker).await?;
            let topics = match &args.topic {
                Some(topic) => vec![topic.clone()],
                None => {
                    let d = cluster.describe_group(&args.group).await?;
                    let committed: std::collections::BTreeSet<String> =
                        d.offsets.into_iter().filter(|o| o.current_offset.is_some()).map(|o| o.topic).collect();
                    committed.into_iter().collect()
                }
            };
            let mut plan = ResetOffsetsResponse { offsets: Vec::new(), executed: args.execute };
            for topic in topics {
                let request = ResetOffsetsRequest {
                    group_id: args.group.clone(),
                    topic,
                    partitions: args.partitions.clone(),
                    to: to.into(),
                    value,
                    execute: args.execute,
                };
                let part = cluster.reset_offsets(&request).await?;
                plan.executed = part.executed;
                plan.offsets.extend(part.offsets);
            }
            if args.json {
                let rows: Vec<_> = plan
                    .offsets
                    .iter()
                    .map(|o| serde_json::json!({"topic": o.topic, "partition": o.partition, "previous_offset": o.previous_offset, "new_offset": o.new_offset}))
                    .collect();
                print_json(&serde_json::json!({"group": args.group, "executed": plan.executed, "offsets": rows}))?;
            } else {
                let mut table = Table::new(&["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]);
                for o in &plan.offsets {
                    table.row(vec![
                        args.group.clone(),
                        o.topic.clone(),
                        o.partition.to_string(),
                        dash(o.previous_offset),
                        o.new_offset.to_string(),
                    ]);
                }
                table.print();
                if !plan.executed {
                    println!("(dry run: nothing changed; add --execute to apply)");
                }
            }
        }
        GroupCommand::Delete { group, if_exists, broker } => match cluster(&broker).await?.delete_group(&group).await {
            Ok(_) => println!("deleted group {group}"),
            Err(err) if if_exists && err.code() == Some(herald::client::ErrorCode::GROUP_ID_NOT_FOUND.code()) => {
                println!("no group {group}")
            }
            Err(err) => return Err(err.into()),
        },
    }
    Ok(())
}

/// Kafka's columns, one row per partition.
fn print_describe(d: &DescribeGroupResponse) {
    println!(
        "Group: {}  State: {}  Generation: {}  Assignor: {}  Members: {}",
        d.group_id,
        d.state,
        d.generation_id,
        d.assignor,
        d.members.len()
    );
    let mut table = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for o in &d.offsets {
        let member = o.member_id.as_ref().and_then(|id| d.members.iter().find(|m| &m.member_id == id));
        table.row(vec![
            d.group_id.clone(),
            o.topic.clone(),
            o.partition.to_string(),
            dash(o.current_offset),
            dash(o.log_end_offset),
            dash(o.lag),
            o.member_id.clone().unwrap_or_else(|| "-".into()),
            member.map_or_else(|| "-".into(), |m| m.host.clone()),
            member.map_or_else(|| "-".into(), |m| m.client_id.clone()),
        ]);
    }
    table.print();
    for r in &d.damaged {
        if r.first_offset == r.next_offset {
            println!(
                "Damaged: the end of the group's log (from record {}) could not be read; its commits are lost: {}",
                r.first_offset, r.reason
            );
            continue;
        }
        println!(
            "Damaged: records {} to {} of the group's log could not be read; their commits are lost: {}",
            r.first_offset,
            r.next_offset - 1,
            r.reason
        );
    }
}

fn print_members(d: &DescribeGroupResponse) {
    let mut table = Table::new(&[
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "GENERATION",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]);
    for m in &d.members {
        let count: usize = m.assignment.iter().map(|t| t.partitions.len()).sum();
        let assignment: Vec<String> = m
            .assignment
            .iter()
            .map(|t| {
                let list: Vec<String> = t.partitions.iter().map(u32::to_string).collect();
                format!("{}({})", t.topic, list.join(","))
            })
            .collect();
        table.row(vec![
            m.member_id.clone(),
            m.group_instance_id.clone().unwrap_or_else(|| "-".into()),
            m.host.clone(),
            m.client_id.clone(),
            m.generation_id.to_string(),
            count.to_string(),
            if assignment.is_empty() { "-".into() } else { assignment.join(" ") },
        ]);
    }
    table.print();
}

fn describe_json(d: &DescribeGroupResponse) -> serde_json::Value {
    let partitions = |list: &[TopicPartitions]| -> Vec<serde_json::Value> {
        list.iter().map(|t| serde_json::json!({"topic": t.topic, "partitions": t.partitions})).collect()
    };
    serde_json::json!({
        "group": d.group_id,
        "state": d.state,
        "generation_id": d.generation_id,
        "assignor": d.assignor,
        "members": d.members.iter().map(|m| serde_json::json!({
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "host": m.host,
            "generation_id": m.generation_id,
            "topics": m.topics,
            "assignment": partitions(&m.assignment),
        })).collect::<Vec<_>>(),
        "partitions": d.offsets.iter().map(|o| {
            let member = o.member_id.as_ref().and_then(|id| d.members.iter().find(|m| &m.member_id == id));
            serde_json::json!({
                "group": d.group_id,
                "topic": o.topic,
                "partition": o.partition,
                "current_offset": o.current_offset,
                "log_end_offset": o.log_end_offset,
                "lag": o.lag,
                "consumer_id": o.member_id,
                "host": member.map(|m| m.host.clone()),
                "client_id": member.map(|m| m.client_id.clone()),
            })
        }).collect::<Vec<_>>(),
        "damaged": d.damaged.iter().map(|r| serde_json::json!({
            "first_offset": r.first_offset,
            "next_offset": r.next_offset,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
    })
}
