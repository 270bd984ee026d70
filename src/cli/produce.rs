//! `herald produce TOPIC`: one record per line of standard input.
//!
//! Lines are text: one that is not UTF-8 is reported by its number and
//! skipped (the others are sent, and the command then exits 1), unless
//! `--binary` takes every line as raw bytes. Ctrl-C or SIGTERM stops reading;
//! what was read is sent and acknowledged before the command exits 0.

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::{Compression, Partitioner, Producer, ProducerConfig};
use herald::protocol::WireRecord;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::progress::Progress;
use std::io::IsTerminal;

use super::stop::Stop;
use super::{BrokerArgs, CliResult, UsageError};

/// Where records without a key go.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum PartitionerArg {
    /// Fill one partition with about 16 KiB, then the next (Kafka's default).
    Sticky,
    /// One record to each partition in turn.
    Roundrobin,
}

/// The codec of each batch's records.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum CompressionArg {
    /// As they are.
    None,
    /// An LZ4 frame: fast, about 3x smaller on text.
    Lz4,
    /// A zstd frame: smaller still, a little more CPU.
    Zstd,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value (lines without it have no key).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, KEY=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// 0 (do not wait), 1 (wait for the leader's acknowledgement) or all
    /// (wait until every in-sync replica has the record; a broker alone: as 1).
    #[arg(long, default_value = "all")]
    acks: String,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(long)]
    partition: Option<u32>,
    /// Where records without a key go.
    #[arg(long, value_enum, default_value_t = PartitionerArg::Sticky)]
    partitioner: PartitionerArg,
    /// Take every line as raw bytes instead of UTF-8 text.
    #[arg(long)]
    binary: bool,
    /// How long a record may wait for its batch to fill, in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Compress each batch sent (the broker stores and serves it compressed;
    /// consumers decompress it). Sent uncompressed to a broker without it.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Send plain batches: without a producer id and sequences, a batch the
    /// producer sends again may be stored twice (docs/protocol.md,
    /// "Idempotent producers").
    #[arg(long)]
    no_idempotence: bool,
    /// Never show progress (shown only when standard input is a file or a
    /// pipe and standard error a terminal).
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn parse_acks(acks: &str) -> CliResult<i64> {
    match acks {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(UsageError(format!("--acks must be 0, 1 or all, got `{other}`")).into()),
    }
}

/// `line` without its end of line (`\n` or `\r\n`).
fn trim_end_of_line(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    line
}

/// Key and value of a line: split at the first `separator` when given.
fn split_line(line: &[u8], separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    if let Some(sep) = separator.filter(|s| !s.is_empty()) {
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            return (Some(Bytes::copy_from_slice(&line[..at])), Bytes::copy_from_slice(&line[at + sep.len()..]));
        }
    }
    (None, Bytes::copy_from_slice(line))
}

pub async fn run(args: ProduceArgs) -> CliResult {
    let acks = parse_acks(&args.acks)?;
    let headers: Vec<(String, Bytes)> = args
        .headers
        .iter()
        .map(|h| {
            let (k, v) = h.split_once('=').ok_or_else(|| UsageError(format!("--header `{h}` is not KEY=VALUE")))?;
            Ok((k.to_string(), Bytes::copy_from_slice(v.as_bytes())))
        })
        .collect::<CliResult<_>>()?;
    let stop = Stop::listen()?;
    let client = args.broker.connect().await?;
    // Fail fast on an unknown topic or partition rather than once per record.
    let partitions = client.describe_topic(&args.topic).await?.partitions.len();
    if let Some(partition) = args.partition.filter(|p| *p as usize >= partitions) {
        return Err(format!(
            "UNKNOWN_TOPIC_OR_PARTITION (3): topic `{}` has {partitions} partitions, there is no partition {partition}",
            args.topic
        )
        .into());
    }
    let partitioner = match args.partitioner {
        PartitionerArg::Sticky => Partitioner::Sticky,
        PartitionerArg::Roundrobin => Partitioner::RoundRobin,
    };
    let compression = match args.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Lz4 => Compression::Lz4,
        CompressionArg::Zstd => Compression::Zstd,
    };
    let config = ProducerConfig {
        linger_ms: args.linger_ms,
        acks,
        partitioner,
        compression,
        idempotent: !args.no_idempotence,
        ..Default::default()
    };
    let producer = Producer::new(client, config);

    // A file on standard input shows a bar by its bytes; a pipe, a count.
    let file_bytes = stdin_file_bytes();
    let shown = Progress::wanted(args.no_progress) && !std::io::stdin().is_terminal();
    let progress = match file_bytes {
        Some(total) => Progress::bytes(shown, "produce", total),
        None => Progress::records(shown, "produce", None),
    };
    let mut input = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut pending = FuturesUnordered::new();
    let (mut sent, mut number) = (0u64, 0u64);
    let mut not_text = Vec::new();
    loop {
        line.clear();
        // Reading is cancel-safe: a line cut short by a signal is not sent.
        let read = tokio::select! {
            read = input.read_until(b'\n', &mut line) => read?,
            _ = stop.wait() => break,
        };
        if read == 0 {
            break;
        }
        number += 1;
        if file_bytes.is_some() {
            progress.inc(read as u64);
        }
        let content = trim_end_of_line(&line);
        if !args.binary && std::str::from_utf8(content).is_err() {
            progress.note(&format!("line {number} is not UTF-8 text: skipped (--binary sends lines as raw bytes)"));
            not_text.push(number);
            continue;
        }
        let (key, value) = split_line(content, args.key_separator.as_deref().map(str::as_bytes));
        let record = WireRecord { key, value: Some(value), headers: headers.clone(), timestamp: None };
        pending.push(producer.send(&args.topic, args.partition, record).await?);
        sent += 1;
        match file_bytes {
            Some(_) => progress.set_records(sent),
            None => progress.inc(1),
        }
        // Surface errors as they come instead of after the last line.
        while let Some(Some(done)) = futures::FutureExt::now_or_never(pending.next()) {
            done??;
        }
    }
    producer.flush().await?;
    while let Some(done) = pending.next().await {
        done??;
    }
    progress.finish();
    eprintln!("produced {sent} record{} to {}", if sent == 1 { "" } else { "s" }, args.topic);
    match not_text.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("line {one} was not UTF-8 text and was not sent").into()),
        [first, ..] => {
            Err(format!("{} lines were not UTF-8 text and were not sent (the first: line {first})", not_text.len())
                .into())
        }
    }
}

/// The size of standard input when it is a regular file (`< FILE`).
fn stdin_file_bytes() -> Option<u64> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    (metadata.is_file() && metadata.len() > 0).then_some(metadata.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_end_of_line_and_split_at_the_first_separator() {
        assert_eq!(trim_end_of_line(b"a\r\n"), b"a");
        assert_eq!(trim_end_of_line(b"a\n"), b"a");
        assert_eq!(trim_end_of_line(b"a"), b"a");
        let (key, value) = split_line(b"k::v::w", Some(b"::"));
        assert_eq!((key.as_deref(), &value[..]), (Some(&b"k"[..]), &b"v::w"[..]));
        let (key, value) = split_line(b"plain", Some(b"::"));
        assert_eq!((key, &value[..]), (None, &b"plain"[..]));
    }
}
