"""The harness's own checks composed with a workload's (harness.runner.check_history):
converged replicas, session order, availability; the report's availability
table; known limitations of the database named instead of a finding."""

from __future__ import annotations

from checkers import fresh_reads
from checkers.history import Op
from checkers.result import Result, merge
from harness import runner
from harness.report import html
from harness.spec import TestSpec

S = 1_000_000_000


class _Workload:
    name = "w"
    final_each_thread = False
    progress_kinds = {"write": "write"}
    progress_answered = ()

    def final_ops(self):
        return []

    def check(self, history):
        assert all(op.f != "converge" for op in history)  # the workload sees client ops only
        return merge([Result.ok("inner", "fine", {"n": len(history)})], checker="w")


def _history(diverge: bool = False) -> list[Op]:
    ops = []
    for i in range(12):
        ops.append(Op(len(ops), i * S // 4, "invoke", 0, "write", [0, i]))
        ops.append(Op(len(ops), i * S // 4 + 1, "ok", 0, "write", [0, i], "n1", None, 10 + i, session="0x1"))
    for n in ("n1", "n2"):
        tree = {"/squall/w": ["x" if diverge and n == "n2" else "y", 1, 5]}
        ops.append(Op(len(ops), 4 * S, "invoke", f"converge-{n}", "converge", {"round": 0, "node": n}))
        ops.append(
            Op(
                len(ops),
                4 * S,
                "ok",
                f"converge-{n}",
                "converge",
                {"round": 0, "node": n, "sync_zxid": 30, "paths": tree},
            )
        )
    return ops


def test_harness_checks_are_listed_beside_the_workloads_own():
    r = runner.check_history(TestSpec(name="t"), _Workload(), _history())
    names = [d["checker"] for d in r.details["results"]]
    assert names == ["inner", "converged-replicas", "session-order", "availability"]
    assert r.valid is True and r.checker == "w"


def test_a_diverged_replica_makes_the_run_invalid_and_the_report_shows_availability():
    spec = TestSpec(name="t")
    hist = _history(diverge=True)
    r = runner.check_history(spec, _Workload(), hist)
    assert r.valid is False and "converged-replicas" in r.counterexample
    results = {"valid": r.valid, "summary": r.summary, "result": r.to_dict()}
    page = html.render_report(spec.to_dict(), hist, results)
    assert "<h2>Availability</h2>" in page and "n1: 0/0 / 12/12" in page


def test_a_documented_limitation_is_named_only_for_that_database():
    stale = Result.illegal(
        fresh_reads.NAME, "stale", "why", {"stale_reads": [1]}, {"known_limitation": fresh_reads.KNOWN_LIMITATION}
    )
    result = merge([stale], checker="register").to_dict()
    zk = runner.known_limitations(TestSpec(name="t", db="zookeeper"), result)
    assert [k["issue"] for k in zk] == ["ZOOKEEPER-1675"]
    assert runner.known_limitations(TestSpec(name="t", db="squall"), result) == []
    page = html.render_report(
        TestSpec(name="t").to_dict(), [], {"valid": False, "summary": "s", "result": result, "known_limitations": zk}
    )
    assert "ZOOKEEPER-1675" in page and "not a squall finding" in page


def test_the_converge_phase_repeats_until_the_nodes_agree():
    class Cluster:
        def client_address(self, n):
            return f"127.0.0.1:{n}"

    reads = []

    def snapshot(address, timeout_s):
        reads.append(address)
        lagging = len(reads) <= 2 and address.endswith("n2")  # n2 catches up in round 1
        if address.endswith("n3") and len(reads) == 3:
            raise ConnectionRefusedError("down for a moment")
        return {"sync_zxid": 7, "paths": {"/squall/w": ["old" if lagging else "new", 1, 5]}}

    w = _Workload()
    w.converge_paths = ("/squall/w",)
    w.snapshot = snapshot  # the database's read of one node's copy (harness.dbs.base.BoundWorkload)
    rec = runner.Recorder(lambda: len(reads) * S)
    control = runner.RunControl()
    control.stop.wait = lambda _s: None  # no real pause between rounds
    runner.run_convergence_phase(w, Cluster(), ["n1", "n2", "n3"], rec, control, 1.0)
    rounds = {op.value["round"] for op in rec.ops}
    assert rounds == {0, 1} and len(reads) == 6
    assert [op.type for op in rec.ops if op.value["round"] == 0 and op.type != "invoke"] == ["ok", "ok", "fail"]
    from checkers import convergence

    assert convergence.check(rec.ops).valid is True
    one = runner.Recorder(lambda: 0)
    runner.run_convergence_phase(w, Cluster(), ["n1"], one, control, 1.0)
    assert one.ops == []  # one node: nothing to compare
