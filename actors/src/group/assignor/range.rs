//! The range assignor: Kafka's `RangeAssignor`, without rack awareness.
//!
//! Topic by topic, the members subscribed to the topic are laid out in Kafka's member order
//! ([`kafka_member_order`](super::kafka_member_order)) and the partitions in numeric order;
//! each member takes a contiguous range of `count / members` partitions, and the first
//! `count % members` members take one more. For the same members, subscriptions and
//! partition counts the result is exactly Kafka's, which keeps co-partitioned topics
//! (same partition count, same subscribers) aligned: partition `p` of each goes to the
//! same member. Ownership is ignored.

use std::collections::BTreeMap;

use super::{empty_assignment, sorted_members, subscribed_topics, Assignment, Assignor, Member, TopicPartition};

/// Kafka's `range` assignor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(&self, partitions: &BTreeMap<String, u32>, members: &[Member]) -> Assignment {
        let mut assignment = empty_assignment(members);
        let ordered = sorted_members(members);
        for topic in subscribed_topics(members) {
            let Some(&count) = partitions.get(topic) else { continue };
            let consumers: Vec<&Member> = ordered.iter().copied().filter(|m| m.topics.contains(topic)).collect();
            // Not empty: the topic comes from some member's subscription.
            let n = consumers.len() as u32;
            let (per_member, with_extra) = (count / n, count % n);
            for (i, consumer) in (0u32..).zip(consumers) {
                let start = per_member * i + i.min(with_extra);
                let len = per_member + u32::from(i < with_extra);
                let owned = assignment.entry(consumer.member_id.clone()).or_default();
                owned.extend((start..start + len).map(|p| TopicPartition::new(topic, p)));
            }
        }
        assignment
    }
}

#[cfg(test)]
mod tests {
    //! Kafka's `RangeAssignorTest`, ported case by case (the assignments without racks).

    use std::collections::BTreeSet;

    use super::super::testkit::*;
    use super::*;

    const T1: &str = "topic1";
    const T2: &str = "topic2";

    fn assign(partitions: &[(&str, u32)], members: &[Member]) -> Assignment {
        RangeAssignor.assign(&counts(partitions), members)
    }

    #[test]
    fn one_consumer_no_topic() {
        let a = assign(&[], &[member("consumer1", &[])]);
        assert_eq!(a, BTreeMap::from([("consumer1".to_string(), BTreeSet::new())]));
    }

    #[test]
    fn one_consumer_nonexistent_topic() {
        let a = assign(&[], &[member("consumer1", &[T1])]);
        assert_eq!(a, BTreeMap::from([("consumer1".to_string(), BTreeSet::new())]));
    }

    #[test]
    fn one_consumer_one_topic() {
        let a = assign(&[(T1, 3)], &[member("consumer1", &[T1])]);
        assert_eq!(a.len(), 1);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0), tp(T1, 1), tp(T1, 2)]));
    }

    #[test]
    fn only_assigns_partitions_from_subscribed_topics() {
        let a = assign(&[(T1, 3), ("other", 3)], &[member("consumer1", &[T1])]);
        assert_eq!(a.len(), 1);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0), tp(T1, 1), tp(T1, 2)]));
    }

    #[test]
    fn one_consumer_multiple_topics() {
        let a = assign(&[(T1, 1), (T2, 2)], &[member("consumer1", &[T1, T2])]);
        assert_eq!(a.len(), 1);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0), tp(T2, 0), tp(T2, 1)]));
    }

    #[test]
    fn two_consumers_one_topic_one_partition() {
        let a = assign(&[(T1, 1)], &[member("consumer1", &[T1]), member("consumer2", &[T1])]);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0)]));
        assert_eq!(a["consumer2"], set(&[]));
    }

    #[test]
    fn two_consumers_one_topic_two_partitions() {
        let a = assign(&[(T1, 2)], &[member("consumer1", &[T1]), member("consumer2", &[T1])]);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0)]));
        assert_eq!(a["consumer2"], set(&[tp(T1, 1)]));
    }

    #[test]
    fn multiple_consumers_mixed_topics() {
        let members = [member("consumer1", &[T1]), member("consumer2", &[T1, T2]), member("consumer3", &[T1])];
        let a = assign(&[(T1, 3), (T2, 2)], &members);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0)]));
        assert_eq!(a["consumer2"], set(&[tp(T1, 1), tp(T2, 0), tp(T2, 1)]));
        assert_eq!(a["consumer3"], set(&[tp(T1, 2)]));
    }

    #[test]
    fn two_consumers_two_topics_six_partitions() {
        let a = assign(&[(T1, 3), (T2, 3)], &[member("consumer1", &[T1, T2]), member("consumer2", &[T1, T2])]);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)]));
        assert_eq!(a["consumer2"], set(&[tp(T1, 2), tp(T2, 2)]));
    }

    #[test]
    fn two_static_consumers_two_topics_six_partitions() {
        // "consumer-a" sorts before "consumer-b", but instance ids decide.
        let members =
            [static_member("consumer-b", "instance1", &[T1, T2]), static_member("consumer-a", "instance2", &[T1, T2])];
        let a = assign(&[(T1, 3), (T2, 3)], &members);
        assert_eq!(a["consumer-b"], set(&[tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)]));
        assert_eq!(a["consumer-a"], set(&[tp(T1, 2), tp(T2, 2)]));
    }

    #[test]
    fn one_static_consumer_and_one_dynamic_consumer_two_topics_six_partitions() {
        // The static member sorts first although its member id sorts last.
        let members = [static_member("consumer-b", "instance1", &[T1, T2]), member("consumer-a", &[T1, T2])];
        let a = assign(&[(T1, 3), (T2, 3)], &members);
        assert_eq!(a["consumer-b"], set(&[tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)]));
        assert_eq!(a["consumer-a"], set(&[tp(T1, 2), tp(T2, 2)]));
    }

    #[test]
    fn static_member_range_assignment_persistent() {
        let statics = [
            static_member("consumer1", "instance1", &[T1, T2]),
            static_member("consumer2", "instance2", &[T1, T2]),
            static_member("consumer3", "instance3", &[T1, T2]),
        ];
        let mut members = statics.to_vec();
        members.push(member("consumer4", &[T1, T2]));
        let mut expected = BTreeMap::from([
            ("consumer1".to_string(), set(&[tp(T1, 0), tp(T1, 1), tp(T2, 0)])),
            ("consumer2".to_string(), set(&[tp(T1, 2), tp(T2, 1)])),
            ("consumer3".to_string(), set(&[tp(T1, 3), tp(T2, 2)])),
            ("consumer4".to_string(), set(&[tp(T1, 4), tp(T2, 3)])),
        ]);
        assert_eq!(assign(&[(T1, 5), (T2, 4)], &members), expected);

        // A new dynamic member replaces consumer4 and takes its partitions.
        members.pop();
        members.push(member("consumer5", &[T1, T2]));
        let replaced = expected.remove("consumer4").unwrap();
        expected.insert("consumer5".to_string(), replaced);
        assert_eq!(assign(&[(T1, 5), (T2, 4)], &members), expected);
    }

    #[test]
    fn static_member_range_assignment_persistent_after_member_id_changes() {
        let by_instance = |members: &[Member]| -> BTreeMap<String, BTreeSet<TopicPartition>> {
            let a = assign(&[(T1, 5), (T2, 5)], members);
            members.iter().map(|m| (m.group_instance_id.clone().unwrap(), a[&m.member_id].clone())).collect()
        };
        let before = by_instance(&[
            static_member("consumer1", "instance1", &[T1, T2]),
            static_member("consumer2", "instance2", &[T1, T2]),
            static_member("consumer3", "instance3", &[T1, T2]),
        ]);
        let expected = BTreeMap::from([
            ("instance1".to_string(), set(&[tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)])),
            ("instance2".to_string(), set(&[tp(T1, 2), tp(T1, 3), tp(T2, 2), tp(T2, 3)])),
            ("instance3".to_string(), set(&[tp(T1, 4), tp(T2, 4)])),
        ]);
        assert_eq!(before, expected);

        let after = by_instance(&[
            static_member("consumer1", "instance1", &[T1, T2]),
            static_member("consumer5", "instance2", &[T1, T2]),
            static_member("consumer4", "instance3", &[T1, T2]),
        ]);
        assert_eq!(after, before);
    }

    /// The non-rack-aware expectations of Kafka's rack tests (`verifyNonRackAwareAssignment`
    /// and the cases without broker racks): members `consumer0..`, assignments spelled out.
    fn check_spelled(partitions: &[(&str, u32)], topics: &[&[&str]], expected: &[&str]) {
        let a = assign(partitions, &numbered(topics));
        let expected: BTreeMap<String, String> =
            expected.iter().enumerate().map(|(i, e)| (format!("consumer{i}"), e.to_string())).collect();
        assert_eq!(spelled(&a), expected);
    }

    const ALL3: &[&str] = &["t1", "t2", "t3"];

    #[test]
    fn rack_aware_assignment_with_uniform_subscription_without_racks() {
        check_spelled(
            &[("t1", 6), ("t2", 7), ("t3", 2)],
            &[ALL3, ALL3, ALL3],
            &["t1-0, t1-1, t2-0, t2-1, t2-2, t3-0", "t1-2, t1-3, t2-3, t2-4, t3-1", "t1-4, t1-5, t2-5, t2-6"],
        );
    }

    #[test]
    fn rack_aware_assignment_with_non_equal_subscription_without_racks() {
        check_spelled(
            &[("t1", 6), ("t2", 7), ("t3", 2)],
            &[ALL3, ALL3, &["t1", "t3"]],
            &["t1-0, t1-1, t2-0, t2-1, t2-2, t2-3, t3-0", "t1-2, t1-3, t2-4, t2-5, t2-6, t3-1", "t1-4, t1-5"],
        );
    }

    #[test]
    fn rack_aware_assignment_with_uniform_partitions_without_racks() {
        check_spelled(
            &[("t1", 5), ("t2", 5), ("t3", 5)],
            &[ALL3, ALL3, ALL3],
            &["t1-0, t1-1, t2-0, t2-1, t3-0, t3-1", "t1-2, t1-3, t2-2, t2-3, t3-2, t3-3", "t1-4, t2-4, t3-4"],
        );
    }

    #[test]
    fn rack_aware_assignment_with_uniform_partitions_non_equal_subscription_without_racks() {
        check_spelled(
            &[("t1", 5), ("t2", 5), ("t3", 5)],
            &[ALL3, ALL3, &["t1", "t3"]],
            &["t1-0, t1-1, t2-0, t2-1, t2-2, t3-0, t3-1", "t1-2, t1-3, t2-3, t2-4, t3-2, t3-3", "t1-4, t3-4"],
        );
    }

    #[test]
    fn rack_aware_assignment_with_co_partitioning_without_racks() {
        let counts = [("t1", 6), ("t2", 6), ("t3", 2), ("t4", 2)];
        let (t12, t34): (&[&str], &[&str]) = (&["t1", "t2"], &["t3", "t4"]);
        check_spelled(
            &counts,
            &[t12, t12, t34, t34],
            &["t1-0, t1-1, t1-2, t2-0, t2-1, t2-2", "t1-3, t1-4, t1-5, t2-3, t2-4, t2-5", "t3-0, t4-0", "t3-1, t4-1"],
        );
        let all: &[&str] = &["t1", "t2", "t3", "t4"];
        check_spelled(
            &counts,
            &[all, all, all, all],
            &["t1-0, t1-1, t2-0, t2-1, t3-0, t4-0", "t1-2, t1-3, t2-2, t2-3, t3-1, t4-1", "t1-4, t2-4", "t1-5, t2-5"],
        );
    }

    #[test]
    fn co_partitioned_assignment_with_same_subscription_without_racks() {
        // t7, t8 and t9 are subscribed but do not exist.
        let topics: &[&str] = &["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];
        check_spelled(
            &[("t1", 6), ("t2", 6), ("t3", 2), ("t4", 2), ("t5", 4), ("t6", 4)],
            &[topics, topics, topics],
            &[
                "t1-0, t1-1, t2-0, t2-1, t3-0, t4-0, t5-0, t5-1, t6-0, t6-1",
                "t1-2, t1-3, t2-2, t2-3, t3-1, t4-1, t5-2, t6-2",
                "t1-4, t1-5, t2-4, t2-5, t5-3, t6-3",
            ],
        );
    }

    #[test]
    fn javadoc_example() {
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let a = assign(&[("t0", 3), ("t1", 3)], &members);
        assert_eq!(a["C0"], parse("t0-0, t0-1, t1-0, t1-1"));
        assert_eq!(a["C1"], parse("t0-2, t1-2"));
    }
}
