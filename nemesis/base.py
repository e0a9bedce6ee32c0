"""The fault protocol every backend implements, and the nemesis protocol.

nemesis/ imports nothing else of the project: it declares here the small
protocol it needs from a cluster (``FaultTarget``) and the backends
(harness/backends/) implement it. Ops are plain dicts ``{"f": str,
"value": Any}``; a nemesis's ``invoke`` performs the fault and returns the
completion ``{"type": "info", "value": description}`` that the runner records
under the process ``"nemesis"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

NEMESIS_PROCESS = "nemesis"


@runtime_checkable
class FaultTarget(Protocol):
    """What a nemesis may do to a cluster. Node names are opaque strings."""

    nodes: list[str]

    def drop(self, src: str, dst: str) -> None:
        """Cut the one-directional link src -> dst (a blackhole)."""

    def heal(self) -> None:
        """Restore every link."""

    def pause(self, node: str) -> None:
        """Freeze the node's processes (SIGSTOP)."""

    def resume(self, node: str) -> None:
        """Thaw a paused node (SIGCONT); a no-op for a running node."""

    def kill(self, node: str) -> None:
        """Kill the node's processes hard (SIGKILL)."""

    def start(self, node: str) -> None:
        """(Re)start a killed node on its data dir; a no-op if it runs."""

    def leader(self) -> str | None:
        """The current leader's name, or None if none is known."""


class PacketTarget(Protocol):
    """Optional: packet faults on links (``packet`` fault).

    ``packet_kinds`` names what the backend can do, a subset of
    ("delay", "loss", "bandwidth")."""

    packet_kinds: tuple[str, ...]

    def shape(
        self,
        src: str,
        dst: str,
        delay_ms: float = 0,
        jitter_ms: float = 0,
        loss: float = 0.0,
        rate_kbps: float | None = None,
    ) -> None:
        """Degrade the bytes/packets src sends to dst (replaces that link's shape)."""

    def unshape(self) -> None:
        """Clear every packet fault (a whole-run base latency stays)."""


class ClockTarget(Protocol):
    """Optional: clock faults on one node's process (``clock`` fault)."""

    def clock_bump(self, node: str, offset_ms: int) -> None:
        """Set the node's wall clock to real time + offset_ms."""

    def clock_strobe(self, node: str, delta_ms: int, period_ms: int) -> None:
        """Flip the node's clock between +0 and +delta_ms every period_ms, until reset."""

    def clock_reset(self) -> None:
        """Every node's clock back to the real time; stop every strobe."""


@runtime_checkable
class LosesUnsynced(Protocol):
    """An optional FaultTarget ability (the disk fault, nemesis/disk.py)."""

    def lose_unsynced(self, node: str) -> dict[str, Any]:
        """Kill the node and drop every byte, file and directory entry it
        wrote since its last fsync/fdatasync; the node stays down. Returns
        what was lost (``reverted_files``, ``bytes_cut``, ``removed_entries``)."""


@runtime_checkable
class Nemesis(Protocol):
    """A fault strategy: turns fault ops into calls on a FaultTarget."""

    def setup(self, target: FaultTarget) -> None: ...

    def invoke(self, target: FaultTarget, op: dict[str, Any]) -> dict[str, Any]:
        """Perform ``op``; return ``{"type": "info", "value": description}``."""

    def teardown(self, target: FaultTarget) -> None:
        """Heal every fault this nemesis may have caused."""


Grudge = dict[str, frozenset[str]]
"""dst -> the set of sources whose traffic dst no longer receives."""


@dataclass
class NemesisPackage:
    """A nemesis plus its schedule of fault ops (see nemesis.package)."""

    nemesis: Nemesis
    faults: tuple[str, ...]
    interval_s: float
    op_source: Callable[[Any], Iterator[dict[str, Any]]] = field(repr=False)
    final: list[dict[str, Any]] = field(default_factory=list)

    def ops(self, rng: Any) -> Iterator[dict[str, Any]]:
        """An endless iterator of fault ops alternating start and stop."""
        return self.op_source(rng)

    def final_ops(self) -> list[dict[str, Any]]:
        """Ops that heal, resume and start everything (the final phase)."""
        return [dict(op) for op in self.final]
