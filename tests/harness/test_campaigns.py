"""Short real campaigns: `squall run` end to end on the local backend.

* Apache ZooKeeper, 3 nodes: every workload under partition, pause and kill
  must be judged valid (no false alarm). Needs Debian's zookeeper package:
  skipped with a message when it is missing, failed when CI=true.
* The squall node: the same workloads (1 node while the ensemble is not
  available). Skipped while `python -m node` cannot start a server.
* The gate: a 3-member squall ensemble with a test-only fault armed
  (lose-writes|stale-reads, through the hidden `--unsafe-db-fault` flag, which
  starts every node with `--unsafe-test-fault NAME`) must exit 1 with the
  anomaly in report.html. Skipped while the node has no such switch.
* The lagging follower (`--nemesis lagging-follower`: one follower's links
  slowed by 1 s, then its leader killed, over and over): the correct node and
  Apache ZooKeeper are valid under it with `--reads sync`; a sync that does not
  wait, a member that takes back a client that has seen more, an idempotent
  delete and a version check made on the wrong member are caught under it.
* Every recipe check and availability has a node fault that violates it
  (node/faults.py) and a campaign here that catches it (exit 1, the anomaly in
  report.html). bench/gates.py runs the same gates many times (reliability).
* Cleanup: SIGINT to a running `squall run` against ZooKeeper leaves no node
  process and no listening port behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from markupsafe import escape  # what the report's template applies

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
WORKLOADS = ("register", "set", "lock", "session")
FAULTS = ("partition", "pause", "kill")
SHORT = ["--time-limit", "12", "--nemesis-interval", "3", "--no-progress"]
# The lagging-follower campaign of the gates (bench/gates.py LAG): a follower
# 1 s behind for most of the run, its leader killed every 4 s, 18 clients (a
# lagging member's clients wait 2 s or more for each write, so each reads there
# seldom; and the more clients the killed leader had, the more move onto it).
LAG = [
    "--nemesis",
    "lagging-follower",
    "--nemesis-interval",
    "1",
    "--time-limit",
    "12",
    "--concurrency",
    "18",
    "--rate",
    "60",
    "--no-progress",
]
LAG_SYNC = ["--reads", "sync", *LAG]


def _need_zookeeper() -> None:
    if not ZK_JAR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{ZK_JAR} is missing: CI must install Debian's zookeeper package")
        pytest.skip(f"{ZK_JAR} is missing (install Debian's zookeeper package to run these)")


def _node_help() -> str:
    r = subprocess.run([sys.executable, "-m", "node", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def _need_node() -> None:
    if "--data-dir" not in _node_help():
        pytest.skip("the squall node cannot be started yet (`python -m node --help` offers no --data-dir)")


def _need_fault_switch() -> None:
    _need_node()
    sources = "".join(p.read_text(encoding="utf-8", errors="replace") for p in (ROOT / "node").rglob("*.py"))
    if "--unsafe-test-fault" not in sources:
        pytest.skip("the node has no --unsafe-test-fault switch yet, so no broken database to gate on")


def squall(args: list[str], cwd: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _latest(cwd: Path) -> Path:
    return (cwd / "results" / "latest").resolve()


def _assert_harness_checks(results: dict) -> None:
    """Roaming clients, the converge phase and availability ran and passed."""
    subs = {s["checker"]: s for s in results["result"]["details"]["results"]}
    for name in ("converged-replicas", "session-order", "availability"):
        assert subs.get(name, {}).get("valid") is True, (name, subs.get(name, {}).get("summary"))
    assert subs["converged-replicas"]["witness"]["paths"] >= 1


def _assert_files(run_dir: Path) -> None:
    for name in ("test.json", "history.jsonl", "results.json", "report.html", "junit.xml"):
        assert (run_dir / name).exists(), f"{name} missing in {run_dir}"


@pytest.mark.zookeeper
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_zookeeper_is_judged_valid(tmp_path, workload, fault):
    _need_zookeeper()
    r = squall(
        [
            "run",
            "--db",
            "zookeeper",
            "--nodes",
            "3",
            "--workload",
            workload,
            "--nemesis",
            fault,
            "--seed",
            "11",
            *SHORT,
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    _assert_files(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"{workload}/{fault}: exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
    assert results["valid"] is True
    assert list((run_dir / "logs").glob("*.log")), "node logs were not collected"
    _assert_harness_checks(results)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_node_is_judged_valid(tmp_path, workload, fault):
    _need_node()
    r = squall(["run", "--db", "squall", "--workload", workload, "--nemesis", fault, "--seed", "11", *SHORT], tmp_path)
    run_dir = _latest(tmp_path)
    _assert_files(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"{workload}/{fault}: exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
    _assert_harness_checks(results)


@pytest.mark.parametrize(
    "fault, workload", [("lose-writes", "register"), ("lose-writes", "set"), ("stale-reads", "register")]
)
def test_a_broken_database_fails_the_gate(tmp_path, fault, workload):
    _need_fault_switch()
    # a 3-member ensemble: the faults run on the replicated path
    r = squall(
        [
            "run",
            "--db",
            "squall",
            "--nodes",
            "3",
            "--workload",
            workload,
            "--nemesis",
            "none",
            "--unsafe-db-fault",
            fault,
            "--seed",
            "11",
            *SHORT,
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 1, f"the broken database ({fault}) passed the gate: {results.get('summary')}"
    page = (run_dir / "report.html").read_text()
    assert "invalid" in page
    assert str(escape(results["summary"])) in page
    first_line = results["result"]["explanation"].strip().splitlines()[0]
    assert str(escape(first_line)) in page, "the checker's explanation is not in the report"


def test_stale_reads_after_sync_fail_the_fresh_read_and_session_checks(tmp_path):
    _need_fault_switch()
    r = squall(
        [
            "run",
            "--db",
            "squall",
            "--nodes",
            "1",
            "--workload",
            "register",
            "--reads",
            "sync",
            "--nemesis",
            "none",
            "--unsafe-db-fault",
            "stale-reads",
            "--seed",
            "11",
            *SHORT,
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 1, results.get("summary")
    subs = {s["checker"]: s for s in results["result"]["details"]["results"]}
    assert subs["fresh-after-sync"]["valid"] is False
    assert subs["fresh-after-sync"]["counterexample"]["stale_reads"][0]["missed_write"] >= 0
    assert subs["session-order"]["valid"] is False
    assert "known_limitations" not in results  # the node, not Apache ZooKeeper: a finding
    assert "fresh-after-sync" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize(
    "fault, workload, checker",
    [
        ("diverge", "register", "converged-replicas"),  # replicas apply the same log differently
        ("multi-partial", "multi", "G1a"),  # a failed multi leaves its first ops' effects
        ("drop-watch-events", "watch", "watch-one-shot"),  # a member drops watch notifications
    ],
)
def test_the_new_checks_catch_their_broken_database(tmp_path, fault, workload, checker):
    """Each harness check has a test-only node bug that violates it; a short
    fault-free campaign against a 3-member ensemble must exit 1 naming it."""
    _need_fault_switch()
    r = squall(
        [
            "run",
            "--db",
            "squall",
            "--nodes",
            "3",
            "--workload",
            workload,
            "--nemesis",
            "none",
            "--unsafe-db-fault",
            fault,
            "--seed",
            "11",
            *SHORT,
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 1, f"the broken database ({fault}) passed: {results.get('summary')}\n{r.stderr[-2000:]}"
    assert checker in results["summary"], results["summary"]
    assert str(escape(results["summary"])) in (run_dir / "report.html").read_text()


def _subs(results: dict) -> dict[str, dict]:
    return {s["checker"]: s for s in results["result"]["details"]["results"]}


def _broken_run(
    tmp_path: Path, fault: str, workload: str, flags: list[str], attempts: int = 3
) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """Run the campaign against the broken database on seeds 11, 12, ... until
    a run is not judged valid, at most ``attempts`` runs: a gate is a
    campaign that catches its bug within a few runs (as squall selftest
    counts it), not in every single one on a loaded machine (bench/gates.py
    measures how often one run catches it)."""
    for seed in range(11, 11 + attempts):
        r = squall(
            [
                "run",
                "--db",
                "squall",
                "--nodes",
                "3",
                "--workload",
                workload,
                "--unsafe-db-fault",
                fault,
                "--seed",
                str(seed),
                *flags,
            ],
            tmp_path,
        )
        if r.returncode != 0:
            break
    run_dir = _latest(tmp_path)
    return r, run_dir, json.loads((run_dir / "results.json").read_text())


def _assert_in_report(run_dir: Path, results: dict, checker: str) -> None:
    """The verdict, the failing checker and its first explanation line are in report.html."""
    page = (run_dir / "report.html").read_text()
    assert str(escape(results["summary"])) in page
    sub = _subs(results)[checker]
    assert sub["valid"] is False, sub["summary"]
    assert str(escape(sub["summary"])) in page
    first = sub["explanation"].strip().splitlines()[0]
    assert str(escape(first)) in page, "the checker's explanation is not in the report"


@pytest.mark.parametrize("db", [pytest.param("zookeeper", marks=pytest.mark.zookeeper), "squall"])
def test_reads_after_sync_are_fresh_under_a_lagging_follower(tmp_path, db):
    """The schedule that catches sync-no-wait finds nothing on a correct database:
    reads after sync were judged on the lagging members too, and all were fresh."""
    if db == "zookeeper":
        _need_zookeeper()
    else:
        _need_node()
    r = squall(["run", "--db", db, "--nodes", "3", "--workload", "register", "--seed", "11", *LAG_SYNC], tmp_path)
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"{db}: exit {r.returncode}: {results.get('summary')}\n{r.stderr[-2000:]}"
    fresh = _subs(results)["fresh-after-sync"]
    assert fresh["valid"] is True and len(fresh["details"]["reads_checked_by_node"]) == 3, fresh["details"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert any(
        op["f"] == "start-packet" and op["type"] == "info" and op["value"].get("sequence") == "lagging-follower"
        for op in history
        if op["process"] == "nemesis"
    )


def test_a_sync_that_does_not_wait_is_caught_by_a_lagging_follower(tmp_path):
    """sync-no-wait answers a sync from the member's own state: through a
    follower kept 1 s behind, a read after sync misses acknowledged writes."""
    _need_fault_switch()
    r, run_dir, results = _broken_run(tmp_path, "sync-no-wait", "register", LAG_SYNC)
    assert r.returncode == 1, f"sync-no-wait passed: {results.get('summary')}\n{r.stderr[-2000:]}"
    stale = _subs(results)["fresh-after-sync"]["counterexample"]["stale_reads"][0]
    assert {"sync", "read", "missed_write", "read_node"} <= set(stale) and stale["missed_write"] >= 0
    assert "known_limitations" not in results  # the node, not Apache ZooKeeper: a finding
    _assert_in_report(run_dir, results, "fresh-after-sync")


def test_a_member_that_takes_back_a_client_that_has_seen_more_is_caught(tmp_path):
    """stale-reconnect: clients of the killed leader move onto the lagging
    follower, which accepts them; their zxid goes back (session-order)."""
    _need_fault_switch()
    r, run_dir, results = _broken_run(tmp_path, "stale-reconnect", "register", LAG)
    assert r.returncode == 1, f"stale-reconnect passed: {results.get('summary')}\n{r.stderr[-2000:]}"
    problems = _subs(results)["session-order"]["counterexample"]["problems"]
    assert "zxid-went-back" in {p["kind"] for p in problems}
    _assert_in_report(run_dir, results, "session-order")


@pytest.mark.parametrize(
    "fault, workload, flags, checker, anomaly",
    [
        # two consumers (one on the lagging member) both "delete" one item: consumed twice
        ("idempotent-delete", "queue", LAG, "queue", "consumed-twice"),
        # a sequential name numbered by the child count: after a get, a put collides or reuses a name
        (
            "sequence-from-child-count",
            "queue",
            ["--nemesis", "none", "--time-limit", "8", "--no-progress"],
            "queue",
            "sequential-",
        ),
        # a follower forwards one turn's writes newest first: a client's pipelined burst is reordered
        (
            "forwards-reversed",
            "watch",
            ["--nemesis", "none", "--time-limit", "8", "--no-progress"],
            "watch-fifo",
            "out of the order sent",
        ),
        # a stale version passes the check on the lagging member: an increment is lost
        ("local-version-check", "counter", LAG, "counter", "final-out-of-bounds"),
        # a leader's fenced read after another leader's multi sees the old value
        (
            "stale-read-cache",
            "election",
            ["--nemesis", "none", "--time-limit", "8", "--no-progress"],
            "lock-fencing",
            "fencing violation",
        ),
        # the sync path leaks the throttle: the members stop answering writes and syncs
        (
            "throttle-leak",
            "register",
            ["--reads", "sync", "--nemesis", "none", "--time-limit", "8", "--no-progress"],
            "availability",
            "unavailable",
        ),
    ],
)
def test_each_recipe_and_availability_check_catches_its_broken_database(
    tmp_path, fault, workload, flags, checker, anomaly
):
    _need_fault_switch()
    r, run_dir, results = _broken_run(tmp_path, fault, workload, flags)
    assert r.returncode == 1, f"the broken database ({fault}) passed: {results.get('summary')}\n{r.stderr[-2000:]}"
    assert anomaly in _subs(results)[checker]["summary"], _subs(results)[checker]["summary"]
    _assert_in_report(run_dir, results, checker)


def _procs_mentioning(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text in cmd and state != "Z":
            out.append(int(d.name))
    return out


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.zookeeper
def test_sigint_during_a_zookeeper_run_leaves_nothing_behind(tmp_path):
    _need_zookeeper()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--db",
            "zookeeper",
            "--nodes",
            "3",
            "--workload",
            "register",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "2",
            "--time-limit",
            "120",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ports: list[int] = []
    try:
        deadline = time.monotonic() + 90
        cfgs: list[Path] = []
        while time.monotonic() < deadline:  # wait until every node serves clients
            cfgs = list(tmp_path.glob("results/*/*/nodes/*/zoo.cfg"))
            ports = [
                int(line.split("=")[1])
                for c in cfgs
                for line in c.read_text().splitlines()
                if line.startswith("clientPort=")
            ]
            if len(ports) == 3 and all(_listening(p) for p in ports):
                break
            time.sleep(0.5)
        assert len(ports) == 3, "ZooKeeper nodes never came up"
        time.sleep(3)  # let the main phase and a fault start (not a timing assertion)
        assert _procs_mentioning(str(tmp_path)), "expected node processes under the run directory"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, err[-3000:]
        assert _procs_mentioning(str(tmp_path)) == [], "a node process survived SIGINT"
        assert [p for p in ports if _listening(p)] == [], "a client port is still listening"
        run_dir = _latest(tmp_path)
        assert (run_dir / "history.jsonl").stat().st_size > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in _procs_mentioning(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)


def test_a_standalone_node_refuses_a_fault_that_cannot_show_on_it(tmp_path):
    """A broken-database run must never pass silently because its bug could not show: a fault
    that only other members make observable (node.faults.NEEDS_PEERS) fails the setup of a
    one-node run."""
    _need_fault_switch()
    r = squall(
        [
            "run",
            "--db",
            "squall",
            "--nodes",
            "1",
            "--workload",
            "register",
            "--nemesis",
            "none",
            "--unsafe-db-fault",
            "sync-no-wait",
            "--seed",
            "11",
            *SHORT,
        ],
        tmp_path,
    )
    assert r.returncode == 4, f"expected a failed setup (4), got {r.returncode}\n{r.stderr[-2000:]}"
