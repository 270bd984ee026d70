//! The controller's decisions: for each partition, given its replicas, its
//! state and the live brokers, the state it must have. Pure, so every rule
//! is tested on its own; [`super::node`] writes what it decides.
//!
//! - A partition without a state gets one: the first live replica leads
//!   (the preferred leader, as the assignment spreads leaders evenly), the
//!   live replicas are in sync, leader epoch 0. With no replica alive it
//!   waits.
//! - A live leader keeps leading; replicas that died leave the ISR, and the
//!   leader epoch moves (so the leader learns the new ISR as a new epoch,
//!   as Kafka's controller does).
//! - A dead leader is replaced by the first live replica in the ISR (clean
//!   election), with the next leader epoch and the ISR's live members. With
//!   no live replica in the ISR, the partition goes offline (leader -1,
//!   next epoch) and keeps its ISR, so that the first of them to come back
//!   leads again; a replica outside the ISR never leads (no unclean
//!   election), unless the topic enables `unclean_leader_election_enable`:
//!   then the first live replica leads, alone in the ISR, and records only
//!   the old ISR had are lost (the caller logs it loudly).
//! - A broker shutting down (controlled shutdown, docs/cluster.md) is alive
//!   but never elected and never in an ISR it does not lead: a partition it
//!   leads goes to the first other live replica in the ISR (next epoch,
//!   the ISR without it), and stays with it when there is none; a partition
//!   it follows in the ISR loses it from the ISR (next epoch).

use std::collections::BTreeSet;

use super::topics::PartitionState;

/// The state a partition must have, when it differs from `state`.
/// `shutting` are live brokers in controlled shutdown; `unclean`: the
/// topic allows a replica outside the ISR to lead.
pub fn decide(
    replicas: &[i32],
    state: Option<&PartitionState>,
    live: &BTreeSet<i32>,
    shutting: &BTreeSet<i32>,
    controller_epoch: i32,
    unclean: bool,
) -> Option<PartitionState> {
    let alive = |id: &i32| live.contains(id);
    // May lead, and stay in an ISR it does not lead.
    let eligible = |id: &i32| alive(id) && !shutting.contains(id);
    let Some(state) = state else {
        let isr: Vec<i32> = replicas.iter().copied().filter(eligible).collect();
        let leader = *isr.first()?;
        return Some(PartitionState { controller_epoch, leader, version: 1, leader_epoch: 0, isr });
    };
    let next = |leader: i32, isr: Vec<i32>| PartitionState {
        controller_epoch,
        leader,
        version: 1,
        leader_epoch: state.leader_epoch + 1,
        isr,
    };
    let successor = replicas.iter().copied().find(|id| *id != state.leader && state.isr.contains(id) && eligible(id));
    if state.leader >= 0 && alive(&state.leader) {
        if shutting.contains(&state.leader) {
            if let Some(leader) = successor {
                return Some(next(leader, state.isr.iter().copied().filter(eligible).collect()));
            }
        }
        let isr: Vec<i32> = state.isr.iter().copied().filter(|id| *id == state.leader || eligible(id)).collect();
        if isr.len() == state.isr.len() {
            return None;
        }
        // The leader is in its own ISR; keep it there if the state forgot.
        let isr = if isr.contains(&state.leader) { isr } else { [vec![state.leader], isr].concat() };
        return Some(next(state.leader, isr));
    }
    match successor {
        Some(leader) => {
            let isr: Vec<i32> = state.isr.iter().copied().filter(eligible).collect();
            Some(next(leader, isr))
        }
        None => match replicas.iter().copied().find(|id| unclean && eligible(id)) {
            Some(leader) => Some(next(leader, vec![leader])),
            None if state.leader == -1 => None,
            None => Some(next(-1, state.isr.clone())),
        },
    }
}

/// Whether `decided` elected a leader outside `before`'s ISR.
pub fn unclean_election(before: Option<&PartitionState>, decided: &PartitionState) -> bool {
    before.is_some_and(|b| decided.leader >= 0 && !b.isr.contains(&decided.leader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn none() -> BTreeSet<i32> {
        BTreeSet::new()
    }

    fn state(leader: i32, leader_epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState { controller_epoch: 1, leader, version: 1, leader_epoch, isr: isr.to_vec() }
    }

    #[test]
    fn a_new_partition_is_led_by_its_first_live_replica() {
        let decided = decide(&[2, 3, 1], None, &live(&[1, 2, 3]), &none(), 4, false).unwrap();
        assert_eq!(
            decided,
            PartitionState { controller_epoch: 4, leader: 2, version: 1, leader_epoch: 0, isr: vec![2, 3, 1] }
        );
        let decided = decide(&[2, 3, 1], None, &live(&[1, 3]), &none(), 4, false).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3, 1]));
        assert_eq!(decide(&[2, 3], None, &live(&[1]), &none(), 4, false), None);
    }

    #[test]
    fn a_dead_leader_is_replaced_from_the_isr_with_the_next_epoch() {
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[2, 3]), &none(), 7, false).unwrap();
        assert_eq!(
            (decided.leader, decided.leader_epoch, decided.isr, decided.controller_epoch),
            (2, 6, vec![2, 3], 7)
        );
        // A replica out of the ISR never leads.
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 3])), &live(&[2, 3]), &none(), 7, false).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3]));
    }

    #[test]
    fn with_no_live_replica_in_sync_the_partition_goes_offline_and_waits() {
        let offline = decide(&[1, 2, 3], Some(&state(1, 5, &[1])), &live(&[2, 3]), &none(), 7, false).unwrap();
        assert_eq!((offline.leader, offline.leader_epoch, offline.isr.clone()), (-1, 6, vec![1]));
        assert_eq!(decide(&[1, 2, 3], Some(&offline), &live(&[2, 3]), &none(), 7, false), None);
        // The last in-sync replica returns: it leads again.
        let back = decide(&[1, 2, 3], Some(&offline), &live(&[1, 2, 3]), &none(), 7, false).unwrap();
        assert_eq!((back.leader, back.leader_epoch, back.isr), (1, 7, vec![1]));
    }

    #[test]
    fn a_live_leader_keeps_leading_and_dead_replicas_leave_the_isr() {
        assert_eq!(decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 2, 3]), &none(), 7, false), None);
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 3]), &none(), 7, false).unwrap();
        assert_eq!((decided.leader, decided.leader_epoch, decided.isr), (1, 6, vec![1, 3]));
        // A replica out of the ISR that dies changes nothing.
        assert_eq!(decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2])), &live(&[1, 2]), &none(), 7, false), None);
    }

    #[test]
    fn a_shutting_down_leader_hands_over_to_the_next_in_sync_replica() {
        let shutting = live(&[1]);
        let decided =
            decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 2, 3]), &shutting, 7, false).unwrap();
        assert_eq!((decided.leader, decided.leader_epoch, decided.isr), (2, 6, vec![2, 3]));
        // The preferred order among the in-sync replicas, never one out of it.
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 3])), &live(&[1, 2, 3]), &shutting, 7, false).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3]));
        // Nor one that is shutting down too, nor a dead one.
        let both = live(&[1, 2]);
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 2, 3]), &both, 7, false).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3]));
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 3]), &shutting, 7, false).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3]));
    }

    #[test]
    fn a_shutting_down_leader_with_no_one_else_in_sync_keeps_leading() {
        let shutting = live(&[1]);
        assert_eq!(decide(&[1, 2, 3], Some(&state(1, 5, &[1])), &live(&[1, 2, 3]), &shutting, 7, false), None);
        assert_eq!(decide(&[1], Some(&state(1, 0, &[1])), &live(&[1, 2, 3]), &shutting, 7, false), None);
        // Its dead followers still leave the ISR.
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2])), &live(&[1, 3]), &shutting, 7, false).unwrap();
        assert_eq!((decided.leader, decided.leader_epoch, decided.isr), (1, 6, vec![1]));
    }

    #[test]
    fn a_shutting_down_follower_leaves_the_isr_and_is_never_elected() {
        let shutting = live(&[2]);
        let decided =
            decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 2, 3]), &shutting, 7, false).unwrap();
        assert_eq!((decided.leader, decided.leader_epoch, decided.isr), (1, 6, vec![1, 3]));
        // Back in the ISR (its leader proposed it): out again.
        let decided =
            decide(&[1, 2, 3], Some(&state(1, 6, &[1, 3, 2])), &live(&[1, 2, 3]), &shutting, 7, false).unwrap();
        assert_eq!((decided.leader_epoch, decided.isr), (7, vec![1, 3]));
        assert_eq!(decide(&[1, 2, 3], Some(&state(1, 6, &[1, 3])), &live(&[1, 2, 3]), &shutting, 7, false), None);
        // A dead leader is not replaced by it: with no one else the
        // partition goes offline, and its ISR is kept.
        let offline = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2])), &live(&[2, 3]), &shutting, 7, false).unwrap();
        assert_eq!((offline.leader, offline.isr), (-1, vec![1, 2]));
        // A new partition is not given to it.
        let new = decide(&[2, 3, 1], None, &live(&[1, 2, 3]), &shutting, 7, false).unwrap();
        assert_eq!((new.leader, new.isr), (3, vec![3, 1]));
        assert_eq!(decide(&[2], None, &live(&[1, 2, 3]), &shutting, 7, false), None);
    }

    #[test]
    fn an_unclean_election_takes_a_live_replica_outside_the_isr_only_when_enabled() {
        // The ISR's only member is dead; replica 2 is alive but out of sync.
        let before = state(1, 5, &[1]);
        let clean = decide(&[1, 2, 3], Some(&before), &live(&[2]), &none(), 7, false).unwrap();
        assert_eq!(clean.leader, -1);
        let unclean = decide(&[1, 2, 3], Some(&before), &live(&[2]), &none(), 7, true).unwrap();
        assert_eq!((unclean.leader, unclean.leader_epoch, unclean.isr.clone()), (2, 6, vec![2]));
        assert!(unclean_election(Some(&before), &unclean));
        // An offline partition whose topic allows it later: elected then.
        let later = decide(&[1, 2, 3], Some(&clean), &live(&[2]), &none(), 7, true).unwrap();
        assert_eq!((later.leader, later.isr), (2, vec![2]));
        // An in-sync replica alive is always preferred: a clean election.
        let preferred = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 3])), &live(&[2, 3]), &none(), 7, true).unwrap();
        assert_eq!(preferred.leader, 3);
        assert!(!unclean_election(Some(&state(1, 5, &[1, 3])), &preferred));
        // No live replica at all: offline, as without it.
        assert_eq!(decide(&[1, 2], Some(&clean), &live(&[3]), &none(), 7, true), None);
    }
}
