"""Converged replicas (checkers.convergence): hand-built snapshot histories,
and snapshots of a simulated correct system's replicas once caught up."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from checkers import convergence
from checkers.history import Op


def snaps(views: dict, rnd: int = 0, failed: tuple = ()) -> list[Op]:
    ops = []
    for node, paths in views.items():
        proc = f"converge-{node}"
        ops.append(Op(len(ops), len(ops), "invoke", proc, "converge", {"round": rnd, "node": node}))
        ops.append(
            Op(len(ops), len(ops), "ok", proc, "converge", {"round": rnd, "node": node, "sync_zxid": 9, "paths": paths})
        )
    for node in failed:
        proc = f"converge-{node}"
        ops.append(Op(len(ops), len(ops), "invoke", proc, "converge", {"round": rnd, "node": node}))
        ops.append(
            Op(len(ops), len(ops), "fail", proc, "converge", {"round": rnd, "node": node}, error="ConnectionRefused")
        )
    return ops


SAME = {"/squall/register": ["", 0, 2], "/squall/register/1": ["7", 3, 9]}


def test_identical_nodes_are_valid():
    r = convergence.check(snaps({"n1": SAME, "n2": dict(SAME), "n3": dict(SAME)}))
    assert r.valid is True and r.witness["paths"] == 2


def test_a_diverged_node_is_named_with_the_key():
    bad = {**SAME, "/squall/register/1": ["6", 3, 8]}
    r = convergence.check(snaps({"n1": SAME, "n2": bad, "n3": dict(SAME)}))
    assert r.valid is False
    assert r.counterexample["nodes"] == ["n2"]
    d = r.counterexample["diverged"][0]
    assert d["path"] == "/squall/register/1" and d["views"]["n2"]["data"] == "6"
    assert "n2: data='6' version=3 mzxid=0x8" in r.explanation


def test_a_znode_missing_on_one_node_is_divergence():
    short = {"/squall/register": ["", 0, 2]}
    r = convergence.check(snaps({"n1": SAME, "n2": SAME, "n3": short}))
    assert r.valid is False and r.counterexample["nodes"] == ["n3"]
    assert r.counterexample["diverged"][0]["views"]["n3"] is None


def test_only_the_last_round_counts():
    bad = {**SAME, "/squall/register/1": ["6", 3, 8]}
    h = snaps({"n1": SAME, "n2": bad}, rnd=0) + snaps({"n1": SAME, "n2": SAME}, rnd=1)
    assert convergence.check(h).valid is True


def test_unreadable_nodes_and_no_snapshots_are_unknown():
    assert convergence.check([]).valid == "unknown"
    assert convergence.check(snaps({"n1": SAME}, failed=("n2", "n3"))).valid == "unknown"
    assert convergence.check(snaps({"n1": SAME, "n2": SAME}, failed=("n3",))).valid == "unknown"


@settings(max_examples=30, deadline=None)
@given(
    log=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 99)), max_size=40),
    lags=st.lists(st.integers(0, 40), min_size=3, max_size=3),
)
def test_replicas_of_one_log_agree_once_caught_up_and_differ_while_behind(log, lags):
    """Replicas apply the same log; a snapshot of a prefix is a lagging copy."""

    def apply(entries):
        tree = {}
        for zxid, (k, v) in enumerate(entries, 1):
            path = f"/squall/register/{k}"
            version = tree[path][1] + 1 if path in tree else 0
            tree[path] = [str(v), version, zxid]
        return tree

    full = apply(log)
    assert convergence.check(snaps({f"n{i}": apply(log) for i in range(3)})).valid is True
    views = {f"n{i}": apply(log[: max(0, len(log) - lag)]) for i, lag in enumerate(lags)}
    r = convergence.check(snaps(views))
    assert r.valid is (all(v == full for v in views.values()) or len({repr(v) for v in views.values()}) == 1)
