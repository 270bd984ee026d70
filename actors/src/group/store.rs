//! A group's durable state: an internal log of committed offsets and settings.
//!
//! Each group has its own log (the same segment format as a partition's) in
//! `<data_dir>/groups/<hex of group id>/`. Every change is appended as a record
//! whose value is a JSON [`StoredRecord`]; the state is rebuilt on start by
//! replaying the log in order. When the log grows past [`COMPACT_BYTES`], it is
//! rewritten as one snapshot of the current state. Appends are acknowledged by
//! the coordinator only after the data directory's fsync writer has synced
//! them.
//!
//! A damaged log loses only what is damaged: the replay steps over a damaged
//! range of the log (see `partition/damage.rs`) and over a record that does not
//! parse, logs each, keeps them in [`GroupStore::damaged`] for describe, and
//! applies every other record, so each partition keeps its last readable
//! commit. Damage that holds no readable offset is reported too: a damaged
//! tail recovery found (after a clean shutdown), and a torn tail it truncated
//! (after an unclean one; the range is empty, at the new end of the log, as
//! the offsets the torn bytes stood for cannot be known). A compaction of a damaged log keeps the old log aside, in
//! `<dir>.damaged-<ms>`, instead of deleting it.
//!
//! A committed offset belongs to the id of its topic (`topic_id`, absent in
//! logs written before topics had ids: such an offset belongs to whichever
//! topic has the name). [`Committed::belongs_to`] decides whether an offset is
//! the current topic's; the coordinator serves only those (see
//! [`GroupState::current`]). A delete of the topic appends
//! [`StoredRecord::TopicDeleted`], which drops its offsets on replay too.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::assignor::TopicPartition;
use crate::batch::{self, Record};
use crate::partition::log::{Log, LogConfig, LogError};

/// Records of the group log that could not be read when it was replayed: the
/// changes they held (commits, mostly) are lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRecords {
    /// First offset of the group log in the range.
    pub first_offset: i64,
    /// The offset after the range.
    pub next_offset: i64,
    pub reason: String,
}

/// Log size beyond which the log is rewritten as a snapshot.
pub const COMPACT_BYTES: u64 = 16 << 20;

/// One change to a group's durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredRecord {
    /// A committed offset: the next record the group will read.
    Offset {
        topic: String,
        partition: u32,
        offset: i64,
        metadata: Option<String>,
        commit_timestamp: i64,
        /// The id of the topic committed to; absent in older logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic_id: Option<String>,
    },
    /// The topic was deleted: forget its offsets (those of `topic_id`, and
    /// those without an id; all of them when `topic_id` is absent).
    TopicDeleted {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic_id: Option<String>,
    },
    /// The group's assignor.
    Assignor { name: String },
    /// The group's generation (its epoch) reached this value: a restarted
    /// broker goes on from it, so a generation never repeats.
    Generation { group_epoch: i64 },
    /// The group was deleted: forget everything before.
    Deleted,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
    /// The id of the topic it was committed to (`None`: from before ids).
    pub topic_id: Option<String>,
}

impl Committed {
    /// Whether the offset belongs to the topic whose current id is
    /// `current` (`None`: no such topic): an offset from before ids belongs
    /// to any topic of its name; one with an id only to the topic of that id.
    pub fn belongs_to(&self, current: Option<&str>) -> bool {
        match &self.topic_id {
            None => true,
            Some(id) => current == Some(id.as_str()),
        }
    }
}

/// What the log says about the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    pub offsets: BTreeMap<TopicPartition, Committed>,
    pub assignor: Option<String>,
    /// The highest generation the log records (0: none).
    pub generation: i64,
}

impl GroupState {
    /// Applies one record.
    pub fn apply(&mut self, record: &StoredRecord) {
        match record {
            StoredRecord::Offset { topic, partition, offset, metadata, commit_timestamp, topic_id } => {
                self.offsets.insert(
                    TopicPartition { topic: topic.clone(), partition: *partition },
                    Committed {
                        offset: *offset,
                        metadata: metadata.clone(),
                        commit_timestamp: *commit_timestamp,
                        topic_id: topic_id.clone(),
                    },
                );
            }
            StoredRecord::TopicDeleted { topic, topic_id } => self.offsets.retain(|tp, c| {
                tp.topic != *topic || (topic_id.is_some() && c.topic_id.is_some() && c.topic_id != *topic_id)
            }),
            StoredRecord::Assignor { name } => self.assignor = Some(name.clone()),
            StoredRecord::Generation { group_epoch } => self.generation = self.generation.max(*group_epoch),
            StoredRecord::Deleted => *self = GroupState::default(),
        }
    }

    /// The records that recreate this state.
    pub fn snapshot(&self) -> Vec<StoredRecord> {
        let mut records: Vec<StoredRecord> =
            self.assignor.iter().map(|name| StoredRecord::Assignor { name: name.clone() }).collect();
        if self.generation > 0 {
            records.push(StoredRecord::Generation { group_epoch: self.generation });
        }
        records.extend(self.offsets.iter().map(|(tp, c)| StoredRecord::Offset {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: c.offset,
            metadata: c.metadata.clone(),
            commit_timestamp: c.commit_timestamp,
            topic_id: c.topic_id.clone(),
        }));
        records
    }

    /// The committed offset of `tp` if it belongs to the topic's current id
    /// (`ids` has the ids of the topics that exist).
    pub fn current(&self, tp: &TopicPartition, ids: &BTreeMap<String, String>) -> Option<&Committed> {
        self.offsets.get(tp).filter(|c| c.belongs_to(ids.get(&tp.topic).map(String::as_str)))
    }
}

/// Errors of the group store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("record {offset} of the group log is not valid: {reason}")]
    Corrupt { offset: i64, reason: String },
}

fn log_config() -> LogConfig {
    // Never delete by age or size: compaction is the only way records go.
    LogConfig {
        segment_max_bytes: 64 << 20,
        segment_ms: u64::MAX / 4,
        index_interval_bytes: 4096,
        retention_ms: -1,
        retention_bytes: -1,
    }
}

/// The directory of a group's log: hex of the id, so any id is a safe name.
pub fn group_dir(groups_dir: &Path, group_id: &str) -> PathBuf {
    let hex: String = group_id.bytes().map(|b| format!("{b:02x}")).collect();
    groups_dir.join(hex)
}

/// The group id a directory name stands for, if it is one.
pub fn group_id_of(dir_name: &str) -> Option<String> {
    if !dir_name.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..dir_name.len()).step_by(2).map(|i| u8::from_str_radix(dir_name.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// The last segment file of the log in `dir` and its length, if any.
fn active_segment(dir: &Path) -> Option<(PathBuf, u64)> {
    let entries = std::fs::read_dir(dir).ok()?;
    let last = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "log")
                && p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| s.parse::<u64>().is_ok())
        })
        .max()?;
    let len = std::fs::metadata(&last).ok()?.len();
    Some((last, len))
}

/// A group's open log.
pub struct GroupStore {
    dir: PathBuf,
    log: Log,
    /// What the replay on open could not read.
    damaged: Vec<DamagedRecords>,
}

impl GroupStore {
    /// Opens (or creates) the log in `dir` and replays it, stepping over what
    /// cannot be read (see the module doc).
    ///
    /// # Errors
    ///
    /// The log cannot be opened or read.
    pub fn open(dir: &Path, clean_shutdown: bool) -> Result<(GroupStore, GroupState), StoreError> {
        Self::finish_compaction(dir)?;
        let active_before = active_segment(dir);
        let mut log = Log::open(dir, log_config(), clean_shutdown)?;
        let mut state = GroupState::default();
        let mut damaged = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let end = log.log_end_offset();
            let read = match log.read(offset, 4 << 20, end) {
                Ok(read) => read,
                Err(LogError::Damaged(span)) => {
                    let (first_offset, next_offset, reason) = (span.first_offset, span.next_offset, span.reason);
                    damaged.push(DamagedRecords { first_offset, next_offset, reason });
                    offset = next_offset;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            if read.bytes.is_empty() {
                break;
            }
            // The log checked every batch it returned.
            let records =
                batch::decode_all(&read.bytes).map_err(|e| StoreError::Corrupt { offset, reason: e.to_string() })?;
            let from = offset;
            for record in records.into_iter().filter(|r| r.offset >= from) {
                let value = record.value.unwrap_or_default();
                match serde_json::from_slice::<StoredRecord>(&value) {
                    Ok(stored) => state.apply(&stored),
                    Err(err) => damaged.push(DamagedRecords {
                        first_offset: record.offset,
                        next_offset: record.offset + 1,
                        reason: format!("the record does not parse: {err}"),
                    }),
                }
                offset = record.offset + 1;
            }
        }
        // What recovery found but no read could meet: a damaged tail holds no
        // offset a read could ask for.
        for span in log.damaged() {
            if !damaged.iter().any(|d| (d.first_offset, d.next_offset) == (span.first_offset, span.next_offset)) {
                let (first_offset, next_offset) = (span.first_offset, span.next_offset);
                damaged.push(DamagedRecords { first_offset, next_offset, reason: span.reason });
            }
        }
        // A torn tail recovery truncated (after an unclean shutdown).
        if let Some((path, before)) = active_before {
            let after = std::fs::metadata(&path).map_or(0, |m| m.len());
            if after < before {
                let end = log.log_end_offset();
                damaged.push(DamagedRecords {
                    first_offset: end,
                    next_offset: end,
                    reason: format!(
                        "{} bytes at the end of the log do not hold a whole valid batch and were truncated \
                         (a write cut short by a crash, which was never acknowledged, or damage)",
                        before - after
                    ),
                });
            }
        }
        damaged.sort_by_key(|d| (d.first_offset, d.next_offset));
        for lost in &damaged {
            tracing::error!(
                dir = %dir.display(),
                first_offset = lost.first_offset,
                next_offset = lost.next_offset,
                reason = %lost.reason,
                "records of the group log cannot be read: the commits in them are lost, every other is kept"
            );
        }
        Ok((GroupStore { dir: dir.to_path_buf(), log, damaged }, state))
    }

    /// What the replay on open could not read (kept after a compaction, until
    /// the next open).
    pub fn damaged(&self) -> &[DamagedRecords] {
        &self.damaged
    }

    /// Appends records as one batch; returns the files to fsync before the
    /// change may be acknowledged.
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn append(&mut self, records: &[StoredRecord], now_ms: i64) -> Result<Vec<crate::fs::FileRef>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Record> = records
            .iter()
            .map(|r| Record {
                key: None,
                value: Some(Bytes::from(serde_json::to_vec(r).unwrap_or_default())),
                headers: Vec::new(),
                timestamp: now_ms,
                offset: 0,
            })
            .collect();
        let encoded = batch::encode(&records).map_err(|e| StoreError::Corrupt { offset: -1, reason: e.to_string() })?;
        self.log.append(encoded, now_ms)?;
        Ok(self.log.take_unsynced())
    }

    /// Whether the log has grown enough to be rewritten.
    pub fn needs_compaction(&self) -> bool {
        self.log.size_bytes() > COMPACT_BYTES
    }

    /// Rewrites the log as a snapshot of `state`: written and fsynced beside
    /// the old log, then swapped in by renames, so a crash leaves one whole
    /// log or the other. Blocking; rare.
    ///
    /// # Errors
    ///
    /// Any I/O error; the old log then stays in use.
    pub fn compact(&mut self, state: &GroupState, now_ms: i64) -> Result<(), StoreError> {
        let fresh = self.dir.with_extension("compacted");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
        }
        {
            let log = Log::open(&fresh, log_config(), false)?;
            let mut snapshot = GroupStore { dir: fresh.clone(), log, damaged: Vec::new() };
            snapshot.append(&state.snapshot(), now_ms)?;
            snapshot.log.flush_all()?;
        }
        let old = self.dir.with_extension("old");
        std::fs::rename(&self.dir, &old).map_err(io(&self.dir))?;
        std::fs::rename(&fresh, &self.dir).map_err(io(&fresh))?;
        if let Some(parent) = self.dir.parent() {
            File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
        }
        self.log = Log::open(&self.dir, log_config(), true)?;
        if self.damaged.is_empty() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        } else {
            let aside = self.dir.with_extension(format!("damaged-{now_ms}"));
            std::fs::rename(&old, &aside).map_err(io(&old))?;
            tracing::warn!(kept = %aside.display(), "compacted a damaged group log; the old log is kept aside");
        }
        Ok(())
    }

    /// Completes a compaction a crash interrupted: if the log was moved aside
    /// but the snapshot not yet moved in, move it in; drop leftovers.
    fn finish_compaction(dir: &Path) -> Result<(), StoreError> {
        let (fresh, old) = (dir.with_extension("compacted"), dir.with_extension("old"));
        let io = |path: &Path, source| StoreError::Io { path: path.to_path_buf(), source };
        if !dir.exists() && fresh.exists() {
            std::fs::rename(&fresh, dir).map_err(|e| io(&fresh, e))?;
        }
        for leftover in [fresh, old] {
            if leftover.exists() {
                std::fs::remove_dir_all(&leftover).map_err(|e| io(&leftover, e))?;
            }
        }
        Ok(())
    }

    /// Fsyncs everything (shutdown).
    ///
    /// # Errors
    ///
    /// The fsync failed.
    pub fn flush_all(&mut self) -> Result<(), StoreError> {
        Ok(self.log.flush_all()?)
    }
}

/// A commit of `offset` at timestamp 1, as the tests write them.
#[cfg(test)]
pub(crate) fn test_commit(topic: &str, partition: u32, offset: i64, topic_id: Option<&str>) -> StoredRecord {
    StoredRecord::Offset {
        topic: topic.into(),
        partition,
        offset,
        metadata: None,
        commit_timestamp: 1,
        topic_id: topic_id.map(Into::into),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "store_sweep_tests.rs"]
mod sweep_tests;
