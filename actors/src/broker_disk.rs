//! The broker's part of the data directory on disk: what is found in `topics/`
//! at start, how a topic is created, and the leftovers of creates and deletes.
//!
//! - A create is atomic: the topic's directory is made with its metadata under
//!   `creating/`, fsynced, renamed into `topics/`, and `topics/` fsynced. A
//!   create that fails midway (disk full, no file descriptors) or a crash
//!   leaves nothing in `topics/`; what it left in `creating/` is removed, at
//!   once on a failure and at the next start after a crash.
//! - At start, a topic that cannot be served (metadata missing while
//!   partition directories exist, unreadable, or naming another topic) is
//!   quarantined: reported with the reason and left on disk as it is, never a
//!   reason to refuse to start. A directory with neither metadata nor partition
//!   directories is what a create of an earlier version left when it stopped
//!   early, and is removed.
//! - Every topic has an id: a create gives it one, and a topic whose metadata
//!   was written before topics had ids is given one at start, stored before it
//!   is served (a topic whose id cannot be stored is quarantined).
//!
//! Blocking file-system work only: callers run it before the broker serves or
//! on a blocking thread.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::topic::{self, TopicMeta};

/// Directory of the topics being served.
pub(super) const TOPICS: &str = "topics";
/// Directory of creates under way.
pub(super) const CREATING: &str = "creating";
/// Directory of deleted topics not yet removed.
pub(super) const DELETED: &str = "deleted";

/// A topic found at start that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Damage {
    /// Partition directories found in it.
    pub partitions: u32,
    /// What is wrong, for the log and for clients.
    pub reason: String,
}

/// What [`scan`] found in `topics/`.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub topics: Vec<TopicMeta>,
    pub damaged: BTreeMap<String, Damage>,
}

/// Makes the broker's directories, removes the leftovers of creates and
/// deletes, and reads every topic's metadata, quarantining what cannot be
/// served.
///
/// # Errors
///
/// `data_dir` or one of its directories cannot be created or listed: then
/// nothing could be served.
pub(super) fn scan(data_dir: &Path) -> io::Result<Found> {
    for dir in [TOPICS, CREATING, DELETED] {
        std::fs::create_dir_all(data_dir.join(dir))?;
    }
    purge(&data_dir.join(DELETED));
    purge(&data_dir.join(CREATING));
    let mut found = Found::default();
    for entry in std::fs::read_dir(data_dir.join(TOPICS))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match unfinished_create(&path) {
            Ok(true) => {
                tracing::warn!(path = %path.display(), "removing a topic whose creation did not finish");
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(%err, path = %path.display(), "cannot remove an unfinished create");
                }
                continue;
            }
            Ok(false) => {}
            Err(err) => {
                let reason = format!("cannot list {}: {err}", path.display());
                quarantine(&mut found, name, &path, reason);
                continue;
            }
        }
        match load(&path, &name).and_then(|meta| with_id(&path, meta)) {
            Ok(meta) => found.topics.push(meta),
            Err(reason) => quarantine(&mut found, name, &path, reason),
        }
    }
    Ok(found)
}

fn quarantine(found: &mut Found, name: String, path: &Path, reason: String) {
    tracing::error!(topic = %name, path = %path.display(), %reason, "topic is damaged; not serving it");
    found.damaged.insert(name, Damage { partitions: partition_dirs(path), reason });
}

/// The metadata of the topic in `dir`, checked against the directory's name.
fn load(dir: &Path, name: &str) -> Result<TopicMeta, String> {
    let file = dir.join(topic::META_FILE);
    let meta = match TopicMeta::load(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{} is missing but partition directories are there", file.display()));
        }
        Err(err) => return Err(format!("cannot read {}: {err}", file.display())),
    };
    if meta.name != name {
        return Err(format!("{} names topic `{}`, not `{name}`", file.display(), meta.name));
    }
    if meta.partitions == 0 || meta.partitions > super::MAX_PARTITIONS {
        return Err(format!("{} has {} partitions", file.display(), meta.partitions));
    }
    Ok(meta)
}

/// The metadata with an id: a topic from before ids gets a new one, stored.
fn with_id(dir: &Path, mut meta: TopicMeta) -> Result<TopicMeta, String> {
    if meta.topic_id.is_some() {
        return Ok(meta);
    }
    let cannot = |err: io::Error| format!("cannot give the topic an id in {}: {err}", dir.display());
    meta.topic_id = Some(topic::new_topic_id().map_err(cannot)?);
    meta.store(dir).map_err(cannot)?;
    tracing::info!(topic = %meta.name, topic_id = meta.topic_id.as_deref(), "gave a topic from before topic ids its id");
    Ok(meta)
}

fn partition_dirs(dir: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let partition = |entry: &std::fs::DirEntry| {
        entry.file_type().is_ok_and(|t| t.is_dir()) && entry.file_name().to_string_lossy().parse::<u32>().is_ok()
    };
    entries.flatten().filter(partition).count() as u32
}

/// Removes everything in `dir`, logging what cannot be removed.
fn purge(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if let Err(err) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(%err, path = %entry.path().display(), "cannot remove a leftover");
        }
    }
}

/// Whether `dir` is what a create of an earlier version left when it stopped
/// before its metadata was in place: no `topic.json` and no partition
/// directory (those are created only after the metadata). Anything else
/// without metadata is damage, quarantined rather than guessed at.
fn unfinished_create(dir: &Path) -> io::Result<bool> {
    if dir.join(topic::META_FILE).exists() {
        return Ok(false);
    }
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_type()?.is_dir() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates the directory of a new topic with its metadata, atomically (see
/// the module doc), giving it a new id unless it has one. Returns the
/// metadata stored.
///
/// # Errors
///
/// Any I/O error, including an existing entry under the topic's name in
/// `topics/`; nothing is then left in `topics/` or `creating/`.
pub(super) fn create(data_dir: &Path, meta: &TopicMeta) -> io::Result<TopicMeta> {
    let mut meta = meta.clone();
    if meta.topic_id.is_none() {
        meta.topic_id = Some(topic::new_topic_id()?);
    }
    let meta = &meta;
    let staging = data_dir.join(CREATING).join(unique_name(&meta.name));
    let target = data_dir.join(TOPICS).join(&meta.name);
    let made =
        std::fs::create_dir(&staging).and_then(|()| meta.store(&staging)).and_then(|()| rename_new(&staging, &target));
    if let Err(err) = made {
        if let Err(cleanup) = std::fs::remove_dir_all(&staging) {
            if cleanup.kind() != io::ErrorKind::NotFound {
                tracing::warn!(err = %cleanup, path = %staging.display(), "cannot remove a failed create; the next start will");
            }
        }
        return Err(err);
    }
    sync_dir(&data_dir.join(TOPICS))?;
    Ok(meta.clone())
}

/// Renames `from` to `to`, which must not exist (a plain `rename` would
/// replace an empty directory).
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", to.display())));
    }
    std::fs::rename(from, to)
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Where a deleted topic's directory goes before its files are removed.
pub(super) fn graveyard(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(DELETED).join(unique_name(name))
}

/// A name for a topic's directory outside `topics/` that no other create or
/// delete of this process uses, and that fits a file name (255 bytes) however
/// long the topic's name (249 characters).
fn unique_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Topic names are ASCII: 200 characters are 200 bytes.
    format!("{}-{n}-{name:.200}", crate::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_config::TopicConfig;

    fn meta(name: &str) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            topic_id: Some(format!("id-{name}")),
            partitions: 2,
            config: TopicConfig::default(),
        }
    }

    #[test]
    fn a_topic_gets_a_new_id_at_create_and_one_from_before_ids_gets_one_at_start() {
        let dir = tempfile::tempdir().unwrap();
        scan(dir.path()).unwrap();
        let fresh = TopicMeta { topic_id: None, ..meta("a") };
        let first = create(dir.path(), &fresh).unwrap().topic_id.unwrap();
        std::fs::rename(dir.path().join("topics/a"), graveyard(dir.path(), "a")).unwrap();
        let second = create(dir.path(), &fresh).unwrap().topic_id.unwrap();
        assert_eq!((first.len(), second.len()), (32, 32));
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
        assert_ne!(first, second, "a re-created topic has another id");

        // Metadata as a broker before ids wrote it: no `topic_id` key.
        let old = dir.path().join("topics/old");
        std::fs::create_dir_all(old.join("0")).unwrap();
        TopicMeta { topic_id: None, ..meta("old") }.store(&old).unwrap();
        assert!(!std::fs::read_to_string(old.join(topic::META_FILE)).unwrap().contains("topic_id"));
        let given = scan(dir.path()).unwrap().topics.into_iter().find(|m| m.name == "old").unwrap().topic_id;
        assert!(given.is_some());
        assert_eq!(TopicMeta::load(&old).unwrap().topic_id, given, "stored");
        let again = scan(dir.path()).unwrap().topics.into_iter().find(|m| m.name == "old").unwrap().topic_id;
        assert_eq!(again, given, "kept across starts");
    }

    #[test]
    fn only_a_directory_without_metadata_nor_partitions_is_an_unfinished_create() {
        let dir = tempfile::tempdir().unwrap();
        let topic = dir.path().join("t");
        std::fs::create_dir(&topic).unwrap();
        assert!(unfinished_create(&topic).unwrap(), "empty");
        std::fs::write(topic.join("topic.json.tmp"), b"{").unwrap();
        assert!(unfinished_create(&topic).unwrap(), "a temporary file only");
        std::fs::create_dir(topic.join("0")).unwrap();
        assert!(!unfinished_create(&topic).unwrap(), "a partition without metadata is damage, not a leftover");
        std::fs::remove_dir(topic.join("0")).unwrap();
        std::fs::write(topic.join(topic::META_FILE), b"{").unwrap();
        assert!(!unfinished_create(&topic).unwrap(), "metadata, even damaged, is a topic");
    }

    #[test]
    fn a_create_puts_the_whole_topic_in_place_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        scan(dir.path()).unwrap();
        assert_eq!(create(dir.path(), &meta("a")).unwrap(), meta("a"));
        assert_eq!(TopicMeta::load(&dir.path().join("topics/a")).unwrap(), meta("a"));
        let longest = "z".repeat(249);
        create(dir.path(), &meta(&longest)).unwrap();
        let buried = graveyard(dir.path(), &longest);
        std::fs::rename(dir.path().join(TOPICS).join(&longest), &buried).unwrap();
        assert_ne!(graveyard(dir.path(), &longest), buried, "never the same name twice");

        // An entry of that name already there, even an empty directory: refused,
        // and neither it nor the staging directory is changed or left.
        std::fs::create_dir(dir.path().join("topics/b")).unwrap();
        let err = create(dir.path(), &meta("b")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(!dir.path().join("topics/b").join(topic::META_FILE).exists());
        assert_eq!(std::fs::read_dir(dir.path().join(CREATING)).unwrap().count(), 0);
    }

    #[test]
    fn a_start_removes_leftovers_and_quarantines_what_cannot_be_served() {
        let dir = tempfile::tempdir().unwrap();
        scan(dir.path()).unwrap();
        create(dir.path(), &meta("ok")).unwrap();
        std::fs::create_dir_all(dir.path().join("creating/half-2")).unwrap();
        std::fs::create_dir_all(dir.path().join("deleted/gone-3/0")).unwrap();
        std::fs::create_dir_all(dir.path().join("topics/empty")).unwrap();
        std::fs::create_dir_all(dir.path().join("topics/lost/0")).unwrap();
        std::fs::create_dir_all(dir.path().join("topics/garbled/1")).unwrap();
        std::fs::write(dir.path().join("topics/garbled/topic.json"), b"not json").unwrap();

        let found = scan(dir.path()).unwrap();
        assert_eq!(found.topics, [meta("ok")]);
        let damaged: Vec<(&str, u32)> = found.damaged.iter().map(|(n, d)| (n.as_str(), d.partitions)).collect();
        assert_eq!(damaged, [("garbled", 1), ("lost", 1)]);
        assert!(found.damaged["lost"].reason.contains("missing"), "{:?}", found.damaged["lost"]);
        assert!(!dir.path().join("topics/empty").exists());
        assert!(dir.path().join("topics/lost/0").exists(), "quarantined, not removed");
        assert_eq!(std::fs::read_dir(dir.path().join(CREATING)).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join(DELETED)).unwrap().count(), 0);
    }
}
