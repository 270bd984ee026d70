//! The sticky assignor (the default): as balanced as round robin, but members keep what they
//! own, so a rebalance moves as few partitions as it can.
//!
//! Members are taken in Kafka's member order
//! ([`kafka_member_order`](super::kafka_member_order)); every tie below is broken by it, so
//! the result depends only on the input.
//!
//! 1. **Claims.** Each member's `owned` is cut down to partitions that still exist and whose
//!    topic it still subscribes to. A partition claimed by several members (stale data from
//!    a missed rebalance) stays with the first claimant in member order only.
//! 2. **Same subscriptions** (the common case: every member with something to consume
//!    subscribes to the same existing topics). With `n` partitions and `m` such members,
//!    `n % m` members may hold `n / m + 1` partitions and the rest `n / m`; the larger quotas
//!    go to the members that claim the most, which maximises what stays put. Each member
//!    keeps its claims up to its quota (giving up its highest partitions), and the partitions
//!    left over are dealt round robin to the members still under quota. Counts then differ
//!    by at most one, and no balanced assignment moves fewer partitions.
//! 3. **Different subscriptions.** Members keep all their claims; each unclaimed partition,
//!    those with the fewest eligible members first, goes to its least-loaded eligible member.
//!    Then, while some member holds two partitions more than a member that could take one of
//!    them, the most-loaded such member hands one over (unclaimed ones first, then its
//!    highest). When no single hand-over is left, chains are tried: `a` gives a partition to
//!    `b`, which gives one of another topic to `c`, ..., ending at a member holding at least
//!    two fewer than `a`. Each step lowers the sum of squared loads, so this ends, and it
//!    ends when no such chain exists, which is the optimality condition of semi-matchings
//!    (Harvey et al.): the loads are then as even as the subscriptions allow. Members only
//!    give up claims to fix the balance, though not necessarily as few as possible.
//!
//! Both ways reach a fixed point: run again with `owned` set to its own result and the same
//! members and partitions, the assignor returns the same assignment.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{sorted_members, Assignment, Assignor, Member, TopicPartition};

/// The `sticky` assignor, Herald's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// Per member (by index in member order): a set of partitions.
type Holdings = Vec<BTreeSet<TopicPartition>>;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn assign(&self, partitions: &BTreeMap<String, u32>, members: &[Member]) -> Assignment {
        let members = sorted_members(members);
        let subscriptions: Vec<BTreeSet<&str>> = members.iter().map(|m| effective_topics(partitions, m)).collect();
        let claims = valid_claims(partitions, &members, &subscriptions);
        let active: Vec<usize> = (0..members.len()).filter(|&i| !subscriptions[i].is_empty()).collect();
        let holdings = match active.first() {
            Some(&first) if active.iter().all(|&i| subscriptions[i] == subscriptions[first]) => {
                assign_uniform(partitions, &subscriptions[first], &active, claims)
            }
            _ => assign_general(partitions, &subscriptions, claims),
        };
        members.iter().zip(holdings).map(|(m, held)| (m.member_id.clone(), held)).collect()
    }
}

/// The topics of `member`'s subscription that have partitions to assign.
fn effective_topics<'a>(partitions: &BTreeMap<String, u32>, member: &'a Member) -> BTreeSet<&'a str> {
    member.topics.iter().filter(|t| partitions.get(*t).is_some_and(|&n| n > 0)).map(String::as_str).collect()
}

/// Every partition of `topics`, in order.
fn all_partitions<'a>(
    partitions: &'a BTreeMap<String, u32>,
    topics: impl IntoIterator<Item = &'a str> + 'a,
) -> impl Iterator<Item = TopicPartition> + 'a {
    topics.into_iter().flat_map(move |t| (0..partitions[t]).map(move |p| TopicPartition::new(t, p)))
}

/// Step 1: what each member owns that it may keep; each partition claimed at most once.
fn valid_claims(partitions: &BTreeMap<String, u32>, members: &[&Member], subscriptions: &[BTreeSet<&str>]) -> Holdings {
    let mut claimed = BTreeSet::new();
    members
        .iter()
        .zip(subscriptions)
        .map(|(member, topics)| {
            member
                .owned
                .iter()
                .filter(|tp| topics.contains(tp.topic.as_str()) && tp.partition < partitions[&tp.topic])
                .filter(|tp| claimed.insert((*tp).clone()))
                .cloned()
                .collect()
        })
        .collect()
}

/// Step 2: every member in `active` subscribes to `topics`; the others get nothing (their
/// claims are already empty).
fn assign_uniform(
    partitions: &BTreeMap<String, u32>,
    topics: &BTreeSet<&str>,
    active: &[usize],
    claims: Holdings,
) -> Holdings {
    let total: usize = topics.iter().map(|t| partitions[*t] as usize).sum();
    let (base, extra) = (total / active.len(), total % active.len());
    let mut by_claims = active.to_vec();
    by_claims.sort_by_key(|&i| Reverse(claims[i].len()));
    let mut quota = vec![0; claims.len()];
    for (rank, &i) in by_claims.iter().enumerate() {
        quota[i] = base + usize::from(rank < extra);
    }

    let mut held: Holdings = claims.into_iter().zip(&quota).map(|(c, &q)| c.into_iter().take(q).collect()).collect();
    let pool: Vec<TopicPartition> =
        all_partitions(partitions, topics.iter().copied()).filter(|tp| !held.iter().any(|h| h.contains(tp))).collect();
    // The pool is exactly as large as the members' total shortfall, so `needy` outlasts it.
    let mut needy: Vec<usize> = active.iter().copied().filter(|&i| held[i].len() < quota[i]).collect();
    let mut next = 0;
    for tp in pool {
        let i = needy[next];
        held[i].insert(tp);
        if held[i].len() == quota[i] {
            needy.remove(next);
        } else {
            next += 1;
        }
        if next >= needy.len() {
            next = 0;
        }
    }
    held
}

/// Step 3: subscriptions differ.
fn assign_general(partitions: &BTreeMap<String, u32>, subscriptions: &[BTreeSet<&str>], claims: Holdings) -> Holdings {
    let mut eligible: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, topics) in subscriptions.iter().enumerate() {
        for &topic in topics {
            eligible.entry(topic).or_default().push(i);
        }
    }

    let mut held = claims.clone();
    let mut unclaimed: Vec<TopicPartition> = all_partitions(partitions, eligible.keys().copied())
        .filter(|tp| !claims.iter().any(|c| c.contains(tp)))
        .collect();
    // Stable: partition order among equally constrained partitions.
    unclaimed.sort_by_key(|tp| eligible[tp.topic.as_str()].len());
    for tp in unclaimed {
        let to = least_loaded(&eligible[tp.topic.as_str()], &held);
        held[to].insert(tp);
    }

    let active: Vec<usize> = (0..held.len()).filter(|&i| !subscriptions[i].is_empty()).collect();
    loop {
        let chain = match find_hand_over(&eligible, &active, &claims, &held) {
            Some(direct) => vec![direct],
            None => match find_chain(&eligible, &active, &held) {
                Some(chain) => chain,
                None => return held,
            },
        };
        for (from, topic, to) in chain {
            let tp = hand_over_order(&held[from], &claims[from])
                .find(|tp| tp.topic == topic)
                .cloned()
                .expect("a chain link holds a partition of its topic");
            held[from].remove(&tp);
            held[to].insert(tp);
        }
    }
}

/// The member of `candidates` (not empty) holding the fewest partitions; the first on ties.
fn least_loaded(candidates: &[usize], held: &Holdings) -> usize {
    *candidates.iter().min_by_key(|&&i| (held[i].len(), i)).expect("a subscribed topic has subscribers")
}

/// The order in which a member gives partitions up: those it did not claim (it got them in
/// this very assignment) first, then its highest.
fn hand_over_order<'a>(
    held: &'a BTreeSet<TopicPartition>,
    claims: &'a BTreeSet<TopicPartition>,
) -> impl Iterator<Item = &'a TopicPartition> {
    let fresh = held.iter().rev().filter(|tp| !claims.contains(*tp));
    fresh.chain(held.iter().rev().filter(|tp| claims.contains(*tp)))
}

/// Members that hold at least two more partitions than the least-loaded member, most
/// loaded first: the only ones a hand-over can start from.
fn donors(active: &[usize], held: &Holdings) -> Vec<usize> {
    let Some(min_load) = active.iter().map(|&i| held[i].len()).min() else { return Vec::new() };
    let mut donors: Vec<usize> = active.iter().copied().filter(|&i| held[i].len() > min_load + 1).collect();
    donors.sort_by_key(|&i| Reverse(held[i].len()));
    donors
}

/// A link of a chain: `from` hands one partition of `topic` to `to`.
type Link = (usize, String, usize);

/// A partition the most-loaded possible donor can hand straight to its least-loaded eligible
/// member holding at least two fewer, in [`hand_over_order`].
fn find_hand_over(
    eligible: &BTreeMap<&str, Vec<usize>>,
    active: &[usize],
    claims: &Holdings,
    held: &Holdings,
) -> Option<Link> {
    donors(active, held).into_iter().find_map(|from| {
        hand_over_order(&held[from], &claims[from]).find_map(|tp| {
            let to = least_loaded(&eligible[tp.topic.as_str()], held);
            (held[from].len() > held[to].len() + 1).then(|| (from, tp.topic.clone(), to))
        })
    })
}

/// A shortest chain of hand-overs from a donor to a member holding at least two fewer,
/// through members whose loads it leaves unchanged (a cost-reducing path, in the terms of
/// semi-matchings): each link hands a partition of a topic the next member subscribes to.
/// When none exists from any member, the loads are optimally balanced.
fn find_chain(eligible: &BTreeMap<&str, Vec<usize>>, active: &[usize], held: &Holdings) -> Option<Vec<Link>> {
    donors(active, held).into_iter().find_map(|donor| {
        let mut parent: Vec<Option<(usize, &str)>> = vec![None; held.len()];
        let mut seen = vec![false; held.len()];
        seen[donor] = true;
        let mut queue = VecDeque::from([donor]);
        while let Some(at) = queue.pop_front() {
            let topics: BTreeSet<&str> = held[at].iter().map(|tp| tp.topic.as_str()).collect();
            for (topic, next) in topics.into_iter().flat_map(|t| eligible[t].iter().map(move |&n| (t, n))) {
                if seen[next] {
                    continue;
                }
                seen[next] = true;
                parent[next] = Some((at, topic));
                if held[next].len() + 2 <= held[donor].len() {
                    let mut chain = Vec::new();
                    let mut to = next;
                    while let Some((from, topic)) = parent[to] {
                        chain.push((from, topic.to_string(), to));
                        to = from;
                    }
                    chain.reverse();
                    return Some(chain);
                }
                queue.push_back(next);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn assign(partitions: &[(&str, u32)], members: &[Member]) -> Assignment {
        StickyAssignor.assign(&counts(partitions), members)
    }

    /// `members` owning what `previous` gave them.
    fn owning_previous(members: &[Member], previous: &Assignment) -> Vec<Member> {
        members
            .iter()
            .map(|m| {
                let owned: Vec<_> = previous.get(&m.member_id).into_iter().flatten().cloned().collect();
                owning(m.clone(), &owned)
            })
            .collect()
    }

    const ALL4: &[&str] = &["t0", "t1", "t2", "t3"];

    #[test]
    fn first_assignment_deals_round_robin() {
        // Kafka's StickyAssignor javadoc example: the first assignment equals round robin.
        let members = [member("C0", ALL4), member("C1", ALL4), member("C2", ALL4)];
        let a = assign(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)], &members);
        assert_eq!(a["C0"], parse("t0-0, t1-1, t3-0"));
        assert_eq!(a["C1"], parse("t0-1, t2-0, t3-1"));
        assert_eq!(a["C2"], parse("t1-0, t2-1"));
    }

    #[test]
    fn a_leaving_member_only_moves_its_own_partitions() {
        let counts = [("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)];
        let three = [member("C0", ALL4), member("C1", ALL4), member("C2", ALL4)];
        let before = assign(&counts, &three);
        let two = owning_previous(&[member("C0", ALL4), member("C2", ALL4)], &before);
        let after = assign(&counts, &two);
        assert_eq!(after["C0"], parse("t0-0, t0-1, t1-1, t3-0"));
        assert_eq!(after["C2"], parse("t1-0, t2-0, t2-1, t3-1"));
    }

    #[test]
    fn a_joining_member_takes_only_what_it_must() {
        let one = [owning(member("c1", &["t"]), &[tp("t", 0), tp("t", 1), tp("t", 2)])];
        assert_eq!(assign(&[("t", 3)], &one)["c1"], parse("t-0, t-1, t-2"));

        let two = [one[0].clone(), member("c2", &["t"])];
        let a = assign(&[("t", 3)], &two);
        assert_eq!(a["c1"], parse("t-0, t-1"));
        assert_eq!(a["c2"], parse("t-2"));

        // c1 leaves: c2 keeps t-2 and takes the rest.
        let a = assign(&[("t", 3)], &[owning(member("c2", &["t"]), &[tp("t", 2)])]);
        assert_eq!(a["c2"], parse("t-0, t-1, t-2"));
    }

    #[test]
    fn the_larger_quotas_go_to_the_members_owning_most() {
        // 7 partitions over 3 members: quotas 3, 2, 2. c3 owns most, so it keeps 3.
        let members = [
            owning(member("c1", &["t"]), &[tp("t", 0)]),
            owning(member("c2", &["t"]), &[tp("t", 1), tp("t", 2)]),
            owning(member("c3", &["t"]), &[tp("t", 3), tp("t", 4), tp("t", 5), tp("t", 6)]),
        ];
        let a = assign(&[("t", 7)], &members);
        assert_eq!(a["c1"], parse("t-0, t-6"));
        assert_eq!(a["c2"], parse("t-1, t-2"));
        assert_eq!(a["c3"], parse("t-3, t-4, t-5"));
    }

    #[test]
    fn different_subscriptions_follow_kafkas_example() {
        // Kafka's StickyAssignor javadoc: C0 {t0}, C1 {t0, t1}, C2 {t0, t1, t2}.
        let counts = [("t0", 1), ("t1", 2), ("t2", 3)];
        let members = [member("C0", &["t0"]), member("C1", &["t0", "t1"]), member("C2", &["t0", "t1", "t2"])];
        let a = assign(&counts, &members);
        assert_eq!(a["C0"], parse("t0-0"));
        assert_eq!(a["C1"], parse("t1-0, t1-1"));
        assert_eq!(a["C2"], parse("t2-0, t2-1, t2-2"));

        // C0 leaves: only t0-0 moves, to C1.
        let a = assign(&counts, &owning_previous(&members[1..], &a));
        assert_eq!(a["C1"], parse("t0-0, t1-0, t1-1"));
        assert_eq!(a["C2"], parse("t2-0, t2-1, t2-2"));
    }

    #[test]
    fn different_subscriptions_rebalance_what_they_share() {
        // c1 owns everything; c2 joins subscribed to t0 only and takes three of t0.
        let everything: Vec<_> = parse("t0-0, t0-1, t0-2, t0-3, t1-0, t1-1").into_iter().collect();
        let members = [owning(member("c1", &["t0", "t1"]), &everything), member("c2", &["t0"])];
        let a = assign(&[("t0", 4), ("t1", 2)], &members);
        assert_eq!(a["c1"], parse("t0-0, t1-0, t1-1"));
        assert_eq!(a["c2"], parse("t0-1, t0-2, t0-3"));
    }

    #[test]
    fn a_chain_of_hand_overs_balances_what_no_single_one_can() {
        // a can only give t1 to b, which is not lighter; b gives t2 on to c instead.
        let members = [
            owning(member("a", &["t1"]), &parse("t1-0, t1-1, t1-2").into_iter().collect::<Vec<_>>()),
            owning(member("b", &["t1", "t2"]), &[tp("t2", 0), tp("t2", 1)]),
            owning(member("c", &["t2"]), &[tp("t2", 2)]),
        ];
        let a = assign(&[("t1", 3), ("t2", 3)], &members);
        assert_eq!(a["a"], parse("t1-0, t1-1"));
        assert_eq!(a["b"], parse("t1-2, t2-0"));
        assert_eq!(a["c"], parse("t2-1, t2-2"));
    }

    #[test]
    fn stale_claims_are_dropped() {
        let members = [
            // t0-5 no longer exists, "gone" was deleted, t1 is no longer subscribed.
            owning(member("c1", &["t0"]), &[tp("t0", 0), tp("t0", 5), tp("gone", 0), tp("t1", 0)]),
            // c2 also claims t0-0: c1 comes first in member order and keeps it.
            owning(member("c2", &["t0", "t1"]), &[tp("t0", 0), tp("t0", 1), tp("t0", 1)]),
        ];
        let a = assign(&[("t0", 2), ("t1", 2)], &members);
        // Only c2 may take t1, so c1 takes t0-1 from it to balance.
        assert_eq!(a["c1"], parse("t0-0, t0-1"));
        assert_eq!(a["c2"], parse("t1-0, t1-1"));
    }

    #[test]
    fn members_without_partitions_to_consume_get_none() {
        let members = [member("a", &["t"]), member("b", &["missing"]), member("c", &[]), member("d", &["t"])];
        let a = assign(&[("t", 4), ("missing", 0)], &members);
        assert_eq!(a["a"], parse("t-0, t-2"));
        assert_eq!(a["b"], parse(""));
        assert_eq!(a["c"], parse(""));
        assert_eq!(a["d"], parse("t-1, t-3"));
    }

    #[test]
    fn no_members_no_assignment() {
        assert!(assign(&[("t", 4)], &[]).is_empty());
    }

    #[test]
    fn static_members_keep_their_partitions_under_a_new_member_id() {
        let members = [static_member("m1", "i1", &["t"]), static_member("m2", "i2", &["t"])];
        let before = assign(&[("t", 4)], &members);
        // i1 restarts as m3 and reports what m1 owned.
        let members = [
            owning(static_member("m3", "i1", &["t"]), &before["m1"].iter().cloned().collect::<Vec<_>>()),
            owning(static_member("m2", "i2", &["t"]), &before["m2"].iter().cloned().collect::<Vec<_>>()),
        ];
        let after = assign(&[("t", 4)], &members);
        assert_eq!(after["m3"], before["m1"]);
        assert_eq!(after["m2"], before["m2"]);
    }
}
