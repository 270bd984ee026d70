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
//!   election).

use std::collections::BTreeSet;

use super::topics::PartitionState;

/// The state a partition must have, when it differs from `state`.
pub fn decide(
    replicas: &[i32],
    state: Option<&PartitionState>,
    live: &BTreeSet<i32>,
    controller_epoch: i32,
) -> Option<PartitionState> {
    let alive = |id: &i32| live.contains(id);
    let Some(state) = state else {
        let isr: Vec<i32> = replicas.iter().copied().filter(alive).collect();
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
    if state.leader >= 0 && alive(&state.leader) {
        let isr: Vec<i32> = state.isr.iter().copied().filter(alive).collect();
        if isr.len() == state.isr.len() {
            return None;
        }
        // The leader is in its own ISR; keep it there if the state forgot.
        let isr = if isr.contains(&state.leader) { isr } else { [vec![state.leader], isr].concat() };
        return Some(next(state.leader, isr));
    }
    let candidate = replicas.iter().copied().find(|id| state.isr.contains(id) && alive(id));
    match candidate {
        Some(leader) => {
            let isr: Vec<i32> = state.isr.iter().copied().filter(alive).collect();
            Some(next(leader, isr))
        }
        None if state.leader == -1 => None,
        None => Some(next(-1, state.isr.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn state(leader: i32, leader_epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState { controller_epoch: 1, leader, version: 1, leader_epoch, isr: isr.to_vec() }
    }

    #[test]
    fn a_new_partition_is_led_by_its_first_live_replica() {
        let decided = decide(&[2, 3, 1], None, &live(&[1, 2, 3]), 4).unwrap();
        assert_eq!(
            decided,
            PartitionState { controller_epoch: 4, leader: 2, version: 1, leader_epoch: 0, isr: vec![2, 3, 1] }
        );
        let decided = decide(&[2, 3, 1], None, &live(&[1, 3]), 4).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3, 1]));
        assert_eq!(decide(&[2, 3], None, &live(&[1]), 4), None);
    }

    #[test]
    fn a_dead_leader_is_replaced_from_the_isr_with_the_next_epoch() {
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[2, 3]), 7).unwrap();
        assert_eq!(
            (decided.leader, decided.leader_epoch, decided.isr, decided.controller_epoch),
            (2, 6, vec![2, 3], 7)
        );
        // A replica out of the ISR never leads.
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 3])), &live(&[2, 3]), 7).unwrap();
        assert_eq!((decided.leader, decided.isr), (3, vec![3]));
    }

    #[test]
    fn with_no_live_replica_in_sync_the_partition_goes_offline_and_waits() {
        let offline = decide(&[1, 2, 3], Some(&state(1, 5, &[1])), &live(&[2, 3]), 7).unwrap();
        assert_eq!((offline.leader, offline.leader_epoch, offline.isr.clone()), (-1, 6, vec![1]));
        assert_eq!(decide(&[1, 2, 3], Some(&offline), &live(&[2, 3]), 7), None);
        // The last in-sync replica returns: it leads again.
        let back = decide(&[1, 2, 3], Some(&offline), &live(&[1, 2, 3]), 7).unwrap();
        assert_eq!((back.leader, back.leader_epoch, back.isr), (1, 7, vec![1]));
    }

    #[test]
    fn a_live_leader_keeps_leading_and_dead_replicas_leave_the_isr() {
        assert_eq!(decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 2, 3]), 7), None);
        let decided = decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2, 3])), &live(&[1, 3]), 7).unwrap();
        assert_eq!((decided.leader, decided.leader_epoch, decided.isr), (1, 6, vec![1, 3]));
        // A replica out of the ISR that dies changes nothing.
        assert_eq!(decide(&[1, 2, 3], Some(&state(1, 5, &[1, 2])), &live(&[1, 2]), 7), None);
    }
}
