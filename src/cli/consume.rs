//! `herald consume TOPIC`: print records, one per line.

use std::time::{Duration, Instant};

use clap::Args;
use herald::client::{
    AutoOffsetReset, ConsumedRecord, Consumer, ConsumerConfig, GroupConsumer, GroupConsumerConfig, StartOffset,
};

use super::{BrokerArgs, CliResult};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the earliest stored record (the default is the end: new records
    /// only). With --group, only for partitions the group has no offset for.
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset (with --partition, or in every partition).
    #[arg(long, conflicts_with_all = ["timestamp", "group"])]
    offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long, conflicts_with = "group")]
    timestamp: Option<i64>,
    /// Read only this partition.
    #[arg(long, conflicts_with = "group")]
    partition: Option<u32>,
    /// Consume as a member of this consumer group: the broker assigns the
    /// partitions, and offsets are committed (every 5 s and on exit).
    #[arg(long)]
    group: Option<String>,
    /// Static membership id within the group.
    #[arg(long, requires = "group")]
    group_instance_id: Option<String>,
    /// The group's assignor when it is created: range, roundrobin or sticky.
    #[arg(long, requires = "group")]
    assignor: Option<String>,
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

/// Consumes as a group member until --count or the idle timeout, then commits
/// and leaves.
async fn run_group(args: &ConsumeArgs, group: &str) -> CliResult {
    let mut config = GroupConsumerConfig::new(group, &[args.topic.as_str()]);
    config.group_instance_id = args.group_instance_id.clone();
    config.assignor = args.assignor.clone();
    config.auto_offset_reset = if args.from_beginning { AutoOffsetReset::Earliest } else { AutoOffsetReset::Latest };
    let mut consumer = GroupConsumer::join(args.broker.connect().await?, config).await?;
    let mut printer = Printer::new(args);
    while !printer.done() {
        let records = consumer.poll().await?;
        if !printer.print(&records)? {
            break;
        }
    }
    // Records fetched but not printed (past --count) are not consumed: the
    // committed offsets must not skip them.
    for ((topic, partition), offset) in &printer.unprinted {
        consumer.seek(topic, *partition, *offset);
    }
    consumer.commit().await?;
    consumer.close().await?;
    Ok(())
}

/// Prints records up to --count, and tells when --idle-timeout-ms has passed.
struct Printer<'a> {
    args: &'a ConsumeArgs,
    printed: u64,
    limit: u64,
    last_record: Instant,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    /// Per partition, the first record fetched but not printed.
    unprinted: std::collections::BTreeMap<(String, u32), i64>,
}

impl<'a> Printer<'a> {
    fn new(args: &'a ConsumeArgs) -> Self {
        Printer {
            args,
            printed: 0,
            limit: args.count.unwrap_or(u64::MAX),
            last_record: Instant::now(),
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            unprinted: std::collections::BTreeMap::new(),
        }
    }

    fn done(&self) -> bool {
        self.printed >= self.limit
    }

    /// Prints what fits under the limit; false once the idle timeout passed.
    fn print(&mut self, records: &[ConsumedRecord]) -> CliResult<bool> {
        if records.is_empty() {
            let idle =
                self.args.idle_timeout_ms.is_some_and(|ms| self.last_record.elapsed() >= Duration::from_millis(ms));
            return Ok(!idle);
        }
        self.last_record = Instant::now();
        let room = (self.limit - self.printed) as usize;
        for record in records.iter().skip(room) {
            self.unprinted.entry((record.topic.clone(), record.partition)).or_insert(record.record.offset);
        }
        for record in records.iter().take(room) {
            let line = if self.args.json { json_line(record) } else { format_line(&self.args.format, record) };
            std::io::Write::write_all(&mut self.out, line.as_bytes())?;
            std::io::Write::write_all(&mut self.out, b"\n")?;
            self.printed += 1;
        }
        std::io::Write::flush(&mut self.out)?;
        Ok(true)
    }
}

pub async fn run(args: ConsumeArgs) -> CliResult {
    if let Some(group) = args.group.clone() {
        return run_group(&args, &group).await;
    }
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
    let mut printer = Printer::new(&args);
    while !printer.done() {
        let records = consumer.poll().await?;
        if !printer.print(&records)? {
            break;
        }
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
