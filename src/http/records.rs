//! `GET /api/v1/topics/{topic}/partitions/{p}/records?offset=N&limit=M`: at
//! most `limit` records (default 100, at most 1000) from `offset` (default the
//! partition's start), read with the fetch the wire's `fetch` sends, at most
//! [`MAX_BYTES`] of stored batches. Keys, values and header values are given
//! as base64, with a `utf8` rendering when they are valid UTF-8; a tombstone's
//! value is `null`.
//!
//! ```json
//! {"topic": "t", "partition": 0, "high_watermark": 10, "log_start_offset": 0,
//!  "next_offset": 2, "records": [{"offset": 0, "timestamp": 1700000000000,
//!  "key": null, "value": {"base64": "aGk=", "utf8": "hi"}, "headers": []}]}
//! ```
//!
//! `next_offset` is where the next page starts.

use actix_web::{web, HttpResponse};
use base64::Engine;
use bytes::Bytes;
use herald_actors::batch::{self, Record};
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::partition;
use herald_actors::topic::ForPartition;
use serde::{Deserialize, Serialize};

use super::api::{actors, error, lookup_topic};
use super::HttpState;
use crate::security::acl::{Operation, Resource};

/// Stored bytes one page reads at most.
pub const MAX_BYTES: usize = 1 << 20;
/// Records one page holds at most.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
pub struct Page {
    offset: Option<i64>,
    limit: Option<usize>,
}

/// Bytes as base64 and, when valid, as UTF-8.
#[derive(Debug, Serialize)]
struct Shown {
    base64: String,
    utf8: Option<String>,
}

fn shown(bytes: &Bytes) -> Shown {
    Shown {
        base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        utf8: std::str::from_utf8(bytes).ok().map(str::to_string),
    }
}

#[derive(Debug, Serialize)]
struct Header {
    key: String,
    value: Shown,
}

#[derive(Debug, Serialize)]
struct RecordOut {
    offset: i64,
    timestamp: i64,
    key: Option<Shown>,
    value: Option<Shown>,
    headers: Vec<Header>,
}

impl From<&Record> for RecordOut {
    fn from(r: &Record) -> RecordOut {
        RecordOut {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_ref().map(shown),
            value: r.value.as_ref().map(shown),
            headers: r.headers.iter().map(|(key, value)| Header { key: key.clone(), value: shown(value) }).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Records {
    topic: String,
    partition: u32,
    high_watermark: i64,
    log_start_offset: i64,
    next_offset: i64,
    records: Vec<RecordOut>,
}

fn bad(message: String) -> HttpResponse {
    error(&BrokerError::new(ErrorCode::INVALID_REQUEST, message))
}

pub async fn records(
    state: web::Data<HttpState>,
    path: web::Path<(String, String)>,
    page: Result<web::Query<Page>, actix_web::Error>,
) -> HttpResponse {
    let actors = match actors(&state) {
        Ok(actors) => actors,
        Err(err) => return error(&err),
    };
    let (topic, partition) = path.into_inner();
    let Ok(partition) = partition.parse::<u32>() else {
        return bad(format!("partition must be a number from 0, got `{partition}`"));
    };
    let page = match page {
        Ok(page) => page.into_inner(),
        Err(err) => return bad(format!("offset and limit must be numbers: {err}")),
    };
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return bad(format!("limit must be 1 to {MAX_LIMIT}, got {limit}"));
    }
    if let Err(err) = actors.access().check(Operation::Read, &Resource::topic(topic.as_str())) {
        return error(&err);
    }
    match read(actors, &topic, partition, page.offset, limit).await {
        Ok(records) => HttpResponse::Ok().json(records),
        Err(err) => error(&err),
    }
}

async fn read(
    actors: &super::Actors,
    topic: &str,
    partition: u32,
    offset: Option<i64>,
    limit: usize,
) -> Result<Records, BrokerError> {
    let addr = lookup_topic(actors, topic).await?;
    let fetch = |offset| partition::Fetch { offset, max_bytes: MAX_BYTES, min_bytes: 0, max_wait_ms: 0 };
    let ask = |offset| addr.send(ForPartition { partition, message: fetch(offset) });
    let flatten = |sent: Result<Result<partition::FetchResult, BrokerError>, actix::MailboxError>| {
        sent.unwrap_or_else(|e| Err(e.into()))
    };
    let offset = match offset {
        Some(offset) if offset < 0 => {
            return Err(BrokerError::new(ErrorCode::INVALID_REQUEST, format!("offset must be 0 or more, got {offset}")))
        }
        Some(offset) => offset,
        // The start of the partition, as `list_offsets` with -2 finds it.
        None => {
            let earliest = ForPartition { partition, message: partition::ListOffsets { timestamp: -2 } };
            addr.send(earliest).await.unwrap_or_else(|e| Err(e.into()))?
        }
    };
    let fetched = flatten(ask(offset).await)?;
    let decoded = batch::decode_all(&whole_batches(&fetched.records)).map_err(|err| {
        BrokerError::new(ErrorCode::CORRUPT_MESSAGE, format!("cannot decode the stored batches: {err}"))
    })?;
    let records: Vec<RecordOut> =
        decoded.iter().filter(|r| r.offset >= offset).take(limit).map(RecordOut::from).collect();
    let next_offset = records.last().map_or(offset.max(fetched.log_start_offset), |r| r.offset + 1);
    Ok(Records {
        topic: topic.to_string(),
        partition,
        high_watermark: fetched.high_watermark,
        log_start_offset: fetched.log_start_offset,
        next_offset,
        records,
    })
}

/// The whole batches at the start of `bytes` (a read may end in a cut one).
fn whole_batches(bytes: &Bytes) -> Bytes {
    let mut end = 0;
    while let Ok(header) = batch::BatchHeader::parse(&bytes[end..]) {
        if end + header.total_bytes() > bytes.len() {
            break;
        }
        end += header.total_bytes();
    }
    bytes.slice(..end)
}
