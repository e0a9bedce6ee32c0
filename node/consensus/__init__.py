"""Leader election and log replication as a pure state machine (step/tick/propose/ready/advance).

Raft with pre-vote and check-quorum, in the etcd-raft style: no I/O, no clock,
injected randomness. See docs/protocol.md for the protocol and its invariants.
"""

from .log import LogError, RaftLog, decode_conf
from .messages import (
    ConfRefused,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageDecodeError,
    MessageType,
    NotLeader,
    PersistentState,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMeta,
    SoftState,
    make_zxid,
    pack_snapshot_data,
    unpack_snapshot_data,
    zxid_counter,
    zxid_epoch,
)
from .raft import Progress, ProgressState, RaftNode, Role

__all__ = [
    "ConfRefused",
    "ConfState",
    "decode_conf",
    "pack_snapshot_data",
    "unpack_snapshot_data",
    "Entry",
    "EntryKind",
    "HardState",
    "LogError",
    "Message",
    "MessageDecodeError",
    "MessageType",
    "NotLeader",
    "PersistentState",
    "Progress",
    "ProgressState",
    "RaftLog",
    "RaftNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "make_zxid",
    "zxid_counter",
    "zxid_epoch",
]
