//! A pure checker of what a consumer group did under faults.
//!
//! A scenario records every acknowledged record ([`super::Ack`]) and a
//! [`Fact`] for everything its members did: assignments applied (with
//! their generation), partitions revoked or lost, records processed, commits
//! sent (acknowledged or not), and committed offsets read back from the
//! broker. [`check_group`] names every anomaly. Times are µs since the start
//! of the scenario, taken by the test, so hand-made histories are easy to
//! write (see the tests below).
//!
//! The rules:
//!
//! - Every acknowledged record is processed at least once, with the value the
//!   broker acknowledged at its offset.
//! - One owner per partition at any time. A member owns a partition from the
//!   end of the poll that applied an assignment giving it (`Assigned.at`) to
//!   the start of the poll that applied its revocation, or to the end of the
//!   member's membership when it lost it (`Lost.at`: the scenario gives the
//!   last moment the member was surely a member: the start of its pause, the
//!   moment it was killed, else the start of the poll that found out). Two
//!   members' stretches of one partition must not overlap.
//! - A member processes, and has commits acknowledged, only for partitions it
//!   owns at that moment (for a commit: when it was sent); within one stretch it processes offsets in order
//!   without skipping one.
//! - Committed offsets never go backwards: acknowledged commits of a partition
//!   never decrease over time, and an offset read back (after a restart, say)
//!   is never below an acknowledged commit that happened before the read was
//!   sent, nor below an earlier read.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Ack;

/// Something a member did, or the test saw, at `at` µs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Assigned {
        member: String,
        generation: i64,
        partitions: Vec<u32>,
        at: u64,
    },
    Revoked {
        member: String,
        generation: i64,
        partitions: Vec<u32>,
        at: u64,
    },
    /// The member's membership ended without a revocation; `at` as in the
    /// module documentation.
    Lost {
        member: String,
        partitions: Vec<u32>,
        at: u64,
    },
    Processed {
        member: String,
        partition: u32,
        offset: i64,
        value: String,
        at: u64,
    },
    /// A commit of `offset` sent for `partition` at `sent`; `acked` when the
    /// broker accepted it. `at`: when the answer came. The broker checked the
    /// ownership in between: the member must own the partition at `sent`.
    Commit {
        member: String,
        generation: i64,
        partition: u32,
        offset: i64,
        acked: bool,
        sent: u64,
        at: u64,
    },
    /// The broker's committed offset of `partition`, read by a request sent
    /// at `at`.
    CommittedSeen {
        partition: u32,
        offset: i64,
        at: u64,
    },
}

/// Something a group should never do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAnomaly {
    NotProcessed {
        value: String,
        partition: u32,
        offset: i64,
    },
    /// A record processed with another value than the one acknowledged there.
    WrongValue {
        partition: u32,
        offset: i64,
        acked: String,
        processed: String,
    },
    TwoOwners {
        partition: u32,
        first: String,
        second: String,
        at: u64,
    },
    ProcessedWithoutOwnership {
        member: String,
        partition: u32,
        offset: i64,
        at: u64,
    },
    CommittedWithoutOwnership {
        member: String,
        partition: u32,
        offset: i64,
        at: u64,
    },
    /// Within one stretch of ownership the member skipped from `expected`.
    Skip {
        member: String,
        partition: u32,
        expected: i64,
        found: i64,
    },
    CommitBackwards {
        partition: u32,
        from: i64,
        to: i64,
        at: u64,
    },
}

/// What the history adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFigures {
    pub processed: usize,
    /// Processed more than once (the at-least-once price of the faults).
    pub duplicates: usize,
    pub stretches: usize,
    pub commits_acked: usize,
    pub commits_refused: usize,
    pub losses: usize,
}

/// One member's ownership of one partition, `from..=until` (`until` open:
/// still owned when the history ends).
#[derive(Debug, Clone)]
struct Stretch {
    member: String,
    from: u64,
    until: Option<u64>,
    /// The next offset expected within the stretch.
    next: Option<i64>,
}

impl Stretch {
    fn holds(&self, at: u64) -> bool {
        self.from <= at && self.until.is_none_or(|until| at <= until)
    }
}

/// Checks a group's history against the acknowledged records. Events may come
/// in any order; they are taken in order of `at`.
pub fn check_group(acks: &[Ack], events: &[Fact]) -> (Vec<GroupAnomaly>, GroupFigures) {
    let mut anomalies = Vec::new();
    let mut figures = GroupFigures::default();
    let mut ordered: Vec<&Fact> = events.iter().collect();
    ordered.sort_by_key(|e| at(e));

    let mut stretches: BTreeMap<u32, Vec<Stretch>> = BTreeMap::new();
    let mut processed: HashMap<(u32, i64), Vec<String>> = HashMap::new();
    let mut last_acked: BTreeMap<u32, (i64, u64)> = BTreeMap::new();
    let mut last_seen: BTreeMap<u32, i64> = BTreeMap::new();
    for event in ordered {
        match event {
            Fact::Assigned { member, partitions, at, .. } => {
                for p in partitions {
                    let list = stretches.entry(*p).or_default();
                    if let Some(other) = list.iter().find(|s| &s.member != member && s.until.is_none_or(|u| u >= *at)) {
                        anomalies.push(GroupAnomaly::TwoOwners {
                            partition: *p,
                            first: other.member.clone(),
                            second: member.clone(),
                            at: *at,
                        });
                    }
                    list.push(Stretch { member: member.clone(), from: *at, until: None, next: None });
                    figures.stretches += 1;
                }
            }
            Fact::Revoked { member, partitions, at, .. } | Fact::Lost { member, partitions, at } => {
                if matches!(event, Fact::Lost { .. }) {
                    figures.losses += 1;
                }
                for p in partitions {
                    let open = stretches
                        .get_mut(p)
                        .and_then(|l| l.iter_mut().find(|s| &s.member == member && s.until.is_none()));
                    if let Some(stretch) = open {
                        stretch.until = Some((*at).max(stretch.from));
                    }
                }
            }
            Fact::Processed { member, partition, offset, value, at } => {
                figures.processed += 1;
                processed.entry((*partition, *offset)).or_default().push(value.clone());
                let owning = stretches
                    .get_mut(partition)
                    .and_then(|l| l.iter_mut().rev().find(|s| &s.member == member && s.holds(*at)));
                match owning {
                    None => anomalies.push(GroupAnomaly::ProcessedWithoutOwnership {
                        member: member.clone(),
                        partition: *partition,
                        offset: *offset,
                        at: *at,
                    }),
                    Some(stretch) => {
                        if let Some(expected) = stretch.next.filter(|e| e != offset) {
                            anomalies.push(GroupAnomaly::Skip {
                                member: member.clone(),
                                partition: *partition,
                                expected,
                                found: *offset,
                            });
                        }
                        stretch.next = Some(offset + 1);
                    }
                }
            }
            Fact::Commit { member, partition, offset, acked, sent, at, .. } => {
                if !acked {
                    figures.commits_refused += 1;
                    continue;
                }
                figures.commits_acked += 1;
                let owned =
                    stretches.get(partition).is_some_and(|l| l.iter().any(|s| &s.member == member && s.holds(*sent)));
                if !owned {
                    anomalies.push(GroupAnomaly::CommittedWithoutOwnership {
                        member: member.clone(),
                        partition: *partition,
                        offset: *offset,
                        at: *at,
                    });
                }
                let floor =
                    last_acked.get(partition).map(|(o, _)| *o).into_iter().chain(last_seen.get(partition).copied());
                if let Some(from) = floor.max().filter(|from| offset < from) {
                    anomalies.push(GroupAnomaly::CommitBackwards { partition: *partition, from, to: *offset, at: *at });
                }
                last_acked.insert(*partition, (*offset, *at));
            }
            Fact::CommittedSeen { partition, offset, at } => {
                let floor = last_acked
                    .get(partition)
                    .filter(|(_, acked_at)| acked_at < at)
                    .map(|(o, _)| *o)
                    .into_iter()
                    .chain(last_seen.get(partition).copied());
                if let Some(from) = floor.max().filter(|from| offset < from) {
                    anomalies.push(GroupAnomaly::CommitBackwards { partition: *partition, from, to: *offset, at: *at });
                }
                last_seen.insert(*partition, *offset);
            }
        }
    }
    for ack in acks {
        match processed.get(&(ack.partition, ack.offset)) {
            None => anomalies.push(GroupAnomaly::NotProcessed {
                value: ack.value.clone(),
                partition: ack.partition,
                offset: ack.offset,
            }),
            Some(values) => {
                if let Some(other) = values.iter().find(|v| **v != ack.value) {
                    anomalies.push(GroupAnomaly::WrongValue {
                        partition: ack.partition,
                        offset: ack.offset,
                        acked: ack.value.clone(),
                        processed: other.clone(),
                    });
                }
            }
        }
    }
    let distinct: BTreeSet<&(u32, i64)> = processed.keys().collect();
    figures.duplicates = figures.processed - distinct.len();
    (anomalies, figures)
}

/// The ownership changes of the partitions an anomaly names, in time order:
/// what a failing run prints to explain itself.
pub fn ownership_excerpt(anomalies: &[GroupAnomaly], facts: &[Fact]) -> Vec<Fact> {
    let named: BTreeSet<u32> = anomalies
        .iter()
        .filter_map(|a| match a {
            GroupAnomaly::TwoOwners { partition, .. }
            | GroupAnomaly::ProcessedWithoutOwnership { partition, .. }
            | GroupAnomaly::CommittedWithoutOwnership { partition, .. }
            | GroupAnomaly::CommitBackwards { partition, .. } => Some(*partition),
            _ => None,
        })
        .collect();
    let mut excerpt: Vec<Fact> = facts
        .iter()
        .filter(|f| match f {
            Fact::Assigned { partitions, .. } | Fact::Revoked { partitions, .. } | Fact::Lost { partitions, .. } => {
                partitions.iter().any(|p| named.contains(p))
            }
            _ => false,
        })
        .cloned()
        .collect();
    excerpt.sort_by_key(at);
    excerpt
}

fn at(event: &Fact) -> u64 {
    match event {
        Fact::Assigned { at, .. }
        | Fact::Revoked { at, .. }
        | Fact::Lost { at, .. }
        | Fact::Processed { at, .. }
        | Fact::Commit { at, .. }
        | Fact::CommittedSeen { at, .. } => *at,
    }
}

#[cfg(test)]
mod group_checker_tests {
    use super::*;

    fn assigned(member: &str, partitions: &[u32], at: u64) -> Fact {
        Fact::Assigned { member: member.into(), generation: 1, partitions: partitions.to_vec(), at }
    }

    fn revoked(member: &str, partitions: &[u32], at: u64) -> Fact {
        Fact::Revoked { member: member.into(), generation: 2, partitions: partitions.to_vec(), at }
    }

    fn processed(member: &str, partition: u32, offset: i64, at: u64) -> Fact {
        Fact::Processed { member: member.into(), partition, offset, value: format!("v{partition}-{offset}"), at }
    }

    fn commit(member: &str, partition: u32, offset: i64, acked: bool, at: u64) -> Fact {
        Fact::Commit { member: member.into(), generation: 1, partition, offset, acked, sent: at - 1, at }
    }

    fn ack(partition: u32, offset: i64) -> Ack {
        Ack { value: format!("v{partition}-{offset}"), partition, offset }
    }

    #[test]
    fn a_clean_handover_with_a_replay_is_clean_and_counts_the_duplicate() {
        let events = [
            assigned("a", &[0], 10),
            processed("a", 0, 0, 11),
            processed("a", 0, 1, 12),
            commit("a", 0, 1, true, 13),
            revoked("a", &[0], 20),
            assigned("b", &[0], 21),
            processed("b", 0, 1, 22),
            commit("b", 0, 2, true, 23),
            Fact::CommittedSeen { partition: 0, offset: 2, at: 24 },
            commit("a", 0, 5, false, 25),
        ];
        let (anomalies, figures) = check_group(&[ack(0, 0), ack(0, 1)], &events);
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!((figures.processed, figures.duplicates, figures.stretches), (3, 1, 2));
        assert_eq!((figures.commits_acked, figures.commits_refused), (2, 1));
    }

    #[test]
    fn every_kind_of_group_anomaly_is_named() {
        let mut wrong = processed("a", 0, 1, 12);
        if let Fact::Processed { value, .. } = &mut wrong {
            *value = "other".into();
        }
        let events = [
            assigned("a", &[0], 10),
            processed("a", 0, 0, 11),
            wrong,
            processed("a", 0, 5, 13),
            commit("a", 0, 6, true, 14),
            assigned("b", &[0], 15),
            Fact::Lost { member: "a".into(), partitions: vec![0], at: 16 },
            processed("a", 0, 6, 17),
            commit("b", 0, 3, true, 18),
            commit("c", 1, 1, true, 19),
            Fact::CommittedSeen { partition: 1, offset: 0, at: 20 },
        ];
        let (found, _) = check_group(&[ack(0, 0), ack(0, 1), ack(0, 2)], &events);
        let expected = [
            GroupAnomaly::Skip { member: "a".into(), partition: 0, expected: 2, found: 5 },
            GroupAnomaly::TwoOwners { partition: 0, first: "a".into(), second: "b".into(), at: 15 },
            GroupAnomaly::ProcessedWithoutOwnership { member: "a".into(), partition: 0, offset: 6, at: 17 },
            GroupAnomaly::CommitBackwards { partition: 0, from: 6, to: 3, at: 18 },
            GroupAnomaly::CommittedWithoutOwnership { member: "c".into(), partition: 1, offset: 1, at: 19 },
            GroupAnomaly::CommitBackwards { partition: 1, from: 1, to: 0, at: 20 },
            GroupAnomaly::WrongValue { partition: 0, offset: 1, acked: "v0-1".into(), processed: "other".into() },
            GroupAnomaly::NotProcessed { value: "v0-2".into(), partition: 0, offset: 2 },
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn a_read_back_below_an_earlier_acknowledged_commit_goes_backwards_but_one_sent_before_it_does_not() {
        let events = [
            assigned("a", &[0], 1),
            Fact::CommittedSeen { partition: 0, offset: 0, at: 5 },
            commit("a", 0, 4, true, 6),
            Fact::CommittedSeen { partition: 0, offset: 3, at: 9 },
        ];
        let (found, _) = check_group(&[], &events);
        assert_eq!(found, [GroupAnomaly::CommitBackwards { partition: 0, from: 4, to: 3, at: 9 }]);
        // A read sent at 5 need not see the commit acknowledged at 6.
        let (found, _) = check_group(&[], &events[..3]);
        assert!(found.is_empty(), "{found:?}");
    }
}
