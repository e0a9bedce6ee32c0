"""The WGL linearizability checker and the Result it returns."""

from __future__ import annotations

import json

import pytest

from checkers._simulate import register_history
from checkers.history import FAIL_HAPPENED, History, Op, pair
from checkers.linearizable import check, verify_witness
from checkers.models import get_model
from checkers.result import Result, merge, run_checker


def H(*rows, key=None) -> list[Op]:
    """rows: (type, process, f, value[, key])"""
    out = []
    for i, r in enumerate(rows):
        t, p, f, v = r[:4]
        out.append(Op(i, i, t, p, f, v, key=r[4] if len(r) > 4 else key))
    return out


REG = get_model("cas-register", 0)


def test_empty_history_is_valid_with_witness() -> None:
    r = check([], REG)
    assert r.valid is True and r.witness == {"partitions": [], "unconstrained": []}


def test_concurrent_write_and_read() -> None:
    h = H(("invoke", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 1), ("ok", 0, "write", 1))
    r = check(h, REG)
    assert r.valid is True
    assert r.witness["partitions"][0]["order"] == [0, 1]  # write before read


def test_stale_read_is_illegal_with_counterexample() -> None:
    h = H(("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    r = check(h, REG)
    assert r.valid is False
    ce = r.counterexample
    assert ce["op"]["index"] == 2 and ce["op"]["description"] == "read -> 0"
    assert ce["state"] == "1"
    [lin] = ce["partial_linearizations"]
    assert [s["index"] for s in lin] == [0]
    assert lin[0]["state_before"] == "0" and lin[0]["state_after"] == "1"
    assert "read -> 0" in r.explanation and "state is 1" in r.explanation
    assert len(ce["operations"]) == 2
    json.dumps(r.to_dict())


def test_crashed_write_may_happen_late_or_never() -> None:
    base = [("invoke", 0, "write", 1), ("info", 0, "write", 1)]
    later1 = H(*base, ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    never = H(*base, ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    back = H(
        *base, ("invoke", 1, "read", None), ("ok", 1, "read", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 0)
    )
    assert check(later1, REG).valid is True
    assert check(never, REG).valid is True
    assert check(back, REG).valid is False


def test_pending_op_counts_as_crashed() -> None:
    h = H(("invoke", 0, "write", 7), ("invoke", 1, "read", None), ("ok", 1, "read", 7))
    assert check(h, REG).valid is True


def test_crashed_op_cannot_take_effect_before_its_call() -> None:
    h = H(("invoke", 1, "read", None), ("ok", 1, "read", 5), ("invoke", 0, "write", 5), ("info", 0, "write", 5))
    assert check(h, REG).valid is False


def test_fail_semantics_come_from_the_source() -> None:
    # cas [0 1] fails, yet the register holds 0 throughout: a Porcupine etcd
    # history (fail = ran and mismatched) is illegal; Knossos's (fail = did
    # not happen) is fine.
    rows = [("invoke", 0, "cas", [0, 1]), ("fail", 0, "cas", [0, 1]), ("invoke", 1, "read", None), ("ok", 1, "read", 0)]
    etcd = History(H(*rows), format="porcupine-etcd", fail_means=FAIL_HAPPENED)
    assert check(etcd, REG).valid is False
    assert check(History(H(*rows)), REG).valid is True
    assert check(H(*rows), REG, fail_means=FAIL_HAPPENED).valid is False


def test_paired_operations_are_accepted() -> None:
    h = H(("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    assert check(pair(h), REG).valid is False


def test_kv_partitions_name_the_failing_key() -> None:
    kv = get_model("kv")
    h = H(
        ("invoke", 0, "put", "a", "x"),
        ("ok", 0, "put", "a", "x"),
        ("invoke", 1, "append", "b", "y"),
        ("ok", 1, "append", "b", "y"),
        ("invoke", 0, "get", None, "y"),
        ("ok", 0, "get", "b", "y"),
        ("invoke", 1, "get", None, "x"),
        ("ok", 1, "get", "", "x"),
    )
    r = check(h, kv)
    assert r.valid is False and r.counterexample["key"] == "x"
    assert "on key 'x'" in r.summary
    assert r.details["partitions"] == 2


def _hard(key: str, n: int = 16) -> list[tuple]:
    """n overlapping writes then a read of a value nobody wrote: WGL must
    explore every subset of the writes before it can say illegal."""
    rows = [("invoke", p, "write", p + 1, key) for p in range(n)]
    rows += [("ok", p, "write", p + 1, key) for p in range(n)]
    rows += [("invoke", 99, "read", None, key), ("ok", 99, "read", -5, key)]
    return rows


def test_budget_gives_unknown_never_a_guess() -> None:
    r = check(H(*_hard("k")), REG, max_states=1000)
    assert r.valid == "unknown" and r.witness is None and r.counterexample is None
    assert "state budget" in r.summary and r.details["undecided_keys"] == ["k"]
    r = check(H(*_hard("k")), REG, budget_s=0.0)
    assert r.valid == "unknown" and "time budget" in r.summary


def test_quick_illegal_partition_ends_a_slow_check() -> None:
    rows = _hard("slow") + [
        ("invoke", 7, "write", 3, "quick"),
        ("ok", 7, "write", 3, "quick"),
        ("invoke", 8, "read", None, "quick"),
        ("ok", 8, "read", 4, "quick"),
    ]
    # renumber processes so the two keys do not share any
    rows = [(t, p if k == "slow" else p + 1000, f, v, k) for t, p, f, v, k in rows]
    r = check(H(*rows), REG, max_states=1000)
    assert r.valid is False and r.counterexample["key"] == "quick"


@pytest.mark.parametrize("seed", range(5))
def test_simulated_executions_are_valid(seed: int) -> None:
    h = register_history(600, keys=3, processes=8, seed=seed, crash_rate=0.05)
    r = check(h, get_model("cas-register", None))
    assert r.valid is True, r.explanation
    assert verify_witness(h, get_model("cas-register", None), r.witness) == []
    w = r.witness
    seen = [i for p in w["partitions"] for i in p["order"] + p["not_taken_effect"]]
    seen += w["unconstrained"]
    paired = {o.index for o in pair(h) if o.status != "fail"}
    assert sorted(seen) == sorted(paired)  # every op accounted for once


def test_verify_witness_catches_a_lie() -> None:
    h = H(("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    r = check(h, REG)
    assert verify_witness(h, REG, r.witness) == []
    swapped = {"partitions": [{"key": None, "order": [2, 0]}]}
    assert any("illegal" in p for p in verify_witness(h, REG, swapped))
    missing = {"partitions": [{"key": None, "order": [0]}]}
    assert any("not in the linearization" in p for p in verify_witness(h, REG, missing))
    h2 = H(("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "write", 1), ("ok", 1, "write", 1))
    backwards = {"partitions": [{"key": None, "order": [2, 0]}]}
    assert any("returned before" in p for p in verify_witness(h2, REG, backwards))


@pytest.mark.parametrize("seed", range(5))
def test_read_of_unwritten_value_is_illegal(seed: int) -> None:
    h = register_history(300, keys=2, processes=6, seed=seed)
    reads = [o for o in h if o.type == "ok" and o.f == "read"]
    victim = reads[len(reads) // 2]
    victim.value = 12345
    r = check(h, get_model("cas-register", None))
    assert r.valid is False
    assert r.counterexample["key"] == victim.key


def test_multi_register_mutex_set_queue_smoke() -> None:
    mr = get_model("multi-register", {"x": 0, "y": 0})
    ok = H(
        ("invoke", 0, "txn", [["write", "x", 1], ["write", "y", 1]]),
        ("invoke", 1, "txn", [["read", "x", None], ["read", "y", None]]),
        ("ok", 1, "txn", [["read", "x", 1], ["read", "y", 1]]),
        ("ok", 0, "txn", [["write", "x", 1], ["write", "y", 1]]),
    )
    torn = [Op(o.index, o.time, o.type, o.process, o.f, o.value) for o in ok]
    torn[2].value = [["read", "x", 1], ["read", "y", 0]]
    assert check(ok, mr).valid is True
    assert check(torn, mr).valid is False
    mutex = get_model("mutex")
    two = H(
        ("invoke", 0, "acquire", None),
        ("ok", 0, "acquire", None),
        ("invoke", 1, "acquire", None),
        ("ok", 1, "acquire", None),
    )
    assert check(two, mutex).valid is False
    assert check(two[:2], mutex).valid is True
    q = get_model("fifo-queue")
    fifo = H(
        ("invoke", 0, "enqueue", 1),
        ("ok", 0, "enqueue", 1),
        ("invoke", 0, "enqueue", 2),
        ("ok", 0, "enqueue", 2),
        ("invoke", 1, "dequeue", None),
        ("ok", 1, "dequeue", 2),
    )
    assert check(fifo, q).valid is False
    s = get_model("set")
    st = H(
        ("invoke", 0, "add", 1),
        ("invoke", 1, "read", None),
        ("ok", 1, "read", [1]),
        ("ok", 0, "add", 1),
        ("invoke", 1, "read", None),
        ("ok", 1, "read", []),
    )
    assert check(st, s).valid is False
    assert check(st[:4], s).valid is True


# -- Result ---------------------------------------------------------------------


def test_result_needs_evidence() -> None:
    with pytest.raises(ValueError, match="witness"):
        Result(True, "c", "ok")
    with pytest.raises(ValueError, match="counterexample"):
        Result(False, "c", "bad")
    with pytest.raises(ValueError, match="True, False or 'unknown'"):
        Result("maybe", "c", "?")
    with pytest.raises(ValueError, match="one line"):
        Result.unknown("c", "a\nb")
    assert Result.unknown("c", "?").is_unknown


def test_merge_precedence_and_exceptions() -> None:
    good = Result.ok("a", "fine", witness=[1])
    unk = Result.unknown("b", "budget")
    bad = Result.illegal("c", "broken", "why", {"op": 1})

    def boom(_):
        raise RuntimeError("kaput")

    crashed = run_checker("d", boom, None)
    assert crashed.valid == "unknown" and "kaput" in crashed.summary
    assert merge([good, unk, bad]).valid is False
    assert merge([good, unk]).valid == "unknown"
    assert merge([good, crashed]).valid == "unknown"
    assert merge([good, good]).valid is True
    assert merge([]).valid is True
    m = merge([good, bad], checker="all")
    assert m.counterexample == {"c": {"op": 1}} and m.checker == "all"
    d = m.to_dict()
    json.dumps(d)
    assert d["valid"] is False and len(d["details"]["results"]) == 2


def test_to_dict_is_json_safe() -> None:
    r = Result.ok("x", "y", witness={(1, 2): frozenset({3}), None: (4,)}, details={"o": object()})
    d = json.loads(json.dumps(r.to_dict()))
    assert d["witness"] == {"(1, 2)": [3], "null": [4]}


# -- an independent oracle ----------------------------------------------------


def _oracle(ops, model) -> bool:
    """Brute force: is there an order of all completed ops and any subset of
    crashed ops, respecting real time, that the model accepts? (A plain DFS
    over remaining sets, memoised; no WGL list, no prunings.)"""
    import functools

    ops = list(ops)
    n = len(ops)

    @functools.cache
    def go(remaining: frozenset, state) -> bool:
        if all(ops[i].return_index is None for i in remaining):
            return True
        for i in remaining:
            o = ops[i]
            # o may go next unless some other remaining op returned before o's call
            if any(ops[j].return_index is not None and ops[j].return_index < o.call_index for j in remaining if j != i):
                continue
            ok, ns = model.step(state, o)
            if ok and go(remaining - {i}, ns):
                return True
        return False

    return go(frozenset(range(n)), model.initial)


def _random_history(rng, n_ops: int, procs: int, fs, crash: float) -> list[Op]:
    out: list[Op] = []
    open_: dict[int, Op] = {}
    started = 0
    nxt_proc = procs
    ids = list(range(procs))
    while started < n_ops or open_:
        slot = rng.randrange(procs)
        p = ids[slot]
        if p in open_:
            inv = open_.pop(p)
            r = rng.random()
            if r < crash:
                out.append(Op(len(out), len(out), "info", p, inv.f, inv.value))
                ids[slot] = nxt_proc
                nxt_proc += 1
            else:
                typ = "fail" if inv.f == "cas" and r < 0.3 else "ok"
                val = rng.randrange(3) if inv.f == "read" else inv.value
                out.append(Op(len(out), len(out), typ, p, inv.f, val))
        elif started < n_ops:
            started += 1
            f = rng.choice(fs)
            v = None if f == "read" else (rng.randrange(3) if f == "write" else [rng.randrange(3), rng.randrange(3)])
            op = Op(len(out), len(out), "invoke", p, f, v)
            open_[p] = op
            out.append(op)
    return out


@pytest.mark.parametrize("fail_means", ["did-not-happen", "happened"])
def test_agrees_with_brute_force_oracle(fail_means: str) -> None:
    import random

    rng = random.Random(20261125)
    model = get_model("cas-register", 0)
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        h = _random_history(rng, rng.randint(2, 8), rng.randint(1, 4), ["read", "write", "cas"], crash=0.15)
        ops = [o for o in pair(h) if fail_means == "happened" or o.status != "fail"]
        want = _oracle(ops, model)
        r = check(h, model, fail_means=fail_means)
        assert r.valid is want, (h, r.explanation)
        if want:
            assert verify_witness(h, model, r.witness, fail_means=fail_means) == []
        verdicts[want] += 1
    assert verdicts[True] > 50 and verdicts[False] > 50  # both kinds exercised


def _random_ops(rng, model_name: str, n_ops: int, procs: int, crash: float) -> list[Op]:
    """Random invocations and random (often wrong) results for any model."""
    gens = {
        "kv": [
            ("get", lambda: None, lambda: rng.choice(["", "a", "ab", "b", "ba"])),
            ("put", lambda: rng.choice(["a", "b"]), None),
            ("append", lambda: rng.choice(["a", "b"]), None),
        ],
        "mutex": [("acquire", lambda: None, None), ("release", lambda: None, None)],
        "set": [
            ("add", lambda: rng.randrange(3), None),
            ("read", lambda: None, lambda: sorted(rng.sample(range(3), rng.randrange(4)))),
        ],
        "fifo-queue": [
            ("enqueue", lambda: rng.randrange(3), None),
            ("dequeue", lambda: None, lambda: rng.choice([None, 0, 1, 2])),
        ],
        "multi-register": [
            ("txn", lambda: [["write", rng.choice("xy"), rng.randrange(2)]], None),
            (
                "txn",
                lambda: [["read", "x", None], ["read", "y", None]],
                lambda: [["read", "x", rng.randrange(2)], ["read", "y", rng.randrange(2)]],
            ),
        ],
    }[model_name]
    out: list[Op] = []
    open_: dict[int, tuple] = {}
    started, nxt_proc, ids = 0, procs, list(range(procs))
    while started < n_ops or open_:
        slot = rng.randrange(procs)
        p = ids[slot]
        if p in open_:
            f, v, res = open_.pop(p)
            r = rng.random()
            if r < crash:
                out.append(Op(len(out), len(out), "info", p, f, v))
                ids[slot] = nxt_proc
                nxt_proc += 1
            else:
                out.append(Op(len(out), len(out), "ok", p, f, res() if res else v))
        elif started < n_ops:
            started += 1
            f, arg, res = rng.choice(gens)
            v = arg()
            open_[p] = (f, v, res)
            out.append(Op(len(out), len(out), "invoke", p, f, v))
    return out


@pytest.mark.parametrize("model_name", ["kv", "mutex", "set", "fifo-queue", "multi-register"])
def test_other_models_agree_with_oracle(model_name: str) -> None:
    import random

    rng = random.Random(sum(map(ord, model_name)))
    model = (
        get_model(model_name, {"x": 0, "y": 0} if model_name == "multi-register" else None)
        if model_name != "kv"
        else get_model("kv")
    )
    verdicts = {True: 0, False: 0}
    for _ in range(300):
        h = _random_ops(rng, model_name, rng.randint(2, 7), rng.randint(1, 3), 0.15)
        want = _oracle(pair(h), model)
        r = check(h, model)
        assert r.valid is want, (h, r.explanation)
        if want:
            assert verify_witness(h, model, r.witness) == []
        verdicts[want] += 1
    assert verdicts[True] > 20 and verdicts[False] > 20


@pytest.mark.parametrize("seed", range(6))
def test_single_key_high_contention_is_valid(seed: int) -> None:
    """One key, 20 processes, 3 values: many equal writes and reads, the case
    where an unsound pruning shows (writing the current value is not read-only)."""
    h = register_history(400, keys=1, processes=20, seed=seed, values=3, crash_rate=0.02)
    model = get_model("cas-register", None)
    r = check(h, model, max_states=2_000_000)
    assert r.valid is True, r.explanation
    assert verify_witness(h, model, r.witness) == []


@pytest.mark.parametrize("model_name", ["fifo-queue", "set", "kv", "cas-register"])
def test_pruning_unobserved_crashed_ops_agrees_with_oracle(model_name: str) -> None:
    """Crashed ops whose value nobody observes are dropped before the search
    (Model.prune_crashed); writes here use values the reads never return, so
    the pruning fires often, and the verdict must still match brute force."""
    import random

    rng = random.Random(sum(map(ord, model_name)) + 1)
    spec = {
        "fifo-queue": [
            ("enqueue", lambda: rng.randrange(6), None),
            ("dequeue", lambda: None, lambda: rng.choice([None, 0, 1, 2])),
        ],
        "set": [
            ("add", lambda: rng.randrange(6), None),
            ("read", lambda: None, lambda: sorted(rng.sample(range(3), rng.randrange(4)))),
        ],
        "kv": [
            ("get", lambda: None, lambda: rng.choice(["", "a", "ab", "b", "ba"])),
            ("put", lambda: rng.choice("abc"), None),
            ("append", lambda: rng.choice("abc"), None),
        ],
        "cas-register": [
            ("read", lambda: None, lambda: rng.randrange(3)),
            ("write", lambda: rng.randrange(5), None),
            ("cas", lambda: [rng.randrange(3), rng.randrange(5)], None),
        ],
    }[model_name]
    model = get_model(model_name, 0) if model_name == "cas-register" else get_model(model_name)
    pruned = 0
    for _ in range(400):
        h: list[Op] = []
        open_: dict[int, tuple] = {}
        started, nxt, procs = 0, 10, rng.randint(1, 4)
        ids = list(range(procs))
        n_ops = rng.randint(2, 8)
        while started < n_ops or open_:
            slot = rng.randrange(procs)
            p = ids[slot]
            if p in open_:
                f, v, res = open_.pop(p)
                if rng.random() < 0.3:
                    h.append(Op(len(h), len(h), "info", p, f, v))
                    ids[slot], nxt = nxt, nxt + 1
                else:
                    h.append(Op(len(h), len(h), "ok", p, f, res() if res else v))
            elif started < n_ops:
                started += 1
                f, arg, res = rng.choice(spec)
                v = arg()
                open_[p] = (f, v, res)
                h.append(Op(len(h), len(h), "invoke", p, f, v))
        ops = pair(h)
        pruned += len(model.prune_crashed(ops)) < len(ops)
        want = _oracle(ops, model)
        r = check(h, model)
        assert r.valid is want, (h, r.explanation)
        if want:
            assert verify_witness(h, model, r.witness) == []
    assert pruned > 50
