//! `herald produce TOPIC`: one record per line of standard input.

use bytes::Bytes;
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::{Producer, ProducerConfig};
use herald::protocol::WireRecord;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{BrokerArgs, CliResult};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value (lines without it have no key).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, KEY=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// 0 (do not wait), 1 (wait for the broker's acknowledgement) or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(long)]
    partition: Option<u32>,
    /// How long a record may wait for its batch to fill, in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn parse_acks(acks: &str) -> CliResult<i64> {
    match acks {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("--acks must be 0, 1 or all, got `{other}`").into()),
    }
}

pub async fn run(args: ProduceArgs) -> CliResult {
    let acks = parse_acks(&args.acks)?;
    let headers: Vec<(String, Bytes)> = args
        .headers
        .iter()
        .map(|h| {
            let (k, v) = h.split_once('=').ok_or_else(|| format!("--header `{h}` is not KEY=VALUE"))?;
            Ok((k.to_string(), Bytes::copy_from_slice(v.as_bytes())))
        })
        .collect::<CliResult<_>>()?;
    let client = args.broker.connect().await?;
    // Fail fast on an unknown topic rather than once per record.
    client.describe_topic(&args.topic).await?;
    let producer = Producer::new(client, ProducerConfig { linger_ms: args.linger_ms, acks, ..Default::default() });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    while let Some(line) = lines.next_line().await? {
        let (key, value) = match args.key_separator.as_deref().and_then(|sep| line.split_once(sep)) {
            Some((key, value)) => (Some(Bytes::copy_from_slice(key.as_bytes())), value.to_string()),
            None => (None, line),
        };
        let record = WireRecord { key, value: Some(Bytes::from(value)), headers: headers.clone(), timestamp: None };
        pending.push(producer.send(&args.topic, args.partition, record).await?);
        sent += 1;
        // Surface errors as they come instead of after the last line.
        while let Some(Some(done)) = futures::FutureExt::now_or_never(pending.next()) {
            done??;
        }
    }
    producer.flush().await?;
    while let Some(done) = pending.next().await {
        done??;
    }
    eprintln!("produced {sent} records to {}", args.topic);
    Ok(())
}
