"""The node's own measurements, reported by the shell through explicit hooks.

The server (``node.server``), its connections (``node.connection``) and its
effect runner (``node.runner``) call these hooks at the moments that define
each figure; nothing wraps or patches the pure core. The four-letter words,
the AdminServer commands and ``/metrics`` (``node.admin``) only read them.

* :class:`LatencyStats`: min/avg/max request latency (``srvr``, ``mntr``),
  from a request's arrival to its reply, every request;
* :class:`NodeMetrics`: transactions by operation (``txn``, when a write,
  session create or close is handed to the replica), write latency by
  operation (``write_done``, from arrival until the reply is written to the
  client's socket, which is after the fsync that made it durable), fsync latency (``fsync_done``).
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_OP_NAMES = {
    "SetData": "setData",
    "SetACL": "setACL",
    "CreateSession": "createSession",
    "CloseSession": "closeSession",
    "DeleteContainer": "deleteContainer",
}


_NAME_OF_TYPE: dict[type, str] = {}


def op_name(op: Any) -> str:
    """A tree op's name as the metrics label it: CreateOp -> create, SetDataOp -> setData, ..."""
    kind = type(op)
    name = _NAME_OF_TYPE.get(kind)
    if name is None:
        raw = kind.__name__
        raw = raw[:-2] if raw.endswith("Op") else raw
        name = _NAME_OF_TYPE[kind] = _OP_NAMES.get(raw, raw.lower())
    return name


@dataclass
class LatencyStats:
    """min/avg/max of request latencies in ms (ZooKeeper's srvr figures)."""

    count: int = 0
    total: float = 0.0
    min: float = 0.0
    max: float = 0.0

    def add(self, ms: float) -> None:
        if self.count == 0 or ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms
        self.count += 1
        self.total += ms

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass
class Histogram:
    """A cumulative-bucket histogram of seconds (one writer: the event loop)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1

    def samples(self, labels: dict) -> list[tuple[str, dict, float]]:
        """Prometheus samples (``_bucket`` per bound, ``_sum``, ``_count``)."""
        out: list[tuple[str, dict, float]] = []
        running = 0
        for le, n in zip(self.buckets + (float("inf"),), self.counts, strict=True):
            running += n
            out.append(("_bucket", {**labels, "le": floatToGoString(le)}, running))
        out.append(("_sum", labels, self.total))
        out.append(("_count", labels, self.count))
        return out


class NodeMetrics:
    """Counters and histograms the shell feeds through its hooks (see the module docstring)."""

    def __init__(self) -> None:
        self.txns: collections.Counter[str] = collections.Counter()
        self.write_latency: dict[str, Histogram] = {}
        self.fsync = Histogram()
        self.fsyncs = 0

    def txn(self, name: str) -> None:
        """A transaction (write, createSession, closeSession) was handed to the replica."""
        self.txns[name] += 1

    def write_done(self, name: str, seconds: float) -> None:
        """A transaction's reply was written to its client ``seconds`` after the request arrived."""
        h = self.write_latency.get(name)
        if h is None:
            h = self.write_latency[name] = Histogram()
        h.observe(seconds)

    def fsync_done(self, seconds: float) -> None:
        """One fsync of the write-ahead log returned after ``seconds``."""
        self.fsyncs += 1
        self.fsync.observe(seconds)


__all__ = ["Histogram", "LATENCY_BUCKETS_S", "LatencyStats", "NodeMetrics", "op_name"]
