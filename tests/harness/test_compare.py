"""`squall compare BASE NEW` over hand-built run and test-all directories."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from checkers.history import Op
from harness import store, summary
from harness.cli import cli, main
from harness.spec import TestSpec

MS = 1_000_000


def make_run(root, name, valid, *, ok=8, fail=0, latency_ms=10, seed=1, n=0):
    """A run folder with `ok` ok writes of `latency_ms` each and `fail` failed ones."""
    run_dir = store.new_run_dir(root, name, now=datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC))
    store.write_spec(run_dir, TestSpec(name=name, nodes=("n1",), seed=seed))
    ops, t = [], 0
    for i, kind in enumerate(["ok"] * ok + ["fail"] * fail):
        ops.append(Op(len(ops), t, "invoke", 0, "write", i))
        t += latency_ms * MS
        ops.append(Op(len(ops), t, kind, 0, "write", i))
    store.write_history(run_dir, ops)
    store.write_results(run_dir, {"valid": valid, "summary": "s", "status": "checked", "test": name})
    return run_dir


def make_suite(root, runs):
    rows = [
        {
            "test": d.parent.name,
            "seed": 1,
            "verdict": v,
            "run_dir": str(d),
            "run_path": str(d.relative_to(root)),
            "workload": "register",
            "summary": "s",
            "wall_s": 1.0,
        }
        for d, v in runs
    ]
    return summary.write_suite(root, summary.summary_doc(rows, 0, "test-all"))


def run(args):
    return CliRunner().invoke(cli, ["compare"] + [str(a) for a in args], catch_exceptions=False)


def test_a_verdict_regression_exits_1_and_names_the_test(tmp_path):
    base = make_run(tmp_path / "base", "zk-register", True)
    new = make_run(tmp_path / "new", "zk-register", False)
    r = run([base, new])
    assert r.exit_code == 1
    assert "zk-register: verdict valid -> invalid" in r.output and "regression" in r.output
    doc = json.loads(run([base, new, "--json"]).output)
    assert doc["verdicts"] == [{"test": "zk-register", "base": "valid", "new": "invalid", "change": "regression"}]
    assert doc["exit_code"] == 1


def test_the_same_verdicts_and_figures_exit_0_and_a_fix_is_not_a_regression(tmp_path):
    base = make_run(tmp_path / "base", "t", True)
    assert run([base, make_run(tmp_path / "new", "t", True)]).exit_code == 0
    r = run([make_run(tmp_path / "b2", "t", False), make_run(tmp_path / "n2", "t", True)])
    assert r.exit_code == 0 and "fixed" in r.output and "no regression" in r.output


def test_latency_and_availability_limits(tmp_path):
    base = make_run(tmp_path / "base", "t", True, ok=10, latency_ms=10)
    slow = make_run(tmp_path / "slow", "t", True, ok=10, latency_ms=30)
    flaky = make_run(tmp_path / "flaky", "t", True, ok=8, fail=2, latency_ms=10)
    doc = json.loads(run([base, slow, "--json"]).output)
    op = doc["operations"][0]
    assert (op["f"], op["base"]["p50_ms"], op["new"]["p99_ms"], op["p99_ratio"]) == ("write", 10.0, 30.0, 3.0)
    assert doc["exit_code"] == 0  # shown, not gated without a limit
    assert run([base, slow, "--max-latency-regression", "2"]).exit_code == 1
    assert run([base, slow, "--max-latency-regression", "3.5"]).exit_code == 0
    doc = json.loads(run([base, flaky, "--json", "--max-availability-drop", "0.1"]).output)
    assert doc["operations"][0]["new"]["ok_rate"] == 0.8 and doc["exit_code"] == 1
    assert "ok-rate fell by 0.200" in doc["regressions"][0]
    assert run([base, flaky, "--max-availability-drop", "0.25"]).exit_code == 0


def test_test_all_directories_pair_by_name_and_a_missing_run_is_a_regression(tmp_path):
    b, n = tmp_path / "b" / "results", tmp_path / "n" / "results"
    base = make_suite(b, [(make_run(b, "a", True), "valid"), (make_run(b, "c", True, n=1), "valid")])
    new = make_suite(n, [(make_run(n, "c", True, n=1), "valid"), (make_run(n, "a", "unknown"), "unknown")])
    doc = json.loads(run([base, new, "--json"]).output)
    assert {v["test"]: v["change"] for v in doc["verdicts"]} == {"a": "regression", "c": "same"}
    assert {o["test"] for o in doc["operations"]} == {"a", "c"}  # run dirs found through run_path
    only_a = make_suite(n, [(make_run(n, "a", True, n=2), "valid")])
    r = run([base, n / "test-all" / "latest"])
    assert r.exit_code == 1 and "c: verdict valid -> missing" in r.output
    assert only_a.name in str((n / "test-all" / "latest").resolve())


def test_bad_input_exits_3_and_says_what_is_allowed(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")])
    assert exc.value.code == 3
    assert "neither a run directory (with test.json) nor a test-all directory" in capsys.readouterr().err
