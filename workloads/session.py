"""The session workload: ephemeral znodes live exactly as long as their
session (the ``session`` interface; ZooKeeper: ``harness/dbs/zk/session.py``).

Each process holds one session and:

- ``{"f": "create"}`` creates an ephemeral (a znode owned by the session;
  ZooKeeper's client makes every other one ephemeral-sequential, as the lock
  and election recipes do) -> ok ``{"node": name, "session": sid}`` (sid as a
  hex string); an indeterminate create of a sequential one names its prefix;
- ``{"f": "close"}`` closes its session and opens a new one -> ok
  ``{"closed": old_sid, "session": new_sid}``; every ephemeral of the closed
  session must then be gone;
- the final op, run by every live process (``final_each_thread``),
  ``{"f": "final-read"}`` -> ok ``{"session": sid, "nodes": {name: owner}}``:
  every ephemeral there is and the session owning it.

Every ok output also carries ``"expired"``: the sessions a server refused to
resume as expired since the process's previous ok op (the client reports the
expiry, then opens a new session). Sessions are known dead when closed by an
ok ``close`` or reported expired. A session that changed for any other reason
(the client was closed and reopened by us) is not judged: the old one may
still be alive. (Histories without ``"expired"``, from older versions, fall
back to inferring an expiry from a changed sid.) A ``create`` also says how
many times the process's client was reopened (``"reopened"``), for diagnosis.
A dead session's ephemerals are judged only by final reads *called* after the
op that proved it dead returned: a read that ran earlier may have seen the
session alive. Their ephemerals
must be absent at the final reads; ephemerals created by a session that is
still the reading process's current session must be present. Sessions of
retired processes (closed by the runner, or left to expire) are not judged:
the history does not say whether they had ended by the final read.
Check: ``workloads.checks.check_sessions``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from workloads.checks import check_sessions


@dataclass
class SessionWorkload:
    name: str = "session"
    interface: str = "session"
    close_fraction: float = 0.1
    final_each_thread: bool = True
    # Progress (checkers.availability): ephemerals created, sessions closed,
    # and every live session's final read completes after healing.
    progress_kinds = {"create": "write", "close": "write", "final-read": "read"}
    progress_answered: tuple[str, ...] = ()

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            yield {"f": "close" if rng.random() < self.close_fraction else "create", "value": None}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-read", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_sessions(history)


def make(options: dict[str, Any] | None = None) -> SessionWorkload:
    return SessionWorkload()
