//! Partition assignors: which member of a consumer group consumes which partition.
//!
//! The group coordinator calls [`Assignor::assign`] once per rebalance, with the partition
//! count of every subscribed topic and the members (subscriptions and the partitions they
//! own now). The assignor is chosen by the protocol name the members agree on, through
//! [`by_name`]:
//!
//! - [`range`]: Kafka's `RangeAssignor`, contiguous ranges per topic.
//! - [`roundrobin`]: Kafka's `RoundRobinAssignor`, partitions dealt out one by one.
//! - [`sticky`] ([`DEFAULT_ASSIGNOR`]): balanced, keeps what members own, moves as little
//!   as possible.
//!
//! Invariants every assignor keeps (checked by the property tests at the end of this file):
//!
//! - every partition of every topic that some member subscribes to and that is in the
//!   partition map is assigned to exactly one member, and nothing else is assigned;
//! - a partition only goes to a member subscribed to its topic;
//! - every member appears in the result, possibly with an empty set;
//! - the result depends only on the input, not on the order of `members`: no clock, no
//!   randomness, no hash order.
//!
//! Member ids are unique within one call (the coordinator's membership guarantees it).
//! Assignors are pure functions: no actor, no I/O, so they are tested alone.

pub mod range;
pub mod roundrobin;
pub mod sticky;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use range::RangeAssignor;
pub use roundrobin::RoundRobinAssignor;
pub use sticky::StickyAssignor;

/// The assignor a group uses when its members name no other.
pub const DEFAULT_ASSIGNOR: &str = "sticky";

/// Names of every assignor [`by_name`] knows, in alphabetical order.
pub const ASSIGNORS: &[&str] = &["range", "roundrobin", "sticky"];

/// One partition of one topic.
///
/// Ordered by topic, then partition: the order assignors lay partitions out in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index within its topic, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    /// Kafka's spelling, `topic-partition`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A group member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The id the coordinator gave the member; unique within the group.
    pub member_id: String,
    /// The id of a static member (`group.instance.id`), kept across restarts. Static
    /// members sort before dynamic ones, by this id, so their assignment survives a new
    /// `member_id` (see [`kafka_member_order`]).
    pub group_instance_id: Option<String>,
    /// The topics the member subscribes to.
    pub topics: BTreeSet<String>,
    /// The partitions the member owns now, as it reported them. Used by `sticky` only; may
    /// be empty, and may be stale (gone topics or partitions, unsubscribed topics, a
    /// partition another member also claims).
    pub owned: Vec<TopicPartition>,
}

/// The result of an assignment: member id to the partitions it is to consume.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// A strategy that divides a group's partitions among its members.
pub trait Assignor: Send + Sync {
    /// The protocol name members use to choose this assignor (`"range"`, ...).
    fn name(&self) -> &'static str;

    /// Divides the partitions among `members`.
    ///
    /// `partitions` maps each topic to its partition count, for every topic any member
    /// subscribes to that exists; a subscribed topic missing from the map has no
    /// partitions to assign, and topics nobody subscribes to are ignored. Every member
    /// appears in the result, possibly with an empty set.
    fn assign(&self, partitions: &BTreeMap<String, u32>, members: &[Member]) -> Assignment;
}

/// The assignor called `name` (one of [`ASSIGNORS`], or one [`register`]ed),
/// or `None` for an unknown name.
pub fn by_name(name: &str) -> Option<&'static dyn Assignor> {
    match name {
        "range" => Some(&RangeAssignor),
        "roundrobin" => Some(&RoundRobinAssignor),
        "sticky" => Some(&StickyAssignor),
        _ => registered().iter().copied().find(|a| a.name() == name),
    }
}

/// Assignors added by the program embedding the broker (see
/// [`register`]). Process-wide: a process runs one broker.
static REGISTERED: std::sync::RwLock<Vec<&'static dyn Assignor>> = std::sync::RwLock::new(Vec::new());

fn registered() -> std::sync::RwLockReadGuard<'static, Vec<&'static dyn Assignor>> {
    // Nothing that holds the lock can panic.
    REGISTERED.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes `assignor` known to [`by_name`] under its name, for every group of
/// the process, from now on. Registering a name again replaces the earlier
/// assignor of that name.
///
/// # Errors
///
/// The name is empty or one of [`ASSIGNORS`].
pub fn register(assignor: &'static dyn Assignor) -> Result<(), String> {
    let name = assignor.name();
    if name.is_empty() || ASSIGNORS.contains(&name) {
        return Err(format!("assignor name `{name}` is empty or built in ({})", ASSIGNORS.join(", ")));
    }
    let mut registered = REGISTERED.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    registered.retain(|a| a.name() != name);
    registered.push(assignor);
    Ok(())
}

/// Every assignor [`by_name`] knows: [`ASSIGNORS`] and the registered ones,
/// sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ASSIGNORS.to_vec();
    names.extend(registered().iter().map(|a| a.name()));
    names.sort_unstable();
    names.dedup();
    names
}

/// Compares two strings as Java's `String.compareTo` does: by UTF-16 code units.
///
/// This differs from Rust's byte order only when a character above U+FFFF meets one in
/// U+E000..=U+FFFF; it matters because `range` and `roundrobin` must match Kafka exactly.
pub(crate) fn java_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Kafka's member order (`AbstractPartitionAssignor.MemberInfo.compareTo`): static members
/// first, by group instance id; then dynamic members, by member id.
///
/// Kafka leaves two members with the same instance id unordered (in hash order); we break
/// that tie by member id so the result stays deterministic.
pub(crate) fn kafka_member_order(a: &Member, b: &Member) -> Ordering {
    let by_instance = match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => java_cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_instance.then_with(|| java_cmp(&a.member_id, &b.member_id))
}

/// `members` in [`kafka_member_order`].
pub(crate) fn sorted_members(members: &[Member]) -> Vec<&Member> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| kafka_member_order(a, b));
    sorted
}

/// An assignment giving every member an empty set.
pub(crate) fn empty_assignment(members: &[Member]) -> Assignment {
    members.iter().map(|m| (m.member_id.clone(), BTreeSet::new())).collect()
}

/// Every topic some member subscribes to, in Java's string order (Kafka's `TreeSet`).
pub(crate) fn subscribed_topics(members: &[Member]) -> Vec<&str> {
    let mut topics: Vec<&str> = members.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
    topics.sort_by(|a, b| java_cmp(a, b));
    topics.dedup();
    topics
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Builders shared by the assignors' unit tests.

    use super::*;

    /// A dynamic member subscribed to `topics`, owning nothing.
    pub fn member(id: &str, topics: &[&str]) -> Member {
        Member {
            member_id: id.to_string(),
            group_instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: Vec::new(),
        }
    }

    /// A static member with instance id `instance`, subscribed to `topics`.
    pub fn static_member(id: &str, instance: &str, topics: &[&str]) -> Member {
        Member { group_instance_id: Some(instance.to_string()), ..member(id, topics) }
    }

    /// `member` owning `owned`.
    pub fn owning(member: Member, owned: &[TopicPartition]) -> Member {
        Member { owned: owned.to_vec(), ..member }
    }

    pub fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    pub fn set(partitions: &[TopicPartition]) -> BTreeSet<TopicPartition> {
        partitions.iter().cloned().collect()
    }

    /// Partitions spelled as in Kafka's tests: `"t1-0, t1-1"`; `""` is none.
    pub fn parse(spec: &str) -> BTreeSet<TopicPartition> {
        spec.split(", ")
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (topic, partition) = s.rsplit_once('-').expect("topic-partition");
                tp(topic, partition.parse().expect("partition number"))
            })
            .collect()
    }

    pub fn counts(entries: &[(&str, u32)]) -> BTreeMap<String, u32> {
        entries.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    /// Members `consumer0`, `consumer1`, ... subscribed to `topics[i]`, as Kafka's
    /// `verifyRackAssignment` names them.
    pub fn numbered(topics: &[&[&str]]) -> Vec<Member> {
        topics.iter().enumerate().map(|(i, t)| member(&format!("consumer{i}"), t)).collect()
    }

    /// `assignment` with each member's partitions spelled as in [`parse`].
    pub fn spelled(assignment: &Assignment) -> BTreeMap<String, String> {
        assignment
            .iter()
            .map(|(m, ps)| (m.clone(), ps.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn by_name_knows_every_listed_assignor() {
        for name in ASSIGNORS {
            assert_eq!(by_name(name).map(|a| a.name()), Some(*name));
        }
        assert!(by_name(DEFAULT_ASSIGNOR).is_some());
        assert!(by_name("cooperative-sticky").is_none());
    }

    #[test]
    fn static_members_sort_first_by_instance_id() {
        let members =
            vec![member("a", &[]), static_member("z", "i2", &[]), member("0", &[]), static_member("b", "i1", &[])];
        let ids: Vec<&str> = sorted_members(&members).iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(ids, ["b", "z", "0", "a"]);
    }

    #[test]
    fn java_order_is_utf16_order() {
        // U+FF5E sorts after U+1F600 in UTF-8 bytes but before it in UTF-16 units.
        assert_eq!(java_cmp("\u{FF5E}", "\u{1F600}"), Ordering::Greater);
        assert_eq!("\u{FF5E}".cmp("\u{1F600}"), Ordering::Less);
        assert_eq!(java_cmp("a", "b"), Ordering::Less);
    }
}

#[cfg(test)]
mod properties {
    //! Properties of all assignors, over random groups: topics `t0`..`t3` may exist (with 0
    //! to 7 partitions), `t4` never does; members subscribe to any of them, some are static,
    //! and `owned` holds random, often stale, partitions.

    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};

    use super::*;

    const TOPICS: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];

    fn partition_counts() -> impl Strategy<Value = BTreeMap<String, u32>> {
        vec(proptest::option::of(0u32..8), 4).prop_map(|counts| {
            counts.into_iter().zip(TOPICS).filter_map(|(n, t)| n.map(|n| (t.to_string(), n))).collect()
        })
    }

    fn subscription() -> impl Strategy<Value = BTreeSet<String>> {
        subsequence(TOPICS.to_vec(), 0..=TOPICS.len()).prop_map(|ts| ts.into_iter().map(String::from).collect())
    }

    /// Members `m0`, `m1`, ... (`size` of them) subscribed as `subscriptions` draws.
    fn members(
        subscriptions: impl Strategy<Value = BTreeSet<String>>,
        size: std::ops::Range<usize>,
    ) -> impl Strategy<Value = Vec<Member>> {
        let owned = vec((select(TOPICS.to_vec()), 0u32..9).prop_map(|(t, p)| TopicPartition::new(t, p)), 0..6);
        vec((subscriptions, proptest::option::of(0u8..4), owned), size).prop_map(|specs| {
            (0..)
                .zip(specs)
                .map(|(i, (topics, instance, owned))| Member {
                    member_id: format!("m{i}"),
                    group_instance_id: instance.map(|k| format!("i{k}-{i}")),
                    topics,
                    owned,
                })
                .collect()
        })
    }

    /// A subscription and members that all share it.
    fn uniform_members(size: std::ops::Range<usize>) -> impl Strategy<Value = (BTreeSet<String>, Vec<Member>)> {
        subscription().prop_flat_map(move |topics| (Just(topics.clone()), members(Just(topics), size.clone())))
    }

    /// Every partition goes to exactly one member subscribed to its topic, and only the
    /// partitions of subscribed, existing topics are assigned; every member is listed.
    fn check_valid(
        partitions: &BTreeMap<String, u32>,
        members: &[Member],
        a: &Assignment,
    ) -> Result<(), TestCaseError> {
        let ids: BTreeSet<&String> = members.iter().map(|m| &m.member_id).collect();
        prop_assert_eq!(a.keys().collect::<BTreeSet<_>>(), ids);
        let mut seen = BTreeSet::new();
        for member in members {
            for tp in &a[&member.member_id] {
                prop_assert!(member.topics.contains(&tp.topic), "{} got {} unsubscribed", member.member_id, tp);
                prop_assert!(seen.insert(tp.clone()), "{} assigned twice", tp);
            }
        }
        prop_assert_eq!(seen, assignable(partitions, members));
        Ok(())
    }

    /// Every partition of every subscribed, existing topic.
    fn assignable(partitions: &BTreeMap<String, u32>, members: &[Member]) -> BTreeSet<TopicPartition> {
        subscribed_topics(members)
            .into_iter()
            .flat_map(|t| (0..partitions.get(t).copied().unwrap_or(0)).map(move |p| TopicPartition::new(t, p)))
            .collect()
    }

    /// The least maximum load any valid assignment can have: the smallest capacity at which
    /// every partition fits on a subscribed member (augmenting paths, Kuhn's way).
    fn optimal_max_load(partitions: &BTreeMap<String, u32>, members: &[Member]) -> usize {
        let eligible: Vec<Vec<usize>> = assignable(partitions, members)
            .iter()
            .map(|tp| (0..members.len()).filter(|&m| members[m].topics.contains(&tp.topic)).collect())
            .collect();
        (0..=eligible.len())
            .find(|&cap| {
                let mut owner = vec![None; eligible.len()];
                (0..eligible.len()).all(|p| place(p, cap, &eligible, &mut owner, &mut vec![false; members.len()]))
            })
            .expect("every partition has a subscriber")
    }

    /// Places partition `p` on a member with room, moving others along an augmenting path.
    fn place(p: usize, cap: usize, eligible: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
        for &m in &eligible[p] {
            if std::mem::replace(&mut seen[m], true) {
                continue;
            }
            let held: Vec<usize> = (0..owner.len()).filter(|&q| owner[q] == Some(m)).collect();
            if held.len() < cap || held.into_iter().any(|q| place(q, cap, eligible, owner, seen)) {
                owner[p] = Some(m);
                return true;
            }
        }
        false
    }

    fn spread(a: &Assignment) -> usize {
        let loads = a.values().map(BTreeSet::len);
        loads.clone().max().unwrap_or(0) - loads.min().unwrap_or(0)
    }

    /// `members` owning what `previous` gave them.
    fn owning_previous(members: &[Member], previous: &Assignment) -> Vec<Member> {
        let owned = |m: &Member| previous.get(&m.member_id).into_iter().flatten().cloned().collect();
        members.iter().map(|m| Member { owned: owned(m), ..m.clone() }).collect()
    }

    proptest! {
        #[test]
        fn every_assignor_assigns_each_partition_once_to_a_subscriber(
            partitions in partition_counts(),
            members in members(subscription(), 0..7),
        ) {
            for name in ASSIGNORS {
                let assignor = by_name(name).unwrap();
                let a = assignor.assign(&partitions, &members);
                check_valid(&partitions, &members, &a)?;
                let reversed: Vec<Member> = members.iter().rev().cloned().collect();
                prop_assert_eq!(&assignor.assign(&partitions, &reversed), &a, "{} depends on input order", name);
            }
        }

        #[test]
        fn sticky_balances_equal_subscriptions(partitions in partition_counts(), (_, members) in uniform_members(0..7)) {
            let a = StickyAssignor.assign(&partitions, &members);
            check_valid(&partitions, &members, &a)?;
            prop_assert!(spread(&a) <= 1, "unbalanced: {:?}", a);
        }

        #[test]
        fn sticky_is_optimally_balanced(partitions in partition_counts(), members in members(subscription(), 0..7)) {
            let a = StickyAssignor.assign(&partitions, &members);
            let max_load = a.values().map(BTreeSet::len).max().unwrap_or(0);
            prop_assert_eq!(max_load, optimal_max_load(&partitions, &members), "{:?}", a);
        }

        #[test]
        fn sticky_is_a_fixed_point(partitions in partition_counts(), members in members(subscription(), 0..7)) {
            let first = StickyAssignor.assign(&partitions, &members);
            let again = StickyAssignor.assign(&partitions, &owning_previous(&members, &first));
            prop_assert_eq!(again, first);
        }

        #[test]
        fn sticky_moves_only_what_a_new_member_takes(
            partitions in partition_counts(),
            (topics, members) in uniform_members(1..7),
        ) {
            let before = StickyAssignor.assign(&partitions, &members);
            let mut grown = owning_previous(&members, &before);
            grown.push(Member { member_id: "new".into(), group_instance_id: None, topics, owned: Vec::new() });
            let after = StickyAssignor.assign(&partitions, &grown);
            check_valid(&partitions, &grown, &after)?;
            prop_assert!(spread(&after) <= 1);
            let moved: usize = before.iter().map(|(id, ps)| ps.difference(&after[id]).count()).sum();
            prop_assert_eq!(moved, after["new"].len());
        }

        #[test]
        fn sticky_moves_only_what_a_leaving_member_had(
            partitions in partition_counts(),
            (_, members) in uniform_members(2..7),
            leaver in any::<proptest::sample::Index>(),
        ) {
            let before = StickyAssignor.assign(&partitions, &members);
            let mut shrunk = owning_previous(&members, &before);
            shrunk.remove(leaver.index(shrunk.len()));
            let after = StickyAssignor.assign(&partitions, &shrunk);
            prop_assert!(spread(&after) <= 1);
            for member in &shrunk {
                prop_assert!(before[&member.member_id].is_subset(&after[&member.member_id]));
            }
        }
    }
}
