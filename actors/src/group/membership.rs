//! A group's members, their epochs and assignments, and the reconciliation that
//! moves partitions between members without ever giving one partition two
//! owners. Pure state: no actix, no I/O, no clock (times are passed in).
//!
//! The model follows Kafka's KIP-848:
//! - The *group epoch* rises whenever membership, subscriptions or partition
//!   counts change; the assignor then computes a *target* assignment.
//! - Each member has a *member epoch* (its `generation_id`), an `assigned` set
//!   (what the coordinator last told it it may own) and an `owned` set (what
//!   the member last reported owning). The member epoch rises whenever
//!   `assigned` changes.
//! - Reconciliation moves each member towards its target: a partition leaves
//!   `assigned` at once (revocation), but is added to another member only when
//!   no member has it in `assigned` or `owned` — that is, after its previous
//!   owner reported it released, left, or was removed.
//!
//! Invariant: a partition is in the `assigned ∪ owned` of at most one member.
//! Hence no partition ever has two owners, in any generation.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, Assignor, TopicPartition};

/// Milliseconds, from whatever clock the caller uses.
pub type Millis = i64;

/// What a member says about itself when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: i64,
}

#[derive(Debug, Clone)]
struct Member {
    info: MemberInfo,
    epoch: i64,
    assigned: BTreeSet<TopicPartition>,
    owned: BTreeSet<TopicPartition>,
    /// When the member was first asked to give up a partition it still owns.
    revoking_since: Option<Millis>,
}

/// Why a member's request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberError {
    /// Not a member (left, removed, or never joined).
    UnknownMember,
    /// Replaced by a newer member with the same `group_instance_id`.
    Fenced,
    /// The generation named is not one this member was given.
    IllegalGeneration { current: i64, got: i64 },
    /// The partition is not the member's (any more): the assignment moved on.
    NotOwned { stale: bool },
}

/// A member as describe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub info: MemberInfo,
    pub epoch: i64,
    pub assigned: BTreeSet<TopicPartition>,
}

/// How many replaced member ids are remembered to answer `FENCED_INSTANCE_ID`.
const FENCED_MEMORY: usize = 1024;

/// The membership of one group. See the module documentation.
pub struct Membership {
    group_epoch: i64,
    assignor: &'static dyn Assignor,
    members: BTreeMap<String, Member>,
    /// Partition counts of the subscribed topics that exist.
    partitions: BTreeMap<String, u32>,
    target: assignor::Assignment,
    /// Member ids replaced by a static member's new id, oldest first.
    fenced: Vec<String>,
}

impl Membership {
    pub fn new(assignor: &'static dyn Assignor) -> Membership {
        Membership {
            group_epoch: 0,
            assignor,
            members: BTreeMap::new(),
            partitions: BTreeMap::new(),
            target: BTreeMap::new(),
            fenced: Vec::new(),
        }
    }

    pub fn group_epoch(&self) -> i64 {
        self.group_epoch
    }

    pub fn assignor(&self) -> &'static dyn Assignor {
        self.assignor
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// "Empty", "Stable" (every member owns exactly its target) or "Reconciling".
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            return "Empty";
        }
        let settled = self.members.iter().all(|(id, m)| {
            let target = self.target.get(id);
            m.owned == m.assigned && target.is_none_or(|t| *t == m.assigned)
        });
        if settled {
            "Stable"
        } else {
            "Reconciling"
        }
    }

    /// Every topic some member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.info.topics.iter().cloned()).collect()
    }

    /// The member's epoch and the partitions it may own now.
    pub fn assignment(&self, member_id: &str) -> Result<(i64, &BTreeSet<TopicPartition>), MemberError> {
        let member = self.member(member_id)?;
        Ok((member.epoch, &member.assigned))
    }

    /// Every member, in member-id order.
    pub fn members(&self) -> Vec<MemberView> {
        self.members
            .values()
            .map(|m| MemberView { info: m.info.clone(), epoch: m.epoch, assigned: m.assigned.clone() })
            .collect()
    }

    /// The member id with this static instance id, if any.
    pub fn member_with_instance(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.info.group_instance_id.as_deref() == Some(instance))
            .map(|m| m.info.member_id.as_str())
    }

    /// Which member owns (or is being given) a partition.
    pub fn owner_of(&self, tp: &TopicPartition) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.assigned.contains(tp) || m.owned.contains(tp))
            .map(|m| m.info.member_id.as_str())
    }

    fn member(&self, member_id: &str) -> Result<&Member, MemberError> {
        match self.members.get(member_id) {
            Some(member) => Ok(member),
            None if self.fenced.iter().any(|f| f == member_id) => Err(MemberError::Fenced),
            None => Err(MemberError::UnknownMember),
        }
    }

    /// Chooses the assignor for later rebalances (takes effect at the next one).
    pub fn set_assignor(&mut self, assignor: &'static dyn Assignor) -> Vec<String> {
        if self.assignor.name() == assignor.name() {
            return Vec::new();
        }
        self.assignor = assignor;
        self.rebalance()
    }

    /// Adds a member; or, when a member with the same static instance id
    /// exists, gives the new member id that member's place and assignment
    /// (no rebalance unless its subscription changed) and fences the old id.
    /// Returns the members whose assignment changed.
    pub fn join(&mut self, info: MemberInfo) -> Vec<String> {
        let previous = info.group_instance_id.as_deref().and_then(|i| self.member_with_instance(i)).map(str::to_owned);
        if let Some(old_id) = previous {
            if let Some(mut member) = self.members.remove(&old_id) {
                if let Some(target) = self.target.remove(&old_id) {
                    self.target.insert(info.member_id.clone(), target);
                }
                self.fence(old_id);
                let resubscribed = member.info.topics != info.topics;
                member.info = info.clone();
                self.members.insert(info.member_id.clone(), member);
                return if resubscribed { self.rebalance() } else { self.reconcile() };
            }
        }
        self.members.insert(
            info.member_id.clone(),
            Member { info, epoch: 0, assigned: BTreeSet::new(), owned: BTreeSet::new(), revoking_since: None },
        );
        self.rebalance()
    }

    fn fence(&mut self, member_id: String) {
        self.fenced.push(member_id);
        if self.fenced.len() > FENCED_MEMORY {
            self.fenced.remove(0);
        }
    }

    /// Records what a member reports owning (and, optionally, a new
    /// subscription), then reconciles. Returns the members whose assignment
    /// changed.
    ///
    /// # Errors
    ///
    /// Unknown or fenced member; a generation newer than any it was given.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation_id: i64,
        owned: BTreeSet<TopicPartition>,
        topics: Option<BTreeSet<String>>,
        now: Millis,
    ) -> Result<Vec<String>, MemberError> {
        let member = self.member(member_id)?;
        if generation_id > member.epoch {
            return Err(MemberError::IllegalGeneration { current: member.epoch, got: generation_id });
        }
        let member = self.members.get_mut(member_id).ok_or(MemberError::UnknownMember)?;
        // A member can only give up partitions, never claim new ones by report.
        let known: BTreeSet<TopicPartition> = member.assigned.union(&member.owned).cloned().collect();
        let reported: BTreeSet<TopicPartition> = owned.intersection(&known).cloned().collect();
        if generation_id == member.epoch {
            member.owned = reported;
        } else {
            // A report from before the member applied its latest answer
            // releases nothing: the member may still apply an answer already
            // sent to it, with partitions revoked since (see `reconcile`).
            member.owned.extend(reported);
        }
        let resubscribed = match topics {
            Some(topics) if topics != member.info.topics => {
                member.info.topics = topics;
                true
            }
            _ => false,
        };
        let changed = if resubscribed { self.rebalance() } else { self.reconcile() };
        self.note_revocations(now);
        Ok(changed)
    }

    /// Removes a member (left, expired, disconnected, or too slow to revoke).
    /// Its partitions are free at once. Returns the members whose assignment
    /// changed, or `None` if it was not a member.
    pub fn remove(&mut self, member_id: &str) -> Option<Vec<String>> {
        self.members.remove(member_id)?;
        self.target.remove(member_id);
        Some(self.rebalance())
    }

    /// Updates partition counts of subscribed topics; rebalances on a change.
    pub fn set_partitions(&mut self, partitions: BTreeMap<String, u32>) -> Vec<String> {
        if partitions == self.partitions {
            return Vec::new();
        }
        self.partitions = partitions;
        self.rebalance()
    }

    /// Members that have not released revoked partitions within their
    /// rebalance timeout.
    pub fn overdue_revocations(&self, now: Millis) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.revoking_since.is_some_and(|since| now - since > m.info.rebalance_timeout_ms))
            .map(|m| m.info.member_id.clone())
            .collect()
    }

    /// Checks that a member may commit an offset for `tp` under `generation_id`.
    ///
    /// # Errors
    ///
    /// Unknown or fenced member; a generation it was never given; a partition
    /// it does not own (stale when the generation named is an old one).
    pub fn check_commit(&self, member_id: &str, generation_id: i64, tp: &TopicPartition) -> Result<(), MemberError> {
        let member = self.member(member_id)?;
        if generation_id > member.epoch {
            return Err(MemberError::IllegalGeneration { current: member.epoch, got: generation_id });
        }
        if !member.assigned.contains(tp) && !member.owned.contains(tp) {
            return Err(MemberError::NotOwned { stale: generation_id < member.epoch });
        }
        Ok(())
    }

    /// Checks that a member exists and `generation_id` is its current one (a
    /// fetch of committed offsets under a stale generation is refused: the
    /// member is about to learn of a new assignment).
    ///
    /// # Errors
    ///
    /// Unknown or fenced member; any generation but the current one.
    pub fn check_generation(&self, member_id: &str, generation_id: i64) -> Result<(), MemberError> {
        let member = self.member(member_id)?;
        if generation_id != member.epoch {
            return Err(MemberError::IllegalGeneration { current: member.epoch, got: generation_id });
        }
        Ok(())
    }

    /// A new group epoch: recompute the target, then reconcile.
    fn rebalance(&mut self) -> Vec<String> {
        self.group_epoch += 1;
        let subscribed = self.subscribed_topics();
        let partitions: BTreeMap<String, u32> =
            self.partitions.iter().filter(|(t, _)| subscribed.contains(*t)).map(|(t, n)| (t.clone(), *n)).collect();
        let members: Vec<assignor::Member> = self
            .members
            .values()
            .map(|m| assignor::Member {
                member_id: m.info.member_id.clone(),
                group_instance_id: m.info.group_instance_id.clone(),
                topics: m.info.topics.clone(),
                owned: m.assigned.iter().cloned().collect(),
            })
            .collect();
        self.target = self.assignor.assign(&partitions, &members);
        self.reconcile()
    }

    /// Moves every member towards its target, revoking at once and adding only
    /// partitions nobody holds. Returns the members whose assignment changed.
    fn reconcile(&mut self) -> Vec<String> {
        let before: BTreeMap<String, BTreeSet<TopicPartition>> =
            self.members.iter().map(|(id, m)| (id.clone(), m.assigned.clone())).collect();
        // Revocations first: what a member gives up stays held through its
        // `owned` until it reports the release. That includes partitions it
        // has not reported owning yet: the answer that gave them to it may be
        // on its way, and it may be consuming them already.
        for (id, member) in self.members.iter_mut() {
            let desired = self.target.get(id);
            let revoked: Vec<TopicPartition> =
                member.assigned.iter().filter(|tp| !desired.is_some_and(|d| d.contains(*tp))).cloned().collect();
            for tp in revoked {
                member.assigned.remove(&tp);
                member.owned.insert(tp);
            }
        }
        let mut held: BTreeSet<TopicPartition> =
            self.members.values().flat_map(|m| m.assigned.iter().chain(&m.owned).cloned()).collect();
        // Then additions, of partitions nobody holds.
        for (id, member) in self.members.iter_mut() {
            let Some(desired) = self.target.get(id) else { continue };
            for tp in desired {
                if member.assigned.contains(tp) {
                    continue;
                }
                if member.owned.contains(tp) || !held.contains(tp) {
                    held.insert(tp.clone());
                    member.assigned.insert(tp.clone());
                }
            }
        }
        let mut changed = Vec::new();
        for (id, member) in self.members.iter_mut() {
            if before.get(id) != Some(&member.assigned) {
                member.epoch += 1;
                changed.push(id.clone());
            }
        }
        changed
    }

    fn note_revocations(&mut self, now: Millis) {
        for m in self.members.values_mut() {
            let revoking = !m.owned.is_subset(&m.assigned);
            m.revoking_since = match (revoking, m.revoking_since) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
            };
        }
    }

    /// Starts the revocation clocks after a change made outside a heartbeat.
    pub fn touch(&mut self, now: Millis) {
        self.note_revocations(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // D may not commit them yet: not its own at its current generation.
        assert_eq!(m.check_commit("d", epoch(&m, "d"), &tp(3)), Err(MemberError::NotOwned { stale: false }));
        settle(&mut m);
        assert_eq!(assigned(&m, "d"), set(2..4));
        // S, released: a commit naming its old generation is stale, one naming
        // its current generation is not (the partition is just not its own).
        assert_eq!(m.check_commit("s-1", first_epoch, &tp(3)), Err(MemberError::NotOwned { stale: true }));
        assert_eq!(m.check_commit("s-1", revoking_epoch, &tp(3)), Err(MemberError::NotOwned { stale: false }));
        assert_eq!(m.check_commit("d", epoch(&m, "d"), &tp(3)), Ok(()));

        // S restarts with the same instance id: the old id is fenced.
        m.join(info("s-2", Some("static"), &[TOPIC]));
        assert_eq!(m.check_commit("s-1", revoking_epoch, &tp(0)), Err(MemberError::Fenced));
        assert_eq!(m.check_generation("s-1", revoking_epoch), Err(MemberError::Fenced));
        assert_eq!(m.heartbeat("s-1", revoking_epoch, set(0..2), None, 0), Err(MemberError::Fenced));
        assert_eq!(m.check_commit("s-2", revoking_epoch, &tp(0)), Ok(()));
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

    /// xorshift64*: deterministic, so a failure names the seed that reproduces it.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
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
}
