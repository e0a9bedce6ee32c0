"""ZooKeeper's error codes, and the one exception type the node's cores raise.

The numeric values are the wire values of Apache ZooKeeper 3.8
(``KeeperException.Code``); clients such as kazoo map them back to their own
exception classes, so they must never change.
"""

from __future__ import annotations

import enum


class Err(enum.IntEnum):
    """ZooKeeper's result codes (``KeeperException.Code``), by wire value."""

    OK = 0
    SYSTEM_ERROR = -1
    RUNTIME_INCONSISTENCY = -2
    DATA_INCONSISTENCY = -3
    CONNECTION_LOSS = -4
    MARSHALLING_ERROR = -5
    UNIMPLEMENTED = -6
    OPERATION_TIMEOUT = -7
    BAD_ARGUMENTS = -8
    UNKNOWN_SESSION = -12
    NEW_CONFIG_NO_QUORUM = -13
    RECONFIG_IN_PROGRESS = -14
    API_ERROR = -100
    NO_NODE = -101
    NO_AUTH = -102
    BAD_VERSION = -103
    NO_CHILDREN_FOR_EPHEMERALS = -108
    NODE_EXISTS = -110
    NOT_EMPTY = -111
    SESSION_EXPIRED = -112
    INVALID_CALLBACK = -113
    INVALID_ACL = -114
    AUTH_FAILED = -115
    SESSION_MOVED = -118
    NOT_READ_ONLY = -119
    EPHEMERAL_ON_LOCAL_SESSION = -120
    NO_WATCHER = -121
    RECONFIG_DISABLED = -123
    QUOTA_EXCEEDED = -125
    THROTTLED_OP = -127


class ZkError(Exception):
    """A ZooKeeper-level failure: ``code`` goes on the wire, ``message`` in logs.

    The cores raise this for read failures (reads return values directly);
    writes report their code in ``ApplyResult.err`` instead, because a failed
    write is still a logged, replicated transaction.
    """

    def __init__(self, code: Err | int, message: str = "") -> None:
        self.code = Err(code)
        self.message = message or self.code.name
        super().__init__(f"{self.code.name} ({int(self.code)}): {self.message}")


def err_name(code: int) -> str:
    """The symbolic name of a wire code, or ``UNKNOWN(<n>)`` for an unknown one."""
    try:
        return Err(code).name
    except ValueError:
        return f"UNKNOWN({code})"
