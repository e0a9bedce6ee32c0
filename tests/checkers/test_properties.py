"""Property tests: histories recorded from real (simulated) concurrent
executions are always judged valid; mutations no order can explain are
judged invalid with a counterexample.

The simulator runs an atomic object (one of the models' real-world
counterparts) under random concurrency: each step either invokes an op on an
idle process, makes an invoked op take effect (its linearization point, where
its output is computed from the real state), completes an op that took
effect, or crashes an op (before or after it took effect). A crashed process
is retired and replaced by a fresh one, as Jepsen does. Such a history is
linearizable by construction (the linearization points are the witness), so
it is also sequentially consistent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import linearizable, sequential
from checkers.history import History, Op
from checkers.models import get_model

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- real objects: (invoke value generator, apply) per model ----------------


def _register_op(rng: random.Random, cas: bool) -> tuple[str, Any, Any]:
    fs = ["read", "write"] + (["cas"] if cas else [])
    f = rng.choice(fs)
    if f == "read":
        return f, None, None
    if f == "write":
        return f, rng.randint(0, 4), None
    return f, [rng.randint(0, 4), rng.randint(0, 4)], None


def _apply_register(state: Any, f: str, value: Any, key: Any, proc: Any) -> tuple[Any, str, Any]:
    """(new state, completion type, completion value)."""
    if f == "read":
        return state, "ok", state
    if f == "write":
        return value, "ok", value
    old, new = value
    if state == old:
        return new, "ok", value
    return state, "fail", value


def _kv_op(rng: random.Random, *_: Any) -> tuple[str, Any, Any]:
    f = rng.choice(["get", "put", "append"])
    key = rng.choice(["a", "b", "c"])
    return f, (None if f == "get" else str(rng.randint(0, 9))), key


def _apply_kv(state: dict, f: str, value: Any, key: Any, proc: Any) -> tuple[Any, str, Any]:
    cur = state.get(key, "")
    if f == "get":
        return state, "ok", cur
    new = dict(state)
    new[key] = value if f == "put" else cur + value
    return new, "ok", value


def _txn_op(rng: random.Random, *_: Any) -> tuple[str, Any, Any]:
    mops = []
    for _ in range(rng.randint(1, 3)):
        k = rng.choice(["x", "y"])
        if rng.random() < 0.5:
            mops.append(["read", k, None])
        else:
            mops.append(["write", k, rng.randint(0, 3)])
    return "txn", mops, None


def _apply_txn(state: dict, f: str, value: Any, key: Any, proc: Any) -> tuple[Any, str, Any]:
    new = dict(state)
    out = []
    for kind, k, v in value:
        if kind == "read":
            out.append(["read", k, new.get(k)])
        else:
            new[k] = v
            out.append(["write", k, v])
    return new, "ok", out


def _mutex_op(rng: random.Random, proc: Any = None, state: Any = None) -> tuple[str, Any, Any]:
    # mostly what a lock client does (the holder releases, others acquire),
    # sometimes the wrong call, which the lock refuses
    right = "release" if state == proc else "acquire"
    wrong = "acquire" if right == "release" else "release"
    return (right if rng.random() < 0.8 else wrong), None, None


def _apply_mutex(state: Any, f: str, value: Any, key: Any, proc: Any) -> tuple[Any, str, Any]:
    if f == "acquire":
        return (proc, "ok", None) if state is None else (state, "fail", None)
    return (None, "ok", None) if state == proc else (state, "fail", None)


def _set_op(rng: random.Random, *_: Any) -> tuple[str, Any, Any]:
    if rng.random() < 0.4:
        return "read", None, None
    return "add", rng.randint(0, 20), None


def _apply_set(state: frozenset, f: str, value: Any, key: Any, proc: Any) -> tuple[Any, str, Any]:
    if f == "read":
        return state, "ok", sorted(state)
    return state | {value}, "ok", value


def _queue_op(rng: random.Random, *_: Any) -> tuple[str, Any, Any]:
    if rng.random() < 0.5:
        return "dequeue", None, None
    return "enqueue", rng.randint(0, 1000), None


def _apply_queue(state: tuple, f: str, value: Any, key: Any, proc: Any) -> tuple[Any, str, Any]:
    if f == "enqueue":
        return state + (value,), "ok", value
    if not state:
        return state, "ok", None
    return state[1:], "ok", state[0]


@dataclass
class Object:
    model: str
    initial: Any  # the real object's initial state
    model_initial: Any  # the same, as the model's --initial
    gen: Callable[..., tuple[str, Any, Any]]  # (rng, process, state) -> (f, value, key)
    apply: Callable[..., tuple[Any, str, Any]]


OBJECTS = {
    "register": Object("register", 0, 0, lambda r, *_: _register_op(r, False), _apply_register),
    "cas-register": Object("cas-register", 0, 0, lambda r, *_: _register_op(r, True), _apply_register),
    "kv": Object("kv", {}, "", _kv_op, _apply_kv),
    "multi-register": Object("multi-register", {"x": 0, "y": 0}, {"x": 0, "y": 0}, _txn_op, _apply_txn),
    "mutex": Object("mutex", None, None, _mutex_op, _apply_mutex),
    "set": Object("set", frozenset(), None, _set_op, _apply_set),
    "fifo-queue": Object("fifo-queue", (), None, _queue_op, _apply_queue),
}


@dataclass
class _Pending:
    proc: int
    f: str
    value: Any
    key: Any
    done: tuple[str, Any] | None = None  # (type, value) once it took effect


@dataclass
class Recorder:
    ops: list[Op] = field(default_factory=list)

    def add(self, typ: str, proc: int, f: str, value: Any, key: Any) -> None:
        n = len(self.ops)
        self.ops.append(Op(n, n * 10, typ, proc, f, value, key=key))


def simulate(obj: Object, seed: int, n_procs: int, n_ops: int, crash_rate: float) -> tuple[History, Any]:
    """A history of ``n_ops`` invocations by ``n_procs`` concurrent clients,
    and the object's final state."""
    rng = random.Random(seed)
    rec = Recorder()
    state = obj.initial
    procs = list(range(n_procs))
    next_proc = n_procs
    pending: dict[int, _Pending] = {}
    invoked = 0
    while invoked < n_ops or pending:
        idle = [p for p in procs if p not in pending]
        moves = []
        if idle and invoked < n_ops:
            moves.append("invoke")
        if any(p.done is None for p in pending.values()):
            moves.append("apply")
        if any(p.done is not None for p in pending.values()):
            moves.append("complete")
        if pending and rng.random() < crash_rate:
            moves = ["crash"]
        move = rng.choice(moves)
        if move == "invoke":
            proc = rng.choice(idle)
            f, value, key = obj.gen(rng, proc, state)
            pending[proc] = _Pending(proc, f, value, key)
            rec.add("invoke", proc, f, value, key)
            invoked += 1
        elif move == "apply":
            p = rng.choice([p for p in pending.values() if p.done is None])
            state, typ, out = obj.apply(state, p.f, p.value, p.key, p.proc)
            p.done = (typ, out)
        elif move == "complete":
            p = rng.choice([p for p in pending.values() if p.done is not None])
            del pending[p.proc]
            rec.add(p.done[0], p.proc, p.f, p.done[1], p.key)
        else:  # crash: maybe after taking effect; the process is retired
            p = rng.choice(list(pending.values()))
            if p.done is None and rng.random() < 0.5:
                state, _, _ = obj.apply(state, p.f, p.value, p.key, p.proc)
            del pending[p.proc]
            rec.add("info", p.proc, p.f, p.value, p.key)
            procs[procs.index(p.proc)] = next_proc
            next_proc += 1
    return History(rec.ops), state


def _model(obj: Object):
    return get_model(obj.model, obj.model_initial)


runs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "procs": st.integers(1, 5),
        "ops": st.integers(0, 40),
        "crash": st.sampled_from([0.0, 0.02, 0.1]),
    }
)


# -- recorded executions are valid -------------------------------------------


def _assert_valid(name: str, run: dict) -> None:
    obj = OBJECTS[name]
    hist, _ = simulate(obj, run["seed"], run["procs"], run["ops"], run["crash"])
    # with the linearization shortcut (the default): valid, with a witness
    sc = sequential.check(hist, _model(obj), budget_s=30)
    assert sc.valid is True, f"{name} {run}: {sc.explanation}"
    assert sequential.verify_witness(hist, _model(obj), sc.witness) == []
    # the search alone may run out of budget on crash-heavy histories (its
    # worst case is exponential), but it must never call them invalid
    searched = sequential.check(hist, _model(obj), budget_s=0.5, use_linearization=False)
    assert searched.valid is not False, f"{name} {run}: {searched.explanation}"
    if searched.valid is True:
        assert sequential.verify_witness(hist, _model(obj), searched.witness) == []
    lin = linearizable.check(hist, _model(obj))
    assert lin.valid is True, f"{name} {run}: {lin.explanation}"


@SETTINGS
@given(run=runs)
def test_register_executions_are_valid(run: dict) -> None:
    _assert_valid("register", run)


@SETTINGS
@given(run=runs)
def test_cas_register_executions_are_valid(run: dict) -> None:
    _assert_valid("cas-register", run)


@SETTINGS
@given(run=runs)
def test_kv_executions_are_valid(run: dict) -> None:
    _assert_valid("kv", run)


@SETTINGS
@given(run=runs)
def test_multi_register_executions_are_valid(run: dict) -> None:
    _assert_valid("multi-register", run)


@SETTINGS
@given(run=runs)
def test_mutex_executions_are_valid(run: dict) -> None:
    _assert_valid("mutex", run)


@SETTINGS
@given(run=runs)
def test_set_executions_are_valid(run: dict) -> None:
    _assert_valid("set", run)


@SETTINGS
@given(run=runs)
def test_fifo_queue_executions_are_valid(run: dict) -> None:
    _assert_valid("fifo-queue", run)


@SETTINGS
@given(run=runs, name=st.sampled_from(sorted(OBJECTS)))
def test_search_alone_decides_crash_free_executions(run: dict, name: str) -> None:
    """Without crashed ops the search needs no luck: valid, with a witness."""
    obj = OBJECTS[name]
    hist, _ = simulate(obj, run["seed"], run["procs"], run["ops"], 0.0)
    r = sequential.check(hist, _model(obj), budget_s=30, use_linearization=False)
    assert r.valid is True, f"{name} {run}: {r.explanation}"
    assert r.details["method"] == "search"
    assert sequential.verify_witness(hist, _model(obj), r.witness) == []


# -- mutations no order can explain -------------------------------------------


def _append(hist: History, *events: tuple) -> tuple[History, list[int]]:
    """Append (process, type, f, value, key) events after everything else."""
    ops = list(hist)
    idx = []
    for proc, typ, f, value, key in events:
        n = len(ops)
        idx.append(n)
        ops.append(Op(n, n * 10, typ, proc, f, value, key=key))
    return History(ops), idx


@SETTINGS
@given(run=runs, name=st.sampled_from(["register", "cas-register", "kv"]))
def test_read_of_a_value_never_written_is_invalid(run: dict, name: str) -> None:
    obj = OBJECTS[name]
    hist, _ = simulate(obj, run["seed"], run["procs"], run["ops"], run["crash"])
    ghost = "never-written" if name == "kv" else 999_999
    f = "get" if name == "kv" else "read"
    key = "a" if name == "kv" else None
    bad, (inv, _) = _append(hist, (10_000, "invoke", f, None, key), (10_000, "ok", f, ghost, key))
    lin = linearizable.check(bad, _model(obj))
    assert lin.valid is False
    assert lin.counterexample["partial_linearizations"]
    sc = sequential.check(bad, _model(obj), budget_s=30)
    assert sc.valid is False
    if name == "kv":
        # The kv model's pruning (Model.dead_ends / wants) may abandon the
        # search at an earlier configuration of the same key and name the op
        # it proved impossible there; the blame stays on the ghost's key.
        for cx in (lin.counterexample, sc.counterexample):
            assert next(o for o in bad if o.index == cx["op"]["index"]).key == key
    else:
        assert lin.counterexample["op"]["index"] == inv
        assert sc.counterexample["op"]["index"] == inv


@SETTINGS
@given(run=runs, name=st.sampled_from(["register", "cas-register", "kv"]))
def test_stale_read_after_completed_write_separates_the_checkers(run: dict, name: str) -> None:
    """Nothing concurrent (no crashes, all done): a fresh write completes,
    then a fresh reader sees the value from before it. Linearizability must
    reject it (with the read as the failing op); sequential consistency
    accepts it (the reader may be ordered before the write)."""
    obj = OBJECTS[name]
    hist, final = simulate(obj, run["seed"], run["procs"], run["ops"], 0.0)
    if name == "kv":
        before = final.get("a", "")
        events = [
            (10_000, "invoke", "put", "fresh", "a"),
            (10_000, "ok", "put", "fresh", "a"),
            (10_001, "invoke", "get", None, "a"),
            (10_001, "ok", "get", before, "a"),
        ]
    else:
        before = final
        events = [
            (10_000, "invoke", "write", 77),
            (10_000, "ok", "write", 77),
            (10_001, "invoke", "read", None),
            (10_001, "ok", "read", before),
        ]
        events = [e + (None,) for e in events]
    bad, idx = _append(hist, *events)
    lin = linearizable.check(bad, _model(obj))
    assert lin.valid is False
    assert lin.counterexample["op"]["index"] == idx[2]
    sc = sequential.check(bad, _model(obj), budget_s=30)
    assert sc.valid is True, sc.explanation


@SETTINGS
@given(run=runs, name=st.sampled_from(["register", "cas-register"]))
def test_own_write_not_seen_is_invalid_for_both(run: dict, name: str) -> None:
    obj = OBJECTS[name]
    hist, final = simulate(obj, run["seed"], run["procs"], run["ops"], 0.0)
    bad, idx = _append(
        hist,
        (10_000, "invoke", "write", 77, None),
        (10_000, "ok", "write", 77, None),
        (10_000, "invoke", "read", None, None),
        (10_000, "ok", "read", final, None),
    )
    assert linearizable.check(bad, _model(obj)).valid is False
    sc = sequential.check(bad, _model(obj), budget_s=30)
    assert sc.valid is False
    assert sc.counterexample["op"]["index"] == idx[2]


def test_writing_the_current_value_is_not_a_free_move() -> None:
    """Found by the properties above: a write of the value the register
    already holds leaves the state unchanged *there*, but moving it earlier
    is not sound (later it would overwrite another write). Linearizable:
    w(0) by p1 takes effect after p0's concurrent w(3)."""
    ops = [
        Op(0, 0, "invoke", 1, "write", 0),
        Op(1, 1, "invoke", 0, "write", 3),
        Op(2, 2, "ok", 0, "write", 3),
        Op(3, 3, "ok", 1, "write", 0),
        Op(4, 4, "invoke", 1, "read", None),
        Op(5, 5, "ok", 1, "read", 0),
    ]
    model = get_model("register", 0)
    assert linearizable.check(History(ops), model).valid is True
    assert sequential.check(History(ops), model).valid is True


# -- ZooKeeper-like executions: linearizable writes, stale but monotone reads --


def simulate_zookeeper(seed: int, n_procs: int, n_ops: int, crash_rate: float) -> History:
    """A register served like ZooKeeper: writes are ordered by a leader and
    get increasing zxids; a read is answered by a server that may lag, at any
    zxid between the last one its client saw and the newest. Reads may be
    stale (not linearizable) but never go back in time for a client, so the
    history is sequentially consistent. Completions carry their zxid."""
    rng = random.Random(seed)
    rec = Recorder()
    states = [0]  # states[z]: the value after zxid z
    seen: dict[int, int] = {}
    procs = list(range(n_procs))
    next_proc = n_procs
    pending: dict[int, list] = {}  # proc -> [f, value, done(value, zxid) or None]
    invoked = 0
    while invoked < n_ops or pending:
        idle = [p for p in procs if p not in pending]
        moves = []
        if idle and invoked < n_ops:
            moves.append("invoke")
        if any(v[2] is None for v in pending.values()):
            moves.append("apply")
        if any(v[2] is not None for v in pending.values()):
            moves.append("complete")
        if pending and rng.random() < crash_rate:
            moves = ["crash"]
        move = rng.choice(moves)
        if move == "invoke":
            p = rng.choice(idle)
            f = rng.choice(["read", "write"])
            value = None if f == "read" else rng.randint(1, 5)
            pending[p] = [f, value, None]
            rec.add("invoke", p, f, value, None)
            invoked += 1
        elif move in ("apply", "crash"):
            p = rng.choice([q for q, v in pending.items() if v[2] is None] if move == "apply" else list(pending))
            f, value, done = pending[p]
            if done is None and (move == "apply" or rng.random() < 0.5):
                if f == "write":
                    states.append(value)
                    done = (value, len(states) - 1)
                else:
                    z = rng.randint(seen.get(p, 0), len(states) - 1)
                    done = (states[z], z)
                seen[p] = done[1]
                pending[p][2] = done
            if move == "crash":
                del pending[p]
                rec.add("info", p, f, value, None)
                procs[procs.index(p)] = next_proc
                next_proc += 1
        else:
            p = rng.choice([q for q, v in pending.items() if v[2] is not None])
            f, _, (value, zxid) = pending.pop(p)
            rec.add("ok", p, f, value, None)
            rec.ops[-1].zxid = zxid
    return History(rec.ops)


@SETTINGS
@given(run=runs)
def test_zookeeper_like_executions_are_sequentially_consistent(run: dict) -> None:
    hist = simulate_zookeeper(run["seed"], run["procs"], run["ops"], run["crash"])
    model = get_model("register", 0)
    r = sequential.check(hist, model, budget_s=30)
    assert r.valid is True, f"{run}: {r.explanation}"
    assert sequential.verify_witness(hist, model, r.witness) == []
    if not any(o.type == "info" for o in hist) and len(hist):
        assert r.details["method"] == "zxid"
    # without zxids the search must agree (or run out of budget): never False
    bare = History([Op(o.index, o.time, o.type, o.process, o.f, o.value) for o in hist])
    searched = sequential.check(bare, model, budget_s=0.5)
    assert searched.valid is not False, f"{run}: {searched.explanation}"
    if searched.valid is True:
        assert sequential.verify_witness(bare, model, searched.witness) == []


@SETTINGS
@given(run=runs)
def test_a_read_below_the_clients_last_zxid_is_invalid(run: dict) -> None:
    """Mutation: a client that saw zxid z then reads at a lower zxid."""
    hist = simulate_zookeeper(run["seed"], run["procs"], run["ops"], 0.0)
    ops = list(hist)
    n = len(ops)
    ops += [
        Op(n, n, "invoke", 999, "write", 9),
        Op(n + 1, n + 1, "ok", 999, "write", 9, zxid=10_000),
        Op(n + 2, n + 2, "invoke", 999, "read", None),
        Op(n + 3, n + 3, "ok", 999, "read", 0, zxid=0),
    ]
    r = sequential.check(History(ops), get_model("register", 0), budget_s=30)
    assert r.valid is False
    assert r.details["method"] == "zxid"
    assert r.counterexample["op"]["index"] == n + 2
