"""Consumer groups against a real broker: membership by hand on raw Clients
(join, heartbeat, leave, session timeout, errors), the group administration
operations, and GroupConsumer (pub/sub, queue, commit and resume, static
membership, losing the membership)."""

import threading
import time
from typing import Callable, Dict, List, Set, Tuple

import pytest

from herald_client import Client, GroupAssignment, GroupConsumer, HeraldError

TP = Tuple[str, int]
# GroupConsumers in these tests heartbeat every 500 ms, so close() (which
# waits for the outstanding heartbeat) takes at most that long.
SESSION_MS = 1500


def error_code(call, *args, **kwargs) -> int:
    """Runs a client call that must fail and returns its error code."""
    with pytest.raises(HeraldError) as info:
        call(*args, **kwargs)
    return info.value.code


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def connect(broker, client_id: str = "herald-python-tests") -> Client:
    return Client(broker.host, broker.port, client_id=client_id, timeout=10.0)


def consumer(broker, group_id: str, topics, **kwargs) -> GroupConsumer:
    kwargs.setdefault("session_timeout_ms", SESSION_MS)
    return GroupConsumer(broker.host, broker.port, group_id, topics, **kwargs)


def produce_numbered(client: Client, topic: str, partitions: int, per_partition: int,
                     start: int = 0) -> Set[bytes]:
    """Produces ``per_partition`` records to each partition; returns their values."""
    values = set()
    for p in range(partitions):
        batch = [f"{topic}-{p}-{i}".encode() for i in range(start, start + per_partition)]
        client.produce(topic, batch, partition=p)
        values.update(batch)
    return values


def poll_values(consumers: List[GroupConsumer], until: Callable[[Dict[int, List[bytes]]], bool],
                timeout: float = 15.0) -> Dict[int, List[bytes]]:
    """Polls the consumers in turn until ``until(values by consumer index)``."""
    got: Dict[int, List[bytes]] = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; consumed so far: { {i: len(v) for i, v in got.items()} }")
        for i, c in enumerate(consumers):
            got[i].extend(record.value for _topic, _partition, record in c.poll(50))
    return got


def owners(client: Client, group_id: str) -> Dict[TP, str]:
    """Partition -> member id, from describe_group's member assignments."""
    result: Dict[TP, str] = {}
    for member in client.describe_group(group_id)["members"]:
        for entry in member["assignment"]:
            for p in entry["partitions"]:
                tp = (entry["topic"], p)
                assert tp not in result, f"{tp} is assigned to two members"
                result[tp] = member["member_id"]
    return result


class HandMember:
    """A group member driven by hand over its own raw Client."""

    def __init__(self, broker, group_id: str, topics, **join_kwargs):
        self.client = connect(broker, client_id=join_kwargs.pop("client_id", "hand"))
        self.group_id = group_id
        self.answer: GroupAssignment = self.client.join_group(group_id, topics, **join_kwargs)
        self.member_id = self.answer.member_id
        self.owned: Set[TP] = set()  # what it reported consuming
        self.generation_id = 0       # of the assignment it applied

    def heartbeat(self, max_wait_ms: int = 0) -> GroupAssignment:
        """Applies the last answer (at once: nothing to commit) and reports it."""
        self.owned, self.generation_id = set(self.answer.assignment), self.answer.generation_id
        self.answer = self.client.heartbeat(self.group_id, self.member_id, self.generation_id,
                                            self.owned, max_wait_ms=max_wait_ms)
        return self.answer

    def holds(self) -> Set[TP]:
        return self.owned | set(self.answer.assignment)


def assert_exclusive(members: List[HandMember]) -> None:
    """No partition is held (reported owned, or given) by two members."""
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            assert not a.holds() & b.holds(), f"{a.member_id} and {b.member_id} share {a.holds() & b.holds()}"


def settle(admin: Client, group_id: str, members: List[HandMember], rounds: int = 20) -> None:
    """Heartbeats every member in turn until the group is Stable."""
    for _ in range(rounds):
        for m in members:
            m.heartbeat()
            assert_exclusive(members)
        if admin.describe_group(group_id)["state"] == "Stable":
            return
    pytest.fail(f"group not Stable after {rounds} rounds: {admin.describe_group(group_id)}")


# ---------------------------------------------------------------------------
# Membership by hand
# ---------------------------------------------------------------------------


def test_three_members_split_six_partitions_by_hand(broker, client):
    client.create_topic("jobs", 6)
    members: List[HandMember] = []
    for name in ("m1", "m2", "m3"):
        # Each joins after the previous ones acknowledged their partitions.
        members.append(HandMember(broker, "workers", ["jobs"], client_id=name))
        settle(client, "workers", members)

    everything = {("jobs", p) for p in range(6)}
    for m in members:
        assert len(m.owned) == 2 and m.owned == set(m.answer.assignment)
    assert set().union(*(m.owned for m in members)) == everything

    description = client.describe_group("workers")
    assert description["state"] == "Stable"
    assert description["assignor"] == "sticky"
    assert sorted(m["client_id"] for m in description["members"]) == ["m1", "m2", "m3"]
    assert owners(client, "workers") == {tp: m.member_id for m in members for tp in m.owned}
    rows = {(r["topic"], r["partition"]): r["member_id"] for r in description["offsets"]}
    assert rows == {tp: m.member_id for m in members for tp in m.owned}
    for m in members:
        listed = next(d for d in description["members"] if d["member_id"] == m.member_id)
        assert listed["generation_id"] == m.generation_id
        assert listed["topics"] == ["jobs"]
        assert listed["group_instance_id"] is None

    # One leaves: its two partitions go to the others at once, one each.
    leaving = members.pop(1)
    leaving.client.leave_group("workers", leaving.member_id)
    settle(client, "workers", members)
    assert sorted(len(m.owned) for m in members) == [3, 3]
    assert set().union(*(m.owned for m in members)) == everything
    assert [g["members"] for g in client.list_groups()] == [2]
    for m in members + [leaving]:
        m.client.close()


def test_revoked_partition_moves_only_after_release(broker, client):
    client.create_topic("t", 4)
    a = HandMember(broker, "g", ["t"])
    a.heartbeat()
    assert len(a.owned) == 4
    b = HandMember(broker, "g", ["t"])
    assert b.answer.assignment == []  # a still owns everything
    a.heartbeat()                      # a learns it must give up two
    assert len(a.answer.assignment) == 2 and len(a.owned) == 4
    assert b.heartbeat().assignment == []  # not released yet
    assert client.describe_group("g")["state"] == "Reconciling"
    a.heartbeat()                      # a reports the release
    assert len(b.heartbeat().assignment) == 2
    assert_exclusive([a, b])
    settle(client, "g", [a, b])


def test_held_heartbeat_is_answered_as_soon_as_the_assignment_changes(broker, client):
    client.create_topic("t", 2)
    a = HandMember(broker, "g", ["t"], session_timeout_ms=10000)
    a.heartbeat()
    answers = []
    started = time.monotonic()
    waiter = threading.Thread(target=lambda: answers.append(a.heartbeat(max_wait_ms=4000)))
    waiter.start()
    time.sleep(0.2)  # let the heartbeat be held
    b = HandMember(broker, "g", ["t"])
    waiter.join(5)
    assert answers and time.monotonic() - started < 2.0
    assert len(answers[0].assignment) == 1 and answers[0].generation_id > a.generation_id
    b.client.close()
    a.client.close()


def test_held_heartbeat_waits_when_nothing_changes(broker, client):
    client.create_topic("t", 1)
    a = HandMember(broker, "g", ["t"], session_timeout_ms=1000)
    assert a.answer.heartbeat_interval_ms == 333 and a.answer.session_timeout_ms == 1000
    a.heartbeat()
    started = time.monotonic()
    answer = a.heartbeat(max_wait_ms=10000)  # capped at half the session timeout
    assert 0.4 <= time.monotonic() - started < 2.0
    assert answer.assignment == [("t", 0)] and answer.generation_id == a.generation_id


def test_session_timeout_removes_a_silent_member(broker, client):
    client.create_topic("t", 2)
    quiet = HandMember(broker, "g", ["t"], session_timeout_ms=1000)
    quiet.heartbeat()
    live = HandMember(broker, "g", ["t"], session_timeout_ms=10000)
    live.heartbeat()
    assert live.answer.assignment == []
    # quiet never heartbeats again: after 1 s it is removed and live gets all.
    started = time.monotonic()
    while len(live.answer.assignment) < 2:
        live.heartbeat(max_wait_ms=1000)
        assert time.monotonic() - started < 5
    assert time.monotonic() - started >= 0.5
    assert [m["member_id"] for m in client.describe_group("g")["members"]] == [live.member_id]
    assert error_code(quiet.heartbeat) == 25
    # Its commits are refused, and it can join again on the same connection.
    assert error_code(quiet.client.commit_offsets, "g", {("t", 0): 1}, member_id=quiet.member_id,
                      generation_id=quiet.generation_id) == 25
    rejoined = quiet.client.join_group("g", ["t"], session_timeout_ms=1000)
    assert rejoined.member_id != quiet.member_id


def test_timed_out_member_gets_unknown_member_id(broker, client):
    client.create_topic("t", 1)
    quiet = HandMember(broker, "g", ["t"], session_timeout_ms=200)
    wait_until(lambda: client.describe_group("g")["members"] == [], what="the session timeout")
    assert error_code(quiet.heartbeat) == 25
    assert error_code(quiet.client.leave_group, "g", quiet.member_id) == 25


def test_closing_the_connection_removes_the_member_at_once(broker, client):
    client.create_topic("t", 2)
    a = HandMember(broker, "g", ["t"])
    a.heartbeat()
    b = HandMember(broker, "g", ["t"])
    a.client.close()
    started = time.monotonic()
    while len(b.answer.assignment) < 2:
        b.heartbeat(max_wait_ms=3000)
    assert time.monotonic() - started < 2.0


def test_membership_errors(broker, client):
    client.create_topic("t", 1)
    a = HandMember(broker, "g", ["t"])
    other = connect(broker)
    # Heartbeats and the leave must come over the connection that joined.
    assert error_code(other.heartbeat, "g", a.member_id, 0, []) == 25
    assert error_code(other.leave_group, "g", a.member_id) == 25
    assert error_code(a.client.heartbeat, "g", "nobody", 0, []) == 25
    # A generation the member was never given.
    assert error_code(a.client.heartbeat, "g", a.member_id, a.answer.generation_id + 5, []) == 22
    assert error_code(other.join_group, "g", ["t"], session_timeout_ms=50) == 26
    assert error_code(other.join_group, "g", ["t"], session_timeout_ms=300001) == 26
    assert error_code(other.join_group, "g", ["t"], assignor="fastest") == 112
    assert error_code(other.join_group, "", ["t"]) == 24
    assert error_code(other.join_group, "x" * 256, ["t"]) == 24
    assert error_code(other.join_group, "g", []) == 42
    # After the leave the member is unknown everywhere.
    a.client.leave_group("g", a.member_id)
    assert error_code(a.client.heartbeat, "g", a.member_id, 0, []) == 25
    assert error_code(a.client.leave_group, "g", a.member_id) == 25


def test_heartbeat_changes_the_subscription(broker, client):
    client.create_topic("a", 2)
    client.create_topic("b", 1)
    m = HandMember(broker, "g", ["a"])
    m.heartbeat()
    assert m.owned == {("a", 0), ("a", 1)}
    answer = m.client.heartbeat("g", m.member_id, m.generation_id, m.owned, topics=["a", "b"])
    wait_until(lambda: set(m.heartbeat().assignment) == {("a", 0), ("a", 1), ("b", 0)},
               what="the new subscription")
    assert answer.generation_id <= m.answer.generation_id
    [member] = client.describe_group("g")["members"]
    assert member["topics"] == ["a", "b"]


def test_assignor_is_chosen_by_the_first_member(broker, client):
    client.create_topic("a", 3)
    client.create_topic("b", 3)
    first = HandMember(broker, "rr", ["a", "b"], assignor="roundrobin")
    first.heartbeat()
    second = HandMember(broker, "rr", ["a", "b"], assignor="range")
    settle(client, "rr", [first, second])
    assert client.describe_group("rr")["assignor"] == "roundrobin"
    # RoundRobinAssignor over a0 a1 a2 b0 b1 b2 for two members alternates.
    by_member = sorted([sorted(first.owned), sorted(second.owned)])
    assert by_member == [[("a", 0), ("a", 2), ("b", 1)], [("a", 1), ("b", 0), ("b", 2)]]


def test_unacknowledged_partition_is_not_given_to_a_second_member(broker, client):
    """A partition in an answer is the member's at once ("may consume now"),
    even before the member reports owning it: revoked, it moves only after
    the member reports the release."""
    client.create_topic("t", 6)
    a = HandMember(broker, "g", ["t"])
    # a was told it may consume everything; before its next heartbeat b joins.
    assert len(a.answer.assignment) == 6
    b = HandMember(broker, "g", ["t"])
    assert b.answer.assignment == []
    assert_exclusive([a, b])
    settle(client, "g", [a, b])

    # The same for partitions added by a heartbeat answer.
    c = HandMember(broker, "g", ["t"])
    a.heartbeat()
    b.heartbeat()  # a and b learn they must each give one up...
    a.heartbeat()
    b.heartbeat()  # ...and report the release
    given = c.client.heartbeat("g", c.member_id, 0, [])
    assert len(given.assignment) == 2
    c.answer = given  # c may consume them now, and has not reported them yet
    d = HandMember(broker, "g", ["t"])
    assert not set(d.answer.assignment) & set(given.assignment)
    assert_exclusive([a, b, c, d])
    settle(client, "g", [a, b, c, d])
    assert sorted(len(m.owned) for m in (a, b, c, d)) == [1, 1, 2, 2]


# ---------------------------------------------------------------------------
# Offsets and group administration
# ---------------------------------------------------------------------------


def test_commit_and_fetch_offsets_as_a_member(broker, client):
    client.create_topic("t", 2)
    a = HandMember(broker, "g", ["t"])
    a.heartbeat()
    a.client.commit_offsets("g", {("t", 0): 5, ("t", 1): (7, "meta")},
                            member_id=a.member_id, generation_id=a.generation_id)
    assert client.fetch_offsets("g") == {("t", 0): 5, ("t", 1): 7}
    assert client.fetch_offsets("g", [("t", 1), ("t", 9), ("u", 0)]) == {
        ("t", 1): 7, ("t", 9): -1, ("u", 0): -1}
    assert client.fetch_offsets("g", [("t", 1)], with_metadata=True) == {("t", 1): (7, "meta")}
    assert client.fetch_offsets("g", [("t", 0)], member_id=a.member_id,
                                generation_id=a.generation_id) == {("t", 0): 5}
    assert error_code(client.fetch_offsets, "g", member_id="nobody", generation_id=0) == 25
    assert client.fetch_offsets("no-such-group", [("t", 0)]) == {("t", 0): -1}
    assert client.fetch_offsets("no-such-group") == {}

    # Per-partition errors raise.
    assert error_code(a.client.commit_offsets, "g", {("t", 0): -1},
                      member_id=a.member_id, generation_id=a.generation_id) == 42
    assert error_code(a.client.commit_offsets, "g", {("t", 0): (1, "x" * 4097)},
                      member_id=a.member_id, generation_id=a.generation_id) == 12
    assert error_code(a.client.commit_offsets, "g", {("t", 0): 1},
                      member_id=a.member_id, generation_id=a.generation_id + 1) == 22
    # While the group has members, a commit must name one.
    assert error_code(client.commit_offsets, "g", {("t", 0): 1}) == 25
    assert client.fetch_offsets("g") == {("t", 0): 5, ("t", 1): 7}


def test_commit_for_a_partition_not_yet_given_is_partition_not_owned(broker, client):
    client.create_topic("t", 2)
    a = HandMember(broker, "g", ["t"])
    a.heartbeat()
    b = HandMember(broker, "g", ["t"])
    a.heartbeat()  # a is asked to give one up but still owns both
    wanted = sorted({("t", 0), ("t", 1)} - set(a.answer.assignment))
    assert error_code(b.client.commit_offsets, "g", {wanted[0]: 1},
                      member_id=b.member_id, generation_id=b.answer.generation_id) == 1004
    # a may still commit the partition it is releasing.
    a.client.commit_offsets("g", {wanted[0]: 3}, member_id=a.member_id,
                            generation_id=a.answer.generation_id)


def test_commit_by_a_member_that_left_gets_unknown_member(broker, client):
    client.create_topic("t", 1)
    a = HandMember(broker, "g", ["t"])
    a.heartbeat()
    a.client.commit_offsets("g", {("t", 0): 1}, member_id=a.member_id, generation_id=a.generation_id)
    a.client.leave_group("g", a.member_id)
    assert error_code(a.client.commit_offsets, "g", {("t", 0): 2},
                      member_id=a.member_id, generation_id=a.generation_id) == 25
    # The group is empty now: a commit without a member is accepted.
    client.commit_offsets("g", {("t", 0): 3})
    assert client.fetch_offsets("g") == {("t", 0): 3}


def test_list_groups(broker, client):
    assert client.list_groups() == []
    client.create_topic("t", 2)
    b = HandMember(broker, "beta", ["t"], assignor="range")
    b.heartbeat()
    client.commit_offsets("alpha", {("t", 0): 1})  # an empty group with offsets
    groups = client.list_groups()
    assert [g["group_id"] for g in groups] == ["alpha", "beta"]
    alpha, beta = groups
    assert (alpha["state"], alpha["members"]) == ("Empty", 0)
    assert (beta["state"], beta["members"], beta["assignor"]) == ("Stable", 1, "range")


def test_describe_group_reports_members_and_lag(broker, client):
    client.create_topic("t", 3)
    produce_numbered(client, "t", 3, 10)
    a = HandMember(broker, "g", ["t"], client_id="describer")
    a.heartbeat()
    a.client.commit_offsets("g", {("t", 0): 4, ("t", 1): 10},
                            member_id=a.member_id, generation_id=a.generation_id)
    d = client.describe_group("g")
    assert d["group_id"] == "g" and d["state"] == "Stable" and d["generation_id"] >= 1
    [member] = d["members"]
    assert member["member_id"] == a.member_id and member["client_id"] == "describer"
    assert member["host"] == "127.0.0.1"
    assert member["assignment"] == [{"topic": "t", "partitions": [0, 1, 2]}]
    rows = {r["partition"]: r for r in d["offsets"]}
    assert sorted(rows) == [0, 1, 2]
    assert (rows[0]["current_offset"], rows[0]["log_end_offset"], rows[0]["lag"]) == (4, 10, 6)
    assert (rows[1]["current_offset"], rows[1]["log_end_offset"], rows[1]["lag"]) == (10, 10, 0)
    assert (rows[2]["current_offset"], rows[2]["log_end_offset"], rows[2]["lag"]) == (None, 10, None)
    assert all(r["member_id"] == a.member_id for r in rows.values())

    # After the member leaves: no members, no owners, offsets kept.
    a.client.leave_group("g", a.member_id)
    d = client.describe_group("g")
    assert d["state"] == "Empty" and d["members"] == []
    assert {r["partition"]: (r["current_offset"], r["member_id"]) for r in d["offsets"]} == {
        0: (4, None), 1: (10, None)}
    assert error_code(client.describe_group, "never-was") == 69


def test_reset_offsets_dry_run_and_execute(broker, client):
    client.create_topic("t", 2)
    produce_numbered(client, "t", 2, 10)
    client.commit_offsets("g", {("t", 0): 3, ("t", 1): 8})

    plan = client.reset_offsets("g", "t", "earliest")
    assert plan["executed"] is False
    assert [(o["partition"], o["previous_offset"], o["new_offset"]) for o in plan["offsets"]] == [
        (0, 3, 0), (1, 8, 0)]
    assert client.fetch_offsets("g") == {("t", 0): 3, ("t", 1): 8}  # a dry run changes nothing

    shifted = client.reset_offsets("g", "t", "shift", value=5, execute=True)
    assert shifted["executed"] is True
    assert [o["new_offset"] for o in shifted["offsets"]] == [8, 10]  # clamped to the end
    assert client.fetch_offsets("g") == {("t", 0): 8, ("t", 1): 10}

    only_one = client.reset_offsets("g", "t", "offset", value=2, partitions=[1], execute=True)
    assert [(o["partition"], o["new_offset"]) for o in only_one["offsets"]] == [(1, 2)]
    latest = client.reset_offsets("g", "t", "latest", partitions=[0])
    assert [o["new_offset"] for o in latest["offsets"]] == [10]
    future = client.reset_offsets("g", "t", "timestamp", value=int(time.time() * 1000) + 3600_000)
    assert [o["new_offset"] for o in future["offsets"]] == [10, 10]  # no record that late
    past = client.reset_offsets("g", "t", "timestamp", value=0)
    assert [o["new_offset"] for o in past["offsets"]] == [0, 0]
    assert client.fetch_offsets("g") == {("t", 0): 8, ("t", 1): 2}

    assert error_code(client.reset_offsets, "g", "t", "offset") == 42  # no value
    assert error_code(client.reset_offsets, "g", "t", "sideways") == 42
    assert error_code(client.reset_offsets, "g", "missing", "earliest") == 3
    assert error_code(client.reset_offsets, "g", "t", "earliest", partitions=[2]) == 3

    # Refused while a member is joined; fine again after it left.
    a = HandMember(broker, "g", ["t"])
    assert error_code(client.reset_offsets, "g", "t", "earliest") == 68
    assert error_code(client.reset_offsets, "g", "t", "earliest", execute=True) == 68
    a.client.leave_group("g", a.member_id)
    client.reset_offsets("g", "t", "earliest", execute=True)
    assert client.fetch_offsets("g") == {("t", 0): 0, ("t", 1): 0}


def test_delete_group(broker, client):
    client.create_topic("t", 1)
    a = HandMember(broker, "g", ["t"])
    a.heartbeat()
    a.client.commit_offsets("g", {("t", 0): 1}, member_id=a.member_id, generation_id=a.generation_id)
    assert error_code(client.delete_group, "g") == 68
    a.client.leave_group("g", a.member_id)
    client.delete_group("g")
    assert error_code(client.delete_group, "g") == 69
    assert error_code(client.describe_group, "g") == 69
    assert client.list_groups() == []
    assert client.fetch_offsets("g", [("t", 0)]) == {("t", 0): -1}
    # The id can be used again, from scratch.
    again = HandMember(broker, "g", ["t"])
    assert again.answer.assignment == [("t", 0)]
    assert client.fetch_offsets("g") == {}


# ---------------------------------------------------------------------------
# GroupConsumer
# ---------------------------------------------------------------------------


def test_two_groups_each_read_every_record(broker, client):
    client.create_topic("news", 3)
    expected = produce_numbered(client, "news", 3, 20)
    with consumer(broker, "readers-a", "news") as a, consumer(broker, "readers-b", ["news"]) as b:
        got = poll_values([a, b], lambda g: len(g[0]) >= 60 and len(g[1]) >= 60)
        assert sorted(got[0]) == sorted(expected) and sorted(got[1]) == sorted(expected)
        # Records produced later reach both, too.
        more = produce_numbered(client, "news", 3, 2, start=20)
        got = poll_values([a, b], lambda g: len(g[0]) >= 6 and len(g[1]) >= 6)
        assert sorted(got[0]) == sorted(more) == sorted(got[1])
        assert a.assignment() == b.assignment() == [("news", 0), ("news", 1), ("news", 2)]
    assert client.fetch_offsets("readers-a") == client.fetch_offsets("readers-b") == {
        ("news", 0): 22, ("news", 1): 22, ("news", 2): 22}


def test_queue_consumers_split_partitions_and_hand_them_over(broker, client):
    client.create_topic("jobs", 4)
    first_batch = produce_numbered(client, "jobs", 4, 10)
    events: List[Tuple[str, str, List[TP]]] = []

    def recorder(name: str, kind: str):
        return lambda partitions: events.append((name, kind, partitions))

    a = consumer(broker, "workers", "jobs", on_assigned=recorder("a", "assigned"),
                 on_revoked=recorder("a", "revoked"))
    got_a = poll_values([a], lambda g: len(g[0]) >= 40)[0]
    assert sorted(got_a) == sorted(first_batch)
    assert events == [("a", "assigned", [("jobs", p) for p in range(4)])]
    wait_until(lambda: client.describe_group("workers")["state"] == "Stable", what="a to settle")

    b = consumer(broker, "workers", "jobs", on_assigned=recorder("b", "assigned"),
                 on_revoked=recorder("b", "revoked"))
    # Polling both moves two partitions from a to b: a commits and releases them.
    wait_until(lambda: (a.poll(20), b.poll(20)) and len(a.assignment()) == 2
               and len(b.assignment()) == 2, what="the rebalance")
    assert not set(a.assignment()) & set(b.assignment())
    wait_until(lambda: client.describe_group("workers")["state"] == "Stable", what="Stable")
    assert owners(client, "workers") == {
        **{tp: a.member_id for tp in a.assignment()}, **{tp: b.member_id for tp in b.assignment()}}
    moved = b.assignment()
    assert ("a", "revoked", moved) in events and ("b", "assigned", moved) in events
    # b starts where a committed at the revocation: nothing is read twice.
    for tp in moved:
        assert b.position(*tp) == 10

    second_batch = produce_numbered(client, "jobs", 4, 5, start=10)
    got = poll_values([a, b], lambda g: len(g[0]) + len(g[1]) >= 20)
    assert sorted(got[0] + got[1]) == sorted(second_batch)
    assert {v.decode().split("-")[1] for v in got[1]} == {str(p) for _, p in moved}

    # b closes: its partitions go back to a, which resumes at b's commits.
    b.close()
    wait_until(lambda: a.poll(20) is not None and len(a.assignment()) == 4, what="a to get all")
    assert ("b", "revoked", moved) in events
    for tp in moved:
        assert a.position(*tp) == 15
    third_batch = produce_numbered(client, "jobs", 4, 1, start=15)
    assert sorted(poll_values([a], lambda g: len(g[0]) >= 4)[0]) == sorted(third_batch)
    a.close()
    assert client.describe_group("workers")["state"] == "Empty"
    assert client.fetch_offsets("workers") == {("jobs", p): 16 for p in range(4)}


def test_committed_offsets_survive_the_consumer(broker, client):
    client.create_topic("log", 2)
    first = produce_numbered(client, "log", 2, 5)
    with consumer(broker, "resume", "log", auto_commit=False) as c:
        assert sorted(poll_values([c], lambda g: len(g[0]) >= 10)[0]) == sorted(first)
        c.commit()
        assert client.fetch_offsets("resume") == {("log", 0): 5, ("log", 1): 5}
        assert c.poll(0) == []
        c.commit()  # nothing moved: no request
    second = produce_numbered(client, "log", 2, 3, start=5)
    with consumer(broker, "resume", "log") as c:  # auto_commit: commits at close
        assert sorted(poll_values([c], lambda g: len(g[0]) >= 6)[0]) == sorted(second)
        assert c.poll(200) == []
    assert client.fetch_offsets("resume") == {("log", 0): 8, ("log", 1): 8}
    with consumer(broker, "resume", "log") as c:
        assert c.poll(300) == []
        assert [c.position("log", p) for p in (0, 1)] == [8, 8]


def test_consumer_carries_on_across_a_broker_restart(broker, client):
    client.create_topic("steady", 2)
    first = produce_numbered(client, "steady", 2, 4)
    with consumer(broker, "steadfast", "steady", auto_commit=False) as c:
        assert sorted(poll_values([c], lambda g: len(g[0]) >= 8)[0]) == sorted(first)
        c.commit()
        broker.restart()
        with connect(broker) as admin:
            second = produce_numbered(admin, "steady", 2, 2, start=4)
        # The same consumer: it connects again, joins again and resumes from
        # the committed offsets.
        assert sorted(poll_values([c], lambda g: len(g[0]) >= 4)[0]) == sorted(second)


def test_auto_commit_on_interval(broker, client):
    client.create_topic("t", 1)
    produce_numbered(client, "t", 1, 3)
    with consumer(broker, "ac", "t", auto_commit_interval_ms=100) as c:
        poll_values([c], lambda g: len(g[0]) >= 3)
        time.sleep(0.15)
        c.poll(0)  # commits what earlier polls returned
        assert client.fetch_offsets("ac") == {("t", 0): 3}


def test_auto_offset_reset(broker, client):
    client.create_topic("t", 1)
    produce_numbered(client, "t", 1, 5)
    with consumer(broker, "late", "t", auto_offset_reset="latest") as c:
        assert c.poll(300) == []
        assert c.position("t", 0) == 5
        client.produce("t", [b"new"], partition=0)
        assert [r.value for _, _, r in c.poll(2000)] == [b"new"]
    with consumer(broker, "strict", "t", auto_offset_reset="none") as c:
        with pytest.raises(HeraldError) as info:
            c.poll(1000)
        assert info.value.code == 1 and "auto_offset_reset" in info.value.message
    client.commit_offsets("strict", {("t", 0): 2})
    with consumer(broker, "strict", "t", auto_offset_reset="none") as c:
        values = poll_values([c], lambda g: len(g[0]) >= 4)[0]
        assert values[:3] == [b"t-0-2", b"t-0-3", b"t-0-4"]
    with pytest.raises(ValueError):
        GroupConsumer(broker.host, broker.port, "g", "t", auto_offset_reset="middle")


def test_consumer_reports_join_errors(broker, client):
    client.create_topic("t", 1)
    with pytest.raises(HeraldError) as info:
        consumer(broker, "g", "t", session_timeout_ms=10)
    assert info.value.code == 26
    with pytest.raises(HeraldError) as info:
        consumer(broker, "g", "t", assignor="best")
    assert info.value.code == 112


def test_static_member_gets_its_partitions_back_without_a_rebalance(broker, client):
    client.create_topic("t", 4)
    a = consumer(broker, "static", "t", group_instance_id="node-1")
    wait_until(lambda: a.poll(20) is not None and len(a.assignment()) == 4, what="a")
    b = consumer(broker, "static", "t")
    wait_until(lambda: (a.poll(20), b.poll(20)) and len(a.assignment()) == 2
               and len(b.assignment()) == 2, what="the split")
    kept, b_generation = a.assignment(), b.generation_id
    a.close(leave_group=False)  # a static member keeps its partitions...
    d = client.describe_group("static")
    assert len(d["members"]) == 2
    a2 = consumer(broker, "static", "t", group_instance_id="node-1")
    wait_until(lambda: a2.poll(20) is not None and a2.assignment() == kept, what="a2")
    b.poll(100)
    assert b.generation_id == b_generation and len(b.assignment()) == 2  # ...b noticed nothing
    [instance] = [m for m in client.describe_group("static")["members"]
                  if m["group_instance_id"] == "node-1"]
    assert instance["member_id"] == a2.member_id != a.member_id
    a2.close()
    b.close()


def test_fenced_consumer_stops_with_fenced_instance_id(broker, client):
    """Kafka's rule: a newer member with the same group_instance_id replaces
    the older one, which stops (joining again would fence the newer one in
    turn, for ever)."""
    client.create_topic("t", 2)
    produce_numbered(client, "t", 2, 3)
    c = consumer(broker, "fence", "t", group_instance_id="i-1")
    poll_values([c], lambda g: len(g[0]) >= 6)
    # Another process joins with the same instance id: c's member id is fenced.
    intruder = connect(broker)
    taken = intruder.join_group("fence", ["t"], group_instance_id="i-1", session_timeout_ms=5000)
    assert taken.assignment == [("t", 0), ("t", 1)]
    # c learns it at once (its held heartbeat) and stops.
    deadline = time.monotonic() + 10
    with pytest.raises(HeraldError) as info:
        while time.monotonic() < deadline:
            c.poll(50)
    assert info.value.code == 82 and "'i-1'" in info.value.message, info.value
    # Every later call says the same; the intruder keeps the membership.
    with pytest.raises(HeraldError) as again:
        c.poll(10)
    assert again.value.code == 82
    answer = intruder.heartbeat("fence", taken.member_id, taken.generation_id, taken.assignment)
    assert answer.member_id == taken.member_id
    [member] = client.describe_group("fence")["members"]
    assert member["member_id"] == taken.member_id
    c.close(leave_group=False)


def test_consumer_survives_broken_heartbeat_connection(broker, client):
    """When the heartbeat connection breaks, the member is removed; the thread
    reconnects and joins again, and poll reports the loss."""
    client.create_topic("t", 1)
    lost: List[List[TP]] = []
    c = consumer(broker, "broken", "t", on_lost=lost.append)
    wait_until(lambda: c.poll(20) is not None and c.assignment() == [("t", 0)], what="c")
    old_member = c.member_id
    c._heartbeat_client._sock.shutdown(2)  # white box: break the connection
    # The new member may get the partition only once the broker removed the
    # old one (when it sees the connection close).
    wait_until(lambda: c.poll(20) is not None and lost and c.assignment() == [("t", 0)],
               what="the rejoin")
    assert lost == [[("t", 0)]] and c.member_id != old_member
    assert [m["member_id"] for m in client.describe_group("broken")["members"]] == [c.member_id]
    c.close()
    assert client.describe_group("broken")["state"] == "Empty"


def test_consumer_whose_session_timed_out_rejoins(broker, client):
    client.create_topic("t", 1)
    lost: List[List[TP]] = []
    c = consumer(broker, "slow", "t", session_timeout_ms=1000, on_lost=lost.append)
    wait_until(lambda: c.poll(20) is not None and c.assignment() == [("t", 0)], what="c")
    old_member = c.member_id
    # White box: the heartbeat thread needs this lock to publish an answer;
    # holding it stalls the thread past the session timeout.
    with c._cond:
        time.sleep(2.0)
    wait_until(lambda: c.poll(20) is not None and lost and c.assignment() == [("t", 0)],
               what="the rejoin")
    assert lost == [[("t", 0)]] and c.member_id != old_member
    assert [m["member_id"] for m in client.describe_group("slow")["members"]] == [c.member_id]
    c.close()


def test_consumer_commit_and_close(broker, client):
    client.create_topic("t", 1)
    c = consumer(broker, "g", "t", auto_commit=False)
    wait_until(lambda: c.poll(20) is not None and c.assignment() == [("t", 0)], what="c")
    admin_member = connect(broker)
    with pytest.raises(HeraldError) as info:
        # A commit naming the consumer's member under a generation it never got.
        admin_member.commit_offsets("g", {("t", 0): 1}, member_id=c.member_id,
                                    generation_id=c.generation_id + 1)
    assert info.value.code == 22
    c.commit({("t", 0): 0})
    assert client.fetch_offsets("g") == {("t", 0): 0}
    c.close()
    with pytest.raises(ConnectionError):
        c.poll(0)
    c.close()  # again: nothing
