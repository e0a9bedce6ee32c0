"""The disk fault: nemesis ops (fake targets) and the local backend (real lazyfs mounts).

The backend tests run a tiny writer program as the "database": it appends
records to its data dir, fdatasyncing some and not others, and reports
each one on stdout (its log) only after the write (and sync) returned, as
a node acknowledges. After ``lose_unsynced`` every acknowledged synced
record must be there and every unsynced one gone.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import pytest

import nemesis
from harness.backends import lazyfs
from harness.backends.base import SetupError
from harness.backends.local import LocalBackend, LocalCluster
from harness.dbs.base import DBBase, NodeLaunch, NodeStatus
from nemesis import disk

NODES3 = ["n1", "n2", "n3"]


class DiskTarget:
    """A fake target with the lose_unsynced ability."""

    def __init__(self, nodes, leader="n1"):
        self.nodes = list(nodes)
        self._leader = leader
        self.calls: list[tuple] = []

    def drop(self, src, dst):
        self.calls.append(("drop", src, dst))

    def heal(self):
        self.calls.append(("heal",))

    def pause(self, node):
        self.calls.append(("pause", node))

    def resume(self, node):
        self.calls.append(("resume", node))

    def kill(self, node):
        self.calls.append(("kill", node))

    def start(self, node):
        self.calls.append(("start", node))

    def leader(self):
        return self._leader

    def lose_unsynced(self, node):
        self.calls.append(("lose_unsynced", node))
        return {"reverted_files": ["/log"], "bytes_cut": 7, "removed_entries": ["/new"]}


class PlainTarget(DiskTarget):
    lose_unsynced = None  # type: ignore[assignment]


def test_lose_unsynced_op_hits_the_chosen_nodes_and_says_what_was_lost():
    t = DiskTarget(NODES3, leader="n2")
    assert isinstance(t, nemesis.LosesUnsynced) and isinstance(t, nemesis.FaultTarget)
    nem = nemesis.FaultNemesis(random.Random(1))
    out = nem.invoke(t, {"f": "lose-unsynced", "value": "leader"})
    assert out == {
        "type": "info",
        "value": {"lost-unsynced": ["n2"], "lost": {"n2": {"files": 1, "bytes_cut": 7, "removed": ["/new"]}}},
    }
    assert nem.invoke(t, {"f": "lose-unsynced", "value": "all"})["value"]["lost-unsynced"] == NODES3
    assert t.calls == [("lose_unsynced", n) for n in ["n2", *NODES3]]


def test_a_target_without_the_ability_records_an_error_not_a_fault():
    t = PlainTarget(NODES3)
    out = nemesis.FaultNemesis(random.Random(1)).invoke(t, {"f": "lose-unsynced", "value": "one"})
    assert out["type"] == "info" and "cannot lose unsynced writes" in out["error"]
    assert t.calls == []


def test_a_disk_package_refuses_at_setup_a_target_without_the_ability():
    pkg = nemesis.package("disk,kill", 1.0, random.Random(5))
    with pytest.raises(ValueError, match="cannot lose unsynced writes: the disk fault needs"):
        pkg.nemesis.setup(PlainTarget(NODES3))
    pkg.nemesis.setup(DiskTarget(NODES3))  # heals, nothing else
    nemesis.package("kill", 1.0, random.Random(5)).nemesis.setup(PlainTarget(NODES3))


def test_the_disk_schedule_alternates_lose_unsynced_and_start_and_ends_started():
    pkg = nemesis.package("disk", 1.0, random.Random(5))
    ops = pkg.ops(random.Random(5))
    first = [next(ops) for _ in range(6)]
    assert [o["f"] for o in first] == ["lose-unsynced", "start"] * 3
    assert all(o["value"] in disk.TARGETS for o in first[::2])
    assert all(o == {"f": "start", "value": "all"} for o in first[1::2])
    assert pkg.final_ops() == [{"f": "start", "value": "all"}]
    assert "disk" in nemesis.FAULTS


def test_the_report_draws_a_disk_fault_from_lose_unsynced_to_start():
    from checkers.history import Op
    from harness.progress import Progress
    from harness.report import stats

    lost = {
        "lost-unsynced": ["n1", "n2"],
        "lost": {"n1": {"files": 1, "bytes_cut": 9, "removed": []}, "n2": {"files": 0, "bytes_cut": 0, "removed": []}},
    }
    ops = [
        Op(index=i, time=int(t * 1e9), type=ty, process="nemesis", f=f, value=v)
        for i, (t, ty, f, v) in enumerate(
            [
                (1.0, "invoke", "lose-unsynced", "majority"),
                (1.1, "info", "lose-unsynced", lost),
                (2.0, "invoke", "start", "all"),
                (2.1, "info", "start", {"started": ["n1", "n2", "n3"]}),
            ]
        )
    ]
    (interval,) = stats.fault_intervals(ops)
    assert (interval.kind, interval.start_s, interval.end_s) == ("disk", 1.1, 2.1)
    assert interval.label == "lose-unsynced n1, n2"
    assert (
        stats.describe_fault("lose-unsynced", {"lost-unsynced": [], "lost": {}}) == "lose-unsynced: no effect, no node"
    )
    p = Progress(limit_s=10, enabled=False)
    p.nemesis_done("lose-unsynced", "lose-unsynced n1")
    assert p.fault == "lose-unsynced n1"
    p.nemesis_done("start", "start all")
    assert p.fault is None


# ------------------------------------------------------------- local backend
WRITER = r"""
import os, sys, time
fd = os.open("data/log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
start = int(os.environ.get("START", "0"))
for i in range(start, start + 40):
    synced = i % 2 == 0
    os.write(fd, f"rec{i:03d}{'S' if synced else 'U'}\n".encode())
    if synced:
        os.fdatasync(fd)
    print(f"ack rec{i:03d}{'S' if synced else 'U'}", flush=True)
# a file (and a directory) created and never synced
os.mkdir("data/newdir")
with open("data/newdir/x", "w") as f:
    f.write("never synced")
print("ack done", flush=True)
time.sleep(600)
"""


class WriterDb(DBBase):
    """A "database" that is the writer program above."""

    name = "writer"
    peer_kinds = ("peer",)

    def prepare(self, node):
        return NodeLaunch([sys.executable, "-c", WRITER], dirs=("data",), log=f"{node.name}.log")

    def status(self, address, timeout_s=1.0):
        return NodeStatus.down("the writer has no client port")


def _need_fuse() -> None:
    try:
        lazyfs.require_fuse()
    except SetupError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount FUSE: {exc}")
        pytest.skip(str(exc))


def _wait_for(path: Path, text: str, timeout_s: float = 60.0, count: int = 1) -> None:
    deadline = time.monotonic() + timeout_s
    while (path.read_text() if path.exists() else "").count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.1)


@pytest.mark.integration
@pytest.mark.slow
def test_lose_unsynced_kills_the_node_and_its_disk_forgets_exactly_the_unsynced(tmp_path):
    _need_fuse()
    spec = type("Spec", (), {"nodes": 1, "nemesis": ("disk",)})()
    cluster = LocalBackend().create(spec, WriterDb(), tmp_path)
    data = tmp_path / "nodes" / "n1" / "data"
    try:
        assert lazyfs.is_mounted(data)
        log = cluster.log_path("n1")
        _wait_for(log, "ack done")
        acked = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("ack rec")]
        assert len(acked) == 40 and (data / "newdir" / "x").exists()
        lost = cluster.lose_unsynced("n1")
        assert not cluster.is_running("n1")
        records = (data / "log").read_text().split()
        # Appends share blocks, so only the unsynced tail after the last fdatasync goes:
        # everything up to the last synced record stays, the rest is gone.
        assert records == acked[:39], records
        assert lost["removed_entries"] == ["/newdir"] and not (data / "newdir").exists()
        assert lost["bytes_cut"] == len("rec039U\n")
        cluster.start("n1")  # the restarted node sees what a power cut would have left
        _wait_for(log, "ack done", count=2)  # it could write again: the newdir it makes was gone
    finally:
        cluster.teardown()
    assert not lazyfs.is_mounted(data)
    assert lazyfs.squall_mounts() == [] or all(str(tmp_path) not in m for _, m in lazyfs.squall_mounts())


@pytest.mark.integration
@pytest.mark.slow
def test_unsynced_writes_in_the_middle_of_a_file_come_back_as_they_were(tmp_path):
    """Not only the tail: an unsynced overwrite inside synced data is undone too."""
    _need_fuse()
    cluster = LocalCluster(WriterDb(), ["n1"], tmp_path, lazy_data=True)
    try:
        cluster.launch()
        data = tmp_path / "nodes" / "n1" / "data"
        _wait_for(cluster.log_path("n1"), "ack done")
        cluster.kill("n1")
        before = (data / "log").read_bytes()
        fd = os.open(data / "log", os.O_WRONLY)
        os.pwrite(fd, b"XXXXXXX", 8)  # overwrite rec001U in place, never synced
        os.close(fd)
        cluster.lose_unsynced("n1")
        assert (data / "log").read_bytes() == before[: before.index(b"rec039U")]
    finally:
        cluster.teardown()
    assert not lazyfs.is_mounted(tmp_path / "nodes" / "n1" / "data")


@pytest.mark.integration
def test_lose_unsynced_without_lazyfs_says_how_to_get_it(tmp_path):
    cluster = LocalCluster(WriterDb(), ["n1"], tmp_path)
    try:
        cluster.launch()
        assert not lazyfs.is_mounted(tmp_path / "nodes" / "n1" / "data")  # runs without disk pay nothing
        with pytest.raises(SetupError, match="only when 'disk' is among the run's faults"):
            cluster.lose_unsynced("n1")
    finally:
        cluster.teardown()


@pytest.mark.integration
def test_a_disk_run_where_fuse_is_missing_fails_at_setup_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(lazyfs.shutil, "which", lambda name: None)  # as if fuse3 were not installed
    spec = type("Spec", (), {"nodes": 2, "nemesis": ("disk",)})()
    with pytest.raises(SetupError, match="cannot be mounted here; missing: fusermount3"):
        LocalBackend().create(spec, WriterDb(), tmp_path)
    assert not any(str(tmp_path) in m for _, m in lazyfs.squall_mounts())
    assert not list(tmp_path.glob("nodes/*/data.backing"))
