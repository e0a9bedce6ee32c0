"""The dead-end prunings (``Model.dead_ends`` for the linearizability search,
``Model.wants`` for the sequential one) change no verdict: on random
histories, valid and mutated, both checkers answer the same with the
prunings as without them, and valid answers keep verified witnesses."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from checkers import linearizable, sequential
from checkers.history import History, Op
from checkers.models import Model, get_model
from tests.checkers.test_properties import OBJECTS, SETTINGS, simulate

NAMES = ["register", "cas-register", "kv"]


def _unpruned(model: Model) -> Model:
    """The same model with both hooks back at the base class's "no claim"."""
    model.dead_ends = lambda ops: Model.dead_ends(model, ops)  # type: ignore[method-assign]
    model.wants = lambda op: None  # type: ignore[method-assign]
    return model


def _model(name: str) -> Model:
    return get_model(name, OBJECTS[name].model_initial)


def _mutate(hist: History, rng: random.Random, name: str, n: int) -> History:
    """Change the results of up to ``n`` ok reads (gets): a register read
    returns another small value, a kv get loses or gains an append."""
    ops = list(hist)
    reads = [i for i, o in enumerate(ops) if o.type == "ok" and o.f in ("read", "get")]
    for i in rng.sample(reads, min(n, len(reads))):
        o = ops[i]
        if name == "kv":
            v = o.value or ""
            new: Any = v[: rng.randrange(len(v) + 1)] if v and rng.random() < 0.5 else v + "z"
        else:
            new = rng.randrange(4)
        ops[i] = Op(o.index, o.time, o.type, o.process, o.f, new, key=o.key)
    return History(ops)


runs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "procs": st.integers(1, 5),
        "ops": st.integers(1, 30),
        "crash": st.sampled_from([0.0, 0.05, 0.2]),
        "mutations": st.integers(0, 2),
    }
)


@SETTINGS
@given(run=runs, name=st.sampled_from(NAMES))
def test_linearizable_verdicts_are_the_same_without_pruning(run: dict, name: str) -> None:
    hist, _ = simulate(OBJECTS[name], run["seed"], run["procs"], run["ops"], run["crash"])
    hist = _mutate(hist, random.Random(run["seed"]), name, run["mutations"])
    pruned = linearizable.check(hist, _model(name), budget_s=60)
    plain = linearizable.check(hist, _unpruned(_model(name)), budget_s=60)
    assert pruned.valid in (True, False), pruned.summary
    assert pruned.valid == plain.valid, (pruned.summary, plain.summary)
    if pruned.valid:
        assert linearizable.verify_witness(hist, _model(name), pruned.witness) == []
    else:
        assert pruned.counterexample["op"]["description"]


@SETTINGS
@given(run=runs, name=st.sampled_from(NAMES))
def test_sequential_verdicts_are_the_same_without_pruning(run: dict, name: str) -> None:
    hist, _ = simulate(OBJECTS[name], run["seed"], run["procs"], run["ops"], run["crash"])
    hist = _mutate(hist, random.Random(run["seed"]), name, run["mutations"])
    pruned = sequential.check(hist, _model(name), budget_s=60, use_linearization=False)
    plain = sequential.check(hist, _unpruned(_model(name)), budget_s=60, use_linearization=False)
    assert pruned.valid in (True, False), pruned.summary
    assert pruned.valid == plain.valid, (pruned.summary, plain.summary)
    if pruned.valid:
        assert sequential.verify_witness(hist, _model(name), pruned.witness) == []
    else:
        assert pruned.counterexample["op"]["description"]


def test_a_doomed_read_is_named_even_when_nothing_can_be_linearized_first() -> None:
    """A read of a value nobody writes, first to return: the searches stop at
    once, and both counterexamples name that read."""
    ops = [
        Op(0, 0, "invoke", 0, "write", 1),
        Op(1, 1, "invoke", 1, "read", None),
        Op(2, 2, "ok", 1, "read", 7),
        Op(3, 3, "ok", 0, "write", 1),
    ]
    lin = linearizable.check(History(ops), get_model("register", 0))
    assert lin.valid is False and lin.counterexample["op"]["index"] == 1
    sc = sequential.check(History(ops), get_model("register", 0))
    assert sc.valid is False and sc.counterexample["op"]["index"] == 1


def test_a_subclass_with_its_own_step_gets_no_pruning_claims() -> None:
    from checkers.history import pair
    from checkers.models import CasRegister

    class Other(CasRegister):
        def _compile(self, op):  # a different step: the register's reasoning does not hold
            return super()._compile(op)

    ops = pair([Op(0, 0, "invoke", 0, "read", None), Op(1, 1, "ok", 0, "read", 3)])
    assert get_model("register", 0).dead_ends(ops)[0] != [None]
    assert Other(0).dead_ends(ops) == ([None], [False])
    assert Other(0).wants(ops[0]) is None
