//! `herald consume TOPIC`: print records, one per line.
//!
//! Ctrl-C or SIGTERM stops it after the records being printed; a group member
//! then commits what it printed and leaves its group, and the command exits 0.

use std::time::{Duration, Instant};

use clap::Args;
use herald::client::{
    AutoOffsetReset, ConsumedRecord, Consumer, ConsumerConfig, GroupConsumer, GroupConsumerConfig, StartOffset,
};

use super::record_format::{json_line, Encoding, Template};
use super::stop::Stop;
use super::{BrokerArgs, CliResult, UsageError};

/// A `--offset` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetArg {
    Start(StartOffset),
    /// This many records before the end (never before the start).
    BeforeEnd(i64),
}

fn parse_offset(text: &str) -> Result<OffsetArg, UsageError> {
    let bad = || {
        UsageError(format!(
            "--offset `{text}`: use N, start, end, -N (N before the end) or @MS (a time, ms since the epoch)"
        ))
    };
    Ok(match text {
        "start" | "beginning" | "earliest" => OffsetArg::Start(StartOffset::Earliest),
        "end" | "latest" => OffsetArg::Start(StartOffset::Latest),
        _ if text.starts_with('@') => OffsetArg::Start(StartOffset::Timestamp(text[1..].parse().map_err(|_| bad())?)),
        _ if text.starts_with('-') => {
            let n: i64 = text[1..].parse().map_err(|_| bad())?;
            OffsetArg::BeforeEnd(n)
        }
        _ => OffsetArg::Start(StartOffset::Offset(text.parse::<i64>().map_err(|_| bad())?)),
    })
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the earliest stored record (the default is the end: new records
    /// only). With --group, only for partitions the group has no offset for.
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Where to start, in every partition read: N (that offset), start, end,
    /// -N (N records before the end), @MS (the first record at or after that
    /// time, ms since the epoch).
    #[arg(long, conflicts_with_all = ["timestamp", "group"], allow_hyphen_values = true, value_parser = parse_offset)]
    offset: Option<OffsetArg>,
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
    /// Output template with {topic} {partition} {offset} {timestamp} {key}
    /// {value} {headers}; the last three take an encoding, e.g. {key:hex}.
    #[arg(long, default_value = "{value}")]
    format: String,
    /// Print one JSON object per record instead.
    #[arg(long)]
    json: bool,
    /// How keys, values and header values are printed: text (bytes as they
    /// are; in JSON a string, or {"base64": ...} when not UTF-8), hex or base64.
    #[arg(long, value_enum, default_value_t = Encoding::Text)]
    encoding: Encoding,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// Consumes as a group member until --count or the idle timeout, then commits
/// and leaves.
async fn run_group(args: &ConsumeArgs, group: &str, stop: &Stop) -> CliResult {
    let mut config = GroupConsumerConfig::new(group, &[args.topic.as_str()]);
    config.group_instance_id = args.group_instance_id.clone();
    config.assignor = args.assignor.clone();
    config.auto_offset_reset = if args.from_beginning { AutoOffsetReset::Earliest } else { AutoOffsetReset::Latest };
    let client = args.broker.connect().await?;
    // An unknown topic is an error, as without --group, rather than a member
    // waiting for partitions that do not exist in a group made for nothing.
    client.describe_topic(&args.topic).await?;
    let mut consumer = GroupConsumer::join(client, config).await?;
    let mut printer = Printer::new(args, stop)?;
    // A poll waits at most the consumer's max_wait_ms (200 ms) for records, so
    // a stop is seen that soon; polls are not cut short, so that the positions
    // the commit uses are those of the records printed.
    while !printer.done() && !stop.requested() {
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

/// Prints records up to --count or a stop, and tells when --idle-timeout-ms
/// has passed.
struct Printer<'a> {
    args: &'a ConsumeArgs,
    stop: Stop,
    template: Template,
    printed: u64,
    limit: u64,
    last_record: Instant,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    /// Per partition, the first record fetched but not printed.
    unprinted: std::collections::BTreeMap<(String, u32), i64>,
}

impl<'a> Printer<'a> {
    fn new(args: &'a ConsumeArgs, stop: &Stop) -> CliResult<Self> {
        Ok(Printer {
            args,
            stop: stop.clone(),
            template: Template::parse(&args.format, args.encoding)?,
            printed: 0,
            limit: args.count.unwrap_or(u64::MAX),
            last_record: Instant::now(),
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            unprinted: std::collections::BTreeMap::new(),
        })
    }

    fn done(&self) -> bool {
        self.printed >= self.limit
    }

    /// Prints what fits under the limit, record by record until a stop is
    /// asked for; false once stopped or the idle timeout passed.
    fn print(&mut self, records: &[ConsumedRecord]) -> CliResult<bool> {
        if records.is_empty() {
            let idle =
                self.args.idle_timeout_ms.is_some_and(|ms| self.last_record.elapsed() >= Duration::from_millis(ms));
            return Ok(!idle);
        }
        self.last_record = Instant::now();
        let room = (self.limit - self.printed) as usize;
        let mut printable = room.min(records.len());
        for (i, record) in records.iter().enumerate() {
            if i < printable && self.stop.requested() {
                printable = i;
            }
            if i >= printable {
                self.unprinted.entry((record.topic.clone(), record.partition)).or_insert(record.record.offset);
                continue;
            }
            let line = if self.args.json {
                json_line(record, self.args.encoding).into_bytes()
            } else {
                self.template.render(record)
            };
            std::io::Write::write_all(&mut self.out, &line)?;
            std::io::Write::write_all(&mut self.out, b"\n")?;
            self.printed += 1;
        }
        std::io::Write::flush(&mut self.out)?;
        Ok(!self.stop.requested())
    }
}

pub async fn run(args: ConsumeArgs) -> CliResult {
    // A bad template is refused before anything is consumed.
    Template::parse(&args.format, args.encoding)?;
    let stop = Stop::listen()?;
    if let Some(group) = args.group.clone() {
        return run_group(&args, &group, &stop).await;
    }
    let client = args.broker.connect().await?;
    let start = match (args.from_beginning, args.offset, args.timestamp) {
        (true, _, _) => StartOffset::Earliest,
        (_, Some(OffsetArg::Start(start)), _) => start,
        (_, Some(OffsetArg::BeforeEnd(_)), _) => StartOffset::Latest,
        (_, _, Some(ts)) => StartOffset::Timestamp(ts),
        _ => StartOffset::Latest,
    };
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    let partitions: Vec<u32> = match args.partition {
        Some(partition) => {
            consumer.assign(&args.topic, partition, start).await?;
            vec![partition]
        }
        None => {
            consumer.assign_all(&args.topic, start).await?;
            (0..client.describe_topic(&args.topic).await?.partitions.len() as u32).collect()
        }
    };
    if let Some(OffsetArg::BeforeEnd(n)) = args.offset {
        for partition in partitions {
            let end = consumer.position(&args.topic, partition).unwrap_or(0);
            let first = client.list_offsets(&args.topic, partition, herald::protocol::EARLIEST_TIMESTAMP).await?;
            consumer.seek(&args.topic, partition, end.saturating_sub(n).max(first));
        }
    }
    let mut printer = Printer::new(&args, &stop)?;
    while !printer.done() {
        // Nothing to commit here: a poll cut short by a stop loses nothing.
        let records = tokio::select! {
            records = consumer.poll() => records?,
            _ = stop.wait() => break,
        };
        if !printer.print(&records)? {
            break;
        }
    }
    Ok(())
}
