//! `herald topic alter-config` and `herald topic trim`: the topic commands
//! that change a live topic (`alter_topic_config` and `delete_records`).

use std::collections::BTreeMap;

use clap::Args;
use herald::protocol::{ConfigValue, DELETE_TO_HIGH_WATERMARK};

use super::output::print_json;
use super::topic::{parse_config, plural};
use super::{BrokerArgs, CliResult, UsageError};

#[derive(Args, Debug)]
pub struct AlterConfigArgs {
    name: String,
    /// Give a setting a value, KEY=VALUE (repeatable), e.g. retention_ms=3600000.
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Put a setting back to the broker's default (repeatable).
    #[arg(long = "delete", short = 'd', value_name = "KEY")]
    delete: Vec<String>,
    /// Check the change and print the result without applying it.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Args, Debug)]
pub struct TrimArgs {
    name: String,
    /// The partition to trim.
    #[arg(long, short = 'p', required_unless_present = "all_partitions", conflicts_with = "all_partitions")]
    partition: Option<u32>,
    /// Trim every partition of the topic.
    #[arg(long)]
    all_partitions: bool,
    /// Delete the records before this offset, or `end` for all of them (up
    /// to the high watermark).
    #[arg(long, value_name = "OFFSET|end")]
    before: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// `key=value ...` as `topic describe` prints a topic's settings.
fn config_line(config: &BTreeMap<String, ConfigValue>) -> String {
    config.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

pub async fn alter_config(args: AlterConfigArgs) -> CliResult {
    if args.set.is_empty() && args.delete.is_empty() {
        return Err(UsageError("nothing to change: give --set KEY=VALUE or --delete KEY".into()).into());
    }
    let set = parse_config(&args.set, "--set")?;
    let client = args.broker.connect().await?;
    let config = client.alter_topic_config(&args.name, set, args.delete, args.dry_run).await?;
    if args.json {
        // Values as strings, as `topic describe --json` prints them.
        let values: BTreeMap<&String, String> = config.iter().map(|(k, v)| (k, v.to_string())).collect();
        return print_json(&serde_json::json!({"topic": args.name, "executed": !args.dry_run, "config": values}));
    }
    if args.dry_run {
        println!("topic {} would have (dry run: nothing changed)", args.name);
    } else {
        println!("altered topic {}", args.name);
    }
    println!("Config: {}", config_line(&config));
    Ok(())
}

pub async fn trim(args: TrimArgs) -> CliResult {
    let offset = match args.before.as_str() {
        "end" => DELETE_TO_HIGH_WATERMARK,
        other => match other.parse::<i64>() {
            Ok(offset) if offset >= 0 => offset,
            _ => return Err(UsageError(format!("--before `{other}` is not an offset (0 or more) nor `end`")).into()),
        },
    };
    let client = args.broker.connect().await?;
    let partitions: Vec<u32> = match args.partition {
        Some(partition) => vec![partition],
        None => (0..client.describe_topic(&args.name).await?.partitions.len() as u32).collect(),
    };
    let mut rows = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let log_start_offset = client.delete_records(&args.name, partition, offset).await?;
        if !args.json {
            println!("topic {} partition {partition}: log start offset {log_start_offset}", args.name);
        }
        rows.push(serde_json::json!({"partition": partition, "log_start_offset": log_start_offset}));
    }
    if args.json {
        print_json(&serde_json::json!({"topic": args.name, "partitions": rows}))?;
    } else if rows.len() > 1 {
        println!("trimmed {}", plural(rows.len() as i64, "partition"));
    }
    Ok(())
}
