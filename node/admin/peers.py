"""The ensemble as one member sees it: its own state, and the other members' as they report it.

A member knows its own role, epoch and zxid from its replica; for the others
it asks their client port for ``mntr`` about once a second
(:class:`PeerPoller`, started only while an admin server wants the view) and
keeps the latest answers. A member that could not be reached is reported as
such, never with stale numbers. ``ensemble_from_statuses`` turns the
statuses into the dict the admin's ``/commands/ensemble`` and the web UI show.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from node.admin import four_letter
from node.admin.tree_api import zxid_hex

log = logging.getLogger("squall.admin")

# How often the admin asks the other members for their state, and how long one ask may take.
# The answer is cached: an admin page polling every 2 s never makes a peer answer more than ~1/s.
PEER_POLL_S = 1.0
PEER_WORD_TIMEOUT_S = 0.5
MAX_WORD_REPLY = 256 * 1024
LEADER_CHANGES_KEPT = 50


def status_from_mntr(text: str) -> dict | None:
    """A member's status (the ``Replica.status()`` keys the ensemble view uses) from its ``mntr`` answer.

    Only keys the member reported are filled; None when the answer is not a member's
    ``mntr`` (no ``zk_server_state``), so a garbled answer is never shown as numbers.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            values[key.strip()] = value.strip()
    if "zk_server_state" not in values:
        return None

    def num(key: str, base: int = 10) -> int | None:
        try:
            return int(values[key], base)
        except (KeyError, ValueError):
            return None

    leader = num("zk_leader_id")
    return {
        "role": values.get("zk_peer_state", values["zk_server_state"]),
        "epoch": num("zk_epoch"),
        "leader": leader or None,
        "last_zxid": num("zk_last_zxid", 16),
        "sessions": num("zk_global_sessions"),
        "connections": num("zk_num_alive_connections"),
    }


async def ask_word(host: str, port: int, word: str, timeout_s: float = PEER_WORD_TIMEOUT_S) -> str:
    """Send a four-letter word to host:port and read the answer until the member closes (bounded)."""

    async def ask() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(word.encode("ascii"))
            await writer.drain()
            data = await reader.read(MAX_WORD_REPLY)
            chunks = [data]
            while data and sum(map(len, chunks)) < MAX_WORD_REPLY:
                data = await reader.read(MAX_WORD_REPLY)
                chunks.append(data)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            writer.close()

    return await asyncio.wait_for(ask(), timeout_s)


class PeerPoller:
    """Asks every other member for ``mntr`` about once a second; keeps the latest answers.

    ``peers`` maps member id -> (host, client port). Runs only while something wants the
    ensemble view (the admin server), never blocks the event loop (each ask is a task with
    a short timeout), and reports a member it could not reach as None (shown as
    unreachable), not as stale numbers.
    """

    def __init__(self, peers: dict[int, tuple[str, int]]) -> None:
        self.peers = dict(peers)
        self.statuses: dict[int, dict | None] = {}
        self.polled_at: dict[int, float] = {}

    async def poll_once(self) -> None:
        async def one(pid: int, host: str, port: int) -> None:
            try:
                st = status_from_mntr(await ask_word(host, port, "mntr"))
            except (TimeoutError, OSError, UnicodeError):
                st = None
            self.statuses[pid] = st
            self.polled_at[pid] = time.monotonic()

        await asyncio.gather(*(one(pid, host, port) for pid, (host, port) in self.peers.items()))

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - a polling hiccup must not end the view
                log.exception("polling the other members for the ensemble view failed; continuing")
            await asyncio.sleep(PEER_POLL_S)


def ensemble_from_statuses(self_id: int, addresses: dict[int, str], statuses: dict[int, dict | None]) -> dict:
    """The ensemble view dict from per-member ``Replica.status()``-like dicts (None = unreachable).

    ``status()`` keys used: role, epoch, leader, last_zxid, sessions, connections. A member
    absent from ``statuses`` (never asked yet) is ``unknown``.
    """
    me = statuses.get(self_id) or {}
    peers = []
    for pid in sorted(addresses):
        st = statuses.get(pid)
        peer: dict[str, Any] = {"id": pid, "address": addresses[pid]}
        if pid not in statuses:  # not asked yet (the poller just started): say so, show no numbers
            peer.update({"role": "unknown", "state": "unknown"})
        elif st is None:
            peer.update({"role": "unknown", "state": "unreachable"})
        else:
            peer.update(
                {
                    "role": st.get("role", "unknown"),
                    "state": "serving",
                    "last_zxid": st.get("last_zxid"),
                    "sessions": st.get("sessions"),
                    "connections": st.get("connections"),
                }
            )
        peers.append(peer)
    return {
        "mode": me.get("role", "unknown"),
        "server_id": self_id,
        "epoch": me.get("epoch"),
        "last_zxid": me.get("last_zxid", 0),
        "leader": me.get("leader"),
        "peers": peers,
    }


@dataclass
class RoleTracker:
    """Remembers role and leader changes seen by the admin sampler (a pure state machine)."""

    last: tuple | None = None
    changes: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LEADER_CHANGES_KEPT))
    role_changes: int = 0

    def observe(self, wall_ms: int, role: str, leader: Any, epoch: int) -> None:
        key = (role, leader, epoch)
        if self.last is None:
            self.last = key
            self.changes.append(
                {"time_ms": wall_ms, "role": role, "leader": leader, "epoch": epoch, "event": "started"}
            )
            return
        if key != self.last:
            self.role_changes += 1
            self.changes.append(
                {
                    "time_ms": wall_ms,
                    "role": role,
                    "leader": leader,
                    "epoch": epoch,
                    "event": "changed",
                    "previous": {"role": self.last[0], "leader": self.last[1], "epoch": self.last[2]},
                }
            )
            self.last = key


def ensemble_view(server: Any, view: four_letter.AdminView) -> dict:
    """role, epoch, last zxid, the leader, and every peer's state and lag.

    ``server.ensemble_view()`` gives ``mode``, ``server_id``, ``epoch``,
    ``last_zxid``, ``leader`` and ``peers``: a list of dicts (``id``,
    ``address``, ``role``, ``state``, ``last_zxid``, ``sessions``,
    ``connections``); a standalone node is its own one-member ensemble.
    """
    raw = dict(server.ensemble_view())
    peers = [dict(p) for p in raw.get("peers", [])]
    leader_id = raw.get("leader")
    leader_zxid = next((p.get("last_zxid") for p in peers if p.get("id") == leader_id), None)
    for p in peers:
        z = p.get("last_zxid")
        p["self"] = p.get("id") == raw.get("server_id")
        if isinstance(z, int):
            p["last_zxid_hex"] = zxid_hex(z)
            p["epoch"] = z >> 32
        if isinstance(z, int) and isinstance(leader_zxid, int) and (z >> 32) == (leader_zxid >> 32):
            p["lag"] = max(0, leader_zxid - z)
        else:
            p["lag"] = None  # unknown, or a different epoch: counting txns across epochs means nothing
    last = raw.get("last_zxid", view.zxid)
    return {
        "mode": raw.get("mode", view.mode),
        "server_id": raw.get("server_id"),
        "epoch": raw.get("epoch"),
        "last_zxid": last,
        "last_zxid_hex": zxid_hex(last),
        "leader": leader_id,
        "peers": peers,
    }


__all__ = ["PeerPoller", "RoleTracker", "ask_word", "ensemble_from_statuses", "ensemble_view", "status_from_mntr"]
