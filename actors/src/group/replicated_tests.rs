//! The keyed form of a group's records: read back in order, or after a
//! compaction kept only the latest record of each key, it gives the state
//! the records give.

use std::collections::BTreeMap;

use super::*;

use crate::group::store::test_commit as offset;

fn history() -> Vec<StoredRecord> {
    vec![
        StoredRecord::Assignor { name: "range".into() },
        StoredRecord::Generation { group_epoch: 3 },
        offset("a", 0, 10, Some("id-a")),
        offset("a", 1, 11, Some("id-a")),
        offset("b", 0, 5, None),
        offset("a", 0, 12, Some("id-a")),
        StoredRecord::TopicDeleted { topic: "a".into(), topic_id: Some("id-a".into()) },
        offset("a", 0, 1, Some("id-a2")),
        StoredRecord::Generation { group_epoch: 4 },
    ]
}

fn replay(records: &[Keyed]) -> GroupState {
    let mut state = GroupState::default();
    for (key, value) in records {
        let encoded = serde_json::to_vec(key).unwrap();
        let decoded: GroupKey = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(&decoded, key);
        assert!(apply(&mut state, &decoded.of, value.clone()));
    }
    state
}

fn direct(records: &[StoredRecord]) -> GroupState {
    let mut state = GroupState::default();
    records.iter().for_each(|r| state.apply(r));
    state
}

/// The latest record of each key, as the cleaner keeps them, in offset order.
fn compacted(records: &[Keyed]) -> Vec<Keyed> {
    let last: BTreeMap<&GroupKey, usize> = records.iter().enumerate().map(|(i, (k, _))| (k, i)).collect();
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_unstable();
    kept.into_iter().map(|i| records[i].clone()).collect()
}

#[test]
fn read_back_in_order_and_compacted_gives_the_same_state() {
    let records = history();
    let keyed = keyed("g", &records, &GroupState::default());
    let want = direct(&records);
    assert_eq!(replay(&keyed), want);
    assert_eq!(replay(&compacted(&keyed)), want);
    // The deleted topic's old offsets are gone, the new topic's kept.
    assert_eq!(want.offsets.len(), 2);
}

#[test]
fn a_deleted_group_leaves_nothing_even_after_compaction() {
    let mut records = history();
    let before = direct(&records);
    let mut all = keyed("g", &records, &GroupState::default());
    all.extend(keyed("g", &[StoredRecord::Deleted], &before));
    records.push(StoredRecord::Deleted);
    assert_eq!(replay(&all), GroupState::default());
    assert_eq!(replay(&compacted(&all)), GroupState::default());
}

#[test]
fn keys_of_other_groups_do_not_mix_and_values_must_fit_their_keys() {
    let a = keyed("a", &[offset("t", 0, 1, None)], &GroupState::default());
    let b = keyed("b", &[offset("t", 0, 2, None)], &GroupState::default());
    assert_ne!(a[0].0, b[0].0);
    let mut state = GroupState::default();
    // A generation's value under an offset's key is refused.
    assert!(!apply(&mut state, &a[0].0.of, Some(StoredRecord::Generation { group_epoch: 1 })));
    // An offset of another partition under this key is refused too.
    assert!(!apply(&mut state, &a[0].0.of, Some(offset("t", 1, 1, None))));
    assert_eq!(state, GroupState::default());
}

#[test]
fn the_key_is_stable_json() {
    let key = GroupKey { group: "g".into(), of: KeyOf::Offset { topic: "t".into(), partition: 2 } };
    assert_eq!(serde_json::to_string(&key).unwrap(), r#"{"group":"g","kind":"offset","topic":"t","partition":2}"#);
    let key = GroupKey { group: "g".into(), of: KeyOf::Generation };
    assert_eq!(serde_json::to_string(&key).unwrap(), r#"{"group":"g","kind":"generation"}"#);
}
