//! The log's side of compaction (`cleaner.rs` does the rewriting): what a
//! cleaning may take, and swapping its rewritten segments in.
//!
//! The swap of one segment, each step durable before the next:
//!
//! 1. the rewritten copy `<base>.log.cleaned` is complete and fsynced (by
//!    the cleaning);
//! 2. the cleaner checkpoint is stored, fsynced with its directory (its
//!    existence tells recovery that segments may have gaps, so it is there
//!    before any segment has one); steps 1 and 2 run on the cleaner thread,
//!    the rest on the partition's, without an fsync;
//! 3. the segment's index files are removed (they point into the old file);
//! 4. `<base>.log.cleaned` is renamed over `<base>.log`;
//! 5. the segment is opened again from the new file, its indexes rebuilt;
//! 6. the directory is handed to the next fsync round ([`Log::take_unsynced`]):
//!    each rename is atomic on its own, and until it is durable the old
//!    file, whole, is what a crash leaves.
//!
//! A crash before step 4's rename leaves the old `.log` whole (a leftover
//! `.cleaned` is removed at open, missing indexes are rebuilt); after it,
//! the new one, whole and fsynced. The rename replaces the name atomically:
//! either every record of the old segment is there or the latest per key
//! of them, never a mix, never a duplicate. A reader holding the old file's
//! descriptor reads the old bytes until it lets go; the file cache's entry
//! for the name is replaced by the reopen (step 5), so later reads see the
//! new file.

use super::{Log, LogError};
use crate::partition::cleaner::{CleanJob, CleanOutcome, CleanerState, SegmentView};
use crate::partition::segment::{file_name, Recovery, Segment, INDEX_SUFFIX, TIME_INDEX_SUFFIX};

/// What a partition's log offers the cleaner now.
pub struct CleanView {
    /// The sealed segments that may be cleaned: below the high watermark,
    /// and old enough for `min_compaction_lag_ms`.
    pub segments: Vec<SegmentView>,
    pub state: CleanerState,
    /// Bytes of those segments not yet cleaned, and of all of them.
    pub dirty_bytes: u64,
    pub total_bytes: u64,
}

impl CleanView {
    /// Dirty bytes over all, in thousandths (0 for an empty view).
    pub fn dirty_permille(&self) -> u64 {
        (self.dirty_bytes * 1000).checked_div(self.total_bytes).unwrap_or(0)
    }

    /// The cleaning of this view, with the cleaner's and topic's settings.
    pub fn job(self, log: &Log, map_bytes: usize, now_ms: i64, delete_retention_ms: u64) -> CleanJob {
        let dirty_permille = self.dirty_permille();
        CleanJob {
            fs: log.files.fs().clone(),
            dir: log.dir.clone(),
            segments: self.segments,
            state: self.state,
            map_bytes,
            now_ms,
            delete_retention_ms,
            dirty_permille,
            producers_last: log.producers_last(),
        }
    }
}

/// What installing a cleaning did.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub segments: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Files of segments the cleaning emptied, renamed to `.deleted`, for
    /// the caller to delete off the event loop (as retention's).
    pub removed: Vec<std::path::PathBuf>,
}

impl Log {
    /// The cleaner's view of this log: sealed segments entirely below
    /// `high_watermark`, from the first on, up to the first whose newest
    /// timestamp is later than `now_ms - min_compaction_lag_ms` or that holds
    /// a known damaged range.
    pub fn clean_view(&self, high_watermark: i64, now_ms: i64, min_compaction_lag_ms: u64) -> CleanView {
        let lag = i64::try_from(min_compaction_lag_ms).unwrap_or(i64::MAX);
        let sealed = &self.segments[..self.segments.len() - 1];
        let segments: Vec<SegmentView> = sealed
            .iter()
            .take_while(|s| {
                // A segment the cleaner emptied has no timestamp left to wait for.
                let old_enough = s.size() == 0 || s.retention_timestamp() <= now_ms.saturating_sub(lag);
                // Damage is never rewritten: cleaning stops before it.
                s.next_offset() <= high_watermark && old_enough && s.damage().is_empty()
            })
            .map(|s| SegmentView {
                base_offset: s.base_offset(),
                path: s.log_path().to_path_buf(),
                size: s.size(),
                next_offset: s.next_offset(),
            })
            .collect();
        let state = self.cleaner.clone().unwrap_or_default();
        let total_bytes = segments.iter().map(|s| s.size).sum();
        let dirty_bytes = segments.iter().filter(|s| s.next_offset > state.cleaned_to).map(|s| s.size).sum();
        CleanView { segments, state, dirty_bytes, total_bytes }
    }

    /// Swaps in the segments a cleaning rewrote (see the module doc), whose
    /// checkpoint the cleaning stored. A rewritten segment that is no longer
    /// in the log as it was read (retention removed it meanwhile) has its
    /// copy removed. No fsync: the directory goes to the next sync round.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a step fails. Before a rename the log is as it
    /// was; after one, the caller must reopen the log from disk.
    pub fn install_cleaned(&mut self, outcome: CleanOutcome) -> Result<Installed, LogError> {
        let fs = std::sync::Arc::clone(self.files.fs());
        let mut state = outcome.state;
        let bases: Vec<i64> = self.segments.iter().map(Segment::base_offset).collect();
        state.first_cleaned.retain(|base, _| bases.contains(base));
        self.cleaner = Some(state);
        let mut installed = Installed::default();
        for cleaned in outcome.cleaned {
            let at = self.segments.iter().position(|s| s.base_offset() == cleaned.base_offset);
            let sealed = self.segments.len() - 1;
            let Some(at) = at.filter(|&at| at < sealed && self.segments[at].size() == cleaned.old_size) else {
                drop(fs.remove_file(&cleaned.cleaned_path));
                continue;
            };
            let base = cleaned.base_offset;
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let path = self.dir.join(file_name(base, suffix));
                match fs.remove_file(&path) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(LogError::io(&path)(err)),
                    _ => {}
                }
            }
            let log_path = self.segments[at].log_path().to_path_buf();
            fs.rename(&cleaned.cleaned_path, &log_path).map_err(LogError::io(&log_path))?;
            let next_base = Some(self.segments[at + 1].base_offset());
            let recovery = Recovery { next_base, truncate_torn_tail: false, gaps: true };
            let mut segment =
                Segment::open(&self.dir, base, true, self.config.index_interval_bytes, recovery, &self.files)?;
            // The indexes are hints, rebuilt at the next open if lost.
            drop(segment.seal(false));
            self.segments[at] = segment;
            if self.scrub_cursor.0 == base {
                self.scrub_cursor = (base, 0, base);
            }
            installed.segments += 1;
            installed.bytes_before += cleaned.old_size;
            installed.bytes_after += cleaned.new_size;
        }
        installed.removed = self.remove_emptied()?;
        if installed.segments > 0 || !installed.removed.is_empty() {
            // The renames become durable with the directory's next fsync,
            // off this thread (see `Log::take_unsynced`): each is atomic on
            // its own, and until it is durable the old file, whole, is what
            // a crash leaves.
            self.unsynced_dir = Some(fs.open_dir(&self.dir).map_err(LogError::io(&self.dir))?);
        }
        Ok(installed)
    }

    /// Removes the sealed segments the cleaner emptied, but the first (which
    /// holds the log start offset): the segment before each then ends where
    /// the next one begins, its offsets a gap. Nothing is lost if this stops
    /// half-way: an empty segment holds no record, and recovery finds the
    /// gap either way.
    fn remove_emptied(&mut self) -> Result<Vec<std::path::PathBuf>, LogError> {
        let mut removed = Vec::new();
        let mut at = 1;
        while at + 1 < self.segments.len() {
            let segment = &self.segments[at];
            if segment.size() > 0 || !segment.damage().is_empty() {
                at += 1;
                continue;
            }
            removed.extend(segment.rename_to_deleted()?);
            let segment = self.segments.remove(at);
            self.segments[at - 1].extend_gap_to(segment.next_offset());
        }
        Ok(removed)
    }

    /// Whether the log was ever compacted (its segments may have gaps).
    pub fn is_compacted(&self) -> bool {
        self.cleaner.is_some()
    }

    /// Each idempotent producer's id and the last offset of its last batch
    /// (for [`CleanJob::producers_last`]).
    pub fn producers_last(&self) -> std::collections::HashMap<i64, i64> {
        self.producers.iter().filter_map(|(id, entry)| Some((id, entry.batches().last()?.last_offset))).collect()
    }
}
