//! The producer's idempotence (docs/protocol.md, "Idempotent producers"): a
//! producer id from the broker, and a sequence per partition on every batch,
//! so that the broker stores a batch sent twice once.
//!
//! A batch's sequence is taken when its request is queued on the connection
//! and only if it is queued, under one lock, so that the batches of a
//! partition reach the broker in sequence order and a batch that was never
//! sent leaves no gap. A broker that does not list `init_producer_id` (or the
//! batch form of `produce`) gets plain batches: idempotence is then off.

use std::collections::HashMap;
use std::sync::Mutex;

use herald_wire::batch::{add_sequence, BatchProducer};
use herald_wire::protocol::{op, FEATURE_PRODUCE_BATCH};

use crate::{Client, ClientError};

/// The most batches in flight per partition the broker can tell apart.
pub(super) const MAX_IN_FLIGHT: usize = 5;

#[derive(Default)]
struct State {
    /// The id and epoch once the broker gave them.
    producer: Option<(i64, i16)>,
    /// Set when the broker cannot take idempotent batches.
    off: bool,
    /// The next sequence of each (topic, partition).
    sequences: HashMap<(String, u32), i32>,
}

/// One producer's id and sequences.
#[derive(Default)]
pub(super) struct Idempotence {
    state: Mutex<State>,
    /// Held while the id is asked for, so that it is asked once.
    init: tokio::sync::Mutex<()>,
}

impl Idempotence {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether batches may be sent: the id is known, or idempotence is off.
    pub(super) fn ready(&self) -> bool {
        let state = self.state();
        state.producer.is_some() || state.off
    }

    /// Asks the broker for the producer id the first time.
    ///
    /// # Errors
    ///
    /// The broker refused (`CLUSTER_AUTHORIZATION_FAILED`, ...) or the
    /// connection failed; asked again at the next batch.
    pub(super) async fn ensure(&self, client: &Client) -> Result<(), ClientError> {
        if self.ready() {
            return Ok(());
        }
        let _one = self.init.lock().await;
        if self.ready() {
            return Ok(());
        }
        let features = client.features();
        if !features.offers(op::INIT_PRODUCER_ID) || !features.has_feature(FEATURE_PRODUCE_BATCH) {
            self.state().off = true;
            return Ok(());
        }
        let (producer_id, producer_epoch) = client.init_producer_id().await?;
        self.state().producer = Some((producer_id, producer_epoch));
        Ok(())
    }

    /// Forgets the producer id and every sequence: the next batch asks for
    /// a new id and numbers from 0.
    pub(super) fn reset(&self) {
        let mut state = self.state();
        if state.producer.take().is_some() {
            tracing::info!("a batch was given up: asking for a new producer id");
        }
        state.sequences.clear();
    }

    /// Calls `send` with the producer fields of the next batch of `count`
    /// records to `partition` of `topic` (`None` while idempotence is off),
    /// and moves the partition's sequence on only if `send` queued it.
    pub(super) fn send<T>(
        &self,
        topic: &str,
        partition: u32,
        count: usize,
        send: impl FnOnce(Option<BatchProducer>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut state = self.state();
        let Some((producer_id, producer_epoch)) = state.producer else { return send(None) };
        let key = (topic.to_owned(), partition);
        let base_sequence = state.sequences.get(&key).copied().unwrap_or(0);
        let sent = send(Some(BatchProducer { producer_id, producer_epoch, base_sequence }))?;
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        state.sequences.insert(key, add_sequence(base_sequence, count));
        Ok(sent)
    }
}
