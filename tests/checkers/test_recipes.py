"""Queue, counter and election checks: hand-built histories and histories
of simulated correct recipes (ops take effect atomically; some crash as
``info``, with or without effect)."""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.history import Op
from checkers.recipes import check_counter, check_elected, check_queue

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class H:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p, f, value, typ="ok", out=None):
        self.ops.append(Op(len(self.ops), len(self.ops), "invoke", p, f, value))
        self.ops.append(Op(len(self.ops), len(self.ops), typ, p, f, value if out is None else out))
        return self


def simulate_queue(seed: int, n: int = 80) -> list[Op]:
    rng = random.Random(seed)
    items: dict[str, list[int]] = {"queue": [], "locking-queue": []}
    h, proc, counter = H(), 0, 0
    for _ in range(n):
        q = rng.choice(sorted(items))
        crash = rng.random() < 0.1
        applied = not crash or rng.random() < 0.5
        if rng.random() < 0.55:
            counter += 1
            if applied:
                items[q].append(counter)
            h.op(proc, "put", [q, counter], "info" if crash else "ok")
        else:
            got = items[q].pop(0) if items[q] and applied else None
            h.op(proc, "get", [q, None], "info" if crash else "ok", None if crash else [q, got])
        if crash:
            proc += 1
    h.op(proc, "final-read", None, out={q: list(v) for q, v in items.items()})
    return h.ops


@SETTINGS
@given(st.integers(0, 10**6))
def test_simulated_queue_is_valid_and_a_lost_item_is_caught(seed):
    h = simulate_queue(seed)
    r = check_queue(h)
    assert r.valid is True or r.is_unknown, r.explanation
    final = h[-1].value
    acked = {op.value[1] for op in h if op.f == "put" and op.type == "ok"}
    present = [i for q in final for i in final[q] if i in acked]
    if present:  # lose every acknowledged item still queued: more than the info gets can explain
        info_gets = sum(1 for op in h if op.f == "get" and op.type == "info")
        if len(present) > info_gets:
            h[-1].value = {q: [i for i in v if i not in acked] for q, v in final.items()}
            r = check_queue(h)
            assert r.valid is False and "lost" in r.summary


def test_queue_item_consumed_twice_and_never_put():
    h = (
        H()
        .op(0, "put", ["queue", 1])
        .op(0, "get", ["queue", None], out=["queue", 1])
        .op(1, "get", ["queue", None], out=["queue", 1])
        .op(1, "get", ["queue", None], out=["queue", 7])
    )
    h.op(0, "final-read", None, out={"queue": [], "locking-queue": []})
    r = check_queue(h.ops)
    assert r.valid is False
    kinds = {p["kind"] for p in r.counterexample["problems"]}
    assert kinds == {"consumed-twice", "never-put"}
    twice = next(p for p in r.counterexample["problems"] if p["kind"] == "consumed-twice")
    assert [g["op"] for g in twice["gets"]["1"]] == [2, 4]  # the two gets that both took item 1, by index
    assert "item 1 was consumed by 2 gets: op 2 (process 0), op 4 (process 1)" in r.explanation


def test_queue_without_final_read_is_unknown():
    assert check_queue(H().op(0, "put", ["queue", 1]).ops).is_unknown


def simulate_counter(seed: int, n: int = 60) -> list[Op]:
    rng = random.Random(seed)
    value, h, proc = 0, H(), 0
    for _ in range(n):
        if rng.random() < 0.3:
            h.op(proc, "read", None, out=[value, 1000 + proc])
            continue
        d = rng.randint(1, 3)
        crash = rng.random() < 0.1
        if not crash or rng.random() < 0.5:
            value += d
        h.op(proc, "add", d, "info" if crash else "ok")
        if crash:
            proc += 1
    h.op(proc, "final-read", None, out=[value, 1000 + proc])
    return h.ops


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(["final", "backwards"]))
def test_simulated_counter_is_valid_and_mutations_are_caught(seed, what):
    h = simulate_counter(seed)
    r = check_counter(h)
    assert r.valid is True or r.is_unknown, r.explanation
    if what == "final":
        low = sum(op.value for op in h if op.f == "add" and op.type == "ok")
        h[-1].value = [low - 1, h[-1].value[1]]  # an acknowledged increment lost
        assert check_counter(h).valid is False
    else:
        reads = [op for op in h if op.f == "read" and op.type == "ok" and op.value[0] > 0]
        if reads:
            r0 = reads[-1]
            h.append(Op(len(h), len(h), "invoke", r0.process, "read", None))
            h.append(Op(len(h), len(h), "ok", r0.process, "read", [r0.value[0] - 1, r0.value[1]]))
            assert check_counter(h).valid is False


def test_counter_bounds_explained():
    h = H().op(0, "add", 2).op(1, "add", 3, "info").op(0, "final-read", None, out=[9, 5])
    r = check_counter(h.ops)
    assert r.valid is False and "outside [2, 5]" in r.explanation
    assert check_counter(H().op(0, "final-read", None, out=[0, 5]).ops).is_unknown


def test_election_liveness_needs_a_final_leader():
    h = H().op(0, "lead", None, out={"read": 0}).op(1, "final-lead", None, "fail")
    assert check_elected(h.ops).valid is False
    h = H().op(0, "lead", None, out={"read": 0}).op(1, "final-lead", None, out={"read": 1})
    assert check_elected(h.ops).valid is True
    assert check_elected(H().op(0, "lead", None, out={"read": 0}).ops).is_unknown


def named_queue(seed: int, n: int = 60) -> list[Op]:
    """A correct queue whose puts report the sequential znode they created (``[q, n, path, czxid]``):
    one counter per parent, one zxid per write, as ZooKeeper hands them out."""
    rng = random.Random(seed)
    items: dict[str, list[int]] = {"queue": [], "locking-queue": []}
    counters = dict.fromkeys(items, 0)
    h, zxid, item = H(), 0x100000000, 0
    for _ in range(n):
        q = rng.choice(sorted(items))
        zxid += 1
        if rng.random() < 0.6:
            item += 1
            items[q].append(item)
            path = f"/squall/queue/{q}/entry-100-{counters[q]:010d}"
            counters[q] += 1
            h.op(0, "put", [q, item], out=[q, item, path, zxid])
        else:
            got = items[q].pop(0) if items[q] else None
            h.op(0, "get", [q, None], out=[q, got])
    h.op(0, "final-read", None, out={q: list(v) for q, v in items.items()})
    return h.ops


def _named_puts(ops: list[Op]) -> list[Op]:
    return [o for o in ops if o.f == "put" and o.type == "ok"]


@SETTINGS
@given(st.integers(0, 10**6))
def test_sequential_names_valid_and_each_broken_guarantee_caught(seed):
    ops = named_queue(seed)
    r = check_queue(ops)
    puts = _named_puts(ops)
    assert r.valid is True, r.explanation
    assert f"{len(puts)} sequential names unique and increasing" in r.summary
    same_parent = [
        (a, b) for a, b in itertools.pairwise(puts) if a.value[2].rpartition("/")[0] == b.value[2].rpartition("/")[0]
    ]
    if not same_parent:
        return
    a, b = same_parent[0]
    # a name handed out again (a counter that counts children: it falls back after a delete)
    reused = named_queue(seed)
    _named_puts(reused)[puts.index(b)].value[2] = a.value[2]
    r = check_queue(reused)
    assert r.valid is False and "sequential-name-reused" in r.summary, r.summary
    assert f"{a.value[2]} was created for put op {a.index - 1} (item {a.value[1]}) and again" in r.explanation
    # the later creation with the smaller number
    swapped = named_queue(seed)
    pa, pb = _named_puts(swapped)[puts.index(a)], _named_puts(swapped)[puts.index(b)]
    pa.value[2], pb.value[2] = pb.value[2], pa.value[2]
    r = check_queue(swapped)
    assert r.valid is False and r.summary.endswith("sequence-not-increasing"), r.summary
    assert f"czxid {a.value[3]:#x}" in r.explanation


def test_a_sequential_create_refused_node_exists_is_a_violation():
    h = H().op(0, "put", ["queue", 1], out=["queue", 1, "/q/entry-100-0000000000", 0x100000001])
    h.op(1, "put", ["queue", 2], typ="fail", out=["queue", 2])
    h.ops[-1].error = "NodeExists"
    h.op(0, "final-read", None, out={"queue": [1], "locking-queue": []})
    r = check_queue(h.ops)
    assert r.valid is False and r.summary.endswith("sequential-create-collided"), r.summary
    assert "1 put(s) failed NodeExists, first op 2" in r.explanation
    h.ops[3].error = "ConnectionLoss"  # any other definite failure: the put did not happen, nothing to say
    r = check_queue(h.ops)
    assert r.valid is True and "1 sequential names unique and increasing" in r.summary


def test_puts_without_names_are_checked_as_before():
    h = H().op(0, "put", ["queue", 1]).op(0, "final-read", None, out={"queue": [1], "locking-queue": []})
    r = check_queue(h.ops)
    assert r.valid is True and "sequential" not in r.summary
    h = H().op(0, "put", ["queue", 1], out=["queue", 1, "/q/entry-100-x", 5])
    h.op(0, "final-read", None, out={"queue": [1], "locking-queue": []})
    r = check_queue(h.ops)
    assert r.valid is False and "not-sequential" in r.summary
