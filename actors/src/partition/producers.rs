//! The idempotent producers' state of one partition: per producer id, its
//! epoch and its last [`KEPT_BATCHES`] appended batches, so that a retried
//! batch is recognised and answered with its first append's offsets instead
//! of being appended again (docs/protocol.md, "Idempotent producers").
//!
//! The rules, Kafka's (its `ProducerAppendInfo` since 2.5, KIP-360), for a
//! batch of producer id P, epoch E, sequences F..=L:
//!
//! 1. E older than P's known epoch: `INVALID_PRODUCER_EPOCH`.
//! 2. E is P's epoch and one of P's kept batches has exactly F..=L: a
//!    duplicate, answered with that batch's offsets; nothing is appended.
//! 3. E newer than P's epoch: F must be 0 (the new epoch starts over), else
//!    `OUT_OF_ORDER_SEQUENCE_NUMBER`; appended, P's kept batches dropped.
//! 4. P unknown (never seen, expired, or its batches gone with retention):
//!    appended at any sequence; refusing it would leave the producer no way
//!    on but a reset that could duplicate what it resends.
//! 5. E is P's epoch: F must follow P's last sequence by one (after
//!    `i32::MAX` comes 0), else `OUT_OF_ORDER_SEQUENCE_NUMBER`.
//!
//! Memory: one [`ProducerEntry`] (its 5 batches inline: 136 bytes) with its
//! 8-byte key in the hash map's slot, a control byte, at a load of at most
//! 7/8: about 170 bytes per producer and partition, so 1 GiB holds some six million
//! producers across all partitions. Producers without an append for
//! `producer_id_expiration_ms` are dropped ([`ProducerStates::expire`]).

use std::collections::HashMap;

use crate::batch::{add_sequence, BatchHeader};

/// The batches kept per producer: as many as a producer may have in flight
/// to one partition.
pub const KEPT_BATCHES: usize = 5;
/// Kafka's default `producer.id.expiration.ms`: one day.
pub const DEFAULT_EXPIRATION_MS: i64 = 86_400_000;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeptBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the partition knows of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The kept batches, oldest first: `batches[..len]`.
    batches: [KeptBatch; KEPT_BATCHES],
    len: u8,
    /// When its last batch was appended (ms since the epoch).
    pub last_append_ms: i64,
}

impl ProducerEntry {
    /// An entry of `epoch` without batches.
    pub fn new(epoch: i16, last_append_ms: i64) -> Self {
        ProducerEntry { epoch, batches: [KeptBatch::default(); KEPT_BATCHES], len: 0, last_append_ms }
    }

    /// The kept batches, oldest first.
    pub fn batches(&self) -> &[KeptBatch] {
        &self.batches[..usize::from(self.len)]
    }

    /// Adds `batch` as the newest, dropping the oldest when full.
    pub fn push(&mut self, batch: KeptBatch) {
        if usize::from(self.len) == KEPT_BATCHES {
            self.batches.copy_within(1.., 0);
            self.len -= 1;
        }
        self.batches[usize::from(self.len)] = batch;
        self.len += 1;
    }
}

/// Why a producer's batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id}'s epoch {epoch} is older than its current epoch {current}")]
    OldEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error(
        "producer {producer_id} (epoch {epoch}) sent sequence {sequence}; the partition expects {expected} \
         (a batch before it was lost or reordered)"
    )]
    OutOfOrder { producer_id: i64, epoch: i16, sequence: i32, expected: i32 },
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// Already appended, here: answer with these offsets.
    Duplicate(KeptBatch),
}

/// Every producer's state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    entries: HashMap<i64, ProducerEntry>,
    expiration_ms: i64,
}

impl Default for ProducerStates {
    fn default() -> Self {
        ProducerStates { entries: HashMap::new(), expiration_ms: DEFAULT_EXPIRATION_MS }
    }
}

impl ProducerStates {
    /// Checks a producer's batch (`header` of a batch with a producer id)
    /// against the rules of the module documentation.
    ///
    /// # Errors
    ///
    /// [`SequenceError`] for a batch to refuse.
    pub fn check(&self, header: &BatchHeader) -> Result<Verdict, SequenceError> {
        let (producer_id, epoch, sequence) = (header.producer_id, header.producer_epoch, header.base_sequence);
        let Some(entry) = self.entries.get(&producer_id) else { return Ok(Verdict::Append) };
        if epoch < entry.epoch {
            return Err(SequenceError::OldEpoch { producer_id, epoch, current: entry.epoch });
        }
        if epoch > entry.epoch {
            return match sequence {
                0 => Ok(Verdict::Append),
                _ => Err(SequenceError::OutOfOrder { producer_id, epoch, sequence, expected: 0 }),
            };
        }
        let last = header.last_sequence();
        if let Some(kept) = entry.batches().iter().find(|b| (b.first_sequence, b.last_sequence) == (sequence, last)) {
            return Ok(Verdict::Duplicate(*kept));
        }
        match entry.batches().last() {
            None => Ok(Verdict::Append),
            Some(newest) if add_sequence(newest.last_sequence, 1) == sequence => Ok(Verdict::Append),
            Some(newest) => Err(SequenceError::OutOfOrder {
                producer_id,
                epoch,
                sequence,
                expected: add_sequence(newest.last_sequence, 1),
            }),
        }
    }

    /// Records an appended batch of a producer (`header` with its base offset
    /// set), at `now_ms`.
    pub fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        let entry =
            self.entries.entry(header.producer_id).or_insert_with(|| ProducerEntry::new(header.producer_epoch, now_ms));
        if header.producer_epoch != entry.epoch {
            *entry = ProducerEntry::new(header.producer_epoch, now_ms);
        }
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        entry.push(KeptBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
    }

    /// Drops the producers without an append in the last `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.expiration_ms);
        self.entries.retain(|_, entry| entry.last_append_ms >= cutoff);
    }

    /// Sets how long a producer without appends is kept.
    pub fn set_expiration_ms(&mut self, expiration_ms: i64) {
        self.expiration_ms = expiration_ms;
    }

    /// The state of `producer_id`, if known.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// Every producer's state, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.entries.iter().map(|(id, entry)| (*id, entry))
    }

    /// Puts back a producer's state read from a snapshot.
    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.entries.insert(producer_id, entry);
    }

    /// How many producers are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
