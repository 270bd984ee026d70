//! `herald consume TOPIC`: print records, one per line.

use std::time::{Duration, Instant};

use clap::Args;
use herald::client::{ConsumedRecord, Consumer, ConsumerConfig, StartOffset};

use super::{BrokerArgs, CliResult};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the earliest stored record (the default is the end: new records only).
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset (with --partition, or in every partition).
    #[arg(long, conflicts_with = "timestamp")]
    offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Exit after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Exit when no record arrives for this long, in ms.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Output template with {topic} {partition} {offset} {timestamp} {key} {value} {headers}.
    #[arg(long, default_value = "{value}")]
    format: String,
    /// Print one JSON object per record instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

pub async fn run(args: ConsumeArgs) -> CliResult {
    let client = args.broker.connect().await?;
    let start = match (args.from_beginning, args.offset, args.timestamp) {
        (true, _, _) => StartOffset::Earliest,
        (_, Some(offset), _) => StartOffset::Offset(offset),
        (_, _, Some(ts)) => StartOffset::Timestamp(ts),
        _ => StartOffset::Latest,
    };
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    match args.partition {
        Some(partition) => {
            consumer.assign(&args.topic, partition, start).await?;
        }
        None => consumer.assign_all(&args.topic, start).await?,
    }
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let limit = args.count.unwrap_or(u64::MAX);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while printed < limit {
        let records = consumer.poll().await?;
        if records.is_empty() {
            if args.idle_timeout_ms.is_some_and(|ms| last_record.elapsed() >= Duration::from_millis(ms)) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        for record in records.iter().take((limit - printed) as usize) {
            let line = if args.json { json_line(record) } else { format_line(&args.format, record) };
            std::io::Write::write_all(&mut out, line.as_bytes())?;
            std::io::Write::write_all(&mut out, b"\n")?;
            printed += 1;
        }
        std::io::Write::flush(&mut out)?;
    }
    Ok(())
}

fn text(bytes: &Option<bytes::Bytes>) -> Option<String> {
    bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn format_line(template: &str, r: &ConsumedRecord) -> String {
    let headers: Vec<String> =
        r.record.headers.iter().map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))).collect();
    template
        .replace("{topic}", &r.topic)
        .replace("{partition}", &r.partition.to_string())
        .replace("{offset}", &r.record.offset.to_string())
        .replace("{timestamp}", &r.record.timestamp.to_string())
        .replace("{key}", &text(&r.record.key).unwrap_or_default())
        .replace("{headers}", &headers.join(","))
        .replace("{value}", &text(&r.record.value).unwrap_or_default())
}

fn json_line(r: &ConsumedRecord) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = r
        .record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(String::from_utf8_lossy(v).into_owned())))
        .collect();
    serde_json::json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.record.offset,
        "timestamp": r.record.timestamp,
        "key": text(&r.record.key),
        "value": text(&r.record.value),
        "headers": headers,
    })
    .to_string()
}
