"""`squall selftest` (harness/selftest_cmd.py) and `squall run --failpoint`.

The command's logic (plan, attempts, exit codes, the track record) is tested
with a stand-in for the runs; `squall selftest --fast` runs for real (slow:
a few short campaigns on a 3-member ensemble). The catalogue's bugs are
tested one by one in tests/node/test_faults.py and test_selftest_faults.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import selftest_cmd
from harness.cli import _registry, cli
from harness.selftest_catalogue import CATALOGUE, FAILPOINT_CONTROLS, FAST_FAILPOINT_CONTROLS, Campaign
from harness.selftest_cmd import Attempt, plan

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalogue_is_at_least_twelve_bugs_of_five_kinds_each_a_registered_fault() -> None:
    assert len(CATALOGUE) >= 12
    assert len({b.kind for b in CATALOGUE}) >= 5
    assert len({b.name for b in CATALOGUE}) == len(CATALOGUE)
    from harness.dbs.squall import SquallDB

    faults = SquallDB.unsafe_faults
    for b in CATALOGUE:
        assert b.name in faults, f"{b.name} is not an --unsafe-db-fault"
        assert b.attempts >= 1 and b.campaign.workload in _registry().workloads
    assert any(b.fast for b in CATALOGUE)


def test_the_real_node_runs_every_campaign_once_then_the_failpoint_controls() -> None:
    bugs = list(CATALOGUE)
    rows = plan(bugs, fast=False)
    real = [r for r in rows if r.fault is None]
    assert {r.campaign for r in real} == {b.campaign for b in bugs} | set(FAILPOINT_CONTROLS)
    assert len(real) == len({b.campaign for b in bugs}) + len(FAILPOINT_CONTROLS)
    assert rows.index(real[-1]) < min(rows.index(r) for r in rows if r.fault)  # the real node first
    fast = plan([b for b in bugs if b.fast], fast=True)
    assert [r.campaign for r in fast if r.kind == "failpoints"] == list(FAST_FAILPOINT_CONTROLS)


def test_campaign_flags_are_squall_run_flags() -> None:
    c = Campaign(
        "register", "partition", time_limit_s=12, interval_s=2, reads="sync", rate=40, failpoints=("apply=1*panic",)
    )
    assert c.args() == [
        "--db",
        "squall",
        "--nodes",
        "3",
        "--workload",
        "register",
        "--nemesis",
        "partition",
        "--time-limit",
        "12",
        "--nemesis-interval",
        "2",
        "--reads",
        "sync",
        "--rate",
        "40",
        "--failpoint",
        "apply=1*panic",
    ]
    assert "failpoint apply=1*panic" in c.describe()


class FakeRuns:
    """Stands in for run_once: verdicts by (fault, attempt number)."""

    def __init__(self, codes: dict[str | None, list[int]]) -> None:
        self.codes = codes
        self.calls: list[tuple[str | None, int]] = []

    def __call__(self, reg, campaign, fault, seed, root, control) -> Attempt:
        k = sum(1 for f, _ in self.calls if f == fault)
        self.calls.append((fault, seed))
        seq = self.codes.get(fault, self.codes.get("*", [0]))
        code = seq[min(k, len(seq) - 1)]
        verdict = {0: "valid", 1: "invalid", 2: "unknown"}.get(code, "setup-failed")
        anomaly = f"invalid: linearizable ({fault})" if code == 1 else ""
        return Attempt(seed, code, verdict, 1.5, f"{verdict} summary", anomaly, str(root / "run"))


def _selftest(monkeypatch, tmp_path: Path, fake: FakeRuns, *args: str):
    monkeypatch.setattr(selftest_cmd, "run_once", fake)
    return CliRunner().invoke(cli, ["selftest", "--results", str(tmp_path), *args], obj=_registry())


def test_exit_0_when_the_real_node_passes_and_every_bug_is_caught(monkeypatch, tmp_path) -> None:
    fake = FakeRuns({None: [0], "lose-writes": [2, 1], "*": [1]})
    r = _selftest(monkeypatch, tmp_path, fake, "--only", "lose-writes,diverge", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout[r.stdout.index("{") :])
    bugs = {row["name"]: row for row in doc["rows"] if row["fault"]}
    assert bugs["lose-writes"]["runs"] == 2 and bugs["lose-writes"]["outcome"] == "caught"
    assert [a["seed"] for a in bugs["lose-writes"]["attempts"]] == [1, 2]  # seed, seed + 1
    assert "--unsafe-db-fault lose-writes --seed 2" in bugs["lose-writes"]["reproduce"]
    assert bugs["lose-writes"]["anomaly"].startswith("invalid: linearizable")
    assert (Path(doc["results"]) / "selftest.json").exists()
    assert "[3/" in r.stderr and "run 2/3" in r.stderr  # progress on stderr


def test_a_bug_not_caught_within_its_attempts_fails_the_selftest(monkeypatch, tmp_path) -> None:
    fake = FakeRuns({None: [0], "*": [0]})
    r = _selftest(monkeypatch, tmp_path, fake, "--only", "diverge", "--max-attempts", "2")
    assert r.exit_code == 1
    # the real node: diverge's campaign and the failpoint controls; then diverge, capped at 2 runs
    assert [f for f, _ in fake.calls] == [None] * (1 + len(FAILPOINT_CONTROLS)) + ["diverge", "diverge"]
    assert "NOT CAUGHT" in r.output


def test_a_false_alarm_on_the_real_node_fails_the_selftest(monkeypatch, tmp_path) -> None:
    fake = FakeRuns({None: [1], "*": [1]})
    r = _selftest(monkeypatch, tmp_path, fake, "--only", "lose-writes", "--markdown")
    assert r.exit_code == 1
    assert "**FAILED**" in r.output and "| lose-writes | storage |" in r.output


def test_runs_that_cannot_be_set_up_exit_4(monkeypatch, tmp_path) -> None:
    r = _selftest(monkeypatch, tmp_path, FakeRuns({"*": [4]}), "--only", "lose-writes")
    assert r.exit_code == 4


def test_unknown_bugs_are_refused_naming_the_catalogue(monkeypatch, tmp_path) -> None:
    r = _selftest(monkeypatch, tmp_path, FakeRuns({}), "--only", "gremlins")
    assert r.exit_code == 2 and "allowed: commit-without-quorum" in r.output  # click's usage error (3 via main)


def test_list_prints_the_catalogue() -> None:
    r = CliRunner().invoke(cli, ["selftest", "--list"], obj=_registry())
    assert r.exit_code == 0
    for b in CATALOGUE:
        assert b.name in r.output


# ---------------------------------------------------------------- squall run --failpoint


def _squall(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, says",
    [
        (["--failpoint", "apply=sometimes"], "failpoint action kind 'sometimes' is unknown"),
        (["--failpoint", "nowhere=panic"], "unknown failpoint 'nowhere'"),
        (["--db", "zookeeper", "--failpoint", "apply=panic"], "--db zookeeper has none"),
        (["--backend", "docker", "--failpoint", "apply=panic"], "needs the local backend"),
    ],
)
def test_squall_run_refuses_a_bad_failpoint(tmp_path, args, says) -> None:
    r = _squall(["run", "--time-limit", "1", *args], tmp_path)
    assert r.returncode == 3 and says in r.stderr, r.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_squall_run_arms_failpoints_in_every_node_once_ready(tmp_path) -> None:
    r = _squall(
        [
            "run",
            "--nodes",
            "3",
            "--workload",
            "register",
            "--nemesis",
            "none",
            "--time-limit",
            "3",
            "--no-progress",
            "--seed",
            "5",
            "--failpoint",
            "campaign=sleep(5)",
            "--failpoint",
            "before-reply=1%sleep(1)",
        ],
        tmp_path,
    )
    run_dir = (tmp_path / "results" / "latest").resolve()
    assert r.returncode == 0, r.stderr[-2000:]
    spec = json.loads((run_dir / "test.json").read_text())
    assert spec["options"]["failpoints"] == "campaign=sleep(5),before-reply=1%sleep(1)"
    log = (run_dir / "squall.log").read_text()
    for node in ("n1", "n2", "n3"):
        assert f"failpoint armed: {node}: campaign=sleep(5)" in log
    assert run_dir.name and "fp-campaign-fp-before-reply" in run_dir.parent.name
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    fps = [(op["f"], op["type"]) for op in history if op["process"] == "nemesis"]
    assert fps == [
        ("start-failpoints", "invoke"),
        ("start-failpoints", "info"),
        ("stop-failpoints", "invoke"),
        ("stop-failpoints", "info"),
    ]  # a fault window, as the nemesis's
    assert "disarmed in n1, n2, n3" in log


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_selftest_fast_is_green(tmp_path) -> None:
    """The CI gate: the real node passes the fast campaigns and every fast bug is caught."""
    r = subprocess.run(
        [sys.executable, "-m", "harness.cli", "selftest", "--fast", "--json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=840,
    )
    doc = json.loads(r.stdout)
    table = "\n".join(
        f"{row['name']} {row['outcome']} {row['anomaly'] or row['attempts'][-1]['summary']}" for row in doc["rows"]
    )
    assert r.returncode == 0, f"selftest --fast failed:\n{table}\n{r.stderr[-3000:]}"
    assert doc["passed"] and all(row["ok"] for row in doc["rows"])
    assert sum(1 for row in doc["rows"] if row["fault"]) >= 3


def test_a_simulator_campaign_reproduces_with_squall_sim() -> None:
    from harness.selftest_cmd import Row

    c = Campaign("register", sim_seeds=300)
    assert c.command == "sim" and c.args() == ["--seeds", "300", "--nodes", "3"]
    row = Row(
        "vote-ignores-log",
        "consensus",
        c,
        "vote-ignores-log",
        [Attempt(2, 0, "valid", 1.0, "300 seeds: 300 valid", "", "x")],
    )
    assert row.reproduce == "squall sim --seeds 300 --nodes 3 --seed 600 --unsafe-test-fault vote-ignores-log"
    row.attempts.append(
        Attempt(
            3,
            1,
            "invalid",
            1.0,
            "s",
            "a",
            "x",
            "squall sim --seeds 1 --seed 905 --nodes 3 --unsafe-test-fault vote-ignores-log",
        )
    )
    assert row.reproduce.endswith("--seed 905 --nodes 3 --unsafe-test-fault vote-ignores-log")


def test_the_simulator_refuses_a_fault_only_the_shell_carries_out(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "node.sim", "--seeds", "1", "--unsafe-test-fault", "skip-fsync"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not one the simulator can arm" in r.stderr
