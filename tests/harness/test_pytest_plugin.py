"""The `squall` pytest fixture: argument mapping, result messages, and the
fixture used from a test file in a temporary directory (a real pytest
process running real short campaigns against the bundled node)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.pytest_plugin import SquallResult, build_argv

ROOT = Path(__file__).resolve().parents[2]


def test_keywords_become_run_flags_and_unknown_ones_name_the_allowed(tmp_path):
    argv = build_argv(tmp_path, {"db": "zookeeper", "time_limit": 20, "nemesis": ["partition", "kill"], "nodes": None})
    assert argv[:5] == ["run", "--json", "--no-progress", "--results", str(tmp_path)]
    assert argv[5:] == ["--db", "zookeeper", "--time-limit", "20", "--nemesis", "partition,kill"]
    with pytest.raises(TypeError, match=r"unknown argument 'timelimit'; allowed: .*time_limit"):
        build_argv(tmp_path, {"timelimit": 3})


def test_a_failing_result_names_the_anomaly_and_the_report():
    doc = {
        "verdict": "invalid",
        "exit_code": 1,
        "runs": [
            {
                "test": "squall-set-none",
                "seed": 4,
                "summary": "2 acknowledged adds lost",
                "run_dir": "/r/x",
                "report": "/r/x/report.html",
            }
        ],
    }
    result = SquallResult(1, doc)
    assert not result and result.valid is False and result.run_dir == Path("/r/x")
    with pytest.raises(AssertionError) as exc:
        result.assert_valid()
    assert "INVALID" in str(exc.value) and "2 acknowledged adds lost" in str(exc.value)
    assert "report: /r/x/report.html" in str(exc.value) and "report.html" in repr(result)
    unknown = SquallResult(2, {"verdict": "unknown", "runs": [{"summary": "budget"}]})
    with pytest.raises(AssertionError, match="UNKNOWN"):
        unknown.assert_valid()
    assert SquallResult(0, {"verdict": "valid", "runs": [{}]}).assert_valid().valid is True


GATE_TEST = """
import pytest

def test_a_healthy_node_passes(squall):
    result = squall.run(db="squall", workload="set", nemesis="kill", nodes=1, time_limit=3, seed=5,
                        nemesis_interval=1, concurrency=2)
    result.assert_valid()
    assert result.exit_code == 0 and result.run_dir.is_dir() and result.report.is_file()
    assert result.summary["runs"][0]["counts"]["operations"] > 0

def test_a_broken_node_fails_with_the_anomaly(squall):
    result = squall.run(db="squall", workload="set", nemesis="none", nodes=1, time_limit=3, seed=5,
                        concurrency=2, unsafe_db_fault="lose-writes")
    result.assert_valid()

def test_bad_flags_raise(squall):
    from harness.pytest_plugin import SquallUsageError
    with pytest.raises(SquallUsageError, match="unknown workload 'nope'"):
        squall.run(workload="nope", time_limit=1)
"""


@pytest.mark.slow
@pytest.mark.integration
def test_the_fixture_from_a_test_file_in_a_temporary_directory(tmp_path):
    (tmp_path / "test_gate.py").write_text(GATE_TEST, encoding="utf-8")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_gate.py",
            "--squall-results",
            str(tmp_path / "kept"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # one test failed: the broken node
    assert "1 failed, 2 passed" in out, out
    # the failure names the anomaly and the report path
    assert "test_a_broken_node_fails_with_the_anomaly" in out and "is INVALID" in out
    assert "acknowledged add(s) missing from the final read" in out and "report: /" in out
    kept = tmp_path / "kept"
    assert (kept / "test_a_healthy_node_passes" / "latest" / "report.html").is_file()
    assert (kept / "test_a_broken_node_fails_with_the_anomaly" / "latest" / "history.jsonl").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_the_example_gate_runs_as_shipped(tmp_path):
    shutil.copy(ROOT / "examples" / "test_squall_gate.py", tmp_path)
    env = {
        **os.environ,
        "SQUALL_DB": "squall",
        "SQUALL_TIME_LIMIT": "2",
        "SQUALL_NODES": "3",
    }  # partitions need two nodes or more
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_squall_gate.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr
