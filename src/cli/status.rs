//! `herald status`: is the broker up and serving, and in what state are its
//! topics and groups. Exit status 0 when it answers, 3 when it cannot be
//! reached or does not answer within `--timeout-ms`; a damaged topic or a
//! group with a damaged log is shown, not an error (`herald topic describe`
//! and `herald group describe` say more).
//!
//! Readiness is the broker's own `/readyz`, fetched from its HTTP listener
//! (`--http`, default the broker's host on port 9644): `ready: yes`, `ready:
//! no` with what is missing, or `ready: unknown` when no HTTP listener
//! answers. A broker that does not answer on the wire but whose `/readyz`
//! says what it waits for (log recovery) is reported as not ready, exit 3.

use clap::Args;
use herald::client::Cluster;
use herald::protocol::TopicState;

use std::time::Duration;

use super::output::print_json;
use super::{BrokerArgs, CliResult, UnreachableError};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
    /// The broker's HTTP listener (host:port), for its readiness; default the
    /// broker's host on port 9644 (http.port).
    #[arg(long, env = "HERALD_HTTP")]
    http: Option<String>,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// How long `status` waits for `/readyz`.
const READYZ_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` said: the body, or why there was none.
type Readiness = Result<serde_json::Value, String>;

async fn readiness(http: &str) -> Readiness {
    match herald::http::get::get(http, "/readyz", READYZ_TIMEOUT).await {
        Ok((_, body)) => serde_json::from_str(&body).map_err(|err| format!("{http} answered /readyz with {err}")),
        Err(err) => Err(format!("no HTTP listener answers at {http}: {err}")),
    }
}

/// `host:9644` for the broker's `host:port`.
fn default_http(broker: &str) -> String {
    let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
    format!("{host}:9644")
}

fn missing(readiness: &serde_json::Value) -> String {
    let missing: Vec<&str> =
        readiness["missing"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
    missing.join(", ")
}

pub async fn run(args: StatusArgs) -> CliResult {
    let http = args.http.clone().unwrap_or_else(|| default_http(args.broker.first()));
    let ready = readiness(&http).await;
    let client = match args.broker.connect().await {
        Ok(client) => client,
        Err(err) => {
            return match &ready {
                Ok(body) if body["ready"] == false => Err(UnreachableError(format!(
                    "broker {}: not ready (missing: {})",
                    args.broker.broker,
                    missing(body)
                ))
                .into()),
                _ => Err(err),
            }
        }
    };
    let info = client.broker_info().clone();
    let topics = client.list_topics().await?;
    let damaged_topics: Vec<&str> =
        topics.iter().filter(|t| t.state == TopicState::Damaged).map(|t| t.topic.as_str()).collect();
    let partitions: u64 = topics.iter().map(|t| u64::from(t.partitions)).sum();
    // In a cluster: every broker's groups, each described by its coordinator.
    let cluster = Cluster::of(client);
    let groups = cluster.list_groups().await?;
    let mut damaged_groups = Vec::new();
    for group in &groups {
        if !cluster.describe_group(&group.group_id).await?.damaged.is_empty() {
            damaged_groups.push(group.group_id.clone());
        }
    }
    let members: u64 = groups.iter().map(|g| u64::from(g.members)).sum();
    if args.json {
        return print_json(&serde_json::json!({
            "broker": args.broker.broker,
            "status": "serving",
            "broker_version": info.broker_version,
            "protocol_version": info.protocol_version,
            "topics": topics.len(),
            "partitions": partitions,
            "damaged_topics": damaged_topics,
            "groups": groups.len(),
            "members": members,
            "damaged_groups": damaged_groups,
            "max_frame_bytes": info.max_frame_bytes,
            "max_message_bytes": info.max_message_bytes,
            "http": http,
            "ready": ready.as_ref().ok().map(|r| r["ready"].clone()),
            "readiness": ready.as_ref().ok(),
        }));
    }
    println!(
        "broker {}: serving (herald {}, protocol {})",
        args.broker.broker, info.broker_version, info.protocol_version
    );
    println!("topics: {} with {partitions} partitions; damaged: {}", topics.len(), list(&damaged_topics));
    let damaged_groups: Vec<&str> = damaged_groups.iter().map(String::as_str).collect();
    println!("groups: {} with {members} members; with a damaged log: {}", groups.len(), list(&damaged_groups));
    match &ready {
        Ok(body) if body["ready"] == true => println!("ready: yes (/readyz at {http})"),
        Ok(body) => println!("ready: no (/readyz at {http}: missing {})", missing(body)),
        Err(why) => println!("ready: unknown ({why})"),
    }
    Ok(())
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
