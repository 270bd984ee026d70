//! The operations of a [`Client`]: admin calls, produce, fetch and list
//! offsets, each a typed request over the client's connection.

use std::collections::BTreeMap;

use bytes::Bytes;
use herald_wire::batch::{self, BatchProducer, Compression, Record, RecordParts};
use herald_wire::error::ErrorCode;
use herald_wire::protocol::*;

use crate::{check_response, too_large, Client, ClientError};

impl Client {
    /// Creates a topic with per-topic settings (`config`, possibly empty).
    ///
    /// # Errors
    ///
    /// `TOPIC_ALREADY_EXISTS`, `INVALID_TOPIC_EXCEPTION`, `INVALID_PARTITIONS`, `INVALID_CONFIG`.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i64,
        config: BTreeMap<String, ConfigValue>,
    ) -> Result<(), ClientError> {
        self.create_replicated_topic(topic, partitions, None, config).await
    }

    /// [`Client::create_topic`] with `replication_factor` replicas of each
    /// partition (`None`: the broker's default).
    ///
    /// # Errors
    ///
    /// As [`Client::create_topic`]; `INVALID_REPLICATION_FACTOR` for more
    /// replicas than live brokers.
    pub async fn create_replicated_topic(
        &self,
        topic: &str,
        partitions: i64,
        replication_factor: Option<i32>,
        config: BTreeMap<String, ConfigValue>,
    ) -> Result<(), ClientError> {
        let request = CreateTopicRequest { topic: topic.into(), partitions, config, replication_factor };
        let _: Empty = self.request(op::CREATE_TOPIC, &request).await?;
        Ok(())
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let _: Empty = self.request(op::DELETE_TOPIC, &TopicRequest { topic: topic.into() }).await?;
        Ok(())
    }

    /// Every topic and its partition count, sorted by name.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        let response: ListTopicsResponse = self.request(op::LIST_TOPICS, &Empty {}).await?;
        Ok(response.topics)
    }

    /// A topic's settings and partitions.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn describe_topic(&self, topic: &str) -> Result<DescribeTopicResponse, ClientError> {
        self.request(op::DESCRIBE_TOPIC, &TopicRequest { topic: topic.into() }).await
    }

    /// Grows a topic to `total` partitions; returns the new count.
    ///
    /// # Errors
    ///
    /// `INVALID_PARTITIONS` when `total` is not greater than the current count.
    pub async fn add_partitions(&self, topic: &str, total: i64) -> Result<u32, ClientError> {
        let response: AddPartitionsResponse =
            self.request(op::ADD_PARTITIONS, &AddPartitionsRequest { topic: topic.into(), partitions: total }).await?;
        Ok(response.partitions)
    }

    /// Changes a topic's settings: `set`'s keys to their values, `delete`'s
    /// back to the broker's defaults; with `validate_only`, only checks the
    /// change. Returns every setting of the topic after the change (as it
    /// would be, with `validate_only`).
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`; `INVALID_CONFIG` naming the key, and
    /// then nothing changed.
    pub async fn alter_topic_config(
        &self,
        topic: &str,
        set: BTreeMap<String, ConfigValue>,
        delete: Vec<String>,
        validate_only: bool,
    ) -> Result<BTreeMap<String, ConfigValue>, ClientError> {
        let request = AlterTopicConfigRequest { topic: topic.into(), set, delete, validate_only };
        let response: AlterTopicConfigResponse = self.request(op::ALTER_TOPIC_CONFIG, &request).await?;
        Ok(response.config)
    }

    /// Deletes a partition's records before `offset`
    /// ([`DELETE_TO_HIGH_WATERMARK`], -1: before its high watermark, all of
    /// them); returns the partition's new log start offset.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`; `OFFSET_OUT_OF_RANGE` for an offset
    /// below 0 (but -1) or above the high watermark.
    pub async fn delete_records(&self, topic: &str, partition: u32, offset: i64) -> Result<i64, ClientError> {
        let request = DeleteRecordsRequest { topic: topic.into(), partition: i64::from(partition), offset };
        let response: DeleteRecordsResponse = self.request(op::DELETE_RECORDS, &request).await?;
        Ok(response.log_start_offset)
    }

    /// A new idempotent producer id and its epoch (`init_producer_id`).
    ///
    /// # Errors
    ///
    /// `CLUSTER_AUTHORIZATION_FAILED`, `KAFKA_STORAGE_ERROR`, or
    /// `UNKNOWN_OPERATION` from a broker without idempotence.
    pub async fn init_producer_id(&self) -> Result<(i64, i16), ClientError> {
        self.check_offered(op::INIT_PRODUCER_ID)?;
        let response: InitProducerIdResponse =
            self.request(op::INIT_PRODUCER_ID, &InitProducerIdRequest::default()).await?;
        Ok((response.producer_id, response.producer_epoch))
    }

    /// Produces records with acks = 1 (or -1); see [`Client::produce_with_acks`].
    ///
    /// # Errors
    ///
    /// As [`Client::produce_with_acks`].
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
    ) -> Result<Vec<ProducePartitionResponse>, ClientError> {
        self.produce_with_acks(topic, partition, records, 1).await
    }

    /// Produces records to one partition, or routed by the broker's partitioner
    /// when `partition` is `None`. With `acks` 0 nothing is awaited and the
    /// result is empty.
    ///
    /// # Errors
    ///
    /// A request-level error, or the first per-partition error.
    pub async fn produce_with_acks(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
        acks: i64,
    ) -> Result<Vec<ProducePartitionResponse>, ClientError> {
        self.start_produce(topic, partition, records, acks)?.await
    }

    /// Queues a produce request on the connection at once (so requests keep the
    /// order of the calls) and returns the future of its result.
    ///
    /// The records go as one record batch, encoded here (`batch`), to a
    /// broker that lists [`FEATURE_PRODUCE_BATCH`], unless the broker is to
    /// route them by key (no `partition` and a record with a key: a batch
    /// goes to one partition); otherwise as MessagePack maps (`records`). A
    /// record without a timestamp takes this client's clock in a batch, the
    /// broker's in `records`.
    ///
    /// # Errors
    ///
    /// The connection is closed; the future fails as [`Client::produce_with_acks`].
    pub fn start_produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
        acks: i64,
    ) -> Result<impl std::future::Future<Output = Result<Vec<ProducePartitionResponse>, ClientError>>, ClientError>
    {
        self.start_produce_compressed(topic, partition, records, acks, Compression::None)
    }

    /// As [`Client::start_produce`], the batch compressed with `compression`
    /// when the broker lists that codec in its handshake (uncompressed
    /// otherwise, and always in the `records` form).
    ///
    /// # Errors
    ///
    /// As [`Client::start_produce`].
    pub fn start_produce_compressed(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
        acks: i64,
        compression: Compression,
    ) -> Result<impl std::future::Future<Output = Result<Vec<ProducePartitionResponse>, ClientError>>, ClientError>
    {
        self.start_produce_as(topic, partition, records, acks, compression, None)
    }

    /// As [`Client::start_produce_compressed`], the batch carrying an
    /// idempotent producer's fields (docs/protocol.md, "Idempotent
    /// producers") when `producer` is set. Such a batch is only ever sent in
    /// the batch form: when it cannot be (the broker does not list
    /// [`FEATURE_PRODUCE_BATCH`], no `partition`), the call fails with
    /// [`ClientError::Protocol`] rather than send records without their
    /// sequence.
    ///
    /// # Errors
    ///
    /// As [`Client::start_produce`].
    pub fn start_produce_as(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
        acks: i64,
        compression: Compression,
        producer: Option<BatchProducer>,
    ) -> Result<impl std::future::Future<Output = Result<Vec<ProducePartitionResponse>, ClientError>>, ClientError>
    {
        let mut prepared = self.prepare_produce(topic, partition, records, acks, compression, producer)?;
        self.start_prepared(&mut prepared)
    }

    /// Fetches raw batches from a partition (a long poll when `min_bytes` and
    /// `max_wait_ms` are set).
    ///
    /// # Errors
    ///
    /// `OFFSET_OUT_OF_RANGE`, `UNKNOWN_TOPIC_OR_PARTITION`; `CORRUPT_MESSAGE`
    /// with [`ClientError::damaged`] for an offset in a damaged range.
    pub async fn fetch_raw(&self, request: &FetchRequest) -> Result<FetchResponse, ClientError> {
        let held = std::time::Duration::from_millis(request.max_wait_ms);
        let (id, answer) = self.send_frame(op::FETCH, request)?;
        let frame = self.answer(op::FETCH, id, answer, held).await?;
        decode_fetch(&frame)
    }

    /// Fetches and decodes records at or after `request.offset`.
    ///
    /// # Errors
    ///
    /// As [`Client::fetch_raw`], or `CORRUPT_MESSAGE` for a batch that fails its
    /// checksum here or (with [`ClientError::damaged`]) on the broker's disk.
    pub async fn fetch(&self, request: &FetchRequest) -> Result<Fetched, ClientError> {
        let response = self.fetch_raw(request).await?;
        let records = batch::decode_all_shared(&response.records)
            .map_err(|e| ClientError::broker(ErrorCode::CORRUPT_MESSAGE.code(), Some(e.to_string())))?
            .into_iter()
            .filter(|r| r.offset >= request.offset)
            .collect();
        Ok(Fetched { records, high_watermark: response.high_watermark, log_start_offset: response.log_start_offset })
    }

    /// An offset: earliest (-2), latest (-1), or the first at or after a timestamp.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn list_offsets(&self, topic: &str, partition: u32, timestamp: i64) -> Result<i64, ClientError> {
        let response: ListOffsetsResponse = self
            .request(
                op::LIST_OFFSETS,
                &ListOffsetsRequest { topic: topic.into(), partition: partition.into(), timestamp },
            )
            .await?;
        Ok(response.offset)
    }
}

/// Decoded records of one fetch.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The records at or after the offset asked for, in offset order.
    pub records: Vec<Record>,
    /// The offset after the last record consumers may read.
    pub high_watermark: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
}

/// A record to produce, from a value and an optional key.
pub fn record(key: Option<&[u8]>, value: &[u8]) -> WireRecord {
    WireRecord {
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Vec::new(),
        timestamp: None,
    }
}

impl Client {
    /// The frame of a produce request carrying `records` as one batch, built
    /// in one buffer (see [`encode_produce_batch`]), with its correlation id;
    /// `None` when they go as MessagePack maps instead: the broker does not
    /// list [`FEATURE_PRODUCE_BATCH`], it is to route them by key, or they
    /// cannot form a batch (the broker then answers why).
    pub(crate) fn produce_batch_frame(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &[WireRecord],
        acks: i64,
        compression: Compression,
        producer: Option<BatchProducer>,
    ) -> Result<Option<(u32, Bytes)>, ClientError> {
        let routed_by_key = partition.is_none() && records.iter().any(|r| r.key.is_some());
        if !self.handshake.has_feature(FEATURE_PRODUCE_BATCH) || routed_by_key {
            return Ok(None);
        }
        self.check_offered(op::PRODUCE)?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let parts = records.iter().map(|r| RecordParts {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &r.headers,
            timestamp: r.timestamp.unwrap_or(now),
        });
        let correlation_id = self.next_correlation_id();
        let head = ProduceHead { correlation_id, topic, partition: partition.map(i64::from), acks, producer };
        let codec = match self.handshake.has_compression(compression.name()) {
            true => compression,
            false => Compression::None,
        };
        match encode_produce_batch_with(&head, parts, self.max_frame_bytes(), codec) {
            Ok(frame) => Ok(Some((correlation_id, frame))),
            Err(ProduceFrameError::TooLarge { bytes, max }) => Err(too_large(op::PRODUCE, bytes, max)),
            Err(ProduceFrameError::Batch(_)) => Ok(None),
        }
    }
}

/// A fetch response whose records share the frame's memory rather than
/// being copied out of it.
fn decode_fetch(frame: &Bytes) -> Result<FetchResponse, ClientError> {
    /// [`FetchResponse`], its records borrowed from the frame.
    #[derive(serde::Deserialize)]
    struct FetchResponseIn<'a> {
        high_watermark: i64,
        log_start_offset: i64,
        #[serde(borrow)]
        records: &'a [u8],
    }
    check_response(frame)?;
    let response: FetchResponseIn<'_> =
        rmp_serde::from_slice(frame).map_err(|e| ClientError::Protocol(format!("malformed response: {e}")))?;
    Ok(FetchResponse {
        high_watermark: response.high_watermark,
        log_start_offset: response.log_start_offset,
        records: frame.slice_ref(response.records),
    })
}

/// A produce request carrying its records as MessagePack maps (see
/// [`Client::start_produce`]).
pub(crate) fn produce_request(
    topic: &str,
    partition: Option<u32>,
    records: Vec<WireRecord>,
    acks: i64,
) -> ProduceRequest {
    ProduceRequest { topic: topic.into(), partition: partition.map(i64::from), acks, records, batch: None }
}
