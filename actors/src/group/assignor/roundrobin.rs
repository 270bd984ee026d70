//! The round-robin assignor: Kafka's `RoundRobinAssignor`.
//!
//! All partitions of all subscribed topics are laid out in one list, topics in Java's
//! string order and partitions in numeric order, and dealt to the members in Kafka's
//! member order ([`kafka_member_order`](super::kafka_member_order)) as from a circular
//! list: each partition goes to the next member in the circle that subscribes to its
//! topic, skipping the others. With identical subscriptions counts differ by at most one;
//! with differing subscriptions the result can be unbalanced, exactly as in Kafka. For the
//! same members, subscriptions and partition counts the result is exactly Kafka's.
//! Ownership is ignored.

use std::collections::BTreeMap;

use super::{empty_assignment, sorted_members, subscribed_topics, Assignment, Assignor, Member, TopicPartition};

/// Kafka's `roundrobin` assignor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(&self, partitions: &BTreeMap<String, u32>, members: &[Member]) -> Assignment {
        let mut assignment = empty_assignment(members);
        let circle = sorted_members(members);
        let mut next = 0;
        for topic in subscribed_topics(members) {
            let Some(&count) = partitions.get(topic) else { continue };
            for partition in 0..count {
                // Terminates: the topic comes from some member's subscription.
                while !circle[next].topics.contains(topic) {
                    next = (next + 1) % circle.len();
                }
                let owner = assignment.entry(circle[next].member_id.clone()).or_default();
                owner.insert(TopicPartition::new(topic, partition));
                next = (next + 1) % circle.len();
            }
        }
        assignment
    }
}

#[cfg(test)]
mod tests {
    //! Kafka's `RoundRobinAssignorTest`, ported case by case.

    use std::collections::BTreeSet;

    use super::super::testkit::*;
    use super::*;

    const TOPIC: &str = "topic";
    const T1: &str = "topic1";
    const T2: &str = "topic2";

    fn assign(partitions: &[(&str, u32)], members: &[Member]) -> Assignment {
        RoundRobinAssignor.assign(&counts(partitions), members)
    }

    #[test]
    fn one_consumer_no_topic() {
        let a = assign(&[], &[member("consumer", &[])]);
        assert_eq!(a, BTreeMap::from([("consumer".to_string(), BTreeSet::new())]));
    }

    #[test]
    fn one_consumer_nonexistent_topic() {
        let a = assign(&[], &[member("consumer", &[TOPIC])]);
        assert_eq!(a, BTreeMap::from([("consumer".to_string(), BTreeSet::new())]));
    }

    #[test]
    fn one_consumer_one_topic() {
        let a = assign(&[(TOPIC, 3)], &[member("consumer", &[TOPIC])]);
        assert_eq!(a["consumer"], set(&[tp(TOPIC, 0), tp(TOPIC, 1), tp(TOPIC, 2)]));
    }

    #[test]
    fn only_assigns_partitions_from_subscribed_topics() {
        let a = assign(&[(TOPIC, 3), ("other", 3)], &[member("consumer", &[TOPIC])]);
        assert_eq!(a["consumer"], set(&[tp(TOPIC, 0), tp(TOPIC, 1), tp(TOPIC, 2)]));
    }

    #[test]
    fn one_consumer_multiple_topics() {
        let a = assign(&[(T1, 1), (T2, 2)], &[member("consumer", &[T1, T2])]);
        assert_eq!(a["consumer"], set(&[tp(T1, 0), tp(T2, 0), tp(T2, 1)]));
    }

    #[test]
    fn two_consumers_one_topic_one_partition() {
        let a = assign(&[(TOPIC, 1)], &[member("consumer1", &[TOPIC]), member("consumer2", &[TOPIC])]);
        assert_eq!(a["consumer1"], set(&[tp(TOPIC, 0)]));
        assert_eq!(a["consumer2"], set(&[]));
    }

    #[test]
    fn two_consumers_one_topic_two_partitions() {
        let a = assign(&[(TOPIC, 2)], &[member("consumer1", &[TOPIC]), member("consumer2", &[TOPIC])]);
        assert_eq!(a["consumer1"], set(&[tp(TOPIC, 0)]));
        assert_eq!(a["consumer2"], set(&[tp(TOPIC, 1)]));
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
    fn two_dynamic_consumers_two_topics_six_partitions() {
        let a = assign(&[(T1, 3), (T2, 3)], &[member("consumer1", &[T1, T2]), member("consumer2", &[T1, T2])]);
        assert_eq!(a["consumer1"], set(&[tp(T1, 0), tp(T1, 2), tp(T2, 1)]));
        assert_eq!(a["consumer2"], set(&[tp(T1, 1), tp(T2, 0), tp(T2, 2)]));
    }

    #[test]
    fn two_static_consumers_two_topics_six_partitions() {
        // "consumer-a" sorts before "consumer-b", but instance ids decide.
        let members =
            [static_member("consumer-b", "instance1", &[T1, T2]), static_member("consumer-a", "instance2", &[T1, T2])];
        let a = assign(&[(T1, 3), (T2, 3)], &members);
        assert_eq!(a["consumer-b"], set(&[tp(T1, 0), tp(T1, 2), tp(T2, 1)]));
        assert_eq!(a["consumer-a"], set(&[tp(T1, 1), tp(T2, 0), tp(T2, 2)]));
    }

    #[test]
    fn one_static_consumer_and_one_dynamic_consumer_two_topics_six_partitions() {
        // The static member sorts first although its member id sorts last.
        let members = [static_member("consumer-b", "instance1", &[T1, T2]), member("consumer-a", &[T1, T2])];
        let a = assign(&[(T1, 3), (T2, 3)], &members);
        assert_eq!(a["consumer-b"], set(&[tp(T1, 0), tp(T1, 2), tp(T2, 1)]));
        assert_eq!(a["consumer-a"], set(&[tp(T1, 1), tp(T2, 0), tp(T2, 2)]));
    }

    #[test]
    fn static_member_assignment_persistent() {
        let mut members = vec![
            static_member("consumer1", "instance1", &[T1, T2]),
            static_member("consumer2", "instance2", &[T1, T2]),
            static_member("consumer3", "instance3", &[T1, T2]),
            member("consumer4", &[T1, T2]),
        ];
        let mut expected = BTreeMap::from([
            ("consumer1".to_string(), set(&[tp(T1, 0), tp(T2, 1)])),
            ("consumer2".to_string(), set(&[tp(T1, 1), tp(T2, 2)])),
            ("consumer3".to_string(), set(&[tp(T1, 2)])),
            ("consumer4".to_string(), set(&[tp(T2, 0)])),
        ]);
        assert_eq!(assign(&[(T1, 3), (T2, 3)], &members), expected);

        // A new dynamic member replaces consumer4 and takes its partitions.
        members.pop();
        members.push(member("consumer5", &[T1, T2]));
        expected.remove("consumer4");
        expected.insert("consumer5".to_string(), set(&[tp(T2, 0)]));
        assert_eq!(assign(&[(T1, 3), (T2, 3)], &members), expected);
    }

    #[test]
    fn static_member_assignment_persistent_after_member_id_changes() {
        // Instance `instanceN` (N from 1) gets partition N-1 of both topics, whatever its member id.
        let check = |ids: [&str; 3]| -> BTreeMap<String, BTreeSet<TopicPartition>> {
            let members: Vec<Member> =
                (0u32..).zip(ids).map(|(i, id)| static_member(id, &format!("instance{}", i + 1), &[T1, T2])).collect();
            let a = assign(&[(T1, 3), (T2, 3)], &members);
            let by_instance: BTreeMap<_, _> =
                members.iter().map(|m| (m.group_instance_id.clone().unwrap(), a[&m.member_id].clone())).collect();
            for (i, instance) in (0u32..).zip(by_instance.keys()) {
                assert_eq!(by_instance[instance], set(&[tp(T1, i), tp(T2, i)]));
            }
            by_instance
        };
        let before = check(["consumer1", "consumer2", "consumer3"]);
        let after = check(["consumer4", "consumer5", "consumer1"]);
        assert_eq!(before, after);
    }

    #[test]
    fn javadoc_examples() {
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let a = assign(&[("t0", 3), ("t1", 3)], &members);
        assert_eq!(a["C0"], parse("t0-0, t0-2, t1-1"));
        assert_eq!(a["C1"], parse("t0-1, t1-0, t1-2"));

        let members = [member("C0", &["t0"]), member("C1", &["t0", "t1"]), member("C2", &["t0", "t1", "t2"])];
        let a = assign(&[("t0", 1), ("t1", 2), ("t2", 3)], &members);
        assert_eq!(a["C0"], parse("t0-0"));
        assert_eq!(a["C1"], parse("t1-0"));
        assert_eq!(a["C2"], parse("t1-1, t2-0, t2-1, t2-2"));
    }
}
