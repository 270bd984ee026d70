"""The broker's error codes and the exception that carries them.

``ERROR_CODES`` mirrors the table of ``docs/protocol.md`` ("Error codes"):
codes are stable, never renumbered, and each says whether a retry may
succeed; a test of this package compares the two. ``HeraldError`` is raised
for a non-zero ``error_code`` in a response and for the errors the client
detects itself (a corrupt batch, a request it refuses to send).
"""

from typing import Dict, Optional, Tuple

ERROR_CODES: Dict[int, Tuple[str, bool, str]] = {
    -1: ("UNKNOWN_SERVER_ERROR", False,
        "An unexpected error on the broker; its log has the details."),
    0: ("NONE", False,
        "No error."),
    1: ("OFFSET_OUT_OF_RANGE", False,
        "The requested offset is below the log start offset or above the log end offset."),
    2: ("CORRUPT_MESSAGE", False,
        "A record batch failed its checksum or structure check; for a fetch, the offset is in a "
        "damaged range of the log, named by first_damaged_offset and next_valid_offset (fetch "
        "from next_valid_offset to skip it)."),
    3: ("UNKNOWN_TOPIC_OR_PARTITION", True,
        "The topic or partition does not exist."),
    5: ("LEADER_NOT_AVAILABLE", True,
        "The partition's actor is restarting or gone; try again."),
    6: ("NOT_LEADER_OR_FOLLOWER", True,
        "This broker does not lead the partition (it follows it, or no longer holds it): refresh the metadata and send to the leader."),
    7: ("REQUEST_TIMED_OUT", True,
        "The request did not complete in time."),
    8: ("BROKER_NOT_AVAILABLE", True,
        "The broker named is not among the live brokers the cluster's controller sees (it is starting, or gone)."),
    10: ("MESSAGE_TOO_LARGE", False,
        "A record batch is larger than the topic's max_message_bytes."),
    12: ("OFFSET_METADATA_TOO_LARGE", False,
        "The metadata of a committed offset is over 4096 bytes."),
    14: ("COORDINATOR_LOAD_IN_PROGRESS", True,
        "This broker just became the group's coordinator and is still loading the groups' records: try again after a backoff."),
    15: ("COORDINATOR_NOT_AVAILABLE", True,
        "The group's coordinator is restarting, or (in a cluster) the group's __consumer_offsets partition has no leader yet: ask find_coordinator again after a backoff."),
    16: ("NOT_COORDINATOR", True,
        "This broker does not coordinate the group (in a cluster, another broker leads its __consumer_offsets partition): ask find_coordinator and send there."),
    17: ("INVALID_TOPIC_EXCEPTION", False,
        "The topic name is not valid: 1-249 characters of [a-zA-Z0-9._-], not '.' or '..'."),
    19: ("NOT_ENOUGH_REPLICAS", True,
        "An acks=all produce was refused before appending: the partition has fewer in-sync replicas than its min_insync_replicas."),
    20: ("NOT_ENOUGH_REPLICAS_AFTER_APPEND", True,
        "An acks=all produce was appended and replicated to every in-sync replica, but the in-sync replicas were then fewer than min_insync_replicas."),
    21: ("INVALID_REQUIRED_ACKS", False,
        "acks must be 0, 1 or -1 (all)."),
    22: ("ILLEGAL_GENERATION", False,
        "The generation id is not valid for this request: newer than any the member was given, or older than the one the request needs."),
    24: ("INVALID_GROUP_ID", False,
        "The group id is not valid: 1-255 bytes."),
    25: ("UNKNOWN_MEMBER_ID", False,
        "The member id is not a member of the group (it left, timed out, or never joined): join again."),
    26: ("INVALID_SESSION_TIMEOUT", False,
        "The session timeout is outside the broker's allowed range."),
    27: ("REBALANCE_IN_PROGRESS", True,
        "Reserved with Kafka's meaning; this broker does not return it (a commit for a partition the member does not hold gets PARTITION_NOT_OWNED)."),
    29: ("TOPIC_AUTHORIZATION_FAILED", False,
        "The principal may not do this to the topic (an ACL denies it, or none allows it)."),
    30: ("GROUP_AUTHORIZATION_FAILED", False,
        "The principal may not do this to the group (an ACL denies it, or none allows it)."),
    31: ("CLUSTER_AUTHORIZATION_FAILED", False,
        "The principal may not do this cluster-wide operation (users, ACLs, quotas; an ACL denies it, or none allows it)."),
    32: ("INVALID_TIMESTAMP", False,
        "A timestamp is not valid."),
    33: ("UNSUPPORTED_SASL_MECHANISM", False,
        "The broker does not offer this SASL mechanism; the handshake lists those it offers."),
    34: ("ILLEGAL_SASL_STATE", False,
        "An authentication message out of order (a second first message, a final message before the first, or authenticating twice); the connection is closed."),
    35: ("UNSUPPORTED_VERSION", False,
        "The protocol version is not supported by this broker."),
    36: ("TOPIC_ALREADY_EXISTS", False,
        "A topic with this name already exists."),
    37: ("INVALID_PARTITIONS", False,
        "The partition count is not valid (at least 1, and only ever more)."),
    38: ("INVALID_REPLICATION_FACTOR", False,
        "The replication factor is not valid: at least 1 and at most the live brokers (1 for a broker alone)."),
    40: ("INVALID_CONFIG", False,
        "A topic configuration key or value is not valid."),
    41: ("NOT_CONTROLLER", True,
        "This broker is not the cluster's controller (the office changed hands, or an election is under way): ask describe_cluster who is, and send there."),
    42: ("INVALID_REQUEST", False,
        "The request is malformed: bad MessagePack, a missing field or a wrong type."),
    45: ("OUT_OF_ORDER_SEQUENCE_NUMBER", False,
        "An idempotent producer's batch does not follow the last one the partition has from it (a gap or a reordering): a batch of the producer was lost or is stuck; the sequences cannot be trusted any more."),
    46: ("DUPLICATE_SEQUENCE_NUMBER", False,
        "Reserved with Kafka's meaning; this broker does not return it (a retried batch is answered with its first append's offsets)."),
    47: ("INVALID_PRODUCER_EPOCH", False,
        "The batch's producer epoch is older than the one the partition knows for that producer id: a newer instance of the producer took over."),
    54: ("SECURITY_DISABLED", False,
        "The request needs security the broker does not have turned on (ACLs while security.authorization is false)."),
    56: ("KAFKA_STORAGE_ERROR", True,
        "The broker could not read or write its disk (the message says why). Writes resume once the cause is gone, except after a failed fsync, which stops writes until a restart."),
    58: ("SASL_AUTHENTICATION_FAILED", False,
        "Authentication failed (unknown user, wrong password, a bad proof), or the listener requires authentication and the request came before it; the connection is closed."),
    59: ("UNKNOWN_PRODUCER_ID", False,
        "Reserved with Kafka's meaning; this broker does not return it: as Kafka since 2.5 (KIP-360), a batch of a producer id the partition has no state for (never seen, or expired) is appended at any sequence."),
    68: ("NON_EMPTY_GROUP", False,
        "The group has active members; the operation needs an empty group."),
    69: ("GROUP_ID_NOT_FOUND", False,
        "The group does not exist."),
    74: ("FENCED_LEADER_EPOCH", True,
        "The request carries a leader epoch older than the partition's: the sender's view is stale; refresh the metadata."),
    75: ("UNKNOWN_LEADER_EPOCH", True,
        "The request carries a leader epoch newer than the partition knows: this broker has not heard of it yet; retry."),
    79: ("MEMBER_ID_REQUIRED", False,
        "This connection already has a member in the group: join again with its member_id, or leave first."),
    82: ("FENCED_INSTANCE_ID", False,
        "Another member joined with this group_instance_id; this member id is fenced."),
    87: ("INVALID_RECORD", False,
        "A record is not valid for its topic: a record without a key sent to a compacted topic (cleanup_policy compact)."),
    91: ("RESOURCE_NOT_FOUND", False,
        "The named resource does not exist (a SCRAM user to delete)."),
    112: ("UNSUPPORTED_ASSIGNOR", False,
        "The assignor is not one of range, roundrobin, sticky."),
    1000: ("HANDSHAKE_REQUIRED", False,
        "The first request on a connection must be a handshake."),
    1001: ("UNKNOWN_OPERATION", False,
        "The request names an operation this broker does not know."),
    1002: ("FRAME_TOO_LARGE", False,
        "The frame is larger than the broker's max_frame_bytes; the connection is closed."),
    1003: ("BROKER_SHUTTING_DOWN", True,
        "The broker is shutting down and refuses new work."),
    1004: ("PARTITION_NOT_OWNED", False,
        "The member does not hold this partition: it was never assigned to it, or the member reported it released."),
    1005: ("EXTENSION_UNAVAILABLE", True,
        "The extension serving this custom operation failed while handling it or is restarting; try again."),
}
"""Every error code of protocol.md: ``code -> (name, retriable, meaning)``."""

OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
SECURITY_DISABLED = 54
SASL_AUTHENTICATION_FAILED = 58
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82
INVALID_RECORD = 87
RESOURCE_NOT_FOUND = 91
BROKER_SHUTTING_DOWN = 1003
PARTITION_NOT_OWNED = 1004
HANDSHAKE_REQUIRED = 1000
UNKNOWN_OPERATION = 1001
FRAME_TOO_LARGE = 1002
EXTENSION_UNAVAILABLE = 1005


class HeraldError(Exception):
    """An error code from the broker, or one the client detected itself.

    Attributes:
        code: the numeric code from protocol.md's table (e.g. 3).
        name: its name (e.g. ``"UNKNOWN_TOPIC_OR_PARTITION"``), or
            ``"UNKNOWN_ERROR_CODE"`` for a code this client does not know
            (a newer broker may add codes).
        message: the broker's ``error_message``, or the table's meaning when the
            broker sent none.
        retriable: whether the same request may succeed later.
        first_damaged_offset, next_valid_offset: with CORRUPT_MESSAGE on a
            fetch, the damaged range of the broker's log the offset is in;
            fetch from ``next_valid_offset`` to go past it. None otherwise.
    """

    def __init__(self, code: int, message: Optional[str] = None,
                 first_damaged_offset: Optional[int] = None, next_valid_offset: Optional[int] = None):
        name, retriable, meaning = ERROR_CODES.get(
            code, ("UNKNOWN_ERROR_CODE", False, "An error code this client does not know.")
        )
        self.code = code
        self.name = name
        self.message = message or meaning
        self.retriable = retriable
        self.first_damaged_offset = first_damaged_offset
        self.next_valid_offset = next_valid_offset
        # The constructor's arguments, so that the error survives pickling.
        super().__init__(code, message, first_damaged_offset, next_valid_offset)

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.message}"

