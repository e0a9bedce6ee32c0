"""Linearizability: Wing–Gong–Lowe search with P-compositionality.

``check(history, model, budget_s=None, max_states=DEFAULT_MAX_STATES) -> Result``

- ``history``: a ``History`` (its semantics decide what ``fail`` means), a
  list of ``Op`` (paired here; ``fail`` = did not happen) or a list of
  already paired ``Operation``.
- The history is split by ``model.partition`` (per key: linearizability is
  local, so each key is checked alone) and every partition is searched by
  WGL: a doubly linked list of call/return entries (two int arrays), a stack
  of (op, state before) for backtracking, and a cache of (linearized set,
  model state) so no configuration is explored twice. The linearized set is
  kept as small ints (a window above the longest fully linearized prefix, and
  per-class counts of crashed ops), so cache keys stay a few words long
  however long the history is. The loop is iterative (no recursion limit)
  and each op's step is compiled once (``Model.compile``). ``_search``'s
  docstring lists the prunings and why each is sound.
- Partitions are interleaved in slices, smallest first, so one quickly
  illegal partition ends the check without waiting for a slow valid one.
- Crashed and pending ops (status "info") may take effect at any point after
  their call, or never; the model accepts any output for them.
- ``budget_s`` (wall time) and ``max_states`` (cached configurations alive
  at once, i.e. memory) end the check with "unknown", never a guess.
- Bad input raises: ``HistoryError`` (malformed history, from pairing) and
  ``ModelError`` (an op the model does not know). Callers that want any
  other exception as "unknown" wrap the call in ``result.run_checker``.
- ``verify_witness(history, model, witness)`` re-checks a valid verdict's
  witness independently (legal steps, real-time order, nothing left out).

Verdicts:

- valid: ``witness = {"partitions": [{"key": k, "order": [op index, ...],
  "not_taken_effect": [op index, ...]}], "unconstrained": [op index, ...]}``
  (op index = the index of the invoking ``Op``): every partition's
  linearization in order; the crashed ops the linearization does without
  (they never took effect, or took effect after everything else with no
  visible change); and the ops that are legal anywhere and change nothing
  (reads whose result nobody saw), which fit anywhere in their interval and
  are not searched.
- invalid: ``counterexample`` = ``{"key", "model", "op", "state",
  "partial_linearizations", "candidates", "operations"}``: the failing
  partition's key, the operation that cannot be linearized, the model state
  after the longest partial linearization, that linearization (each step with
  its description and the states before and after), the other operations that
  were pending at that point and why each is illegal there, and every
  operation of the partition (for drawing bars on a time line).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from checkers.history import FAIL, FAIL_DID_NOT_HAPPEN, FAIL_HAPPENED, History, Op, Operation, pair
from checkers.models import IDENTITY, ILLEGAL, Model
from checkers.result import Result, jsonable

CHECKER = "linearizable"
# Cached configurations alive at once before the check gives up with
# "unknown": roughly 200 bytes each, so about 1 GB -- a shared machine's
# worth. (The 100,000-op single-key history with 1% crashes needs ~3 M.)
DEFAULT_MAX_STATES = 5_000_000
_SLICE = 4096  # loop iterations between budget checks / partition switches
_INF = 1 << 62  # "never": a crashed op's return; no next member of a class


class _Outcome:
    """What a partition search ended with."""

    __slots__ = ("valid", "order", "best", "states", "best_len")

    def __init__(
        self,
        valid: bool,
        order: list[int] | None,
        best: tuple[list[int], list[Any], int] | None,
        states: int,
        best_len: int = 0,
    ) -> None:
        self.valid = valid
        self.best_len = best_len
        self.order = order  # local op ids in linearization order (valid)
        self.best = best  # (local ids, states[0..len], doomed op) longest partial
        self.states = states


# _search's arguments before (live, slot, capture_at): ops, steps, readonly,
# classes, dead_ends, init
_SearchArgs = tuple[list[Operation], list[Any], list[bool], list[Any], tuple[list[Any], list[bool]], Any]


def _search(
    ops: Sequence[Operation],
    steps: list[Any],
    readonly: list[bool],
    classes: list[Any],
    dead_ends: tuple[list[Any], list[bool]],
    init: Any,
    live: list[int],
    slot: int,
    capture_at: int | None = None,
) -> Generator[None, None, _Outcome]:
    """WGL over one partition; yields every ``_SLICE`` pushes/pops.

    ``live[slot]`` is kept at the cache size so the driver can enforce a
    memory budget across partitions.

    Completed ops live in the WGL list (call and return entries in history
    order). Crashed ops have no return, so they are kept out of it: at each
    configuration, once the scan reaches the first return entry (the
    completed op that must be linearized next at the latest), the crashed
    ops called before that point are tried too, one class at a time, before
    backtracking. The candidates at every configuration are exactly WGL's;
    only the order of trying differs, and a long-crashed op no longer costs
    a list step on every rescan.

    Prunings on top of WGL, each sound on its own:

    - a crashed op may never take effect: one whose step would leave the
      state unchanged is not linearized (not linearizing it at all reaches a
      superset of the same futures), and once every completed op is
      linearized the partition is valid (leftover crashed ops never happened);
    - crashed ops whose effect nobody could observe are dropped before the
      search (``Model.prune_crashed``, with a proof per model);
    - crashed ops with equal steps (``Model.equivalence_key``) are
      interchangeable -- none has a return to respect -- so only the earliest
      untaken one of each class is tried;
    - if a completed *read-only* op (one that never changes the state where
      it is legal: a read, a failed cas that ran) leads only to failure, so
      does the configuration it was added to: in any completion of that
      configuration the op could be moved to the front without changing any
      state. So the search backtracks past it at once. (An op that merely
      left *this* state unchanged, like writing the current value, does not
      qualify: elsewhere it would change the state.)

    - dead ends (``Model.dead_ends``): the completed op with the earliest
      return among those not yet linearized must come next at the latest,
      and only ops straddling its return can still go before it; when the
      model proves none of them can make it legal from the current state,
      the configuration is abandoned at once instead of after trying every
      order of those ops. The same holds for a later op when every op
      returning before it is transparent to its test. A second linked list
      holds the return entries alone, in return order, so after each push
      the search walks it from the front past transparent ops to the first
      op with a test, and backtracks if that test says dead.

    The linearized set is kept compactly: completed ops are numbered in call
    order (rank) and every completed op below ``low`` is linearized, so only
    a window ``win`` (bit k = rank low+k) is kept, plus ``taken[class]`` for
    crashed ops (linearized in call order within a class, so a count says
    which; ``cw`` packs those counts into one int). Cache keys are
    (low, win, cw, state), a few machine words even for 100,000-op
    partitions.

    Finding the longest partial linearization is cheap (its length is an
    int); recording it is not (a copy of the stack at every new maximum is
    quadratic). So an illegal search reports only the length, and the caller
    runs the same deterministic search again with ``capture_at`` set to it:
    that run stops and returns the stack the first time it gets that deep.
    """
    n = len(ops)
    crashed = [o.return_index is None for o in ops]
    readonly = [not c and ro for c, ro in zip(crashed, readonly, strict=True)]
    remaining = n - sum(crashed)
    by_call = sorted(range(n), key=lambda j: ops[j].call_index)

    # the WGL list of completed ops: 0 = head, 2i+1 = call of op i,
    # 2i+2 = return of op i, tail = a sentinel (no end checks needed)
    events = []
    for i, op in enumerate(ops):
        ret = op.return_index
        if ret is not None:  # not crashed[i]
            events.append((op.call_index, 0, 2 * i + 1))
            events.append((ret, 1, 2 * i + 2))
    events.sort()
    tail = 2 * n + 1
    nxt = [tail] * (tail + 1)
    prv = [0] * (tail + 1)
    prev_e = 0
    for _, _, e in events:
        nxt[prev_e] = e
        prv[e] = prev_e
        prev_e = e
    nxt[prev_e] = tail
    prv[tail] = prev_e
    # the completed ops alone, in return order: rh = head, rt = tail; the
    # first one is the op that must be linearized next at the latest
    rh, rt = n, n + 1
    rnx = [rt] * (n + 2)
    rpv = [rh] * (n + 2)
    prev_r = rh
    for _, kind, e_ in events:
        if kind:
            j = (e_ - 1) >> 1
            rnx[prev_r] = j
            rpv[j] = prev_r
            prev_r = j
    rnx[prev_r] = rt
    rpv[rt] = prev_r
    dead = list(dead_ends[0]) + [None, None]
    transparent = list(dead_ends[1]) + [False, False]

    def doomed(s: Any) -> int:
        """The op (local id) a dead-end test condemns in state ``s``, or -1."""
        q = rnx[rh]
        while True:
            d = dead[q]
            if d is not None:
                return q if d(s) else -1
            if not transparent[q]:
                return -1
            q = rnx[q]

    ret_pos = [o.return_index if o.return_index is not None else 0 for o in ops]
    call_pos = [o.call_index for o in ops]

    rank = [0] * n
    r_ = 0
    for i in by_call:
        if not crashed[i]:
            rank[i] = r_
            r_ += 1

    # crashed classes: members in call order; taken[k] of them linearized.
    # ``cw`` packs the taken counts into one int (16 bits a class, capped
    # below) so the cache key stays (low, win, cw, state).
    class_ids: dict[Any, int] = {}
    members: list[list[int]] = []
    for i in by_call:
        if crashed[i]:
            k = class_ids.setdefault(classes[i], len(class_ids))
            if k == len(members):
                members.append([])
            members[k].append(i)
    nclasses = len(members)
    cls_of = [0] * n
    for k, ms in enumerate(members):
        for i in ms:
            cls_of[i] = k
    width = max([len(ms) for ms in members] + [1]).bit_length()
    cls_unit = [1 << (k * width) for k in range(nclasses)]
    taken = [0] * nclasses
    # call position of each class's next untaken member (_INF when none)
    next_call = [call_pos[ms[0]] for ms in members]

    low = win = cw = 0
    cache: set[tuple[int, int, int, Any]] = set()
    cache_add = cache.add
    stack: list[tuple[int, Any, int, int, int, int]] = []
    push = stack.append
    pop = stack.pop
    state = init
    illegal = ILLEGAL
    best_len = 0
    budget = _SLICE
    kstart = 0
    e = nxt[0] if remaining else tail
    if capture_at == 0:
        remaining = 0  # the empty partial linearization is the longest
    elif doomed(state) >= 0:
        e = 2 * rnx[rh] + 2  # dead from the start: straight to backtracking
        kstart = nclasses
    while remaining:
        if e & 1:
            # a call entry of a completed op
            i = e >> 1
            ns = steps[i](state)
            if ns is not illegal:
                b = rank[i] - low
                if b:
                    nlow = low
                    nwin = win | (1 << b)
                else:
                    nwin = win | 1
                    t = (nwin ^ (nwin + 1)).bit_length() - 1  # trailing ones
                    nwin >>= t
                    nlow = low + t
                key = (nlow, nwin, cw, ns)
                if key not in cache:
                    cache_add(key)
                    push((i, state, low, win, cw, 0))
                    state = ns
                    low = nlow
                    win = nwin
                    remaining -= 1
                    # lift the call and return entries out of the list
                    p = prv[e]
                    q = nxt[e]
                    nxt[p] = q
                    prv[q] = p
                    r = e + 1
                    p = prv[r]
                    q = nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    p = rpv[i]
                    q = rnx[i]
                    rnx[p] = q
                    rpv[q] = p
                    e = nxt[0]
                    budget -= 1
                    if not budget:
                        live[slot] = len(cache)
                        yield
                        budget = _SLICE
                    if len(stack) > best_len:
                        best_len = len(stack)
                        if best_len == capture_at:
                            break
                    if doomed(ns) >= 0:
                        # an op to return soon cannot be linearized from
                        # here: straight to backtracking (any return entry
                        # with kstart = nclasses does that)
                        e = 2 * rnx[rh] + 2
                        kstart = nclasses
                    continue
            e = nxt[e]
            continue
        # a return entry: its op must be linearized before anything after it.
        # First try the crashed ops called before it, class by class.
        limit = ret_pos[(e - 1) >> 1]
        k = kstart
        kstart = 0
        pushed = False
        while k < nclasses:
            if next_call[k] < limit:
                m = taken[k]
                ms = members[k]
                c = ms[m]
                ns = steps[c](state)
                if ns is not illegal and ns != state:
                    ncw = cw + cls_unit[k]
                    key = (low, win, ncw, ns)
                    if key not in cache:
                        cache_add(key)
                        push((c, state, low, win, cw, e))
                        m += 1
                        taken[k] = m
                        next_call[k] = call_pos[ms[m]] if m < len(ms) else _INF
                        state = ns
                        cw = ncw
                        pushed = True
                        break
            k += 1
        if pushed:
            e = nxt[0]
            budget -= 1
            if not budget:
                live[slot] = len(cache)
                yield
                budget = _SLICE
            if len(stack) > best_len:
                best_len = len(stack)
                if best_len == capture_at:
                    break
            if doomed(state) >= 0:
                e = 2 * rnx[rh] + 2
                kstart = nclasses
            continue
        # nothing fits before this return: backtrack
        if not stack:
            live[slot] = 0
            return _Outcome(False, None, None, len(cache), best_len)
        i, state, low, win, cw, at = pop()
        if crashed[i]:
            k = cls_of[i]
            taken[k] -= 1
            next_call[k] = call_pos[i]
            e = at  # the same configuration, same return entry:
            kstart = k + 1  # go on with the next class
        else:
            remaining += 1
            c = 2 * i + 1
            r = c + 1
            p = prv[r]
            q = nxt[r]
            nxt[p] = r
            prv[q] = r
            p = prv[c]
            q = nxt[c]
            nxt[p] = c
            prv[q] = c
            p = rpv[i]
            q = rnx[i]
            rnx[p] = i
            rpv[q] = i
            if readonly[i]:
                # a completed read-only op that was legal here could go
                # first in any completion of the configuration below it, so
                # that configuration fails too: keep backtracking
                e = r
                kstart = nclasses
            else:
                e = nxt[c]
        budget -= 1
        if not budget:
            live[slot] = len(cache)
            yield
            budget = _SLICE
    live[slot] = 0
    order = [f[0] for f in stack]
    if capture_at is not None and len(stack) == capture_at:
        # (the doomed op, if a dead-end test ended this configuration: the
        # op that cannot be linearized, which need not return first)
        return _Outcome(False, None, (order, [f[1] for f in stack] + [state], doomed(state)), len(cache))
    return _Outcome(True, order, None, len(cache))


def _operations(history: Iterable[Any], fail_means: str | None) -> list[Operation]:
    items = history if isinstance(history, list) else list(history)
    if isinstance(history, History):
        ops = pair(history)
        fm = fail_means or history.fail_means
    elif items and isinstance(items[0], Op):
        ops = pair(items)
        fm = fail_means or FAIL_DID_NOT_HAPPEN
    else:
        ops = list(items)
        fm = fail_means or FAIL_DID_NOT_HAPPEN
    if fm != FAIL_HAPPENED:
        ops = [o for o in ops if o.status != FAIL]
    return ops


def check(
    history: Iterable[Any],
    model: Model,
    budget_s: float | None = None,
    max_states: int | None = DEFAULT_MAX_STATES,
    *,
    fail_means: str | None = None,
) -> Result:
    """Is ``history`` linearizable with respect to ``model``? See module doc.

    ``max_states`` defaults to ``DEFAULT_MAX_STATES`` (about 1 GB of cache);
    pass None for no memory bound."""
    t0 = time.monotonic()
    ops = _operations(history, fail_means)
    parts = model.partition(ops)
    live = [0] * len(parts)
    gens = []
    free: list[Operation] = []
    pruned: dict[int, list[Operation]] = {}  # crashed ops no one could observe
    for slot, (key, pops) in enumerate(parts):
        steps = []
        kept = []
        for o in pops:
            fn = model.compile(o)
            if fn is IDENTITY:
                free.append(o)  # legal anywhere in its interval, changes nothing
            else:
                kept.append(o)
                steps.append(fn)
        searched = model.prune_crashed(kept)
        if len(searched) != len(kept):
            ids = {id(o) for o in searched}
            pruned[slot] = [o for o in kept if id(o) not in ids]
            steps = [fn for o, fn in zip(kept, steps, strict=True) if id(o) in ids]
            kept = searched
        parts[slot] = (key, kept)
        args: _SearchArgs = (
            kept,
            steps,
            [model.read_only(o) for o in kept],
            [model.equivalence_key(o) if o.return_index is None else None for o in kept],
            model.dead_ends(kept),
            model.initial_state(key),
        )
        gens.append((slot, key, args, _search(*args, live, slot)))
    order = sorted(range(len(gens)), key=lambda s: len(parts[s][1]))
    gens = [gens[s] for s in order]
    deadline = None if budget_s is None else t0 + budget_s
    done: dict[int, _Outcome] = {}
    explored = 0
    active = list(gens)
    while active:
        still = []
        for g in active:
            slot, key, args, gen = g
            pops = args[0]
            try:
                next(gen)
            except StopIteration as stop:
                out: _Outcome = stop.value
                explored += out.states
                if not out.valid:
                    out.best = best = _longest(args, out.best_len)
                    return _illegal(model, key, pops, best, len(parts), ops, t0, explored)
                done[slot] = out
                continue
            still.append(g)
            if deadline is not None and time.monotonic() > deadline:
                return _unknown(f"time budget of {budget_s:g} s ran out", parts, done, t0, explored + sum(live))
            if max_states is not None and sum(live) > max_states:
                return _unknown(
                    f"state budget of {max_states} cached configurations ran out", parts, done, t0, explored + sum(live)
                )
        active = still
    witness = {
        "partitions": [_witness(key, pops, done[slot], pruned.get(slot, [])) for slot, (key, pops) in enumerate(parts)],
        "unconstrained": sorted(o.index for o in free),
    }
    elapsed = time.monotonic() - t0
    summary = f"linearizable: {len(ops)} operations in {len(parts)} partition{'s' if len(parts) != 1 else ''}"
    return Result.ok(
        CHECKER,
        summary,
        witness,
        summary + f" ({model.name} model)",
        {
            "model": model.name,
            "operations": len(ops),
            "partitions": len(parts),
            "states": explored,
            "elapsed_s": round(elapsed, 6),
        },
    )


def _witness(key: Any, pops: list[Operation], out: _Outcome, pruned: list[Operation]) -> dict[str, Any]:
    order = out.order
    assert order is not None, "a valid partition search returns its order"
    placed = set(order)
    left = [o.index for i, o in enumerate(pops) if i not in placed]
    return {
        "key": key,
        "order": [pops[i].index for i in order],
        "not_taken_effect": sorted(left + [o.index for o in pruned]),
    }


def _longest(args: _SearchArgs, depth: int) -> tuple[list[int], list[Any], int]:
    """Re-run an illegal partition's search (``args``: the same arguments)
    until it is ``depth`` deep: (local ids, states, doomed op or -1)."""
    gen = _search(*args, [0], 0, depth)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            best = stop.value.best
            if best is None:  # a bug: the caller's run_checker makes it "unknown"
                raise RuntimeError(
                    f"the re-run of an illegal partition did not reach depth {depth}; the search is not deterministic"
                ) from None
            return best


def _unknown(why: str, parts: list, done: dict[int, _Outcome], t0: float, explored: int) -> Result:
    undecided = [jsonable(parts[s][0]) for s in range(len(parts)) if s not in done]
    return Result.unknown(
        CHECKER,
        f"unknown: {why} ({len(undecided)} of {len(parts)} partitions undecided)",
        f"The search stopped because the {why}; {len(done)} of {len(parts)} "
        f"partitions were proved linearizable and none was found illegal, so "
        f"nothing can be said about the rest. Undecided keys: {undecided[:20]}",
        {
            "reason": why,
            "partitions": len(parts),
            "decided": len(done),
            "undecided_keys": undecided,
            "states": explored,
            "elapsed_s": round(time.monotonic() - t0, 6),
        },
    )


def _op_view(model: Model, op: Operation) -> dict[str, Any]:
    d = jsonable(op.to_dict())
    d["description"] = model.describe_op(op)
    return d


def _illegal(
    model: Model,
    key: Any,
    pops: list[Operation],
    best: tuple[list[int], list[Any], int],
    nparts: int,
    all_ops: list[Operation],
    t0: float,
    explored: int,
) -> Result:
    ids, states, doomed = best
    done = set(ids)
    state = states[-1]
    pending = [i for i in range(len(pops)) if i not in done]

    # WGL fails at the first return entry (in history order) whose op is not
    # linearized: that op cannot take effect before it returns -- unless a
    # dead-end test named the op that cannot.
    def ret_pos(i: int) -> int:
        r = pops[i].return_index
        return _INF + pops[i].call_index if r is None else r

    if doomed >= 0:
        bad = doomed
    else:
        bad = min(pending, key=ret_pos) if pending else ids[-1]
    bad_op = pops[bad]
    bad_ret = ret_pos(bad)
    candidates: list[dict[str, Any]] = []
    for i in pending:
        o = pops[i]
        if o.call_index < bad_ret:
            ok, after = model.step(state, o)
            candidates.append(
                {"op": _op_view(model, o), "legal_now": ok, "state_after": model.describe_state(after) if ok else None}
            )
    steps = []
    for n, i in enumerate(ids):
        o = pops[i]
        steps.append(
            {
                "id": o.id,
                "index": o.index,
                "process": o.process,
                "description": model.describe_op(o),
                "state_before": model.describe_state(states[n]),
                "state_after": model.describe_state(states[n + 1]),
                "state_before_value": jsonable(states[n]),
                "state_after_value": jsonable(states[n + 1]),
            }
        )
    where = "" if nparts == 1 and key is None else f" on key {key!r}"
    desc = model.describe_op(bad_op)
    ok_bad, _ = model.step(state, bad_op)
    summary = (
        f"not linearizable{where}: {desc} (process {bad_op.process}, op index {bad_op.index}) cannot be linearized"
    )
    lines = [
        f"Not linearizable{where} ({model.name} model, {len(pops)} operations "
        f"in this partition, {len(all_ops)} in all).",
        f"The longest partial linearization orders {len(ids)} of {len(pops)} operations:",
    ]
    shown = steps if len(steps) <= 12 else steps[-12:]
    if len(steps) > 12:
        lines.append(f"  ... {len(steps) - 12} earlier operations ...")
    for s in shown:
        lines.append(
            f"  #{s['index']:<6} p{s['process']}: {s['description']:<28} {s['state_before']} -> {s['state_after']}"
        )
    lines.append(f"After it the state is {model.describe_state(state)}.")
    ret = "never returned" if bad_op.return_index is None else f"returned at position {bad_op.return_index}"
    lines.append(
        f"Operation #{bad_op.index} by process {bad_op.process} ({desc}), "
        f"invoked at position {bad_op.call_index} and {ret}, must take "
        f"effect before it returns, but it is "
        f"{'legal here only in orders already explored' if ok_bad else 'illegal in this state'}"
        ", and no other order of the operations before its return "
        "makes it legal (every such order was searched)."
    )
    others = [c for c in candidates if c["op"]["id"] != bad_op.id]
    if others:
        lines.append("Other operations pending at that point:")
        for c in others[:10]:
            lines.append(
                f"  #{c['op']['index']:<6} p{c['op']['process']}: "
                f"{c['op']['description']:<28} "
                f"{'legal -> ' + c['state_after'] if c['legal_now'] else 'illegal here'}"
            )
    counterexample = {
        "key": jsonable(key),
        "model": model.name,
        "op": _op_view(model, bad_op),
        "state": model.describe_state(state),
        "state_value": jsonable(state),
        "partial_linearizations": [steps],
        "candidates": candidates,
        "operations": [_op_view(model, o) for o in pops],
    }
    return Result.illegal(
        CHECKER,
        summary,
        "\n".join(lines),
        counterexample,
        {
            "model": model.name,
            "operations": len(all_ops),
            "partitions": nparts,
            "states": explored,
            "elapsed_s": round(time.monotonic() - t0, 6),
        },
    )


def verify_witness(
    history: Iterable[Any], model: Model, witness: dict[str, Any], *, fail_means: str | None = None
) -> list[str]:
    """Independently re-check a valid verdict's witness; returns the problems
    found (empty = the witness is a linearization).

    Each partition's order must step legally through ``model`` from its
    initial state, respect real time (no op placed before one that returned
    before it was called), and include every completed op that is not
    ``unconstrained``. A cheap proof that a "valid" is not a lie.
    """
    ops = _operations(history, fail_means)
    by_index = {o.index: o for o in ops}
    problems: list[str] = []
    free = set(witness.get("unconstrained", ()))
    placed: set[int] = set()
    for part in witness["partitions"]:
        key = part["key"]
        state = model.initial_state(key)
        max_call = -1
        seq = [by_index[i] for i in part["order"]]
        for n, o in enumerate(seq):
            ok, state = model.step(state, o)
            if not ok:
                problems.append(
                    f"key {key!r}: op #{o.index} ({model.describe_op(o)}) is illegal at position {n} of the order"
                )
                break
            if o.return_index is not None and o.return_index < max_call:
                problems.append(f"key {key!r}: op #{o.index} returned before an op placed ahead of it was called")
            max_call = max(max_call, o.call_index)
            placed.add(o.index)
        # real time: any op placed later must not have returned before an
        # earlier-placed op was called (checked via the running max above)
    for o in ops:
        if o.return_index is not None and o.index not in placed and o.index not in free:
            problems.append(f"completed op #{o.index} ({model.describe_op(o)}) is not in the linearization")
    return problems
