"""CI outputs: test-all's summary.json + junit.xml + latest, and `run --json`
(against the fake cluster side, so they are fast and deterministic)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from harness.cli import cli
from harness.summary import junit_xml, read_summary
from tests.harness.fakes import fake_registry

FAST = [
    "--time-limit",
    "1",
    "--rate",
    "40",
    "--nemesis-interval",
    "0.3",
    "--concurrency",
    "3",
    "--seed",
    "9",
    "--no-progress",
]


def invoke(args, tmp_path, registry=None):
    return CliRunner().invoke(
        cli, args + ["--results", str(tmp_path / "results")], obj=registry or fake_registry(), catch_exceptions=False
    )


def test_test_all_writes_summary_junit_and_latest(tmp_path):
    r = invoke(["test-all", "--workloads", "set", "--nemeses", "partition;none"] + FAST, tmp_path)
    assert r.exit_code == 0, r.output
    suite = tmp_path / "results" / "test-all" / "latest"
    assert suite.is_symlink() and suite.resolve().parent.name == "test-all"
    doc = read_summary(suite)
    assert doc["verdict"] == "valid" and doc["exit_code"] == 0 and doc["verdicts"] == {"valid": 2}
    assert [r["test"] for r in doc["runs"]] == ["squall-set-partition", "squall-set-none"]
    for row in doc["runs"]:
        assert row["seed"] == 9 and row["verdict"] == "valid" and row["exit_code"] == 0
        c = row["counts"]
        assert c["operations"] > 0 and c["ok"] + c["fail"] + c["info"] == c["operations"]
        assert c["lines"] >= 2 * c["operations"] - c["info"]
        run_dir = tmp_path / "results" / row["run_path"]
        assert str(run_dir.resolve()) == row["run_dir"] and (run_dir / "history.jsonl").is_file()
        # the same counts as the run's results.json
        assert json.loads((run_dir / "results.json").read_text())["counts"] == c
    junit = ET.parse(suite / "junit.xml").getroot()
    assert junit.tag == "testsuite" and junit.get("tests") == "2" and junit.get("failures") == "0"
    assert [c.get("name") for c in junit.iter("testcase")] == ["squall-set-partition seed=9", "squall-set-none seed=9"]


def test_an_invalid_run_is_a_junit_failure_naming_the_anomaly_and_the_report(tmp_path):
    r = invoke(
        ["test-all", "--workloads", "set", "--nemeses", "none", "--unsafe-db-fault", "lose-writes"] + FAST, tmp_path
    )
    assert r.exit_code == 1
    suite = tmp_path / "results" / "test-all" / "latest"
    row = read_summary(suite)["runs"][0]
    assert row["verdict"] == "invalid" and row["report"].endswith("report.html")
    case = next(ET.parse(suite / "junit.xml").getroot().iter("testcase"))
    failure = case.find("failure")
    assert failure is not None and "acknowledged adds lost" in failure.get("message")
    assert row["report"] in failure.text


def test_a_setup_failure_is_a_junit_error_and_fails_the_suite(tmp_path):
    r = invoke(
        ["test-all", "--workloads", "set", "--nemeses", "none"] + FAST,
        tmp_path,
        registry=fake_registry(fail_create=True),
    )
    assert r.exit_code == 4
    doc = read_summary(tmp_path / "results" / "test-all" / "latest")
    assert doc["verdict"] == "error" and doc["runs"][0]["verdict"] == "setup-failed"
    assert doc["runs"][0]["counts"]["operations"] == 0
    root = ET.fromstring(junit_xml(doc).split("\n", 1)[1])
    assert root.get("errors") == "1" and root.find("testcase/error").get("type") == "setup-failed"


def test_json_on_stdout_is_the_same_summary_and_progress_stays_on_stderr(tmp_path):
    r = invoke(["run", "--workload", "set", "--json", "--test-count", "2"] + FAST, tmp_path)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)  # nothing else on stdout
    assert doc["command"] == "run" and [row["seed"] for row in doc["runs"]] == [9, 10]
    assert "valid:" in r.stderr
    r = invoke(["test-all", "--workloads", "set", "--nemeses", "none", "--json"] + FAST, tmp_path)
    doc = json.loads(r.stdout)
    assert doc == read_summary(tmp_path / "results" / "test-all" / "latest")
    assert "test-all" not in [p.name for p in (tmp_path / "results").iterdir() if (p / "test.json").exists()]


def test_junit_marks_unknown_as_an_error_not_a_pass():
    row = {
        "test": "t",
        "seed": 1,
        "workload": "set",
        "verdict": "unknown",
        "summary": "checker ran out of budget",
        "run_dir": "/r",
        "report": None,
        "wall_s": 1.0,
    }
    root = ET.fromstring(junit_xml({"command": "test-all", "runs": [row]}).split("\n", 1)[1])
    assert root.get("errors") == "1" and root.get("failures") == "0"
    assert root.find("testcase/error").get("message") == "checker ran out of budget"


def test_test_all_without_workload_or_nemesis_flags_is_the_standard_suite(tmp_path):
    """Every registered workload once, each under the one composed partition/pause/kill schedule."""
    registry = fake_registry()
    r = invoke(["test-all"] + FAST, tmp_path, registry)
    doc = read_summary(tmp_path / "results" / "test-all" / "latest")
    assert r.exit_code == doc["exit_code"], r.output
    assert [row["test"] for row in doc["runs"]] == [
        f"squall-{w}-partition+pause+kill" for w in sorted(registry.workloads)
    ]
