//! `herald status`: is the broker up and serving, and in what state are its
//! topics and groups. Exit status 0 when it answers, 3 when it cannot be
//! reached or does not answer within `--timeout-ms`; a damaged topic or a
//! group with a damaged log is shown, not an error (`herald topic describe`
//! and `herald group describe` say more).

use clap::Args;
use herald::protocol::{group_op, DescribeGroupResponse, Empty, GroupRequest, ListGroupsResponse, TopicState};

use super::output::print_json;
use super::{BrokerArgs, CliResult};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

pub async fn run(args: StatusArgs) -> CliResult {
    let client = args.broker.connect().await?;
    let info = client.broker_info().clone();
    let topics = client.list_topics().await?;
    let damaged_topics: Vec<&str> =
        topics.iter().filter(|t| t.state == TopicState::Damaged).map(|t| t.topic.as_str()).collect();
    let partitions: u64 = topics.iter().map(|t| u64::from(t.partitions)).sum();
    let groups: ListGroupsResponse = client.request(group_op::LIST_GROUPS, &Empty {}).await?;
    let mut damaged_groups = Vec::new();
    for group in &groups.groups {
        let described: DescribeGroupResponse =
            client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group.group_id.clone() }).await?;
        if !described.damaged.is_empty() {
            damaged_groups.push(group.group_id.clone());
        }
    }
    let members: u64 = groups.groups.iter().map(|g| u64::from(g.members)).sum();
    if args.json {
        return print_json(&serde_json::json!({
            "broker": args.broker.broker,
            "status": "serving",
            "broker_version": info.broker_version,
            "protocol_version": info.protocol_version,
            "topics": topics.len(),
            "partitions": partitions,
            "damaged_topics": damaged_topics,
            "groups": groups.groups.len(),
            "members": members,
            "damaged_groups": damaged_groups,
            "max_frame_bytes": info.max_frame_bytes,
            "max_message_bytes": info.max_message_bytes,
        }));
    }
    println!(
        "broker {}: serving (herald {}, protocol {})",
        args.broker.broker, info.broker_version, info.protocol_version
    );
    println!("topics: {} with {partitions} partitions; damaged: {}", topics.len(), list(&damaged_topics));
    let damaged_groups: Vec<&str> = damaged_groups.iter().map(String::as_str).collect();
    println!("groups: {} with {members} members; with a damaged log: {}", groups.groups.len(), list(&damaged_groups));
    Ok(())
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
