//! Unit tests of the membership state machine.

use super::*;
use crate::test_support::Rng;

const TOPIC: &str = "t";

fn tp(partition: u32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

fn set(partitions: impl IntoIterator<Item = u32>) -> BTreeSet<TopicPartition> {
    partitions.into_iter().map(tp).collect()
}

fn info(member_id: &str, instance: Option<&str>, topics: &[&str]) -> MemberInfo {
    MemberInfo {
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_owned),
        client_id: "test".into(),
        host: "127.0.0.1".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 500,
    }
}

fn dynamic(member_id: &str) -> MemberInfo {
    info(member_id, None, &[TOPIC])
}

/// A group using `assignor` on topic `t` with `partitions` partitions.
fn group(assignor: &str, partitions: u32) -> Membership {
    let mut m = Membership::new(assignor::by_name(assignor).unwrap());
    m.set_partitions(BTreeMap::from([(TOPIC.to_string(), partitions)]));
    m
}

fn assigned(m: &Membership, member_id: &str) -> BTreeSet<TopicPartition> {
    m.assignment(member_id).unwrap().1.clone()
}

fn epoch(m: &Membership, member_id: &str) -> i64 {
    m.assignment(member_id).unwrap().0
}

/// The member applies its current assignment and reports it.
fn ack(m: &mut Membership, member_id: &str, now: Millis) -> Vec<String> {
    let (epoch, assigned) = m.assignment(member_id).unwrap();
    let assigned = assigned.clone();
    m.heartbeat(member_id, epoch, assigned, None, now).unwrap()
}

/// Acknowledges every member, round after round, until the group is stable.
fn settle(m: &mut Membership) {
    for _ in 0..10 {
        if m.state() == "Stable" {
            return;
        }
        let ids: Vec<String> = m.members.keys().cloned().collect();
        for id in ids {
            ack(m, &id, 0);
        }
    }
    panic!("the group did not settle: {:?}", m.members);
}

/// The membership's own invariant: a partition is in `assigned ∪ owned`
/// of at most one member.
fn assert_one_holder(m: &Membership) {
    let mut holder: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for (id, member) in &m.members {
        for partition in member.assigned.union(&member.owned) {
            if let Some(other) = holder.insert(partition, id) {
                panic!("{partition} is held by {other} and {id}: {:?}", m.members);
            }
        }
    }
}

#[test]
fn a_first_member_gets_every_partition_and_a_matching_heartbeat_changes_nothing() {
    let mut m = group("sticky", 4);
    assert_eq!(m.state(), "Empty");
    let changed = m.join(dynamic("a"));
    assert_eq!(changed, ["a"]);
    assert_eq!(m.assignment("a").unwrap(), (1, &set(0..4)));
    // Assigned but not yet reported as owned.
    assert_eq!(m.state(), "Reconciling");
    let group_epoch = m.group_epoch();
    assert_eq!(ack(&mut m, "a", 0), Vec::<String>::new());
    assert_eq!(m.state(), "Stable");
    assert_eq!(ack(&mut m, "a", 0), Vec::<String>::new());
    assert_eq!((m.group_epoch(), epoch(&m, "a")), (group_epoch, 1));
    // A member cannot claim partitions it was never given.
    m.heartbeat("a", 1, set(0..9), None, 0).unwrap();
    assert_eq!(m.members["a"].owned, set(0..4));
}

#[test]
fn a_partition_moves_only_after_its_owner_reports_it_released() {
    let mut m = group("sticky", 6);
    m.join(dynamic("a"));
    settle(&mut m);
    let old_epoch = epoch(&m, "a");

    // B joins: A is asked to give up half, B gets nothing yet.
    let changed = m.join(dynamic("b"));
    assert_eq!(changed, ["a"]);
    let kept = assigned(&m, "a");
    let revoked: BTreeSet<TopicPartition> = set(0..6).difference(&kept).cloned().collect();
    assert_eq!((kept.len(), revoked.len()), (3, 3));
    assert_eq!(epoch(&m, "a"), old_epoch + 1);
    assert_eq!(m.assignment("b").unwrap(), (0, &BTreeSet::new()));
    for partition in &revoked {
        assert_eq!(m.owner_of(partition), Some("a"));
    }
    assert_eq!(m.state(), "Reconciling");
    assert_one_holder(&m);

    // B asking, and A still reporting everything under its old epoch, move nothing.
    assert_eq!(ack(&mut m, "b", 0), Vec::<String>::new());
    assert_eq!(m.heartbeat("a", old_epoch, set(0..6), None, 0).unwrap(), Vec::<String>::new());
    assert!(assigned(&m, "b").is_empty());

    // A releases one of them: only that one goes to B.
    let (first, rest) = revoked.iter().cloned().partition::<BTreeSet<_>, _>(|p| *p == *revoked.first().unwrap());
    let still: BTreeSet<TopicPartition> = kept.union(&rest).cloned().collect();
    let changed = m.heartbeat("a", epoch(&m, "a"), still, None, 0).unwrap();
    assert_eq!(changed, ["b"]);
    assert_eq!(m.assignment("b").unwrap(), (1, &first));
    assert_one_holder(&m);

    // A releases the rest: B has all three.
    assert_eq!(ack(&mut m, "a", 0), ["b"]);
    assert_eq!(m.assignment("b").unwrap(), (2, &revoked));
    assert_eq!(assigned(&m, "a"), kept);
    assert_eq!(epoch(&m, "a"), old_epoch + 1);
    ack(&mut m, "b", 0);
    assert_eq!(m.state(), "Stable");
}

#[test]
fn a_partition_given_but_not_yet_acknowledged_is_not_given_to_another_member() {
    // The answer that gave B its partitions may be on its way: B may be
    // consuming them although it has not reported them yet.
    let mut m = group("sticky", 6);
    m.join(dynamic("a"));
    settle(&mut m);
    m.join(dynamic("b"));
    ack(&mut m, "a", 0);
    let (b_epoch, given) = m.assignment("b").map(|(e, a)| (e, a.clone())).unwrap();
    assert_eq!(given.len(), 3);

    // C joins before B reported anything: some of B's partitions are for C.
    m.join(dynamic("c"));
    assert_one_holder(&m);
    let taken: BTreeSet<TopicPartition> = given.difference(&assigned(&m, "b")).cloned().collect();
    assert!(!taken.is_empty(), "C's share comes partly from B: {:?}", m.target);
    for partition in &taken {
        assert_eq!(m.owner_of(partition), Some("b"), "{partition} went elsewhere before B released it");
        assert!(!assigned(&m, "c").contains(partition));
    }
    // B's heartbeat from before it applied its answer releases nothing.
    m.heartbeat("b", 0, BTreeSet::new(), None, 0).unwrap();
    for partition in &taken {
        assert_eq!(m.owner_of(partition), Some("b"), "{partition} was released by a stale heartbeat");
    }
    // B applies the answer it had, and reports it (an old generation).
    m.heartbeat("b", b_epoch, given.clone(), None, 0).unwrap();
    for partition in &taken {
        assert_eq!(m.owner_of(partition), Some("b"));
    }
    // B applies its current assignment: now C gets them.
    let changed = ack(&mut m, "b", 0);
    assert!(changed.contains(&"c".to_string()), "{changed:?}");
    assert!(taken.is_subset(&assigned(&m, "c")));
    settle(&mut m);
    assert_one_holder(&m);
}

#[test]
fn removing_a_member_frees_its_partitions_at_once() {
    let mut m = group("range", 6);
    m.join(dynamic("a"));
    m.join(dynamic("b"));
    settle(&mut m);
    let a_epoch = epoch(&m, "a");
    assert_eq!(assigned(&m, "a"), set(0..3));
    let changed = m.remove("b").expect("b is a member");
    assert_eq!(changed, ["a"]);
    assert_eq!(m.assignment("a").unwrap(), (a_epoch + 1, &set(0..6)));
    assert_eq!(m.remove("b"), None);
    assert_eq!(m.assignment("b"), Err(MemberError::UnknownMember));

    // A member that is removed while it still holds revoked partitions
    // frees them too.
    ack(&mut m, "a", 0);
    m.join(dynamic("c"));
    assert!(assigned(&m, "c").is_empty());
    m.remove("a");
    assert_eq!(assigned(&m, "c"), set(0..6));
    assert_one_holder(&m);
}

#[test]
fn epochs_rise_with_every_assignment_change_and_only_then() {
    let mut m = group("sticky", 4);
    let mut epochs: BTreeMap<String, i64> = BTreeMap::new();
    let mut group_epoch = m.group_epoch();
    let mut check = |m: &Membership, changed: Vec<String>, group_changed: bool| {
        for view in m.members() {
            let id = view.info.member_id.clone();
            let before = epochs.get(&id).copied().unwrap_or(0);
            let expected = if changed.contains(&id) { before + 1 } else { before };
            assert_eq!(view.epoch, expected, "{id}: changed {changed:?}");
            epochs.insert(id, view.epoch);
        }
        assert_eq!(m.group_epoch() > group_epoch, group_changed);
        assert!(m.group_epoch() >= group_epoch);
        group_epoch = m.group_epoch();
    };
    let changed = m.join(dynamic("a"));
    check(&m, changed, true);
    let changed = ack(&mut m, "a", 0);
    check(&m, changed, false);
    let changed = m.join(dynamic("b"));
    check(&m, changed, true);
    let changed = ack(&mut m, "b", 0);
    check(&m, changed, false);
    let changed = ack(&mut m, "a", 0);
    check(&m, changed, false);
    let changed = ack(&mut m, "b", 0);
    check(&m, changed, false);
    let changed = m.heartbeat("a", epoch(&m, "a"), assigned(&m, "a"), Some([TOPIC.to_string()].into()), 0).unwrap();
    check(&m, changed, false);
    let changed = m.set_partitions(BTreeMap::from([(TOPIC.to_string(), 6)]));
    check(&m, changed, true);
    let changed = m.remove("a").unwrap();
    check(&m, changed, true);
    assert_eq!(assigned(&m, "b"), set(0..6));
}

#[test]
fn commits_are_checked_against_the_member_its_generation_and_what_it_holds() {
    let mut m = group("range", 4);
    m.join(info("s-1", Some("static"), &[TOPIC]));
    settle(&mut m);
    let first_epoch = epoch(&m, "s-1");
    assert_eq!(m.check_commit("s-1", first_epoch, &tp(3)), Ok(()));
    assert_eq!(m.check_commit("nobody", 0, &tp(0)), Err(MemberError::UnknownMember));
    assert_eq!(m.check_generation("nobody", 0), Err(MemberError::UnknownMember));
    assert_eq!(
        m.check_commit("s-1", first_epoch + 1, &tp(0)),
        Err(MemberError::IllegalGeneration { current: first_epoch, got: first_epoch + 1 })
    );
    assert_eq!(
        m.check_generation("s-1", first_epoch + 1),
        Err(MemberError::IllegalGeneration { current: first_epoch, got: first_epoch + 1 })
    );

    // D joins: range moves 2 and 3 to it. S may commit them until it
    // reports them released, under its old or its new generation.
    m.join(dynamic("d"));
    let revoking_epoch = epoch(&m, "s-1");
    assert_eq!(revoking_epoch, first_epoch + 1);
    assert_eq!(m.check_commit("s-1", first_epoch, &tp(3)), Ok(()));
    assert_eq!(m.check_commit("s-1", revoking_epoch, &tp(3)), Ok(()));
    // D may not commit them yet: it does not hold them.
    assert_eq!(m.check_commit("d", epoch(&m, "d"), &tp(3)), Err(MemberError::NotOwned));
    settle(&mut m);
    assert_eq!(assigned(&m, "d"), set(2..4));
    // S released them: under any generation they are not its own.
    assert_eq!(m.check_commit("s-1", first_epoch, &tp(3)), Err(MemberError::NotOwned));
    assert_eq!(m.check_commit("s-1", revoking_epoch, &tp(3)), Err(MemberError::NotOwned));
    let d_epoch = epoch(&m, "d");
    assert_eq!(m.check_commit("d", d_epoch, &tp(3)), Ok(()));
    // D was given them at its current generation: a commit naming an older
    // one comes from before it held them.
    assert_eq!(
        m.check_commit("d", d_epoch - 1, &tp(3)),
        Err(MemberError::StaleGeneration { given_at: d_epoch, got: d_epoch - 1 })
    );

    // S restarts with the same instance id: the old id is fenced.
    m.join(info("s-2", Some("static"), &[TOPIC]));
    assert_eq!(m.check_commit("s-1", revoking_epoch, &tp(0)), Err(MemberError::Fenced));
    assert_eq!(m.check_generation("s-1", revoking_epoch), Err(MemberError::Fenced));
    assert_eq!(m.heartbeat("s-1", revoking_epoch, set(0..2), None, 0), Err(MemberError::Fenced));
    assert_eq!(m.check_commit("s-2", revoking_epoch, &tp(0)), Ok(()));
}

#[test]
fn a_partition_held_without_a_break_keeps_the_generation_it_was_given_at() {
    let mut m = group("range", 4);
    m.join(dynamic("a"));
    settle(&mut m);
    let given = epoch(&m, "a");
    // B joins and leaves before A reports anything: A is asked to give up two
    // partitions, then gets them back, never having released them.
    m.join(dynamic("b"));
    assert!(epoch(&m, "a") > given);
    m.remove("b");
    assert_eq!(assigned(&m, "a"), set(0..4));
    assert_eq!(m.check_commit("a", given, &tp(3)), Ok(()));
    assert_eq!(m.check_commit("a", epoch(&m, "a"), &tp(3)), Ok(()));
}

#[test]
fn a_member_that_joins_again_under_its_id_keeps_its_assignment_and_releases_what_it_was_giving_up() {
    let mut m = group("range", 4);
    m.join(dynamic("a"));
    settle(&mut m);
    m.join(dynamic("b"));
    // A is giving up 2 and 3; B waits for them.
    assert_eq!(assigned(&m, "a"), set(0..2));
    assert!(assigned(&m, "b").is_empty());
    let a_epoch = epoch(&m, "a");
    let changed = m.rejoin(dynamic("a"), 0).unwrap();
    assert_eq!(changed, ["b"]);
    assert_eq!(epoch(&m, "a"), a_epoch);
    assert_eq!(assigned(&m, "a"), set(0..2));
    assert_eq!(assigned(&m, "b"), set(2..4));
    assert_eq!(m.rejoin(dynamic("nobody"), 0), Err(MemberError::UnknownMember));
    assert_one_holder(&m);
}

#[test]
fn a_static_member_that_rejoins_keeps_its_assignment_without_a_rebalance() {
    let mut m = group("sticky", 6);
    m.join(info("s-1", Some("static"), &[TOPIC]));
    m.join(dynamic("d"));
    settle(&mut m);
    let (group_epoch, s_epoch, s_assigned) = (m.group_epoch(), epoch(&m, "s-1"), assigned(&m, "s-1"));
    let d_before = m.assignment("d").map(|(e, a)| (e, a.clone())).unwrap();
    assert_eq!(m.member_with_instance("static"), Some("s-1"));

    let changed = m.join(info("s-2", Some("static"), &[TOPIC]));
    assert_eq!(changed, Vec::<String>::new());
    assert_eq!(m.group_epoch(), group_epoch);
    assert_eq!(m.assignment("s-2").unwrap(), (s_epoch, &s_assigned));
    assert_eq!(m.assignment("d").map(|(e, a)| (e, a.clone())).unwrap(), d_before);
    assert_eq!(m.member_with_instance("static"), Some("s-2"));
    assert_eq!(m.len(), 2);
    assert_eq!(m.assignment("s-1"), Err(MemberError::Fenced));
    assert_eq!(ack(&mut m, "s-2", 0), Vec::<String>::new());
    assert_eq!(m.state(), "Stable");

    // Coming back with another subscription is a rebalance.
    m.set_partitions(BTreeMap::from([(TOPIC.to_string(), 6), ("u".to_string(), 2)]));
    let group_epoch = m.group_epoch();
    m.join(info("s-3", Some("static"), &[TOPIC, "u"]));
    assert!(m.group_epoch() > group_epoch);
    settle(&mut m);
    assert!(assigned(&m, "s-3").contains(&TopicPartition::new("u", 0)));
    assert_one_holder(&m);
}

#[test]
fn new_partitions_are_assigned_and_an_unchanged_count_changes_nothing() {
    let mut m = group("sticky", 4);
    m.join(dynamic("a"));
    m.join(dynamic("b"));
    settle(&mut m);
    let group_epoch = m.group_epoch();
    assert_eq!(m.set_partitions(BTreeMap::from([(TOPIC.to_string(), 4)])), Vec::<String>::new());
    assert_eq!(m.group_epoch(), group_epoch);

    let changed = m.set_partitions(BTreeMap::from([(TOPIC.to_string(), 6)]));
    assert_eq!(m.group_epoch(), group_epoch + 1);
    assert_eq!(changed, ["a", "b"]);
    let all: BTreeSet<TopicPartition> = assigned(&m, "a").union(&assigned(&m, "b")).cloned().collect();
    assert_eq!(all, set(0..6));
    assert_eq!((assigned(&m, "a").len(), assigned(&m, "b").len()), (3, 3));
    settle(&mut m);

    // A topic nobody subscribes to is not assigned.
    m.set_partitions(BTreeMap::from([(TOPIC.to_string(), 6), ("other".to_string(), 3)]));
    let all: BTreeSet<TopicPartition> = assigned(&m, "a").union(&assigned(&m, "b")).cloned().collect();
    assert_eq!(all, set(0..6));
}

#[test]
fn a_member_that_keeps_revoked_partitions_past_its_rebalance_timeout_is_overdue() {
    let mut m = group("sticky", 4);
    m.join(dynamic("a"));
    settle(&mut m);
    m.join(dynamic("b"));
    m.touch(1_000);
    assert!(m.overdue_revocations(1_500).is_empty());
    assert_eq!(m.overdue_revocations(1_501), ["a"]);
    // Heartbeats that still hold the revoked partitions do not restart the clock.
    m.heartbeat("a", epoch(&m, "a"), set(0..4), None, 1_400).unwrap();
    assert_eq!(m.overdue_revocations(1_501), ["a"]);
    // Releasing them stops it.
    ack(&mut m, "a", 1_450);
    assert!(m.overdue_revocations(10_000).is_empty());
    // B, given partitions it has not acknowledged yet, is not revoking anything.
    assert!(!assigned(&m, "b").is_empty());
    assert!(m.overdue_revocations(20_000).is_empty());
}

/// A member as the member sees itself: the last answer it received, and
/// what it consumes (the last answer it applied).
#[derive(Debug)]
struct Client {
    received: (i64, BTreeSet<TopicPartition>),
    applied_generation: i64,
    consumes: BTreeSet<TopicPartition>,
}

fn answer(m: &Membership, member_id: &str) -> (i64, BTreeSet<TopicPartition>) {
    m.assignment(member_id).map(|(e, a)| (e, a.clone())).unwrap()
}

/// Checks, after every step, that no partition has two holders in the
/// membership, and that whatever a live member consumes (it may apply an
/// answer late) is still held for it, so no two members consume one
/// partition.
fn check_step(m: &Membership, clients: &BTreeMap<String, Client>, context: &str) {
    assert_one_holder(m);
    let mut consumer: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for (id, client) in clients {
        let member = &m.members[id];
        for partition in &client.consumes {
            assert!(
                member.assigned.contains(partition) || member.owned.contains(partition),
                "{context}: {id} consumes {partition}, which is no longer held for it: {member:?}"
            );
            if let Some(other) = consumer.insert(partition, id) {
                panic!("{context}: {partition} is consumed by {other} and {id}");
            }
        }
        assert!(client.received.0 <= member.epoch, "{context}: {id}");
    }
}

fn run_random_churn(seed: u64, assignor_name: &str) {
    let mut rng = Rng(seed | 1);
    let topics = ["a", "b"];
    let subscriptions: [&[&str]; 3] = [&["a"], &["b"], &["a", "b"]];
    let mut partitions = BTreeMap::from([("a".to_string(), 6u32), ("b".to_string(), 3u32)]);
    let mut m = Membership::new(assignor::by_name(assignor_name).unwrap());
    m.set_partitions(partitions.clone());
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut next_id = 0;
    let mut now: Millis = 0;
    for step in 0..400 {
        let context = format!("seed {seed}, {assignor_name}, step {step}");
        now += rng.below(50) as Millis;
        let ids: Vec<String> = clients.keys().cloned().collect();
        let pick = |rng: &mut Rng| ids.get(rng.below(ids.len().max(1))).cloned();
        match rng.below(10) {
            0 | 1 if clients.len() < 6 => {
                next_id += 1;
                let id = format!("m{next_id}");
                let instance = (rng.below(2) == 0).then(|| format!("i{}", rng.below(3)));
                let topics = subscriptions[rng.below(3)];
                // A static member coming back: its old process is gone.
                if let Some(old) = instance.as_deref().and_then(|i| m.member_with_instance(i)) {
                    clients.remove(old);
                }
                m.join(info(&id, instance.as_deref(), topics));
                let received = answer(&m, &id);
                clients.insert(id, Client { received, applied_generation: 0, consumes: BTreeSet::new() });
            }
            2 => {
                // Leaves, expires, or is too slow to revoke.
                if let Some(id) = pick(&mut rng) {
                    m.remove(&id);
                    clients.remove(&id);
                }
            }
            3..=5 => {
                // Heartbeats what it consumes, and receives the answer;
                // or not yet, when it is busy applying the previous one
                // (the client's heartbeat task keeps the session alive
                // meanwhile with what it applied last).
                if let Some(id) = pick(&mut rng) {
                    let client = &clients[&id];
                    let topics = (rng.below(20) == 0)
                        .then(|| subscriptions[rng.below(3)].iter().map(|t| t.to_string()).collect());
                    m.heartbeat(&id, client.applied_generation, client.consumes.clone(), topics, now)
                        .unwrap_or_else(|e| panic!("{context}: heartbeat of {id}: {e:?}"));
                    if rng.below(3) != 0 {
                        clients.get_mut(&id).unwrap().received = answer(&m, &id);
                    }
                }
            }
            6 | 7 => {
                // Applies the last answer it received.
                if let Some(id) = pick(&mut rng) {
                    let client = clients.get_mut(&id).unwrap();
                    client.consumes = client.received.1.clone();
                    client.applied_generation = client.received.0;
                }
            }
            8 => {
                // A held heartbeat is answered with the current assignment.
                if let Some(id) = pick(&mut rng) {
                    clients.get_mut(&id).unwrap().received = answer(&m, &id);
                }
            }
            _ => {
                if rng.below(4) == 0 {
                    let topic = topics[rng.below(2)].to_string();
                    *partitions.get_mut(&topic).unwrap() += 1;
                    m.set_partitions(partitions.clone());
                } else {
                    for id in m.overdue_revocations(now) {
                        m.remove(&id);
                        clients.remove(&id);
                    }
                }
            }
        }
        m.touch(now);
        check_step(&m, &clients, &context);
    }

    // Churn stops: members apply and report; every partition of a
    // subscribed topic ends up with exactly one member.
    for round in 0..10 {
        // A static member's new process inherits the old one's report, so
        // the group may look stable before every client applied its answer.
        let applied = clients.iter().all(|(id, c)| c.consumes == assigned(&m, id));
        if m.is_empty() || (m.state() == "Stable" && applied) {
            break;
        }
        let ids: Vec<String> = clients.keys().cloned().collect();
        for id in ids {
            let client = clients.get_mut(&id).unwrap();
            m.heartbeat(&id, client.applied_generation, client.consumes.clone(), None, now).unwrap();
            client.received = answer(&m, &id);
            client.consumes = client.received.1.clone();
            client.applied_generation = client.received.0;
            check_step(&m, &clients, &format!("seed {seed}, {assignor_name}, settling round {round}"));
        }
    }
    let context = format!("seed {seed}, {assignor_name}, settled");
    if m.is_empty() {
        return;
    }
    assert_eq!(m.state(), "Stable", "{context}: {:?}", m.members);
    let subscribed = m.subscribed_topics();
    let expected: BTreeSet<TopicPartition> = partitions
        .iter()
        .filter(|(t, _)| subscribed.contains(*t))
        .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    let consumed: BTreeSet<TopicPartition> = clients.values().flat_map(|c| c.consumes.iter().cloned()).collect();
    assert_eq!(consumed, expected, "{context}: {:?}", m.members);
    for (id, client) in &clients {
        assert_eq!(client.consumes, assigned(&m, id), "{context}");
    }
}

#[test]
fn random_churn_never_gives_a_partition_two_holders_and_settles() {
    for seed in 1..=64u64 {
        for assignor_name in ["sticky", "range", "roundrobin"] {
            run_random_churn(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), assignor_name);
        }
    }
}
