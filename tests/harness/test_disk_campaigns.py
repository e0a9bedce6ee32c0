"""Short `--nemesis disk` campaigns: `squall run` end to end with data dirs on lazyfs.

* The squall node and Apache ZooKeeper (3 nodes, register workload) must be
  judged valid while nodes are killed and lose what they never fsynced, and
  the fault must really have happened (lose-unsynced ops without errors).
* A node that acknowledges before fdatasync (`--unsafe-db-fault skip-fsync`)
  must be caught (exit 1). Skipped while the node lacks that test-only fault.
* Nothing stays mounted (/proc/mounts) after a run, after SIGINT and after
  SIGKILL of `squall run` (the lazyfs servers unmount themselves).
* Docker (marked `docker`): the same campaign with host-side mounts bound
  into the containers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import lazyfs
from harness.backends.base import SetupError
from tests.harness.test_campaigns import ROOT, _latest, _need_node, _need_zookeeper, _procs_mentioning, squall

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DISK = [
    "--nodes",
    "3",
    "--workload",
    "register",
    "--nemesis",
    "disk",
    "--time-limit",
    "20",
    "--nemesis-interval",
    "3",
    "--no-progress",
]


def _need_fuse() -> None:
    try:
        lazyfs.require_fuse()
    except SetupError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount FUSE: {exc}")
        pytest.skip(str(exc))


def _mounts_under(path: Path) -> list[str]:
    return [m for _, m in lazyfs.squall_mounts() if m.startswith(str(path))]


def _disk_ops(run_dir: Path) -> list[dict]:
    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [
        o for o in ops if o.get("process") == "nemesis" and o.get("f") == "lose-unsynced" and o.get("type") == "info"
    ]


def _cleanup(tmp_path: Path) -> None:
    for pid in _procs_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for m in _mounts_under(tmp_path):
        subprocess.run(["fusermount3", "-u", "-z", m], capture_output=True)


def _valid_disk_campaign(tmp_path: Path, db: str) -> None:
    try:
        r = squall(["run", "--db", db, *DISK, "--seed", "7"], tmp_path)
        run_dir = _latest(tmp_path)
        results = json.loads((run_dir / "results.json").read_text())
        assert r.returncode == 0, f"{db} under disk: exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
        ops = _disk_ops(run_dir)
        assert ops, "no lose-unsynced op ran: the campaign tested nothing"
        assert all("error" not in o for o in ops), [o for o in ops if "error" in o]
        assert all(o["value"]["lost"] for o in ops)
        assert _mounts_under(tmp_path) == [], "a data dir is still mounted after the run"
        assert (run_dir / "nodes" / "n1" / "data.backing").is_dir()
    finally:
        _cleanup(tmp_path)


def test_the_node_passes_a_disk_campaign(tmp_path):
    _need_fuse()
    _need_node()
    _valid_disk_campaign(tmp_path, "squall")


@pytest.mark.zookeeper
def test_zookeeper_passes_a_disk_campaign(tmp_path):
    _need_fuse()
    _need_zookeeper()
    _valid_disk_campaign(tmp_path, "zookeeper")


def _skip_fsync_available() -> bool:
    from harness.cli import _registry

    sources = "".join(p.read_text(encoding="utf-8", errors="replace") for p in (ROOT / "node").rglob("*.py"))
    return "skip-fsync" in _registry().dbs["squall"]({}).unsafe_faults and "skip-fsync" in sources


def test_a_node_that_skips_fdatasync_is_caught(tmp_path):
    """Replication hides a lost tail on a minority; only a loss that takes the
    data from enough nodes at once (a power cut of all of them) shows it. The
    schedule draws the targets at random, so up to three seeds are tried and
    one of them must be judged invalid (a real node passes all three: see above)."""
    _need_fuse()
    _need_node()
    if not _skip_fsync_available():
        pytest.skip(
            "the node has no test-only 'skip-fsync' fault yet (--unsafe-db-fault skip-fsync, "
            "issue 14): nothing to catch"
        )
    tried = []
    try:
        for seed in ("9", "8", "7"):  # tried here: 9 caught it twice in two runs, 8 once in one, 7 not in one
            cwd = tmp_path / f"seed-{seed}"
            cwd.mkdir()
            r = squall(
                [
                    "run",
                    "--db",
                    "squall",
                    *DISK,
                    "--time-limit",
                    "40",
                    "--nemesis-interval",
                    "2",
                    "--unsafe-db-fault",
                    "skip-fsync",
                    "--seed",
                    seed,
                ],
                cwd,
            )
            run_dir = _latest(cwd)
            results = json.loads((run_dir / "results.json").read_text())
            ops = _disk_ops(run_dir)
            assert ops and all("error" not in o for o in ops), f"the disk fault did not run cleanly: {ops}"
            assert _mounts_under(tmp_path) == []
            tried.append((seed, r.returncode, results.get("summary"), [o["value"]["lost-unsynced"] for o in ops]))
            if r.returncode == 1:
                break
        assert tried[-1][1] == 1, f"a node that skips fdatasync passed every disk campaign: {tried}"
    finally:
        _cleanup(tmp_path)


def _start_and_wait_mounted(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--db", "squall", *DISK, "--time-limit", "120"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while len(_mounts_under(tmp_path)) < 3:
        assert proc.poll() is None, f"squall run exited early: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the three data dirs were never mounted"
        time.sleep(0.2)
    time.sleep(5)  # let the nodes write and a fault start (not a timing assertion)
    return proc


def test_sigint_of_a_disk_run_leaves_nothing_mounted(tmp_path):
    _need_fuse()
    _need_node()
    proc = _start_and_wait_mounted(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err[-3000:]
        assert _mounts_under(tmp_path) == [], "a data dir stayed mounted after SIGINT"
        assert _procs_mentioning(str(tmp_path)) == [], "a node or lazyfs server survived SIGINT"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _cleanup(tmp_path)


def test_sigkill_of_a_disk_run_leaves_nothing_mounted(tmp_path):
    """No finally runs: the lazyfs servers see their stdin close and unmount themselves."""
    _need_fuse()
    _need_node()
    proc = _start_and_wait_mounted(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 60
        while _mounts_under(tmp_path):
            assert time.monotonic() < deadline, f"still mounted after SIGKILL: {_mounts_under(tmp_path)}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _cleanup(tmp_path)  # the node processes (their own sessions) outlive a SIGKILLed harness
    assert _mounts_under(tmp_path) == []


@pytest.mark.docker
def test_a_disk_campaign_in_docker_mounts_on_the_host_and_leaves_nothing(tmp_path):
    """Docker: the lazyfs mounts live on the host, bound into each container."""
    _need_fuse()
    _need_node()
    from tests.harness.test_docker_backend import _need_docker

    _need_docker()
    try:
        r = squall(["run", "--backend", "docker", "--db", "squall", *DISK, "--seed", "7"], tmp_path, timeout_s=900)
        run_dir = _latest(tmp_path)
        results = json.loads((run_dir / "results.json").read_text())
        assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
        ops = _disk_ops(run_dir)
        assert ops and all("error" not in o for o in ops), ops
        # the nodes wrote through the mount: their unsynced files were removed
        assert any(lost["removed"] for o in ops for lost in o["value"]["lost"].values())
        assert _mounts_under(tmp_path) == []
    finally:
        _cleanup(tmp_path)
