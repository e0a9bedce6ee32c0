"""The client and workload protocols every workload implements.

A workload is an op source and a checker for one client *interface*
(``workloads/interfaces.py``: register, set, lock, ...). It does not talk to
a database itself: each database offers clients for the interfaces it
supports (``harness/dbs/``: the ZooKeeper-protocol databases share kazoo
clients), and the harness joins the two (``harness.dbs.base.bind``), so the
same workload runs against every database that offers its interface.
Nothing here knows about processes, threads or the clock.

Client results: ``{"type": "ok"|"fail"|"info", "value": ..., "error":
str|None, "zxid": int|None}``, and for an answered op optionally
``"server"`` ("host:port" it ran on; the runner maps it to the node's name)
and ``"session"`` (the session id, hex). A timeout or a lost connection is ``info``
(the op may or may not have taken effect); only a definite refusal from
the server (BadVersion, NoNode, NodeExists...) is ``fail``. ``zxid`` is the
database's position the reply was made at (ZooKeeper: the reply header's
zxid; another database: its applied index or revision), or None.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from checkers.history import Op

OpDict = dict[str, Any]


@runtime_checkable
class Client(Protocol):
    """One process's connection to the cluster."""

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        """Connect to ``hosts``: every node's "host:port" in the order to try
        (roaming clients) or one node's (``--clients pinned``; ``node`` is
        then its name, else "any")."""

    def invoke(self, op: OpDict) -> OpDict:
        """Perform ``op``; never raises for a server or connection error."""

    def close(self) -> None:
        """Release the connection; idempotent, never raises."""


@runtime_checkable
class ClientFactory(Protocol):
    """What a database offers for one interface: it prepares the database
    for the interface's clients and makes them."""

    # The database's names of what these clients touch (ZooKeeper: base
    # znodes). After the final phase the runner reads them (recursively) from
    # every node alone and requires the copies to agree (checkers.convergence);
    # () compares nothing.
    converge_paths: tuple[str, ...]

    def setup(self, hosts: str) -> None:
        """Create what the clients need (``hosts``: every node's "host:port", comma-separated)."""

    def client(self) -> Client:
        """A fresh, unopened client."""


@runtime_checkable
class Workload(Protocol):
    """An op source and a checker for one client interface."""

    name: str
    interface: str  # workloads/interfaces.py
    final_each_thread: bool

    def client_settings(self) -> dict[str, Any]:
        """The workload's settings for its clients (e.g. register reads: local or sync)."""

    def ops(self, rng: Any, thread: int = 0, threads: int = 1) -> Iterator[OpDict]:
        """One client slot's endless op source (the runner limits it).

        The runner calls it once per client slot ``thread`` of ``threads``,
        each with the slot's own seeded ``rng``, so a slot's ops depend on
        the seed alone. Values that must be unique across the run (a
        register's written values, a set's adds) come from the slot's own
        value space: those equal to ``thread`` modulo ``threads``."""

    def final_ops(self) -> list[OpDict]:
        """Ops to run after healing (e.g. a final read)."""

    def check(self, history: list[Op]) -> Any:
        """Judge the history; returns a ``checkers.result.Result``."""
