"""Consumer groups on the wire: assignments and partition lists.

The protocol lists partitions as ``[{"topic": str, "partitions": [int]}]``;
this client speaks of sorted ``(topic, partition)`` pairs and converts at
the edge, here.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union


TopicPartition = Tuple[str, int]
"""A partition of a topic: ``(topic, partition)``."""

CommitOffset = Union[int, Tuple[int, Optional[str]]]
"""An offset to commit: the next record to read, or ``(offset, metadata)``."""

OffsetsToCommit = Mapping[TopicPartition, CommitOffset]
"""What ``commit_offsets`` takes: ``{(topic, partition): offset}``."""


@dataclass
class GroupAssignment:
    """What ``join_group`` and ``heartbeat`` answer: a member's assignment."""

    member_id: str
    generation_id: int
    """The member's generation (epoch); rises with every change of its assignment."""
    assignment: List[TopicPartition]
    """The partitions the member may consume now, sorted."""
    heartbeat_interval_ms: int
    session_timeout_ms: int


def _topic_list(topics: Iterable[str]) -> List[str]:
    """The subscription as a list; a lone str is one topic, not its letters."""
    return [topics] if isinstance(topics, str) else list(topics)


def _partition_list(partitions: Iterable[TopicPartition]) -> List[Dict[str, Any]]:
    """``(topic, partition)`` pairs as the wire's ``[{topic, partitions}]``."""
    by_topic: Dict[str, List[int]] = {}
    for topic, partition in sorted(set((t, int(p)) for t, p in partitions)):
        by_topic.setdefault(topic, []).append(partition)
    return [{"topic": topic, "partitions": ps} for topic, ps in by_topic.items()]


def _from_partition_list(wire: Iterable[Mapping[str, Any]]) -> List[TopicPartition]:
    """The wire's ``[{topic, partitions}]`` as sorted ``(topic, partition)`` pairs."""
    return sorted((entry["topic"], p) for entry in wire for p in entry["partitions"])


def _group_assignment(response: Mapping[str, Any]) -> GroupAssignment:
    return GroupAssignment(
        member_id=response["member_id"],
        generation_id=response["generation_id"],
        assignment=_from_partition_list(response["assignment"]),
        heartbeat_interval_ms=response["heartbeat_interval_ms"],
        session_timeout_ms=response["session_timeout_ms"],
    )
