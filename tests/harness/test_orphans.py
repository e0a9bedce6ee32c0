"""No orphans (issue 11, item 9): every node process the local backend starts
dies when the harness dies, however it dies -- SIGKILL included, which no
handler, finally or atexit sees -- and the harness logs the run to squall.log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.local import LocalCluster
from harness.dbs.base import DBBase, NodeLaunch, NodeStatus
from tests.harness.test_campaigns import _procs_mentioning

ROOT = Path(__file__).resolve().parents[2]
ZK_JAR = Path("/usr/share/java/zookeeper.jar")


def _gone_within(text: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    left = _procs_mentioning(text)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _procs_mentioning(text)
    return left


class _SleeperDB(DBBase):
    """A database whose nodes are plain sleeping processes (in a shell, so a
    node is a process tree, as ZooKeeper's wrapper and its JVM are)."""

    name = "sleeper"
    peer_kinds = ("peer",)

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def prepare(self, node):
        # the shell and its child shell both carry the marker in their command lines
        argv = ["/bin/sh", "-c", f"/bin/sh -c 'sleep 600; : {self.marker}' & sleep 601; : {self.marker}"]
        return NodeLaunch(argv, log=f"{node.name}.log")

    def status(self, address, timeout_s=1.0):
        return NodeStatus.down("a sleeper never serves")


_KILLED_HARNESS = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from harness.backends.local import LocalCluster
from tests.harness.test_orphans import _SleeperDB
c = LocalCluster(_SleeperDB({marker!r}), ["n1", "n2"], Path({run_dir!r}))
c.launch()
print("up", flush=True)
time.sleep(600)
"""


def test_the_watchdog_kills_every_node_tree_of_a_sigkilled_harness(tmp_path):
    marker = f"squall-orphan-test-{os.getpid()}-{time.monotonic_ns()}"
    code = _KILLED_HARNESS.format(root=str(ROOT), marker=marker, run_dir=str(tmp_path))
    harness = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout.readline().strip() == "up"

        def nodes() -> list[int]:
            return [p for p in _procs_mentioning(marker) if p != harness.pid]

        deadline = time.monotonic() + 30
        while len(nodes()) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(nodes()) == 4, "expected 2 nodes of 2 processes each"
        harness.kill()
        harness.wait()
        assert _gone_within(marker, 10) == [], "a node outlived its SIGKILLed harness"
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        harness.stdout.close()
        for pid in _procs_mentioning(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_normal_teardown_ends_the_watchdog_too(tmp_path):
    c = LocalCluster(_SleeperDB("squall-orphan-teardown"), ["n1"], tmp_path)
    try:
        c.launch()
        assert c.watchdog.proc.poll() is None
    finally:
        c.teardown()
    assert c.watchdog.proc.poll() is not None


def _zookeeper() -> None:
    if not ZK_JAR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{ZK_JAR} is missing: CI must install Debian's zookeeper package")
        pytest.skip(f"{ZK_JAR} is missing (install Debian's zookeeper package)")


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("db", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_sigkill_of_squall_run_leaves_no_node_process(tmp_path, db):
    if db == "zookeeper":
        _zookeeper()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--db",
            db,
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        logs: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:  # until the main phase runs
            logs = list(tmp_path.glob("results/*/*/squall.log"))
            if logs and "main phase" in logs[0].read_text():
                break
            time.sleep(0.5)
        assert logs and "main phase" in logs[0].read_text(), f"the run never reached its main phase ({proc.poll()})"
        time.sleep(3)  # let a fault start (not a timing assertion)
        assert len(_procs_mentioning(str(tmp_path))) >= 3, "expected 3 node processes under the run directory"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = _gone_within(str(tmp_path), 10)
        assert left == [], f"node processes outlived the SIGKILLed harness: {left}"
        text = logs[0].read_text()
        for step in ("setup: creating the cluster", "setup: cluster ready", "main phase", "started n1"):
            assert step in text, f"squall.log does not record {step!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _procs_mentioning(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
