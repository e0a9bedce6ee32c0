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
import logging
import time
from typing import Any

log = logging.getLogger("squall.admin")

# How often the admin asks the other members for their state, and how long one ask may take.
# The answer is cached: an admin page polling every 2 s never makes a peer answer more than ~1/s.
PEER_POLL_S = 1.0
PEER_WORD_TIMEOUT_S = 0.5
MAX_WORD_REPLY = 256 * 1024


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
    return {"role": values.get("zk_peer_state", values["zk_server_state"]), "epoch": num("zk_epoch"),
            "leader": leader or None, "last_zxid": num("zk_last_zxid", 16), "sessions": num("zk_global_sessions"),
            "connections": num("zk_num_alive_connections")}


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
            peer.update({"role": st.get("role", "unknown"), "state": "serving", "last_zxid": st.get("last_zxid"),
                         "sessions": st.get("sessions"), "connections": st.get("connections")})
        peers.append(peer)
    return {"mode": me.get("role", "unknown"), "server_id": self_id, "epoch": me.get("epoch"),
            "last_zxid": me.get("last_zxid", 0), "leader": me.get("leader"), "peers": peers}


__all__ = ["PeerPoller", "ask_word", "ensemble_from_statuses", "status_from_mntr"]
