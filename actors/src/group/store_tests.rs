//! Tests of the group store: replay, compaction, damage and topic ids.

use super::*;

fn offset(topic: &str, partition: u32, offset: i64) -> StoredRecord {
    test_commit(topic, partition, offset, None)
}

fn offset_of(topic: &str, topic_id: &str, partition: u32, offset: i64) -> StoredRecord {
    test_commit(topic, partition, offset, Some(topic_id))
}

#[test]
fn offsets_belong_to_a_topic_id_and_a_delete_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    {
        let (mut store, _) = GroupStore::open(&path, false).unwrap();
        // A log from before ids has no `topic_id`: still readable.
        let legacy = br#"{"type":"offset","topic":"t","partition":3,"offset":8,"metadata":null,"commit_timestamp":1}"#;
        let record = Record { value: Some(Bytes::from_static(legacy)), ..Record::default() };
        store.log.append(batch::encode(&[record]).unwrap(), 1).unwrap();
        store.append(&[offset_of("t", "a", 0, 5), offset_of("t", "b", 1, 6), offset_of("u", "c", 0, 7)], 1).unwrap();
        store.append(&[StoredRecord::TopicDeleted { topic: "t".into(), topic_id: Some("a".into()) }], 2).unwrap();
        store.flush_all().unwrap();
    }
    let (_, mut state) = GroupStore::open(&path, true).unwrap();
    let kept: Vec<(&str, u32, Option<&str>)> =
        state.offsets.iter().map(|(tp, c)| (tp.topic.as_str(), tp.partition, c.topic_id.as_deref())).collect();
    assert_eq!(kept, [("t", 1, Some("b")), ("u", 0, Some("c"))], "the deleted id's and the legacy offsets go");

    let committed = &state.offsets[&tp(1)];
    assert!(committed.belongs_to(Some("b")));
    assert!(!committed.belongs_to(Some("z")) && !committed.belongs_to(None));
    let legacy = Committed { offset: 1, metadata: None, commit_timestamp: 1, topic_id: None };
    assert!(legacy.belongs_to(Some("z")) && legacy.belongs_to(None));

    // `t` is now "z": its "b" offset is stale; `u` no longer exists.
    let ids = BTreeMap::from([("t".to_string(), "z".to_string())]);
    assert_eq!(state.current(&tp(1), &ids), None);
    let u = TopicPartition { topic: "u".into(), partition: 0 };
    assert_eq!(state.current(&u, &ids), None);
    let ids = BTreeMap::from([("t".to_string(), "b".to_string())]);
    assert_eq!(state.current(&tp(1), &ids).map(|c| c.offset), Some(6));
    state.apply(&StoredRecord::TopicDeleted { topic: "u".into(), topic_id: None });
    let left: Vec<&TopicPartition> = state.offsets.keys().collect();
    assert_eq!(left, [&tp(1)], "a delete without an id drops every offset of the name");
}

#[test]
fn state_survives_reopen_and_deletion_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    {
        let (mut store, state) = GroupStore::open(&path, false).unwrap();
        assert_eq!(state, GroupState::default());
        store.append(&[offset("t", 0, 5), StoredRecord::Assignor { name: "range".into() }], 1).unwrap();
        store.append(&[offset("t", 0, 9), offset("t", 1, 3)], 2).unwrap();
        store.flush_all().unwrap();
    }
    let (mut store, state) = GroupStore::open(&path, false).unwrap();
    assert_eq!(state.offsets[&TopicPartition { topic: "t".into(), partition: 0 }].offset, 9);
    assert_eq!(state.offsets.len(), 2);
    assert_eq!(state.assignor.as_deref(), Some("range"));
    store.append(&[StoredRecord::Deleted], 3).unwrap();
    drop(store);
    let (_, state) = GroupStore::open(&path, false).unwrap();
    assert_eq!(state, GroupState::default());
}

#[test]
fn compaction_keeps_the_state_and_shrinks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    let (mut store, mut state) = GroupStore::open(&path, false).unwrap();
    for i in 0..1000 {
        let record = offset("t", (i % 3) as u32, i);
        store.append(std::slice::from_ref(&record), i).unwrap();
        state.apply(&record);
    }
    let before = store.log.size_bytes();
    store.compact(&state, 5).unwrap();
    assert!(store.log.size_bytes() < before / 10);
    drop(store);
    let (_, reopened) = GroupStore::open(&path, false).unwrap();
    assert_eq!(reopened, state);
}

#[test]
fn an_interrupted_compaction_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    let (mut store, mut state) = GroupStore::open(&path, false).unwrap();
    let record = offset("t", 0, 42);
    store.append(std::slice::from_ref(&record), 1).unwrap();
    state.apply(&record);
    store.compact(&state, 2).unwrap();
    drop(store);
    // Simulate a crash between the two renames.
    std::fs::rename(&path, path.with_extension("compacted")).unwrap();
    let (_, reopened) = GroupStore::open(&path, false).unwrap();
    assert_eq!(reopened, state);
}

/// Flips a bit inside the `n`th batch of the group log's first segment.
fn damage_batch(path: &Path, n: usize) {
    use std::os::unix::fs::FileExt;
    let segment = path.join(format!("{:020}.log", 0));
    let file = std::fs::OpenOptions::new().read(true).write(true).open(segment).unwrap();
    let mut position = 0u64;
    for _ in 0..n {
        let mut header = [0u8; batch::MIN_HEADER_BYTES];
        file.read_exact_at(&mut header, position).unwrap();
        position += batch::BatchHeader::parse(&header).unwrap().total_bytes() as u64;
    }
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position + 60).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], position + 60).unwrap();
}

fn tp(partition: u32) -> TopicPartition {
    TopicPartition { topic: "t".into(), partition }
}

#[test]
fn a_damaged_record_loses_only_its_commits() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        {
            let (mut store, _) = GroupStore::open(&path, false).unwrap();
            // One batch per commit: t/0 at 1, t/1 at 1, t/2 at 1, t/0 at 5, t/3 at 7.
            for (partition, at) in [(0, 1), (1, 1), (2, 1), (0, 5), (3, 7)] {
                store.append(&[offset("t", partition, at)], 1).unwrap();
            }
            store.flush_all().unwrap();
        }
        // The commits of t/1 and the second of t/0.
        damage_batch(&path, 1);
        damage_batch(&path, 3);
        let (store, state) = GroupStore::open(&path, clean).unwrap();
        let kept: Vec<(u32, i64)> = state.offsets.iter().map(|(tp, c)| (tp.partition, c.offset)).collect();
        assert_eq!(kept, [(0, 1), (2, 1), (3, 7)], "clean {clean}: the last readable commit of each");
        let lost: Vec<(i64, i64)> = store.damaged().iter().map(|d| (d.first_offset, d.next_offset)).collect();
        assert_eq!(lost, [(1, 2), (3, 4)]);
        assert!(store.damaged()[0].reason.contains("checksum"), "{:?}", store.damaged());
    }
}

#[test]
fn a_record_that_does_not_parse_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    {
        let (mut store, _) = GroupStore::open(&path, false).unwrap();
        store.append(&[offset("t", 0, 4)], 1).unwrap();
        let junk = Record { value: Some(Bytes::from_static(b"{\"type\":")), ..Record::default() };
        store.log.append(batch::encode(&[junk]).unwrap(), 1).unwrap();
        store.append(&[offset("t", 1, 9)], 1).unwrap();
        store.flush_all().unwrap();
    }
    let (store, state) = GroupStore::open(&path, true).unwrap();
    assert_eq!((state.offsets[&tp(0)].offset, state.offsets[&tp(1)].offset), (4, 9));
    assert_eq!(store.damaged().iter().map(|d| (d.first_offset, d.next_offset)).collect::<Vec<_>>(), [(1, 2)]);
}

#[test]
fn compaction_keeps_a_damaged_log_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    {
        let (mut store, _) = GroupStore::open(&path, false).unwrap();
        for at in 0..3 {
            store.append(&[offset("t", 0, at)], 1).unwrap();
        }
        store.flush_all().unwrap();
    }
    damage_batch(&path, 1);
    let (mut store, state) = GroupStore::open(&path, true).unwrap();
    store.compact(&state, 7).unwrap();
    assert_eq!(store.damaged().len(), 1, "still reported");
    let kept = path.with_extension("damaged-7");
    assert!(kept.join(format!("{:020}.log", 0)).exists(), "the damaged log is kept at {kept:?}");
    drop(store);
    let (store, reopened) = GroupStore::open(&path, true).unwrap();
    assert_eq!((reopened, store.damaged().len()), (state, 0));
}

#[test]
fn group_ids_map_to_safe_directory_names_and_back() {
    for id in ["orders", "a/b", "..", "ünïcode group"] {
        let dir = group_dir(Path::new("/d"), id);
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(group_id_of(name).as_deref(), Some(id));
    }
}

#[test]
fn a_damaged_or_torn_tail_is_reported_and_the_commits_before_it_kept() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        {
            let (mut store, _) = GroupStore::open(&path, false).unwrap();
            for (partition, at) in [(0, 4), (1, 6), (0, 9)] {
                store.append(&[offset("t", partition, at)], 1).unwrap();
            }
            store.flush_all().unwrap();
        }
        // Only 10 bytes of the last batch are left: not even its header, so
        // the offsets it stood for cannot be known.
        let segment = path.join(format!("{:020}.log", 0));
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&segment).unwrap();
        let mut last = 0u64;
        for _ in 0..2 {
            let mut header = [0u8; batch::MIN_HEADER_BYTES];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, last).unwrap();
            last += batch::BatchHeader::parse(&header).unwrap().total_bytes() as u64;
        }
        file.set_len(last + 10).unwrap();
        drop(file);
        let (store, state) = GroupStore::open(&path, clean).unwrap();
        let kept: Vec<(u32, i64)> = state.offsets.iter().map(|(tp, c)| (tp.partition, c.offset)).collect();
        assert_eq!(kept, [(0, 4), (1, 6)], "clean {clean}");
        let lost: Vec<(i64, i64)> = store.damaged().iter().map(|d| (d.first_offset, d.next_offset)).collect();
        assert_eq!(lost, [(2, 2)], "clean {clean}: an empty range at the end: {:?}", store.damaged());
        if !clean {
            assert!(store.damaged()[0].reason.contains("truncated"), "{:?}", store.damaged());
        }
    }
}
