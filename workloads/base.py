"""The client and workload protocols every workload implements.

A workload bundles a client (kazoo, so it runs against the node and against
Apache ZooKeeper alike), an op source and a checker. The harness's runner
drives it; nothing here knows about processes, threads or the clock.

Client results: ``{"type": "ok"|"fail"|"info", "value": ..., "error":
str|None, "zxid": int|None}``, and for an answered op optionally
``"server"`` ("host:port" it ran on; the runner maps it to the node's name)
and ``"session"`` (the session id, hex). A timeout or a lost connection is ``info``
(the op may or may not have taken effect); only a definite refusal from
the server (BadVersion, NoNode, NodeExists...) is ``fail``.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

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
class Workload(Protocol):
    """A client factory, an op source and a checker."""

    name: str
    final_each_thread: bool
    # Optional: the base znodes the workload touches; after the final phase the
    # runner reads them (recursively) from every node and requires the copies
    # to agree (checkers.convergence). A workload without it is not compared.
    # converge_paths: tuple[str, ...]

    def setup(self, hosts: str) -> None:
        """Create the workload's base znodes (``hosts`` = a connect string)."""

    def client(self) -> Client:
        """A fresh, unopened client."""

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
