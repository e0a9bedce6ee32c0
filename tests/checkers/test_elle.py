"""The Elle-style list-append checker: Elle's own list-append cases (the
corpus, with their expected verdicts and anomaly types), hand-built
histories, and histories of a simulated serializable store."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checkers import elle
from checkers.history import Op
from tests.checkers.conftest import require_corpora

# Elle reports these as notices beside an anomaly, not as anomalies.
NOTICES = {"empty-transaction-graph"}


def _cases() -> list[dict]:
    path = require_corpora() / "elle" / "list-append-cases.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _run(case: dict):
    opts = case["opts"]
    models = opts.get("consistency-models")
    if not opts:  # Elle's default model
        models = ["strict-serializable"]
    return elle.check(case["history"], consistency_models=models, anomalies=opts.get("anomalies"))


def test_elle_corpus_verdicts_and_anomaly_types():
    cases = _cases()
    assert len(cases) == 23
    mismatches = []
    for case in cases:
        result = _run(case)
        exp = case["expected"]
        got = set(result.counterexample["anomaly_types"]) if result.is_invalid else set()
        if result.valid != exp["valid"] or got != set(exp["anomaly_types"]) - NOTICES:
            mismatches.append((case["name"], result.valid, sorted(got), exp))
    assert not mismatches, mismatches


def _ok(i: int, value: list, process: int = 0) -> list[Op]:
    return [
        Op(2 * i, 2 * i, "invoke", process, "txn", [[m[0], m[1], None if m[0] == "r" else m[2]] for m in value]),
        Op(2 * i + 1, 2 * i + 1, "ok", process, "txn", value),
    ]


def test_serial_history_is_valid_with_a_serialization_order():
    h = (
        _ok(0, [["append", "x", 1]])
        + _ok(1, [["r", "x", [1]], ["append", "y", 1]])
        + _ok(2, [["r", "x", [1]], ["r", "y", [1]]])
    )
    r = elle.check(h)
    assert r.valid is True
    assert r.witness["serialization_order"] == [0, 2, 4]


def test_failed_multi_effect_visible_is_g1a_with_both_transactions():
    h = [
        Op(0, 0, "invoke", 0, "txn", [["append", "x", 1], ["append", "y", 1]]),
        Op(1, 1, "fail", 0, "txn", [["append", "x", 1], ["append", "y", 1]]),
    ] + _ok(1, [["r", "x", [1]]], process=1)
    r = elle.check(h)
    assert r.valid is False
    inst = r.counterexample["anomalies"]["G1a"][0]
    assert inst["writer"]["index"] == 0 and inst["reader"]["index"] == 2


def test_stale_read_after_completed_append_is_realtime_anomaly_only_when_strict():
    h = (
        _ok(0, [["append", "x", 1]], 0)
        + _ok(1, [["append", "x", 2]], 1)
        + _ok(2, [["r", "x", [1]]], 2)
        + _ok(3, [["r", "x", [1, 2]]], 3)
    )
    strict = elle.check(h)
    assert strict.valid is False
    cycle = strict.counterexample["anomalies"]["G-single-item-realtime"][0]["cycle"]
    assert {s["edge"] for s in cycle} == {"rw", "realtime"}
    assert elle.check(h, consistency_models=["serializable"]).valid is True


def test_nothing_committed_is_unknown_not_valid():
    h = [Op(0, 0, "invoke", 0, "txn", [["append", "x", 1]]), Op(1, 1, "info", 0, "txn", [["append", "x", 1]])]
    assert elle.check(h).is_unknown
    assert elle.check([]).is_unknown


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="micro-op"):
        elle.check([Op(0, 0, "ok", 0, "txn", [["write", "x", 1]])])
    with pytest.raises(ValueError, match="unknown consistency model 'linear'"):
        elle.check([], consistency_models=["linear"])
    with pytest.raises(ValueError, match="unknown anomaly"):
        elle.check([], consistency_models=None, anomalies=["G9"])


# -- a simulated strictly serializable store: each txn takes effect at one
# instant between its invocation and its completion; some crash (info) with
# or without effect, some abort (fail, no effect).
def simulate(seed: int, n: int = 60, procs: int = 5, keys: int = 3) -> list[Op]:
    rng = random.Random(seed)
    state: dict[str, list] = {f"k{i}": [] for i in range(keys)}
    ops: list[Op] = []
    slots: list[list | None] = [None] * procs
    pid = list(range(procs))
    nxt, started, counter = procs, 0, 0

    def emit(typ, p, value):
        ops.append(Op(len(ops), len(ops), typ, p, "txn", value))

    while started < n or any(slots):
        i = rng.randrange(procs)
        s = slots[i]
        if s is None:
            if started >= n:
                continue
            started += 1
            mops = []
            for _ in range(rng.randint(1, 4)):
                k = f"k{rng.randrange(keys)}"
                if rng.random() < 0.5:
                    mops.append(["r", k, None])
                else:
                    counter += 1
                    mops.append(["append", k, counter])
            slots[i] = [pid[i], mops, None]
            emit("invoke", pid[i], mops)
        elif s[2] is None:
            fate = rng.random()
            if fate < 0.1:
                s[2] = ("fail", s[1])
            else:
                done = []
                for f, k, v in s[1]:
                    if f == "r":
                        done.append(["r", k, list(state[k])])
                    else:
                        state[k].append(v)
                        done.append([f, k, v])
                s[2] = ("info", s[1]) if fate < 0.2 else ("ok", done)
            if rng.random() < 0.05:
                s[2] = ("info", s[1])  # crashed: effect unknown to the client
        else:
            emit(s[2][0], s[0], s[2][1])
            if s[2][0] == "info":
                pid[i] = nxt
                nxt += 1
            slots[i] = None
    return ops


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6))
def test_simulated_strict_serializable_histories_are_valid(seed):
    r = elle.check(simulate(seed))
    assert r.valid is True or (r.is_unknown and "no transaction committed" in r.summary), r.explanation


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6))
def test_dropping_a_seen_element_from_the_longest_read_is_caught(seed):
    """Mutation: an element that another read ended with vanishes from the
    longest read of that key (a committed write lost)."""
    h = simulate(seed)
    reads = [(op, j) for op in h if op.type == "ok" for j, m in enumerate(op.value) if m[0] == "r"]
    by_key: dict = {}
    for op, j in reads:
        by_key.setdefault(op.value[j][1], []).append((op, j))
    for k, rs in sorted(by_key.items()):
        op, j = max(rs, key=lambda t: len(t[0].value[t[1]][2]))
        longest = op.value[j][2]
        shorter = [o.value[i][2] for o, i in rs if 0 < len(o.value[i][2]) < len(longest)]
        if shorter:
            gone = shorter[0][-1]
            op.value = [list(m) for m in op.value]
            op.value[j] = ["r", k, [v for v in longest if v != gone]]
            r = elle.check(h)
            assert r.valid is False, r.summary
            assert "incompatible-order" in r.counterexample["anomaly_types"]
            return
    assume(False)  # no key with two non-empty reads of different lengths
