"""ZooKeeper's "ordered sequential consistency" checker.

A history is sequentially consistent (in ZooKeeper's sense) when one total
order of its operations — dropping any subset of the indeterminate ones —
is accepted by the model and respects (1) real-time order among *writes*
and (2) each process's own order for *all* of its operations. Reads are
exempt from real time: a stale read is allowed, reading backwards in time is
not. The definition, with examples, is in docs/consistency.md.

How ``check`` decides, cheapest first:

1. with zxids on every completed op: an O(n log n) check that builds the
   order from the zxids and replays it (``_check_zxids``);
2. otherwise, if the history is linearizable (``checkers.linearizable``,
   per key, fast), its linearization merged across keys is the witness
   (``_from_linearization``);
3. a multi-key history is searched key by key: one key with no valid order
   proves the whole history invalid (the converse does not hold: SC is not
   local);
4. a depth-first search over (per-process prefix vector, model state) of the
   whole history, with a subsuming visited-state cache and a time budget
   (``_search``); its worst case is exponential (the problem is NP-complete).

Every valid verdict's witness is re-verified by ``verify_witness`` before it
is returned; a verdict that does not verify becomes "unknown".

The core works on ``_Entry`` records (a paired operation reduced to what the
algorithm needs) and a ``step(state, entry id) -> (ok, state')`` callable,
so it is independent of how the history was read.
"""

from __future__ import annotations

import bisect
import time as _time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from checkers import linearizable
from checkers.history import FAIL, FAIL_HAPPENED, INFO, Operation, pair
from checkers.models import ILLEGAL
from checkers.result import Result, jsonable

# Functions that never change state. Everything else is a write: in
# ZooKeeper every update request — even a conditional one that fails its
# version check — is ordered by the leader, so it obeys real time.
READ_FUNCTIONS = frozenset({"read", "get", "contains", "read-all", "exists"})

_SKIP = -1  # marker in a search path: an indeterminate op that never happened
# memory guard for the state cache (beyond it: "unknown"): about this many
# bytes, at roughly 8 bytes per process plus 200 per cached node
_MAX_CACHE_BYTES = 400_000_000


@dataclass(frozen=True, slots=True)
class _Entry:
    """One paired operation as the sequential core sees it.

    ``ret`` is None for an indeterminate operation (``info`` or pending): it
    may take effect at any point after ``call`` (in its process's order), or
    never. ``call``/``ret`` are history positions (real-time order).
    """

    id: int
    process: Hashable
    call: int
    ret: int | None
    write: bool
    zxid: int | None = None


StepFn = Callable[[Any, int], tuple[bool, Any]]  # (state, entry id) -> (ok, state')


@dataclass(slots=True)
class SeqOutcome:
    """What the core found; the adapter turns it into a ``Result``.

    valid: True (``order`` is the witness), False (``order`` is the longest
    order found, ``blocked`` says why each process's next op cannot follow
    it), or "unknown" (``reason`` says why; ``order`` the longest so far).
    ``states[i]`` is the model state after ``order[i]``.
    """

    valid: bool | str
    order: list[int] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)
    # (entry id, why it cannot be placed next, entry ids of writes it waits for)
    blocked: list[tuple[int, str, list[int]]] = field(default_factory=list)
    reason: str = ""
    method: str = "search"
    explored: int = 0


def is_write(f: Any, value: Any = None) -> bool:
    """Whether an operation with function ``f`` may change state.

    A Knossos multi-register ``txn`` is a write unless all its micro-ops are
    reads.
    """
    name = str(f).lstrip(":")
    if name == "txn" and isinstance(value, (list, tuple)):
        return any(str(mop[0]).lstrip(":") != "read" for mop in value if isinstance(mop, (list, tuple)) and mop)
    return name not in READ_FUNCTIONS


# --------------------------------------------------------------------------
# The search (no zxids)


class _Lanes:
    """Per-process operation sequences and real-time write constraints."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        by_proc: dict[Hashable, list[_Entry]] = {}
        for e in sorted(entries, key=lambda e: (e.call, e.id)):
            by_proc.setdefault(e.process, []).append(e)
        self.procs = list(by_proc)
        self.lanes: list[list[_Entry]] = [by_proc[p] for p in self.procs]
        # goal[p]: the prefix length after which only indeterminate ops remain
        self.goal = []
        for lane in self.lanes:
            g = 0
            for i, e in enumerate(lane):
                if e.ret is not None:
                    g = i + 1
            self.goal.append(g)
        # per lane: determinate writes sorted by completion time, with the
        # running maximum of their positions, to answer "which writes of
        # lane p completed before time t" by bisection
        self._wret: list[list[int]] = []
        self._wmax: list[list[int]] = []
        for lane in self.lanes:
            ws = sorted((e.ret, i) for i, e in enumerate(lane) if e.write and e.ret is not None)
            self._wret.append([r for r, _ in ws])
            running, best = [], -1
            for _, i in ws:
                best = max(best, i)
                running.append(best)
            self._wmax.append(running)
        self._need: dict[int, tuple[int, ...]] = {}

    def need(self, e: _Entry) -> tuple[int, ...]:
        """Prefix lengths every lane must reach before write ``e`` is placed:
        all writes that completed strictly before ``e`` was invoked."""
        got = self._need.get(e.id)
        if got is None:
            vec = []
            for rets, maxes in zip(self._wret, self._wmax, strict=True):
                k = bisect.bisect_left(rets, e.call)
                vec.append(maxes[k - 1] + 1 if k else 0)
            got = self._need[e.id] = tuple(vec)
        return got


def _state_key(state: Any) -> Hashable:
    try:
        hash(state)
        return state
    except TypeError:
        return repr(state)


# per read entry id: (doomed(state), the write entries that could rescue it)
Wants = dict[int, tuple[Callable[[Any], bool], list[_Entry]]]


def _search(
    entries: Sequence[_Entry], init: Any, step: StepFn, deadline: float | None, wants: Wants | None = None
) -> SeqOutcome:
    """Depth-first search for a sequentially consistent order.

    A node is (prefix vector, state); its children place one process's next
    operation (a write only once every write preceding it in real time is
    placed), or skip an indeterminate one. Children are tried earliest
    invocation first, which follows real time and finds valid orders fast.

    Visited nodes are cached with subsumption: a process that ends with an
    indeterminate op (a crashed, retired process) contributes one bit,
    "placed or not". Node A = (prefix, placed-bits a, state) covers node B =
    (same prefix, bits b ⊇ a, same state): whatever B can still do, A can
    too (the extra crashed ops are simply never placed), so once A is
    visited B need not be. Without this, every subset of crashed writes
    applied so far is a separate node.

    Dead reads (``wants``, from ``Model.wants``): a process whose next op
    is a determinate read that the state dooms, while no write that could
    rescue it can still be placed before it, never gets past that read, so
    the node is abandoned at once. A write w can still precede read r of
    process p only if w is unplaced, not p's own, and needs no op of p
    after r: every op that must precede w is a write that completed before
    w was invoked or a process predecessor of one, so ``need(w)[p] >
    prefix[p]`` is exactly "w must follow some op of p after r".
    """
    lanes_of: dict[int, tuple[int, int]] = {}
    lanes = _Lanes(entries)
    n_lanes = len(lanes.lanes)
    for q, lane in enumerate(lanes.lanes):
        for j, e in enumerate(lane):
            lanes_of[e.id] = (q, j)
    # per doomed-able read: (doomed, [(lane, position, need vector) of rescuers])
    rescue: dict[int, tuple[Callable[[Any], bool], list[tuple[int, int, tuple[int, ...]]]]] = {}
    for rid, (doomed_fn, ws) in (wants or {}).items():
        if rid in lanes_of:
            rescue[rid] = (doomed_fn, [(*lanes_of[w.id], lanes.need(w)) for w in ws if w.id in lanes_of])
    goal = lanes.goal
    lens = [len(lane) for lane in lanes.lanes]
    crash_bit = {p: 1 << k for k, p in enumerate(p for p in range(n_lanes) if goal[p] < lens[p])}
    prefix = [0] * n_lanes
    max_visited = _MAX_CACHE_BYTES // (8 * n_lanes + 200)
    visited: dict[tuple[tuple[int, ...], Hashable], list[int]] = {}
    n_visited = 0
    path: list[tuple[int, int, Any]] = []  # (lane, entry id or _SKIP, state after)
    best: list[tuple[int, int, Any]] = []
    best_placed = -1
    n_placed = 0

    def visit(state: Any) -> bool:
        """Record the current node; False if a visited node covers it."""
        nonlocal n_visited
        comp = list(prefix)
        mask = 0
        for p, bit in crash_bit.items():
            if comp[p] == lens[p]:
                comp[p] -= 1
                mask |= bit
        key = (tuple(comp), _state_key(state))
        masks = visited.get(key)
        if masks is None:
            visited[key] = [mask]
        else:
            for m in masks:
                if m | mask == mask:
                    return False
            masks.append(mask)
        n_visited += 1
        return True

    def dead_read(p: int, e: _Entry, state: Any) -> bool:
        """Read ``e``, next in lane ``p``, is illegal in ``state`` and can never
        become legal: no write that could rescue it can still precede it."""
        dr = rescue.get(e.id)
        i = prefix[p]
        return (
            dr is not None
            and dr[0](state)
            and not any(q != p and j >= prefix[q] and need[p] <= i for q, j, need in dr[1])
        )

    def children(state: Any) -> list[tuple[int, int, Any]]:
        out: list[tuple[int, int, int, Any]] = []
        late: list[tuple[int, int, int, Any]] = []
        skips: list[tuple[int, int, int, Any]] = []
        for p in range(n_lanes):
            i = prefix[p]
            lane = lanes.lanes[p]
            if i >= len(lane):
                continue
            e = lane[i]
            if not e.write:
                # A read that is legal here can always go here: it changes no
                # state and has no real-time constraint, so any valid order
                # that places it later stays valid with it moved up. Taking
                # it greedily prunes the interleavings of reads. An
                # indeterminate read constrains nothing: skip it, or, as the
                # last op of its process, just leave it (the goal ignores it;
                # skipping it would only make a node its parent covers).
                if e.ret is None:
                    if i == lens[p] - 1:
                        continue
                    return [(p, _SKIP, state)]
                ok, nxt = step(state, e.id)
                if ok:
                    return [(p, e.id, nxt)]
                if dead_read(p, e, state):
                    return []  # this read can never be placed: a dead node
                continue
            need = lanes.need(e)
            if any(prefix[q] < need[q] for q in range(n_lanes)):
                continue
            ok, nxt = step(state, e.id)
            if e.ret is not None:
                if ok:
                    out.append((e.call, p, e.id, nxt))
                continue
            # An indeterminate write. When only indeterminate ops follow it
            # in its process (the usual case: a crashed process is retired),
            # not placing it now already covers "later" and "never", so it
            # needs no skip child; and placing it where it changes nothing
            # is dominated by not placing it. Placing it is tried after the
            # completed ops, since most crashed ops matter little.
            trailing = i == lens[p] - 1 and i >= goal[p]
            if ok and not (trailing and _state_key(nxt) == _state_key(state)):
                late.append((e.call, p, e.id, nxt))
            if not trailing:
                skips.append((e.call, p, _SKIP, state))
        out.sort(key=lambda c: (c[0], c[1]))
        late.sort(key=lambda c: (c[0], c[1]))
        skips.sort(key=lambda c: (c[0], c[1]))
        return [(p, eid, st) for _, p, eid, st in out + late + skips]

    state = init
    visit(state)
    stack: list[tuple[list[tuple[int, int, Any]], int]] = [(children(state), 0)]
    explored = 0
    while stack:
        if all(prefix[p] >= goal[p] for p in range(n_lanes)):
            order = [eid for _, eid, _ in path if eid != _SKIP]
            states = [st for _, eid, st in path if eid != _SKIP]
            return SeqOutcome(True, order, states, explored=explored)
        explored += 1
        if explored & 0x3FF == 0:
            if deadline is not None and _time.monotonic() > deadline:
                return _unknown_from(best or path, "time budget exhausted", explored)
            if n_visited > max_visited:
                return _unknown_from(best or path, "state cache limit reached", explored)
        cands, idx = stack[-1]
        advanced = False
        while idx < len(cands):
            p, eid, st = cands[idx]
            idx += 1
            prefix[p] += 1
            if not visit(st):
                prefix[p] -= 1
                continue
            stack[-1] = (cands, idx)
            path.append((p, eid, st))
            if eid != _SKIP:
                n_placed += 1
            stack.append((children(st), 0))
            advanced = True
            break
        if advanced:
            continue
        # dead end: remember the longest order, then backtrack
        if n_placed > best_placed:
            best_placed, best = n_placed, list(path)
        stack.pop()
        if path:
            p, eid, _ = path.pop()
            prefix[p] -= 1
            if eid != _SKIP:
                n_placed -= 1
    # exhausted: no order exists; explain at the end of the longest one
    prefix = [0] * n_lanes
    for p, _, _ in best:
        prefix[p] += 1
    state = best[-1][2] if best else init
    blocked = _blocked(lanes, prefix, state, step)
    # reads no remaining write can rescue first: they are why the order ends
    dead = {
        lanes.lanes[p][prefix[p]].id
        for p in range(n_lanes)
        if prefix[p] < lens[p]
        and not lanes.lanes[p][prefix[p]].write
        and lanes.lanes[p][prefix[p]].ret is not None
        and dead_read(p, lanes.lanes[p][prefix[p]], state)
    }
    blocked = [
        (
            eid,
            "the model rejects it in this state, and no write that could make it legal can still be placed before it",
            [],
        )
        for eid, _, _ in blocked
        if eid in dead
    ] + [b for b in blocked if b[0] not in dead]
    order = [eid for _, eid, _ in best if eid != _SKIP]
    states = [st for _, eid, st in best if eid != _SKIP]
    return SeqOutcome(
        False,
        order,
        states,
        blocked=blocked,
        explored=explored,
        reason="no order satisfies the model, each process's order and real-time order among writes",
    )


def _blocked(lanes: _Lanes, prefix: list[int], state: Any, step: StepFn) -> list[tuple[int, str, list[int]]]:
    """Why each process's next operation cannot follow the given prefix."""
    out = []
    for p, lane in enumerate(lanes.lanes):
        i = prefix[p]
        if i >= len(lane):
            continue
        e = lane[i]
        if e.ret is None and i == len(lane) - 1:
            continue  # a crashed op at the end of its process blocks nothing
        if e.write:
            need = lanes.need(e)
            missing = [
                w.id
                for q in range(len(prefix))
                for j in range(prefix[q], need[q])
                if (w := lanes.lanes[q][j]).write and w.ret is not None and w.ret < e.call
            ]
            if missing:
                out.append((e.id, "writes that completed before it was invoked are not yet placed", missing[:5]))
                continue
        ok, _ = step(state, e.id)
        if ok:
            out.append((e.id, "legal here, but every continuation from here fails", []))
        else:
            out.append((e.id, "the model rejects it in this state", []))
    return out


def _unknown_from(path: list[tuple[int, int, Any]], reason: str, explored: int) -> SeqOutcome:
    order = [eid for _, eid, _ in path if eid != _SKIP]
    states = [st for _, eid, st in path if eid != _SKIP]
    return SeqOutcome("unknown", order, states, reason=reason, explored=explored)


# --------------------------------------------------------------------------
# The zxid fast path


def _check_zxids(entries: Sequence[_Entry], init: Any, step: StepFn) -> SeqOutcome:
    """O(n log n) check when every determinate op carries its zxid.

    Indeterminate ops are left out (they never happened); the caller falls
    back to the search when this fails and indeterminate writes exist.
    """
    done = [e for e in entries if e.ret is not None]
    # 1. each process's zxids are non-decreasing in its own order
    last: dict[Hashable, _Entry] = {}
    for e in sorted(done, key=lambda e: (e.call, e.id)):
        prev = last.get(e.process)
        if prev is not None and e.zxid < prev.zxid:  # type: ignore[operator]
            return SeqOutcome(
                False,
                blocked=[
                    (
                        e.id,
                        f"its zxid {e.zxid:#x} is below the zxid "
                        f"{prev.zxid:#x} of an earlier op of the same "
                        f"process (the process saw time go backwards)",
                        [prev.id],
                    )
                ],
                reason="per-process zxids decrease",
                method="zxid",
            )
        last[e.process] = e
    # 2. write zxids respect real time: sweep by invocation, tracking the
    #    largest zxid of the writes completed before each invocation
    writes = [e for e in done if e.write]
    by_ret = sorted(writes, key=lambda e: e.ret)  # type: ignore[arg-type, return-value]
    j, top = 0, None
    for e in sorted(writes, key=lambda e: e.call):
        while j < len(by_ret) and by_ret[j].ret < e.call:  # type: ignore[operator]
            if top is None or by_ret[j].zxid > top.zxid:  # type: ignore[operator]
                top = by_ret[j]
            j += 1
        if top is not None and e.zxid <= top.zxid:  # type: ignore[operator]
            return SeqOutcome(
                False,
                blocked=[
                    (
                        e.id,
                        f"its zxid {e.zxid:#x} is not above the zxid "
                        f"{top.zxid:#x} of a write that completed "
                        f"before it was invoked",
                        [top.id],
                    )
                ],
                reason="write zxids contradict real time",
                method="zxid",
            )
    # 3. replay in zxid order; at equal zxid the earliest-invoked write goes
    #    first (it is the one that made the zxid), then invocation order
    order = _zxid_order(done)
    if order is None:
        return SeqOutcome("unknown", reason="zxid order contradicts a process's own order", method="zxid")
    state = init
    states: list[Any] = []
    for k, e in enumerate(order):
        ok, nxt = step(state, e.id)
        if not ok:
            what = (
                "the state after every write at or below its zxid"
                if not e.write
                else "the state its zxid places it after"
            )
            return SeqOutcome(
                False,
                [x.id for x in order[:k]],
                states,
                blocked=[(e.id, f"zxid {e.zxid:#x}: the model rejects it in {what}", [])],
                reason="an operation disagrees with the state at its zxid",
                method="zxid",
            )
        state = nxt
        states.append(state)
    return SeqOutcome(True, [e.id for e in order], states, method="zxid")


def _zxid_order(done: Sequence[_Entry]) -> list[_Entry] | None:
    """Determinate ops in zxid order, or None if that breaks process order."""
    groups: dict[int, list[_Entry]] = {}
    for e in sorted(done, key=lambda e: (e.call, e.id)):
        groups.setdefault(e.zxid, []).append(e)  # type: ignore[arg-type]
    order: list[_Entry] = []
    for z in sorted(groups):
        group = groups[z]
        first = next((e for e in group if e.write), None)
        if first is not None:
            order.append(first)
        order.extend(e for e in group if e is not first)
    pos: dict[Hashable, int] = {}
    for e in order:
        if pos.get(e.process, -1) > e.call:
            return None
        pos[e.process] = e.call
    return order


def check_entries(
    entries: Sequence[_Entry],
    init: Any,
    step: StepFn,
    budget_s: float | None = None,
    wants: Callable[[], Wants] | None = None,
) -> SeqOutcome:
    """The core: zxid fast path when possible, else (or as fallback) search
    (pruned with ``wants()``, called only then)."""
    deadline = None if budget_s is None else _time.monotonic() + budget_s
    if entries and all(e.zxid is not None for e in entries if e.ret is not None):
        out = _check_zxids(entries, init, step)
        if out.valid is True or (out.valid is False and not any(e.ret is None and e.write for e in entries)):
            return out
    return _search(entries, init, step, deadline, wants() if wants is not None else None)


# --------------------------------------------------------------------------
# The entry point: a history and a model in, a Result out

CHECKER = "sequential"


def check(history: Any, model: Any, budget_s: float | None = None, *, use_linearization: bool = True) -> Result:
    """Check ``history`` (a ``History``/list of ``Op``, or a list of paired
    ``Operation``) for ZooKeeper's ordered sequential consistency under
    ``model`` (a ``checkers.models.Model``).

    ``budget_s`` bounds the search in seconds; running out gives "unknown".
    Malformed histories raise ``HistoryError`` (the caller reports it).

    A multi-key history is first checked key by key: every key's projection
    of a valid order is itself valid, so one failing key proves the whole
    history invalid (fast). Passing every key proves nothing (SC is not
    local), so the whole history is then searched with the keys' states
    side by side.

    Before searching, a history without zxids is tried for linearizability
    (a linearizable history is sequentially consistent, and the per-key
    linearizability check is much faster than this search);
    ``use_linearization=False`` skips that shortcut, so tests and benchmarks
    can exercise the search itself.
    """
    started = _time.monotonic()
    deadline = None if budget_s is None else started + budget_s
    ops = _operations(history)
    parts = model.partition(ops)
    keys = [k for k, _ in parts]
    slot = {id(op): i for i, (_, pops) in enumerate(parts) for op in pops}
    fns = [model.compile(op) for op in ops]
    entries = [
        _Entry(
            n,
            op.process,
            op.call_index,
            op.return_index if op.status != INFO else None,
            is_write(op.f, op.input),
            op.completion.zxid if op.completion is not None else None,
        )
        for n, op in enumerate(ops)
    ]

    def step(state: Any, i: int) -> tuple[bool, Any]:
        new = fns[i](state)
        return (False, state) if new is ILLEGAL else (True, new)

    has_zxids = bool(entries) and all(e.zxid is not None for e in entries if e.ret is not None)
    memo: list[Wants] = []

    def wants() -> Wants:  # built only if a search runs
        if not memo:
            memo.append(_wants(ops, entries, model, slot))
        return memo[0]

    if len(parts) <= 1:
        key = keys[0] if keys else None
        init1 = model.initial_state(key)
        out = None if has_zxids or not use_linearization else _from_linearization(ops, model, init1, step, deadline)
        if out is None:
            out = check_entries(entries, init1, step, _left(deadline), wants)
        return _result(out, ops, model, None, key, started)
    lifted = [_in_slot(fn, slot[id(op)]) for fn, op in zip(fns, ops, strict=True)]

    def step_all(state: Any, i: int) -> tuple[bool, Any]:
        new = lifted[i](state)
        return (False, state) if new is ILLEGAL else (True, new)

    init = tuple(model.initial_state(k) for k in keys)
    if not has_zxids and use_linearization:
        out = _from_linearization(ops, model, init, step_all, deadline)
        if out is not None:
            return _result(out, ops, model, keys, None, started)
    # Key by key, smallest first, each with a share of half of what is left
    # (at most _PER_KEY_S when unbounded), so one hard key cannot starve the
    # others or the whole-history search. Only a False here decides.
    by_slot: dict[int, list[_Entry]] = {}
    for n, op in enumerate(ops):
        by_slot.setdefault(slot[id(op)], []).append(entries[n])
    todo = sorted(by_slot, key=lambda k: len(by_slot[k]))
    for done_n, k in enumerate(todo):
        left = _left(deadline)
        pool = _PER_KEY_S * (len(todo) - done_n) if left is None else left / 2
        out = check_entries(by_slot[k], model.initial_state(keys[k]), step, pool / (len(todo) - done_n), wants)
        if out.valid is False:
            return _result(out, ops, model, None, keys[k], started, per_key=True)

    def lifted_wants() -> Wants:
        return {r: (_in_slot_test(doomed, slot[id(ops[r])]), ws) for r, (doomed, ws) in wants().items()}

    out = check_entries(entries, init, step_all, _left(deadline), lifted_wants)
    return _result(out, ops, model, keys, None, started)


def _wants(ops: list[Operation], entries: list[_Entry], model: Any, slot: dict[int, int]) -> Wants:
    """``Model.wants`` per read: its doomed test and the writes of its key
    that could rescue it (pairwise per key; a key with more than
    ``_MAX_WANTS_PAIRS`` read-write pairs gets no tests, which is only less
    pruning)."""
    hook = getattr(model, "wants", None)
    if hook is None:
        return {}
    writes: dict[int, list[int]] = {}
    reads: dict[int, int] = {}
    for n, e in enumerate(entries):
        k = slot[id(ops[n])]
        if e.write:
            writes.setdefault(k, []).append(n)
        elif e.ret is not None:
            reads[k] = reads.get(k, 0) + 1
    out: Wants = {}
    for n, e in enumerate(entries):
        if e.write or e.ret is None:
            continue
        k = slot[id(ops[n])]
        if reads[k] * len(writes.get(k, ())) > _MAX_WANTS_PAIRS:
            continue
        w = hook(ops[n])
        if w is not None:
            doomed, rescues = w
            out[n] = (doomed, [entries[m] for m in writes.get(slot[id(ops[n])], ()) if rescues(ops[m])])
    return out


def _in_slot_test(test: Callable[[Any], bool], k: int) -> Callable[[Any], bool]:
    return lambda state: test(state[k])


_MAX_WANTS_PAIRS = 2_000_000
_LIN_BUDGET_S = 5.0  # at most this much of a check goes to the linearizable shortcut
_PER_KEY_S = 2.0  # per key, for the key-by-key search when the check is unbounded


def _from_linearization(
    ops: list[Operation], model: Any, init: Any, step: StepFn, deadline: float | None
) -> SeqOutcome | None:
    """A linearizable history is sequentially consistent, and its
    linearization is a witness. Linearizability checks per key (fast), so
    merge the keys' orders into one: give each op the point max(call of every
    op up to it in its key's order) -- inside its interval, since a
    linearization never puts an op after one that returned before it was
    invoked -- and sort by point. That respects real time across keys (if x
    returned before y was invoked, x's point < y's point), so the merged
    order is a linearization of the whole history. It is replayed and
    verified before use; None when the history is not (shown) linearizable.
    """
    left = _left(deadline)
    budget = _LIN_BUDGET_S if left is None else min(_LIN_BUDGET_S, left / 2)
    if budget <= 0:
        return None
    try:
        result = linearizable.check(ops, model, budget_s=budget, fail_means=FAIL_HAPPENED)
    except Exception:  # noqa: BLE001 - a shortcut that fails just is not taken
        return None
    if result.valid is not True:
        return None
    pos = {op.index: n for n, op in enumerate(ops)}
    keyed: list[tuple[int, int, int]] = []  # (point, tie-break, op position)
    try:
        for part in result.witness.get("partitions", []):
            point = -1
            for rank, index in enumerate(part["order"]):
                n = pos[index]
                point = max(point, ops[n].call_index)
                keyed.append((point, rank, n))
        for index in result.witness.get("unconstrained", []):
            n = pos[index]
            keyed.append((ops[n].call_index, -1, n))
    except (KeyError, TypeError, AttributeError):
        return None  # a witness shape we do not understand proves nothing here
    keyed.sort()
    order = [n for _, _, n in keyed]
    if len(set(order)) != len(order):
        return None
    state, states = init, []
    for n in order:
        ok, state = step(state, n)
        if not ok:
            return None
        states.append(state)
    if _verify(ops, model, {"order": [ops[n].index for n in order]}):
        return None
    return SeqOutcome(True, order, states, method="linearization")


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - _time.monotonic())


def _operations(history: Any) -> list[Operation]:
    """Paired operations with the source's ``fail`` semantics applied:
    where a failure means "did not happen" the op is dropped."""
    items = list(history)
    if items and isinstance(items[0], Operation):
        ops = items
        fail_happened = False
    else:
        ops = pair(history)
        fail_happened = getattr(history, "fail_means", None) == FAIL_HAPPENED
    if not fail_happened:
        ops = [op for op in ops if op.status != FAIL]
    return ops


def _in_slot(fn: Callable[[Any], Any], i: int) -> Callable[[Any], Any]:
    """Lift a one-key step to the tuple of all keys' states."""

    def lifted(state: tuple) -> Any:
        new = fn(state[i])
        if new is ILLEGAL:
            return ILLEGAL
        return state[:i] + (new,) + state[i + 1 :]

    return lifted


def _describe_state(model: Any, keys: list | None, state: Any) -> str:
    if keys is None:
        return model.describe_state(state)
    return "{" + ", ".join(f"{k}: {model.describe_state(s)}" for k, s in zip(keys, state, strict=True)) + "}"


def _op_view(op: Operation, model: Any) -> dict[str, Any]:
    d = jsonable(op.to_dict())
    d["description"] = model.describe_op(op)
    return d


def _steps(out: SeqOutcome, ops: list[Operation], model: Any, keys: list | None, init: Any) -> list[dict[str, Any]]:
    """The order found, as the linearizable checker shows its partial
    linearizations: each op with the model state before and after."""
    steps = []
    before = init
    for i, after in zip(out.order, out.states, strict=True):
        o = ops[i]
        steps.append(
            {
                "id": o.id,
                "index": o.index,
                "process": o.process,
                "description": model.describe_op(o),
                "state_before": _describe_state(model, keys, before),
                "state_after": _describe_state(model, keys, after),
            }
        )
        before = after
    return steps


def _result(
    out: SeqOutcome,
    ops: list[Operation],
    model: Any,
    keys: list | None,
    key: Any,
    started: float,
    per_key: bool = False,
) -> Result:
    """Turn the core's outcome into a Result (shaped like linearizable's)."""
    init = tuple(model.initial_state(k) for k in keys) if keys is not None else model.initial_state(key)
    details = {
        "model": getattr(model, "name", "?"),
        "method": out.method,
        "operations": len(ops),
        "explored": out.explored,
        "keys": len(keys) if keys is not None else 1,
        "elapsed_s": round(_time.monotonic() - started, 6),
    }
    steps = _steps(out, ops, model, keys, init)
    if out.valid is True:
        witness = {"order": [ops[i].index for i in out.order]}
        problems = _verify(ops, model, witness)
        if problems:  # a bug of ours must not become a verdict
            return Result.unknown(
                CHECKER,
                "unknown: the order found failed verification",
                "The checker found an order but it did not verify, so nothing is claimed: " + "; ".join(problems[:5]),
                details,
            )
        summary = f"sequentially consistent: {len(out.order)} of {len(ops)} operations in one order ({out.method})"
        return Result.ok(CHECKER, summary, witness, details=details)
    if out.valid is False:
        state = steps[-1]["state_after"] if steps else _describe_state(model, keys, init)
        # the most telling blocked op: a completed one the model rejects
        ranked = sorted(out.blocked, key=lambda b: (ops[b[0]].status == INFO, "rejects" not in b[1]))
        bad = ops[ranked[0][0]] if ranked else None
        where = f" on key {key!r}" if per_key else ""
        pops = ops if not per_key else [o for o in ops if o.key == key]
        candidates: list[dict[str, Any]] = [
            {
                "op": _op_view(ops[i], model),
                "why": why + (": " + ", ".join(f"#{ops[m].index}" for m in missing) if missing else ""),
                "legal_now": "rejects" not in why,
            }
            for i, why, missing in ranked
        ]
        lines = [
            f"Not sequentially consistent{where}: {out.reason}.",
            "Every order that keeps each process's own order and real-time order among writes was searched."
            if out.method == "search"
            else "The zxids fix the order (see docs/consistency.md).",
            f"The longest order found places {len(steps)} of {len(pops)} operations"
            f"{' of this key' if per_key else ''}:",
        ]
        if len(steps) > 12:
            lines.append(f"  ... {len(steps) - 12} earlier operations ...")
        for s in steps[-12:]:
            lines.append(
                f"  #{s['index']:<6} p{s['process']}: {s['description']:<28} {s['state_before']} -> {s['state_after']}"
            )
        lines.append(f"After it the state is {state}. Each process's next operation:")
        for c in candidates[:10]:
            lines.append(f"  #{c['op']['index']:<6} p{c['op']['process']}: {c['op']['description']:<28} {c['why']}")
        summary = (
            f"not sequentially consistent{where}: {model.describe_op(bad)} (process "
            f"{bad.process}, op index {bad.index}) cannot be placed"
            if bad
            else f"not sequentially consistent{where}: {out.reason}"
        )
        counterexample = {
            "key": jsonable(key),
            "model": getattr(model, "name", "?"),
            "op": _op_view(bad, model) if bad else None,
            "state": state,
            "reason": out.reason,
            "partial_linearizations": [steps],
            "candidates": candidates,
            "operations": [_op_view(o, model) for o in pops],
        }
        return Result.illegal(CHECKER, summary, "\n".join(lines), counterexample, details)
    details["reason"] = out.reason
    details["longest"] = len(steps)
    return Result.unknown(
        CHECKER,
        f"unknown: {out.reason}",
        f"The check stopped before deciding ({out.reason}) after "
        f"{out.explored} search steps; the longest order found placed "
        f"{len(steps)} of {len(ops)} operations, and no contradiction "
        "was found.",
        details,
    )


def verify_witness(history: Any, model: Any, witness: dict[str, Any]) -> list[str]:
    """Independently check a witness order (``{"order": [op index, ...]}``):
    every completed op exactly once (crashed ones at most once), each
    process's order kept, real-time order among writes kept, and the model
    accepting every op in that order. Returns the problems found (none: the
    witness proves the history sequentially consistent)."""
    return _verify(_operations(history), model, witness)


def _verify(ops: list[Operation], model: Any, witness: dict[str, Any]) -> list[str]:
    """``verify_witness`` on operations whose fail semantics are applied."""
    by_index = {op.index: op for op in ops}
    order = list(witness.get("order", []))
    problems: list[str] = []
    seen: set[int] = set()
    for i in order:
        if i not in by_index:
            problems.append(f"op index {i} is not an operation of the history")
        elif i in seen:
            problems.append(f"op index {i} appears twice")
        seen.add(i)
    for op in ops:
        if op.status != INFO and op.index not in seen:
            problems.append(f"completed op index {op.index} is missing")
    if problems:
        return problems
    placed = [by_index[i] for i in order]
    last_call: dict[Any, int] = {}
    max_write_call = -1
    for op in placed:
        if last_call.get(op.process, -1) > op.call_index:
            problems.append(f"op index {op.index} comes before an earlier op of process {op.process} in the order")
        last_call[op.process] = op.call_index
        if is_write(op.f, op.input):
            ret = op.return_index if op.status != INFO else None
            if ret is not None and ret < max_write_call:
                problems.append(f"write index {op.index} completed before a write placed earlier was invoked")
            max_write_call = max(max_write_call, op.call_index)
    parts = model.partition(ops)
    slot = {id(op): k for k, (_, pops) in enumerate(parts) for op in pops}
    states = [model.initial_state(key) for key, _ in parts]
    for op in placed:
        k = slot[id(op)]
        ok, new = model.step(states[k], op)
        if not ok:
            problems.append(
                f"the model rejects op index {op.index} "
                f"({model.describe_op(op)}) in state "
                f"{model.describe_state(states[k])}"
            )
            break
        states[k] = new
    return problems
