"""Session expiry bookkeeping: a pure tracker driven by explicit times.

The *table* of sessions (id, timeout, password) is replicated state and lives
in ``DataTree.sessions`` (created and closed by logged ``CreateSessionOp`` /
``CloseSessionOp``). This module only tracks *liveness* on one server, the
way ZooKeeper's ``SessionTrackerImpl`` + ``ExpiryQueue`` do: deadlines are
rounded up to the next tick boundary so that expiry is checked once a tick.
The shell passes ``now_ms`` (from its clock) on every call; nothing here
reads a clock or draws randomness except from an injected ``random.Random``.

After a restart the shell re-adds every session of the recovered table with
``now_ms`` = start time, giving clients a full timeout to reconnect, as
ZooKeeper does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PASSWORD_BYTES = 16
MIN_TIMEOUT_TICKS = 2
MAX_TIMEOUT_TICKS = 20
_ID_MASK = (1 << 56) - 1


def negotiate_timeout(requested_ms: int, tick_ms: int) -> int:
    """Clamp a client's requested session timeout to [2, 20] ticks (ZooKeeper's defaults)."""
    lo, hi = MIN_TIMEOUT_TICKS * tick_ms, MAX_TIMEOUT_TICKS * tick_ms
    return max(lo, min(hi, requested_ms))


def session_id_base(server_id: int, now_ms: int) -> int:
    """ZooKeeper's first session id for a server: time bits below, server id in the high byte.

    ``((now_ms << 24) mod 2^64) >> 8 | server_id << 56``: unique across
    restarts (time moves on) and across servers (high byte). Server ids
    must be in 0..254 (0xff is reserved by extended ephemeral types).
    """
    if not 0 <= server_id <= 254:
        raise ValueError(f"server id {server_id} out of range: allowed 0..254")
    base = ((now_ms << 24) & ((1 << 64) - 1)) >> 8
    return (server_id << 56) | (base & _ID_MASK)


def new_session_id(server_id: int, counter: int) -> int:
    """The ``counter``-th id in a server's id space (high byte = server id)."""
    if not 0 <= server_id <= 254:
        raise ValueError(f"server id {server_id} out of range: allowed 0..254")
    return (server_id << 56) | (counter & _ID_MASK)


def generate_password(rng: random.Random) -> bytes:
    """A 16-byte session password drawn from the injected generator."""
    return rng.randbytes(PASSWORD_BYTES)


@dataclass(slots=True)
class _Entry:
    timeout_ms: int
    deadline_ms: int
    closing: bool = False


class SessionTracker:
    """Per-server liveness of sessions: add, touch, expire (pure; times passed in).

    ``tick_ms`` rounds deadlines up to tick boundaries (ZooKeeper's expiry
    buckets). ``next_id`` yields fresh session ids starting at
    ``session_id_base(server_id, start_ms)``, skipping ids still tracked.
    """

    def __init__(self, tick_ms: int = 2000, server_id: int = 0, start_ms: int = 0) -> None:
        if tick_ms <= 0:
            raise ValueError(f"tick_ms must be positive, got {tick_ms}")
        self.tick_ms = tick_ms
        self.server_id = server_id
        self._next = session_id_base(server_id, start_ms)
        self._sessions: dict[int, _Entry] = {}

    def _round_up(self, t: int) -> int:
        return -(-t // self.tick_ms) * self.tick_ms

    def new_session_id(self) -> int:
        """A fresh id in this server's id space (never one currently tracked)."""
        while True:
            sid = (self.server_id << 56) | (self._next & _ID_MASK)
            self._next = (self._next + 1) & _ID_MASK
            if sid not in self._sessions and sid != 0:
                return sid

    def add(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        """Track (or re-track) a session with a fresh deadline."""
        self._sessions[session_id] = _Entry(timeout_ms, self._round_up(now_ms + timeout_ms))

    def touch(self, session_id: int, now_ms: int) -> bool:
        """Extend a live session's deadline; False if unknown, closing or already past due."""
        e = self._sessions.get(session_id)
        if e is None or e.closing or e.deadline_ms <= now_ms:
            return False
        e.deadline_ms = self._round_up(now_ms + e.timeout_ms)
        return True

    def set_closing(self, session_id: int) -> None:
        """Mark a session as closing (a close was proposed); touches now fail."""
        e = self._sessions.get(session_id)
        if e is not None:
            e.closing = True

    def retry_expiry(self, session_id: int) -> None:
        """Undo ``expired``'s closing mark: the close was not proposed, expire it again next time."""
        e = self._sessions.get(session_id)
        if e is not None:
            e.closing = False

    def remove(self, session_id: int) -> None:
        """Forget a session (after its CloseSessionOp applied)."""
        self._sessions.pop(session_id, None)

    def expired(self, now_ms: int) -> list[int]:
        """Sessions past their deadline and not yet closing, sorted; they become closing.

        The shell proposes a ``CloseSessionOp`` for each and calls
        ``remove`` once it applied.
        """
        out = sorted(sid for sid, e in self._sessions.items() if not e.closing and e.deadline_ms <= now_ms)
        for sid in out:
            self._sessions[sid].closing = True
        return out

    def next_expiry_ms(self) -> int | None:
        """The earliest deadline among live sessions (for the shell's timer), or None."""
        live = [e.deadline_ms for e in self._sessions.values() if not e.closing]
        return min(live) if live else None

    def timeout_of(self, session_id: int) -> int | None:
        e = self._sessions.get(session_id)
        return None if e is None else e.timeout_ms

    def is_live(self, session_id: int) -> bool:
        e = self._sessions.get(session_id)
        return e is not None and not e.closing

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> dict[int, int]:
        """session id -> timeout_ms of every tracked session (for ``cons``/``dump``)."""
        return {sid: e.timeout_ms for sid, e in self._sessions.items()}
