"""ZooKeeper's ordered sequential consistency (checkers/sequential.py).

Hand-written histories: each event is (process, type, f, value[, zxid]) and
its position in the list is its time, so intervals are easy to read.
"""

from __future__ import annotations

from typing import Any

import pytest

from checkers import linearizable, sequential
from checkers.history import FAIL_HAPPENED, History, Op
from checkers.models import get_model
from checkers.result import Result


def h(*events: tuple, fail_means: str | None = None) -> History:
    ops = []
    for i, ev in enumerate(events):
        proc, typ, f, value = ev[:4]
        zxid = ev[4] if len(ev) > 4 else None
        key = ev[5] if len(ev) > 5 else None
        ops.append(Op(i, i, typ, proc, f, value, zxid=zxid, key=key))
    if fail_means:
        return History(ops, fail_means=fail_means)
    return History(ops)


def reg(initial: Any = 0):
    return get_model("register", initial)


def seq(history: History, model=None, **kw: Any) -> Result:
    """The search's verdict, after checking that the linearization shortcut
    (on by default) agrees with it."""
    searched = sequential.check(history, model or reg(), use_linearization=False, **kw)
    quick = sequential.check(history, model or reg(), **kw)
    assert quick.valid == searched.valid, (quick.summary, searched.summary)
    return searched


def lin(history: History, model=None) -> Result:
    return linearizable.check(history, model or reg())


# -- the separating examples of docs/consistency.md ------------------------

STALE_READ = h((1, "invoke", "write", 1), (1, "ok", "write", 1), (2, "invoke", "read", None), (2, "ok", "read", 0))

OWN_WRITE_NOT_SEEN = h(
    (1, "invoke", "write", 1), (1, "ok", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", 0)
)

BACKWARDS_IN_TIME = h(
    (1, "invoke", "write", 1),
    (1, "ok", "write", 1),
    (2, "invoke", "write", 2),
    (2, "ok", "write", 2),
    (3, "invoke", "read", None),
    (3, "ok", "read", 2),
    (3, "invoke", "read", None),
    (3, "ok", "read", 1),
)


def test_stale_read_is_sequentially_consistent_but_not_linearizable() -> None:
    r = seq(STALE_READ)
    assert r.valid is True
    # the witness puts the stale read before the write
    assert r.witness["order"] == [2, 0]
    assert lin(STALE_READ).valid is False


def test_not_seeing_own_write_is_neither() -> None:
    r = seq(OWN_WRITE_NOT_SEEN)
    assert r.valid is False
    assert r.counterexample["op"]["index"] == 2
    assert lin(OWN_WRITE_NOT_SEEN).valid is False


def test_reading_backwards_in_time_is_neither() -> None:
    r = seq(BACKWARDS_IN_TIME)
    assert r.valid is False
    assert r.counterexample["op"]["index"] == 6, r.explanation
    steps = r.counterexample["partial_linearizations"][0]
    assert [s["index"] for s in steps] == [0, 2, 4]
    assert steps[-1]["state_after"] == "2"
    assert lin(BACKWARDS_IN_TIME).valid is False


def test_readers_may_lag_by_different_amounts() -> None:
    # w(1) < w(2) in real time; one reader still sees 1, another sees 2
    hist = h(
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1),
        (2, "invoke", "write", 2),
        (2, "ok", "write", 2),
        (3, "invoke", "read", None),
        (3, "ok", "read", 1),
        (4, "invoke", "read", None),
        (4, "ok", "read", 2),
    )
    assert seq(hist).valid is True
    # a process that saw 2 and then wrote 1 itself reads its own 1
    hist2 = h(
        (1, "invoke", "write", 2),
        (1, "ok", "write", 2),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
        (2, "invoke", "write", 1),
        (2, "ok", "write", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
    )
    assert seq(hist2).valid is True


def test_real_time_among_writes_is_enforced() -> None:
    # w(2) completed before w(1) was invoked, so w(2) < w(1); p2 reads 1
    # then 2, which needs w(1) < w(2): invalid, although without the
    # real-time rule among writes the order w1, r1, w2, r2 would explain it
    hist = h(
        (1, "invoke", "write", 2),
        (1, "ok", "write", 2),
        (3, "invoke", "write", 1),
        (3, "ok", "write", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
    )
    r = seq(hist)
    assert r.valid is False
    # with the writes concurrent, the order w1, r1, w2, r2 is allowed
    concurrent = h(
        (1, "invoke", "write", 2),
        (3, "invoke", "write", 1),
        (1, "ok", "write", 2),
        (3, "ok", "write", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
    )
    assert seq(concurrent).valid is True


def test_crashed_write_may_take_effect_or_not() -> None:
    seen = h((1, "invoke", "write", 1), (1, "info", "write", 1), (2, "invoke", "read", None), (2, "ok", "read", 1))
    assert seq(seen).valid is True
    not_seen = h((1, "invoke", "write", 1), (1, "info", "write", 1), (2, "invoke", "read", None), (2, "ok", "read", 0))
    r = seq(not_seen)
    assert r.valid is True and r.witness["order"] == [2]
    pending = h((1, "invoke", "write", 1), (2, "invoke", "read", None), (2, "ok", "read", 1))
    assert seq(pending).valid is True


def test_read_may_see_a_write_invoked_after_it_completed() -> None:
    # reads are exempt from real time: SC may order p2's read after p1's
    # (crashed) write even though the read completed first; linearizability
    # may not
    hist = h((2, "invoke", "read", None), (2, "ok", "read", 1), (1, "invoke", "write", 1), (1, "info", "write", 1))
    assert seq(hist).valid is True
    assert lin(hist).valid is False


def test_failed_ops_did_not_happen() -> None:
    hist = h((1, "invoke", "write", 1), (1, "fail", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", 0))
    assert seq(hist).valid is True
    r = seq(h((1, "invoke", "write", 1), (1, "fail", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", 1)))
    assert r.valid is False


def test_failed_cas_happened_in_porcupine_semantics() -> None:
    # etcd logs: a failed cas ran and found another value
    hist = h((1, "invoke", "cas", [0, 5]), (1, "fail", "cas", [0, 5]), fail_means=FAIL_HAPPENED)
    r = seq(hist, get_model("cas-register", 0))
    assert r.valid is False  # the register was 0, so the compare matched
    ok = h((1, "invoke", "cas", [1, 5]), (1, "fail", "cas", [1, 5]), fail_means=FAIL_HAPPENED)
    assert seq(ok, get_model("cas-register", 0)).valid is True


def test_sequential_consistency_is_not_local() -> None:
    # each key alone is SC; together no order explains both readers
    events = [
        (1, "invoke", "put", "1", None, "x"),
        (2, "invoke", "put", "1", None, "y"),
        (3, "invoke", "get", None, None, "x"),
        (4, "invoke", "get", None, None, "y"),
        (1, "ok", "put", "1", None, "x"),
        (2, "ok", "put", "1", None, "y"),
        (3, "ok", "get", "1", None, "x"),
        (4, "ok", "get", "1", None, "y"),
        (3, "invoke", "get", None, None, "y"),
        (4, "invoke", "get", None, None, "x"),
        (3, "ok", "get", "", None, "y"),
        (4, "ok", "get", "", None, "x"),
    ]
    kv = get_model("kv")
    whole = h(*events)
    for key in ("x", "y"):
        only = h(*[e for e in events if e[5] == key])
        assert seq(only, kv).valid is True
    r = seq(whole, kv)
    assert r.valid is False
    assert r.details["keys"] == 2


def test_multi_key_failure_found_per_key_names_the_key() -> None:
    events = [
        (1, "invoke", "put", "a", None, "x"),
        (1, "ok", "put", "a", None, "x"),
        (1, "invoke", "get", None, None, "x"),
        (1, "ok", "get", "", None, "x"),
        (2, "invoke", "put", "b", None, "y"),
        (2, "ok", "put", "b", None, "y"),
    ]
    r = seq(h(*events), get_model("kv"))
    assert r.valid is False
    assert r.counterexample["key"] == "x"
    assert "on key 'x'" in r.summary


def test_empty_history_is_valid() -> None:
    r = seq(h())
    assert r.valid is True and r.witness == {"order": []}


def test_budget_ends_in_unknown_never_a_guess() -> None:
    # 1200 sequential writes need at least 1200 search steps; the budget is
    # checked every 1024 steps, and a nanosecond has passed by then
    events = []
    for v in range(600):
        events += [(1, "invoke", "write", v), (1, "ok", "write", v)]
        events += [(2, "invoke", "read", None), (2, "ok", "read", v)]
    r = seq(h(*events), budget_s=1e-9)
    assert r.valid == "unknown"
    assert "budget" in r.summary
    assert seq(h(*events)).valid is True


def test_witness_is_a_valid_order() -> None:
    hist = h(
        (1, "invoke", "write", 1),
        (2, "invoke", "read", None),
        (1, "ok", "write", 1),
        (2, "ok", "read", 1),
        (2, "invoke", "write", 2),
        (1, "invoke", "read", None),
        (2, "ok", "write", 2),
        (1, "ok", "read", 1),
    )
    r = seq(hist)
    assert r.valid is True
    order = r.witness["order"]
    assert sorted(order) == [0, 1, 4, 5]
    # replay: reads must see the state
    state = 0
    values = {0: ("write", 1), 1: ("read", 1), 4: ("write", 2), 5: ("read", 1)}
    for i in order:
        f, v = values[i]
        if f == "write":
            state = v
        else:
            assert state == v
    # process order kept
    assert order.index(1) < order.index(4) and order.index(0) < order.index(5)


# -- the zxid fast path ------------------------------------------------------


def test_zxid_fast_path_valid_with_stale_read() -> None:
    hist = h(
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1, 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 0, 0),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1, 1),
    )
    r = seq(hist)
    assert r.valid is True
    assert r.details["method"] == "zxid"
    assert r.witness["order"] == [2, 0, 4]


def test_zxid_going_backwards_is_invalid() -> None:
    hist = h(
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1, 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1, 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 0, 0),
    )
    r = seq(hist)
    assert r.valid is False
    assert r.details["method"] == "zxid"
    assert r.counterexample["op"]["index"] == 4
    assert "backwards" in r.explanation


def test_write_zxids_must_respect_real_time() -> None:
    hist = h((1, "invoke", "write", 1), (1, "ok", "write", 1, 5), (2, "invoke", "write", 2), (2, "ok", "write", 2, 3))
    r = seq(hist)
    assert r.valid is False
    assert "real time" in r.counterexample["reason"]


def test_read_must_match_state_at_its_zxid() -> None:
    hist = h((1, "invoke", "write", 1), (1, "ok", "write", 1, 1), (2, "invoke", "read", None), (2, "ok", "read", 0, 1))
    r = seq(hist)
    assert r.valid is False
    assert r.counterexample["op"]["index"] == 2


def test_zxid_failure_with_crashed_write_falls_back_to_search() -> None:
    # p3's crashed write of 7 explains the read of 7; its zxid is unknown
    hist = h(
        (3, "invoke", "write", 7),
        (3, "info", "write", 7),
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1, 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 7, 1),
    )
    r = seq(hist)
    assert r.valid is True
    assert r.details["method"] == "search"


# -- the core on its own -----------------------------------------------------


def test_is_write_classifies_reads() -> None:
    assert not sequential.is_write("read")
    assert not sequential.is_write("get")
    assert sequential.is_write("cas")
    assert sequential.is_write("dequeue")
    assert not sequential.is_write("txn", [["read", "x", 1], ["read", "y", None]])
    assert sequential.is_write("txn", [["read", "x", 1], ["write", "y", 2]])


@pytest.mark.parametrize(
    "model_name, ops, valid",
    [
        (
            "mutex",
            [
                (1, "invoke", "acquire", None),
                (1, "ok", "acquire", None),
                (2, "invoke", "acquire", None),
                (2, "ok", "acquire", None),
            ],
            False,
        ),
        (
            "mutex",
            [
                (1, "invoke", "acquire", None),
                (1, "ok", "acquire", None),
                (1, "invoke", "release", None),
                (1, "ok", "release", None),
                (2, "invoke", "acquire", None),
                (2, "ok", "acquire", None),
            ],
            True,
        ),
        (
            "fifo-queue",
            [
                (1, "invoke", "enqueue", 1),
                (1, "ok", "enqueue", 1),
                (1, "invoke", "enqueue", 2),
                (1, "ok", "enqueue", 2),
                (2, "invoke", "dequeue", None),
                (2, "ok", "dequeue", 2),
            ],
            False,
        ),
        (
            "set",
            [(1, "invoke", "add", 1), (1, "ok", "add", 1), (2, "invoke", "read", None), (2, "ok", "read", [])],
            True,
        ),
        (
            "set",
            [(1, "invoke", "add", 1), (1, "ok", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", [])],
            False,
        ),
    ],
)
def test_other_models(model_name: str, ops: list, valid: bool) -> None:
    assert seq(h(*ops), get_model(model_name)).valid is valid


# -- witnesses verify independently -------------------------------------------


def test_verify_witness_accepts_the_witness_and_rejects_bad_orders() -> None:
    r = seq(STALE_READ)
    assert sequential.verify_witness(STALE_READ, reg(), r.witness) == []
    # process order broken
    assert sequential.verify_witness(OWN_WRITE_NOT_SEEN, reg(), {"order": [2, 0]})
    # real time among writes broken
    two = h((1, "invoke", "write", 1), (1, "ok", "write", 1), (2, "invoke", "write", 2), (2, "ok", "write", 2))
    assert sequential.verify_witness(two, reg(), {"order": [0, 2]}) == []
    problems = sequential.verify_witness(two, reg(), {"order": [2, 0]})
    assert any("completed before" in p for p in problems)
    # the model rejects the order
    assert sequential.verify_witness(STALE_READ, reg(), {"order": [0, 2]})
    # a completed op missing, an unknown op
    assert sequential.verify_witness(STALE_READ, reg(), {"order": [2]})
    assert sequential.verify_witness(STALE_READ, reg(), {"order": [2, 0, 99]})


def test_linearizable_histories_take_the_shortcut() -> None:
    hist = h((1, "invoke", "write", 1), (2, "invoke", "read", None), (1, "ok", "write", 1), (2, "ok", "read", 1))
    r = sequential.check(hist, reg())
    assert r.valid is True and r.details["method"] == "linearization"
    assert sequential.verify_witness(hist, reg(), r.witness) == []
    # multi-key: the keys' linearizations merge into one order
    events = [
        (1, "invoke", "put", "1", None, "x"),
        (2, "invoke", "put", "2", None, "y"),
        (1, "ok", "put", "1", None, "x"),
        (3, "invoke", "get", None, None, "x"),
        (2, "ok", "put", "2", None, "y"),
        (3, "ok", "get", "1", None, "x"),
        (3, "invoke", "get", None, None, "y"),
        (3, "ok", "get", "2", None, "y"),
    ]
    kv = get_model("kv")
    r = sequential.check(h(*events), kv)
    assert r.valid is True and r.details["method"] == "linearization"
    assert sequential.verify_witness(h(*events), kv, r.witness) == []
    assert sequential.check(h(*events), kv, use_linearization=False).details["method"] == "search"


# -- the corpora: linearizable histories are sequentially consistent ---------


def _linearizable_corpus_files() -> list:
    from tests.checkers.conftest import corpora_dir, read_tsv

    base = corpora_dir()
    if base is None:
        return [pytest.param(None, None, id="corpora-absent")]
    return [
        pytest.param(folder, r["file"], id=f"{folder}/{r['file']}")
        for folder in ("porcupine", "knossos")
        for r in read_tsv(base / folder / "EXPECTED.tsv")
        if r["expected"] == "ok"
    ]


@pytest.mark.parametrize("folder, name", _linearizable_corpus_files())
def test_linearizable_corpus_histories_are_sequentially_consistent(folder, name) -> None:
    from checkers.history import parse_literal, read_history
    from tests.checkers.conftest import read_tsv, require_corpora

    base = require_corpora()
    history = read_history(base / folder / name)
    if folder == "porcupine":
        model = get_model(history.default_model, history.default_initial)
    else:
        spec = {r["file"]: r for r in read_tsv(base / "knossos" / "MODELS.tsv")}[name]
        init = spec["initial_state"]
        model = get_model(spec["model"], None if init.startswith("free") else parse_literal(init))
    r = sequential.check(history, model, budget_s=120)
    assert r.valid is True, f"{folder}/{name}: {r.summary}"
    assert sequential.verify_witness(history, model, r.witness) == []


def test_corpus_sequential_violation_is_found() -> None:
    """Knossos's bad-analysis history is not even sequentially consistent."""
    from checkers.history import read_history
    from tests.checkers.conftest import require_corpora

    base = require_corpora()
    history = read_history(base / "knossos" / "cas-register" / "bad" / "bad-analysis.edn")
    r = sequential.check(history, get_model("cas-register", 0), budget_s=120)
    assert r.valid is False
    assert r.counterexample["op"]["description"]
    assert r.counterexample["partial_linearizations"]


def test_state_cache_limit_ends_in_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    events = []
    for v in range(600):
        events += [(1, "invoke", "write", v), (1, "ok", "write", v)]
        events += [(2, "invoke", "read", None), (2, "ok", "read", v)]
    monkeypatch.setattr(sequential, "_MAX_CACHE_BYTES", 1)
    r = sequential.check(h(*events), reg(), use_linearization=False)
    assert r.valid == "unknown"
    assert "state cache" in r.summary
