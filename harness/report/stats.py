"""Pure views of a history for the report: op pairs, latencies, quantiles,
throughput and fault intervals. No plotting here, so all of it is testable."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from checkers.history import INVOKE, NEMESIS, Op

NS = 1e9

# How a nemesis op begins or ends a fault: kind of fault, or None.
_BEGIN = {"kill": "kill", "pause": "pause", "lose-unsynced": "disk"}
_END = {"start": "kill", "resume": "pause"}
# an end of one kind that ends others too: "start" restarts killed nodes and
# nodes whose disks lost their unsynced writes alike
_ALSO_ENDS = {"kill": ("disk",)}


def ended_kinds(kind: str) -> tuple[str, ...]:
    """The fault kinds an end edge of ``kind`` ends."""
    return (kind, *_ALSO_ENDS.get(kind, ()))


def fault_edge(f: str) -> tuple[str, str] | None:
    """("begin"|"end", kind) for a nemesis op name, else None.

    start-X/stop-X pairs (start-partition/stop-partition) and the process
    faults kill/start, pause/resume."""
    if f in _BEGIN:
        return "begin", _BEGIN[f]
    if f in _END:
        return "end", _END[f]
    if f.startswith("start-"):
        return "begin", f[len("start-") :]
    if f.startswith("stop-"):
        return "end", f[len("stop-") :]
    if f in ("heal", "heal-all"):
        return "end", "*"
    return None


@dataclass(frozen=True)
class Pair:
    invoke: Op
    completion: Op | None

    @property
    def start_s(self) -> float:
        return self.invoke.time / NS

    @property
    def end_s(self) -> float | None:
        return None if self.completion is None else self.completion.time / NS

    @property
    def type(self) -> str:
        return "info" if self.completion is None else self.completion.type

    @property
    def latency_s(self) -> float | None:
        return None if self.completion is None else (self.completion.time - self.invoke.time) / NS


def pairs(history: Iterable[Op], include_nemesis: bool = False) -> list[Pair]:
    """Match each invocation with its process's next completion."""
    open_: dict[Any, Op] = {}
    out: list[Pair] = []
    for op in history:
        if op.process == NEMESIS and not include_nemesis:
            continue
        if op.type == INVOKE:
            if op.process in open_:
                out.append(Pair(open_.pop(op.process), None))
            open_[op.process] = op
        elif op.process in open_:
            out.append(Pair(open_.pop(op.process), op))
    out.extend(Pair(op, None) for op in open_.values())
    out.sort(key=lambda p: p.invoke.index)
    return out


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of already sorted values (q in [0, 1])."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_quantiles(ps: Iterable[Pair], qs: Sequence[float] = (0.5, 0.95, 0.99, 1.0)) -> dict[str, dict[str, float]]:
    """type -> {"p50": seconds, ...; "count": n} over completed ops."""
    by_type: dict[str, list[float]] = {}
    for p in ps:
        if p.latency_s is not None:
            by_type.setdefault(p.type, []).append(p.latency_s)
    out = {}
    for t, vals in sorted(by_type.items()):
        vals.sort()
        row = {("max" if q == 1.0 else f"p{int(round(q * 100))}"): quantile(vals, q) for q in qs}
        row["count"] = len(vals)
        out[t] = row
    return out


def throughput(ps: Iterable[Pair], bucket_s: float = 1.0) -> dict[str, list[tuple[float, float]]]:
    """type -> [(bucket start s, completions per second)], empty buckets as 0."""
    counts: dict[str, dict[int, int]] = {}
    last = 0
    for p in ps:
        end_s = p.end_s
        if end_s is None:  # no completion
            continue
        b = int(end_s // bucket_s)
        last = max(last, b)
        counts.setdefault(p.type, {}).setdefault(b, 0)
        counts[p.type][b] += 1
    return {t: [(b * bucket_s, c.get(b, 0) / bucket_s) for b in range(last + 1)] for t, c in sorted(counts.items())}


@dataclass(frozen=True)
class FaultInterval:
    start_s: float
    end_s: float
    kind: str
    label: str


def fault_intervals(history: Sequence[Op], end_s: float | None = None) -> list[FaultInterval]:
    """When each fault was in effect: from the completion of the op that
    began it to the completion of the op that ended it (or ``end_s``)."""
    end_s = end_s if end_s is not None else (history[-1].time / NS if history else 0.0)
    active: dict[str, tuple[float, str]] = {}
    out: list[FaultInterval] = []
    for op in history:
        if op.process != NEMESIS or op.type == INVOKE:
            continue
        edge = fault_edge(op.f)
        if edge is None:
            continue
        what, kind = edge
        t = op.time / NS
        if what == "begin":
            if kind not in active:
                active[kind] = (t, describe_fault(op.f, op.value))
        else:
            kinds = list(active) if kind == "*" else ended_kinds(kind)
            for k in kinds:
                if k in active:
                    start, label = active.pop(k)
                    out.append(FaultInterval(start, t, k, label))
    out.extend(FaultInterval(start, end_s, k, label) for k, (start, label) in active.items())
    out.sort(key=lambda i: i.start_s)
    return out


def _names(v: Any) -> str:
    if isinstance(v, (list, tuple, set, frozenset)):
        return ", ".join(sorted(str(x) for x in v)) or "none"
    return str(v)


def _words(v: Any) -> str:
    """Any JSON value in words: no Python reprs (no braces, quotes or frozensets)."""
    if isinstance(v, dict):
        return "; ".join(f"{k} {_words(x)}" for k, x in v.items()) or "nothing"
    if isinstance(v, (list, tuple, set, frozenset)):
        return _names(v)
    return str(v)


_TARGET_KEYS = {
    "kill": "killed",
    "pause": "paused",
    "start": "started",
    "resume": "resumed",
    "lose-unsynced": "lost-unsynced",
}


def describe_fault(f: str, value: Any) -> str:
    """A nemesis operation in words, from its completion's value (what the
    nemesis did); a fault that touched nothing says "no effect"."""
    if f == "start-partition" and isinstance(value, dict) and "cut" in value:
        shape = value.get("partition") or "partition"
        cut = value.get("cut") or {}
        if not cut:
            return f"partition ({shape}): no effect, no link to cut"
        hears = "; ".join(f"{dst} cannot hear {_names(srcs)}" for dst, srcs in sorted(cut.items()))
        return f"partition ({shape}): {hears}"
    if f in ("stop-partition", "heal", "heal-all"):
        return "network healed"
    key = _TARGET_KEYS.get(f)
    if key and isinstance(value, dict) and key in value:
        targets = value.get(key) or []
        return f"{f} {_names(targets)}" if targets else f"{f}: no effect, no node"
    if value is None:
        return f
    return _short(f"{f} {_words(value)}")


def _short(v: Any, n: int = 120) -> str:
    s = str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


# counterexample fields that hold history indices of operations (not values)
_INDEX_KEYS = ("index", "op", "ops", "add", "final_read_index")
# fields that list context, not the failing operations
_CONTEXT_KEYS = ("operations", "candidates", "partial_linearizations")


def failing_indices(counterexample: Any, history: Sequence[Op], limit: int = 50) -> list[int]:
    """History indices of client invocations a counterexample names (fields
    such as ``index``, ``op``, ``ops``), in history order, at most ``limit``."""
    client_invokes = {op.index for op in history if op.type == INVOKE and op.process != NEMESIS}
    found: set[int] = set()

    def walk(v: Any, under_key: bool) -> None:
        if len(found) >= limit:
            return
        if isinstance(v, dict):
            for k, x in v.items():
                if k in _CONTEXT_KEYS:
                    continue
                walk(x, k in _INDEX_KEYS)
        elif isinstance(v, list):
            for x in v:
                walk(x, under_key)
        elif under_key and isinstance(v, int) and not isinstance(v, bool) and v in client_invokes:
            found.add(v)

    walk(counterexample, False)
    return sorted(found)[:limit]


class OpCounter:
    """The one way squall counts a history (report, results browser,
    results.json, summaries): an *operation* is a client invocation; each
    ends ok, fail or info, and an invocation that never completed counts as
    info (it may or may not have happened), so ok + fail + info ==
    operations. Nemesis operations (fault invocations) are counted apart;
    every record of history.jsonl, invocation or completion, is a *line*."""

    def __init__(self) -> None:
        self.c = {"operations": 0, "ok": 0, "fail": 0, "info": 0, "nemesis": 0, "lines": 0}
        self._open: set = set()
        self._nemesis_open = False

    def add(self, process: Any, type_: str) -> None:
        self.c["lines"] += 1
        if process == NEMESIS:  # a fault is one operation: its invocation, or a lone completion
            if type_ == INVOKE or not self._nemesis_open:
                self.c["nemesis"] += 1
            self._nemesis_open = type_ == INVOKE
        elif type_ == INVOKE:
            if process in self._open:  # a second invocation: the first never completed
                self.c["info"] += 1
            self.c["operations"] += 1
            self._open.add(process)
        elif process in self._open and type_ in ("ok", "fail", "info"):
            self._open.discard(process)
            self.c[type_] += 1

    def result(self) -> dict[str, int]:
        out = dict(self.c)
        out["info"] += len(self._open)
        return out


def counts(history: Iterable[Op]) -> dict[str, int]:
    """operations, ok, fail, info, nemesis, lines (see :class:`OpCounter`)."""
    counter = OpCounter()
    for op in history:
        counter.add(op.process, op.type)
    return counter.result()
