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
    /// For each partition in `assigned ∪ owned`, the member epoch at which it
    /// was last given to the member: commits naming an older generation come
    /// from an earlier ownership and are refused.
    given_at: BTreeMap<TopicPartition, i64>,
    /// When the member was first asked to give up a partition it still owns.
    revoking_since: Option<Millis>,
}

impl Member {
    fn new(info: MemberInfo) -> Member {
        Member {
            info,
            epoch: 0,
            assigned: BTreeSet::new(),
            owned: BTreeSet::new(),
            given_at: BTreeMap::new(),
            revoking_since: None,
        }
    }

    fn holds(&self, tp: &TopicPartition) -> bool {
        self.assigned.contains(tp) || self.owned.contains(tp)
    }

    /// Forgets when partitions the member no longer holds were given.
    fn prune_given(&mut self) {
        let (assigned, owned) = (&self.assigned, &self.owned);
        self.given_at.retain(|tp, _| assigned.contains(tp) || owned.contains(tp));
    }
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
    /// The member does not hold the partition: it was never given it, or it
    /// reported it released.
    NotOwned,
    /// The member holds the partition, but was given it after the generation
    /// named: the request comes from an earlier ownership.
    StaleGeneration { given_at: i64, got: i64 },
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

    /// Goes on from `epoch` (the generation a previous run reached), so that
    /// generations never repeat across restarts.
    pub fn resume_group_epoch(&mut self, epoch: i64) {
        self.group_epoch = self.group_epoch.max(epoch);
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

    /// What a member said about itself when it joined, if it is a member.
    pub fn info(&self, member_id: &str) -> Option<&MemberInfo> {
        self.members.get(member_id).map(|m| &m.info)
    }

    /// Since when the member has been keeping partitions it was asked to give
    /// up, if it is.
    pub fn revoking_since(&self, member_id: &str) -> Option<Millis> {
        self.members.get(member_id).and_then(|m| m.revoking_since)
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
        self.members.values().find(|m| m.holds(tp)).map(|m| m.info.member_id.as_str())
    }

    /// Every held partition with the member that holds it (assigned or still
    /// releasing it), in one pass.
    pub fn owners(&self) -> BTreeMap<&TopicPartition, &str> {
        self.members
            .values()
            .flat_map(|m| m.assigned.iter().chain(&m.owned).map(move |tp| (tp, m.info.member_id.as_str())))
            .collect()
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
        self.members.insert(info.member_id.clone(), Member::new(info));
        self.rebalance()
    }

    /// An existing member joins again under its own member id (after it lost
    /// its state, or from another connection): it keeps its id, generation
    /// and assignment, takes the new `info`, and is taken to own nothing now
    /// (a member that joins again has stopped consuming), which releases what
    /// it was giving up. Returns the members whose assignment changed.
    ///
    /// # Errors
    ///
    /// Unknown or fenced member.
    pub fn rejoin(&mut self, info: MemberInfo, now: Millis) -> Result<Vec<String>, MemberError> {
        self.member(&info.member_id)?;
        let member = self.members.get_mut(&info.member_id).ok_or(MemberError::UnknownMember)?;
        let resubscribed = member.info.topics != info.topics;
        member.info = info;
        member.owned.clear();
        member.prune_given();
        let changed = if resubscribed { self.rebalance() } else { self.reconcile() };
        self.note_revocations(now);
        Ok(changed)
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
            member.prune_given();
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

    /// Checks that a member may commit an offset for `tp` under
    /// `generation_id`: the member holds the partition (assigned to it, or
    /// revoked but not yet reported released) and has held it since that
    /// generation, which is not newer than its current one.
    ///
    /// # Errors
    ///
    /// Unknown or fenced member; a generation it was never given
    /// (`IllegalGeneration`); a partition it does not hold (`NotOwned`); a
    /// generation older than the one that gave it the partition
    /// (`StaleGeneration`).
    pub fn check_commit(&self, member_id: &str, generation_id: i64, tp: &TopicPartition) -> Result<(), MemberError> {
        let member = self.member(member_id)?;
        if generation_id > member.epoch {
            return Err(MemberError::IllegalGeneration { current: member.epoch, got: generation_id });
        }
        if !member.holds(tp) {
            return Err(MemberError::NotOwned);
        }
        let given_at = member.given_at.get(tp).copied().unwrap_or(0);
        if generation_id < given_at {
            return Err(MemberError::StaleGeneration { given_at, got: generation_id });
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
        crate::stats::GROUP_REBALANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            let Some(previous) = before.get(id) else { continue };
            if *previous != member.assigned {
                member.epoch += 1;
                let epoch = member.epoch;
                // A partition held without a break (revoked, then given back
                // before its release) keeps the epoch it was first given at.
                for tp in member.assigned.difference(previous) {
                    member.given_at.entry(tp.clone()).or_insert(epoch);
                }
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
mod tests;
