"""An Elle-style list-append checker: transaction anomalies from a history.

Each key is a list; a transaction is a list of micro-ops ``["append", k, v]``
and ``["r", k, list-or-None]``. Appended values are unique per key, so a
read of a list reveals the order in which its elements were appended (the
*version order*) and which transaction wrote each element. From that the
checker builds the dependency graph of Adya's formalism (as Kingsbury and
Alvaro's Elle does):

- ``ww``: T1 appended the element just before T2's in a key's version order;
- ``wr``: T2 read a list whose last element T1 appended;
- ``rw``: T1 read a list and T2 appended the element that comes next (an
  element an ok transaction appended but no read shows comes after every
  element a read shows, as lists only grow);
- optional order edges: ``process`` (one process's transactions in order)
  and ``realtime`` (T1 completed before T2 was invoked), kept as a
  transitive reduction.

Cycles are classified as G0 (ww only), G1c (ww + wr), G-single-item (exactly
one rw), G-nonadjacent-item (several rw, no two adjacent) and G2-item (any
rw); a cycle that needs a process or realtime edge gets the suffix
``-process`` / ``-realtime``. Non-cycle anomalies: G1a (a read saw an
element of a failed transaction), G1b (a read ended at an element that was
not its writer's last append to the key), dirty-update (a failed element
followed by a committed one), lost-update (two committed transactions read
the same list of a key and both appended to it), internal (a transaction's
read disagrees with its own earlier micro-ops), duplicate-elements,
incompatible-order (two reads of a key that are not prefixes of one
another) and unwritten-element (a read saw an element nobody appended).

``check(history, consistency_models=("strict-serializable",),
anomalies=None, fs=("txn",))`` -> ``Result`` (``fs``: the op
names that are transactions): valid with a witness (a serialization
order: a topological order of the dependency graph), invalid with the
anomalies and each cycle's operations, unknown when no transaction
committed. ``history`` is a list of ``Op`` (or dicts with the same fields);
completions with no invocation (as in Elle's own tests) are transactions
whose call and return are at their position.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from checkers.history import FAIL, INFO, INVOKE, NEMESIS, OK
from checkers.result import Result

NAME = "elle-list-append"
G1 = ("G1a", "G1b", "G1c")
G2 = ("G-single-item", "G-nonadjacent-item", "G2-item")
# Always reported: the history cannot come from any list-append store.
STRUCTURAL = ("internal", "duplicate-elements", "incompatible-order", "unwritten-element")
_SI = ("G0", *G1, "G-single-item", "G-nonadjacent-item", "dirty-update", "lost-update")
_SER = ("G0", *G1, *G2, "dirty-update", "lost-update")
# model -> (forbidden anomaly kinds, order edges the model respects)
MODELS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "read-uncommitted": (("G0",), ()),
    "read-committed": (("G0", *G1, "dirty-update"), ()),
    "repeatable-read": (("G0", *G1, *G2, "dirty-update", "lost-update"), ()),
    "snapshot-isolation": (_SI, ()),
    "serializable": (_SER, ()),
    "strong-session-snapshot-isolation": (_SI, ("process",)),
    "strong-session-serializable": (_SER, ("process",)),
    "strict-serializable": (_SER, ("process", "realtime")),
}
_GROUPS = {"G1": G1, "G2": G2, "G-single": ("G-single-item",), "G-nonadjacent": ("G-nonadjacent-item",)}
ANOMALIES = ("G0", *G1, *G2, "dirty-update", "lost-update", *STRUCTURAL)
MAX_REPORTED = 8  # instances kept per anomaly kind
# Breadth-first searches tried per cycle kind and component: bounds the
# search on huge components. A component always yields a cycle (G2-item's
# first try succeeds), so the bound can only make a name less specific.
MAX_STARTS = 200


@dataclass
class Txn:
    id: int
    index: int  # the invocation's (or lone completion's) op index
    process: Any
    status: str  # ok | fail | info
    mops: list[list[Any]]
    call: int
    ret: int | None  # None: indeterminate (never returned)

    def brief(self) -> dict[str, Any]:
        return {"index": self.index, "process": self.process, "type": self.status, "value": self.mops}


@dataclass
class _Graph:
    out: dict[int, dict[int, list[tuple[str, Any]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    def add(self, a: int, b: int, kind: str, key: Any = None) -> None:
        if a != b:
            self.out[a][b].append((kind, key))

    def kinds(self, a: int, b: int) -> set[str]:
        return {k for k, _ in self.out.get(a, {}).get(b, ())}


def _get(op: Any, name: str, default: Any = None) -> Any:
    return op.get(name, default) if isinstance(op, dict) else getattr(op, name, default)


def _mops(value: Any, where: int) -> list[list[Any]]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"transaction at index {where} has value {value!r}; expected a list "
            'of micro-ops ["append", key, value] or ["r", key, list|null]'
        )
    out = []
    for m in value:
        if not isinstance(m, (list, tuple)) or len(m) != 3 or m[0] not in ("append", "r"):
            raise ValueError(
                f"transaction at index {where} has micro-op {m!r}; allowed: "
                '["append", key, value] or ["r", key, list|null]'
            )
        out.append(list(m))
    return out


def transactions(history: Iterable[Any], fs: Iterable[str] = ("txn",)) -> list[Txn]:
    """Pair invocations with completions. A completion pairs with its
    process's open invocation whose appends match (so a process with several
    outstanding invocations, as in some Elle tests, pairs correctly); a
    completion with none is a transaction of its own."""
    fs = tuple(fs)
    open_: dict[Any, list[tuple[int, int, list]]] = defaultdict(list)
    txns: list[Txn] = []
    for pos, op in enumerate(history):
        proc, typ = _get(op, "process"), _get(op, "type")
        if proc == NEMESIS or _get(op, "f") not in fs:
            continue
        index = _get(op, "index", pos)
        index = pos if index is None else index
        if typ == INVOKE:
            open_[proc].append((pos, index, _mops(_get(op, "value"), index)))
            continue
        if typ not in (OK, FAIL, INFO):
            raise ValueError(f"op at index {index} has type {typ!r}; allowed: invoke, ok, fail, info")
        mops = _mops(_get(op, "value"), index)
        writes = [m for m in mops if m[0] == "append"]
        cands = open_.get(proc, [])
        match = next((c for c in cands if [m for m in c[2] if m[0] == "append"] == writes), None)
        if match is None and cands:
            match = cands[0]
        if match is not None:
            cands.remove(match)
            call, index = match[0], match[1]
            if typ != OK:
                mops = match[2]  # unobserved reads: the invocation's value
        else:
            call = pos
        txns.append(Txn(len(txns), index, proc, typ, mops, call, pos if typ != INFO else None))
    for proc, cands in open_.items():
        for pos, index, mops in cands:  # never completed: indeterminate
            txns.append(Txn(len(txns), index, proc, INFO, mops, pos, None))
    return txns


# ------------------------------------------------------------------ analysis
def check(
    history: Iterable[Any],
    consistency_models: Iterable[str] | None = ("strict-serializable",),
    anomalies: Iterable[str] | None = None,
    fs: Iterable[str] = ("txn",),
) -> Result:
    """Check a list-append history (see the module docstring)."""
    forbidden, orders = _config(consistency_models, anomalies)
    txns = transactions(list(history), fs)
    committed = [t for t in txns if t.status == OK]
    if not committed:
        return Result.unknown(
            NAME, "no transaction committed, so nothing was checked", details={"transactions": len(txns)}
        )
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def report(kind: str, instance: dict[str, Any]) -> None:
        if kind in STRUCTURAL or kind.split("-realtime")[0].split("-process")[0] in forbidden:
            if len(found[kind]) < MAX_REPORTED:
                found[kind].append(instance)

    graph, stats = _build(txns, report)
    _order_edges(graph, [t for t in txns if t.status != FAIL], orders)
    live = [t for t in txns if t.status != FAIL]
    for kind, cycle in _cycles(graph, [t.id for t in live], forbidden, orders):
        report(kind, {"cycle": _describe(cycle, graph, txns)})
    details = {
        "transactions": len(txns),
        "committed": len(committed),
        **stats,
        "consistency_models": list(consistency_models or []),
        "anomalies_checked": sorted(forbidden),
    }
    if found:
        kinds = sorted(found)
        lines = [f"{k}: {len(found[k])} instance(s); first: {_explain(found[k][0])}" for k in kinds]
        return Result.illegal(
            NAME,
            f"anomalies: {', '.join(kinds)}",
            "\n".join(lines),
            {"anomaly_types": kinds, "anomalies": dict(found)},
            details,
        )
    order = _topological(graph, [t.id for t in live])
    witness = {"serialization_order": [txns[i].index for i in order[:200]], "edges": stats["edges"]}
    return Result.ok(
        NAME,
        f"no anomaly among {len(committed)} committed transactions ({stats['edges']} dependency edges, acyclic)",
        witness,
        details=details,
    )


def _config(models: Iterable[str] | None, anomalies: Iterable[str] | None) -> tuple[set[str], tuple[str, ...]]:
    forbidden: set[str] = set()
    orders: list[str] = []
    for m in models or ():
        if m not in MODELS:
            raise ValueError(f"unknown consistency model {m!r}; allowed: {', '.join(MODELS)}")
        forbidden |= set(MODELS[m][0])
        orders += [o for o in MODELS[m][1] if o not in orders]
    for a in anomalies or ():
        if a not in _GROUPS and a not in ANOMALIES:
            raise ValueError(f"unknown anomaly {a!r}; allowed: {', '.join([*_GROUPS, *ANOMALIES])}")
        forbidden |= set(_GROUPS.get(a, (a,)))
    if not forbidden:
        raise ValueError("nothing to check: give consistency_models or anomalies")
    return forbidden, tuple(orders)


def _build(txns: list[Txn], report: Any) -> tuple[_Graph, dict[str, Any]]:
    g = _Graph()
    writer: dict[tuple[Any, Any], Txn] = {}
    last_append: dict[tuple[int, Any], Any] = {}
    for t in txns:
        for op, k, v in t.mops:
            if op == "append":
                writer.setdefault((k, v), t)
                last_append[(t.id, k)] = v
    reads: dict[Any, list[tuple[Txn, list]]] = defaultdict(list)
    for t in (t for t in txns if t.status == OK):
        _internal(t, report)
        for op, k, v in t.mops:
            if op == "r":
                reads[k].append((t, list(v or [])))
    edges = 0
    for k, rs in reads.items():
        longest = max((r for _, r in rs), key=len)
        for t, r in rs:
            if len(set(map(_hashable, r))) != len(r):
                report("duplicate-elements", {"key": k, "read": r, "txn": t.brief()})
            if r != longest[: len(r)]:
                report("incompatible-order", {"key": k, "reads": [r, longest], "txn": t.brief()})
            for v in r:
                w = writer.get((k, v))
                if w is None:
                    report("unwritten-element", {"key": k, "element": v, "txn": t.brief()})
                elif w.status == FAIL:
                    report("G1a", {"key": k, "element": v, "reader": t.brief(), "writer": w.brief()})
            if r:
                w = writer.get((k, r[-1]))
                if w is not None and w is not t and last_append.get((w.id, k)) != r[-1]:
                    report("G1b", {"key": k, "read": r, "reader": t.brief(), "writer": w.brief()})
        order = [v for v in _dedupe(longest)]
        in_order = set(map(_hashable, order))
        writers = [writer.get((k, v)) for v in order]
        for a, b in itertools.pairwise(writers):
            if a is not None and b is not None:
                if a.status == FAIL and b.status != FAIL:
                    report("dirty-update", {"key": k, "aborted": a.brief(), "committed": b.brief()})
                if FAIL not in (a.status, b.status):
                    g.add(a.id, b.id, "ww", k)
        # committed appends no read shows come after every element shown
        unseen = [
            t
            for t in txns
            if t.status == OK
            and any(m[0] == "append" and m[1] == k and _hashable(m[2]) not in in_order for m in t.mops)
        ]
        last = writers[-1] if writers else None
        for u in unseen:
            if last is not None and last.status != FAIL:
                g.add(last.id, u.id, "ww", k)
        for t, r in rs:
            if r != longest[: len(r)]:
                continue
            if r:
                w = writer.get((k, r[-1]))
                if w is not None and w.status != FAIL:
                    g.add(w.id, t.id, "wr", k)
            nxt = writers[len(r)] if len(r) < len(writers) else None
            for w in [nxt] if nxt is not None else unseen:
                if w.status != FAIL:
                    g.add(t.id, w.id, "rw", k)
        _lost_updates(k, rs, report)
    edges = sum(len(v) for v in g.out.values())
    return g, {"edges": edges, "keys": len(reads)}


def _internal(t: Txn, report: Any) -> None:
    known: dict[Any, list | None] = {}
    pending: dict[Any, list] = defaultdict(list)
    for op, k, v in t.mops:
        if op == "append":
            cur = known.get(k)
            if cur is not None:
                known[k] = cur + [v]
            else:
                pending[k].append(v)
            continue
        r = list(v or [])
        cur, own = known.get(k), pending.get(k, [])
        if (cur is not None and r != cur) or (cur is None and own and r[-len(own) :] != own):
            report(
                "internal",
                {"key": k, "read": r, "expected": cur if cur is not None else ["...", *own], "txn": t.brief()},
            )
        known[k], pending[k] = r, []


def _lost_updates(k: Any, rs: list[tuple[Txn, list]], report: Any) -> None:
    """Two committed txns that read the same list of ``k`` and then appended to it."""
    by_read: dict[tuple, dict[int, Txn]] = defaultdict(dict)
    for t in {t.id: t for t, _ in rs}.values():
        last_read = None
        for op, key, v in t.mops:
            if key != k:
                continue
            if op == "r":
                last_read = tuple(map(_hashable, v or []))
            elif last_read is not None:
                by_read[last_read][t.id] = t
                break
    for r, ts in by_read.items():
        if len(ts) > 1:
            report("lost-update", {"key": k, "read": list(r), "txns": [t.brief() for t in ts.values()]})


def _order_edges(g: _Graph, txns: list[Txn], orders: tuple[str, ...]) -> None:
    if "process" in orders:
        last: dict[Any, Txn] = {}
        for t in sorted(txns, key=lambda t: t.call):
            if t.process in last and last[t.process].ret is not None:
                g.add(last[t.process].id, t.id, "process")
            last[t.process] = t
    if "realtime" in orders:
        # transitive reduction: the frontier holds completed txns no later
        # completion has superseded; each invocation links from the frontier
        events = sorted(
            [(t.call, 1, t) for t in txns] + [(t.ret, 0, t) for t in txns if t.ret is not None and t.ret > t.call],
            key=lambda e: (e[0], e[1]),
        )
        frontier: dict[int, Txn] = {}
        preds: dict[int, list[int]] = {}
        for _, is_call, t in events:
            if is_call:
                preds[t.id] = list(frontier)
                for p in frontier:
                    g.add(p, t.id, "realtime")
                if t.ret is not None and t.ret == t.call:  # a lone completion
                    _complete(t, frontier, preds)
            else:
                _complete(t, frontier, preds)


def _complete(t: Txn, frontier: dict[int, Txn], preds: dict[int, list[int]]) -> None:
    for p in preds.get(t.id, []):
        frontier.pop(p, None)
    frontier[t.id] = t


# ------------------------------------------------------------------- cycles
def _cycles(g: _Graph, nodes: list[int], forbidden: set[str], orders: tuple[str, ...]):
    """Yield (anomaly name, [(txn, edge kinds to next), ...]) per SCC and kind."""
    levels = [()] + [tuple(orders[: i + 1]) for i in range(len(orders))]
    for comp in _sccs(g, nodes):
        if len(comp) < 2:
            continue
        members = set(comp)
        # one cycle per family and SCC, at the lowest level that has one; the
        # rw family reports its most specific kind only (Elle's cascade)
        for family in (("G0",), ("G1c",), ("G-single-item", "G-nonadjacent-item", "G2-item")):
            kinds = [k for k in family if k in forbidden]
            hit = None
            for level in levels:
                for kind in kinds:
                    cyc = _find(g, members, kind, set(level))
                    if cyc is not None:
                        hit = kind, cyc
                        break
                if hit:
                    break
            if hit:
                kind, cyc = hit
                used = {e for _, ks in cyc for e in ks if e in ("process", "realtime")}
                yield kind + "".join(f"-{o}" for o in ("process", "realtime") if o in used), cyc


def _find(g: _Graph, members: set[int], kind: str, extra: set[str]):
    dep = {"ww"} if kind == "G0" else {"ww", "wr"}
    dep |= extra
    if kind == "G0":
        return _cycle_via(g, members, dep, dep, dep)
    if kind == "G1c":
        return _cycle_via(g, members, {"wr"}, dep, dep)
    if kind == "G-single-item":
        return _cycle_via(g, members, {"rw"}, dep, dep)
    if kind == "G2-item":
        return _cycle_via(g, members, {"rw"}, dep | {"rw"}, dep | {"rw"})
    return _nonadjacent(g, members, dep)


def _step_kinds(g: _Graph, a: int, b: int, allowed: set[str]) -> list[str]:
    return sorted(g.kinds(a, b) & allowed)


def _cycle_via(g: _Graph, members: set[int], first: set[str], path: set[str], _all: set[str]):
    """A cycle starting with an edge of a kind in ``first``, closed by a
    shortest path over edges of kinds in ``path``."""
    starts = 0
    for a in sorted(members):
        for b, es in g.out.get(a, {}).items():
            if b not in members or not ({k for k, _ in es} & first):
                continue
            starts += 1
            if starts > MAX_STARTS:
                return None
            back = _bfs(g, members, b, a, path)
            if back is not None:
                chain = [a] + back
                return [
                    (x, _step_kinds(g, x, y, (first if i == 0 else path)))
                    for i, (x, y) in enumerate(itertools.pairwise(chain))
                ]
    return None


def _bfs(g: _Graph, members: set[int], src: int, dst: int, allowed: set[str]) -> list[int] | None:
    prev: dict[int, int | None] = {src: None}
    q = deque([src])
    while q:
        n = q.popleft()
        if n == dst:
            path = [n]
            p = prev[n]
            while p is not None:
                path.append(p)
                p = prev[p]
            return path[::-1]
        for m, es in g.out.get(n, {}).items():
            if m in members and m not in prev and {k for k, _ in es} & allowed:
                prev[m] = n
                q.append(m)
    return None


def _nonadjacent(g: _Graph, members: set[int], dep: set[str]):
    """A cycle with at least two rw edges, no two of them adjacent: a BFS over
    (txn, last edge was rw, rw count capped at 2) from each rw edge."""
    starts = 0
    for a in sorted(members):
        for b, es in g.out.get(a, {}).items():
            if b not in members or "rw" not in {k for k, _ in es}:
                continue
            starts += 1
            if starts > MAX_STARTS:
                return None
            start = (b, True, 1)
            prev: dict[tuple, Any] = {start: None}
            q = deque([start])
            while q:
                state = q.popleft()
                n, last_rw, count = state
                if n == a and not last_rw and count >= 2:
                    chain = []
                    s = state
                    while s is not None:
                        chain.append(s)
                        s = prev[s]
                    chain = [(a, True, 0)] + chain[::-1]
                    return [
                        (x[0], ["rw"] if y[1] else _step_kinds(g, x[0], y[0], dep))
                        for x, y in itertools.pairwise(chain)
                    ]
                if n == a:
                    continue
                for m, es2 in g.out.get(n, {}).items():
                    if m not in members:
                        continue
                    kinds = {k for k, _ in es2}
                    nxt = []
                    if kinds & dep:
                        nxt.append((m, False, count))
                    if "rw" in kinds and not last_rw:
                        nxt.append((m, True, min(count + 1, 2)))
                    for s in nxt:
                        if s not in prev:
                            prev[s] = state
                            q.append(s)
    return None


def _sccs(g: _Graph, nodes: list[int]) -> list[list[int]]:
    """Tarjan's algorithm, iterative."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on: set[int] = set()
    out: list[list[int]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(list(g.out.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            n, it = work[-1]
            advanced = False
            for m in it:
                if m not in index:
                    index[m] = low[m] = counter
                    counter += 1
                    stack.append(m)
                    on.add(m)
                    work.append((m, iter(list(g.out.get(m, {})))))
                    advanced = True
                    break
                if m in on:
                    low[n] = min(low[n], index[m])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[n])
            if low[n] == index[n]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == n:
                        break
                out.append(comp)
    return out


def _topological(g: _Graph, nodes: list[int]) -> list[int]:
    indeg = {n: 0 for n in nodes}
    for a in nodes:
        for b in g.out.get(a, {}):
            if b in indeg:
                indeg[b] += 1
    q = deque(sorted(n for n, d in indeg.items() if d == 0))
    order = []
    while q:
        n = q.popleft()
        order.append(n)
        for b in g.out.get(n, {}):
            if b in indeg:
                indeg[b] -= 1
                if indeg[b] == 0:
                    q.append(b)
    return order


def _describe(cycle: list[tuple[int, list[str]]], g: _Graph, txns: list[Txn]) -> list[dict[str, Any]]:
    out = []
    for i, (t, kinds) in enumerate(cycle):
        nxt = cycle[(i + 1) % len(cycle)][0]
        keys = sorted({str(k) for kind, k in g.out[t][nxt] if kind in kinds and k is not None})
        out.append({**txns[t].brief(), "edge": "+".join(kinds), "keys": keys, "to": txns[nxt].index})
    return out


def _explain(instance: dict[str, Any]) -> str:
    if "cycle" in instance:
        return (
            " ".join(
                f"T{s['index']} -{s['edge']}{'(' + ','.join(s['keys']) + ')' if s['keys'] else ''}->"
                for s in instance["cycle"]
            )
            + f" T{instance['cycle'][0]['index']}"
        )
    return ", ".join(f"{k}={v}" for k, v in instance.items())


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _dedupe(xs: list) -> list:
    seen, out = set(), []
    for x in xs:
        if _hashable(x) not in seen:
            seen.add(_hashable(x))
            out.append(x)
    return out
