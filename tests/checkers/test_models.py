"""Models: pure steps, crashed-op leniency, partitioning, the factory."""

from __future__ import annotations

import pytest

from checkers.history import FAIL, INFO, OK, UNKNOWN_VALUE, Operation
from checkers.models import IDENTITY, ILLEGAL, MODEL_NAMES, ModelError, freeze, get_model


def op(f, inp=None, out=None, status=OK, key=None) -> Operation:
    if status == INFO:
        out = UNKNOWN_VALUE
    return Operation(0, 0, f, inp, out, status, 0, None if status == INFO else 1, 0, None, key)


def test_factory_names_and_errors() -> None:
    assert MODEL_NAMES == ("register", "cas-register", "kv", "multi-register", "mutex", "set", "fifo-queue")
    for name in MODEL_NAMES:
        assert get_model(name).name == name
    with pytest.raises(ModelError, match="allowed: register, cas-register"):
        get_model("queue")
    assert get_model("cas-register", 0).initial == 0
    assert get_model("kv").initial == ""
    assert get_model("multi-register", {"x": 0}).initial == (("x", 0),)
    assert get_model("mutex", "free").initial is False
    with pytest.raises(ModelError):
        get_model("mutex", "maybe")


def test_cas_register() -> None:
    m = get_model("cas-register", 0)
    assert m.step(0, op("read", None, 0)) == (True, 0)
    assert m.step(1, op("read", None, 0)) == (False, 1)
    assert m.step(1, op("write", 5, 5)) == (True, 5)
    assert m.step(1, op("cas", [1, 2], [1, 2])) == (True, 2)
    assert m.step(3, op("cas", [1, 2], [1, 2])) == (False, 3)
    # failed cas that ran (Porcupine etcd): compare must mismatch
    assert m.step(3, op("cas", [1, 2], [1, 2], FAIL)) == (True, 3)
    assert m.step(1, op("cas", [1, 2], [1, 2], FAIL)) == (False, 1)
    # crashed: always legal, takes effect when it can
    assert m.step(1, op("cas", [1, 2], status=INFO)) == (True, 2)
    assert m.step(3, op("cas", [1, 2], status=INFO)) == (True, 3)
    assert m.step(3, op("write", 9, status=INFO)) == (True, 9)
    assert m.compile(op("read", None, UNKNOWN_VALUE)) is IDENTITY
    with pytest.raises(ModelError, match="no operation 'add'"):
        m.compile(op("add", 1, 1))
    assert "cas 1->2" in m.describe_op(op("cas", [1, 2], [1, 2]))


def test_register_rejects_cas() -> None:
    with pytest.raises(ModelError, match="allowed: read, write"):
        get_model("register").compile(op("cas", [1, 2], [1, 2]))
    assert get_model("register").step(None, op("read", None, None)) == (True, None)


def test_kv_and_partition() -> None:
    m = get_model("kv")
    assert m.step("", op("append", "x", "x", key="a")) == (True, "x")
    assert m.step("x", op("append", "y", "y", key="a")) == (True, "xy")
    assert m.step("xy", op("get", None, "xy", key="a")) == (True, "xy")
    assert m.step("xy", op("get", None, "x", key="a"))[0] is False
    assert m.step("xy", op("put", "z", "z", key="a")) == (True, "z")
    parts = m.partition([op("get", key="a"), op("put", "1", key="b"), op("get", key="a")])
    assert [(k, len(v)) for k, v in parts] == [("a", 2), ("b", 1)]
    assert m.initial_state("b") == ""


def test_multi_register() -> None:
    m = get_model("multi-register", {"x": 0, "y": 0})
    s0 = m.initial
    ok, s1 = m.step(s0, op("txn", [["write", "x", 1]], [["write", "x", 1]]))
    assert ok and dict(s1) == {"x": 1, "y": 0}
    assert m.step(s1, op("txn", None, [["read", "x", 1], ["read", "y", 0]]))[0]
    assert not m.step(s1, op("txn", None, [["read", "x", 0]]))[0]
    # reads see the txn's own earlier writes
    assert m.step(s1, op("txn", None, [["write", "y", 5], ["read", "y", 5]]))[0]
    # crashed: writes apply, reads ignored
    ok, s2 = m.step(s1, op("txn", [["read", "x", None], ["write", "y", 3]], status=INFO))
    assert ok and dict(s2)["y"] == 3
    assert m.partition([op("txn", key="x"), op("txn", key="y")])[0][1].__len__() == 2
    with pytest.raises(ModelError, match="micro-op"):
        m.compile(op("txn", None, [["incr", "x", 1]]))


def test_mutex() -> None:
    m = get_model("mutex")
    assert m.step(False, op("acquire")) == (True, True)
    assert m.step(True, op("acquire"))[0] is False
    assert m.step(True, op("release")) == (True, False)
    assert m.step(False, op("release"))[0] is False
    assert m.step(True, op("acquire", status=INFO)) == (True, True)
    assert m.describe_state(True) == "locked"


def test_set() -> None:
    m = get_model("set")
    ok, s = m.step(frozenset(), op("add", 1, 1))
    assert ok and s == frozenset({1})
    assert m.step(s, op("read", None, [1]))[0]
    assert not m.step(s, op("read", None, [1, 2]))[0]
    assert m.describe_state(frozenset({2, 1})) == "#{1 2}"


def test_fifo_queue() -> None:
    m = get_model("fifo-queue")
    ok, s = m.step((), op("enqueue", 1, 1))
    ok, s = m.step(s, op("enqueue", 2, 2))
    assert s == (1, 2)
    assert m.step(s, op("dequeue", None, 1)) == (True, (2,))
    assert m.step(s, op("dequeue", None, 2))[0] is False
    assert m.step((), op("dequeue", None, None)) == (True, ())
    assert m.step(s, op("dequeue", None, None))[0] is False
    assert m.step(s, op("dequeue", status=INFO)) == (True, (2,))
    assert m.step((), op("dequeue", status=INFO)) == (True, ())


def test_crashed_ops_are_always_legal() -> None:
    """A crashed op may take effect or not: no model may reject one."""
    cases = {
        "register": [("read", None), ("write", 1)],
        "cas-register": [("read", None), ("write", 1), ("cas", [0, 1])],
        "kv": [("get", None), ("put", "a"), ("append", "b")],
        "multi-register": [("txn", [["write", "x", 1], ["read", "x", None]])],
        "mutex": [("acquire", None), ("release", None)],
        "set": [("add", 1), ("read", None)],
        "fifo-queue": [("enqueue", 1), ("dequeue", None)],
    }
    states = {
        "register": [None, 1],
        "cas-register": [None, 0, 1],
        "kv": ["", "x"],
        "multi-register": [(), (("x", 2),)],
        "mutex": [False, True],
        "set": [frozenset(), frozenset({1})],
        "fifo-queue": [(), (1,), (2, 3)],
    }
    for name, fs in cases.items():
        m = get_model(name)
        for f, inp in fs:
            for s in states[name]:
                ok, _ = m.step(s, op(f, inp, status=INFO))
                assert ok, f"{name}: crashed {f} rejected in state {s!r}"


def test_freeze_and_illegal_repr() -> None:
    assert freeze([1, [2, {3}], {"a": [4]}]) == (1, (2, frozenset({3})), (("a", (4,)),))
    hash(freeze({"b": [1], "a": {2}}))
    assert repr(ILLEGAL) == "ILLEGAL"
