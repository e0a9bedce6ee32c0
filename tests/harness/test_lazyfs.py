"""The lazyfs mount (the `disk` fault's filesystem) really loses unsynced data.

Each test mounts a real FUSE filesystem (harness/backends/lazyfs_server.py)
over a tmp dir, writes through it with plain syscalls, calls ``drop()`` and
reads back. Skipped where FUSE cannot be mounted (failed under CI=true), and
every test checks that nothing stays mounted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.backends import lazyfs
from harness.backends.base import SetupError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _need_fuse() -> None:
    try:
        lazyfs.require_fuse()
    except SetupError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount FUSE: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def mount(tmp_path):
    _need_fuse()
    node_dir = tmp_path / "n1"
    (node_dir / "data").mkdir(parents=True)
    (node_dir / "data" / "myid").write_bytes(b"1\n")  # what a db's prepare leaves
    m = lazyfs.mount_data_dir(node_dir, tmp_path / "lazyfs.log")
    try:
        yield m
    finally:
        m.close()
        assert lazyfs.wait_unmounted(m.mountpoint), f"{m.mountpoint} still mounted"
        assert not lazyfs.is_mounted(m.mountpoint)


def _write(
    path: Path, data: bytes, offset: int | None = None, sync: str | None = None, flags: int = os.O_WRONLY | os.O_CREAT
) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        if offset is None:
            os.write(fd, data)
        else:
            os.pwrite(fd, data, offset)
        if sync == "fsync":
            os.fsync(fd)
        elif sync == "fdatasync":
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_the_data_dir_is_a_mount_that_shows_what_prepare_wrote(mount):
    assert lazyfs.is_mounted(mount.mountpoint)
    assert (mount.mountpoint / "myid").read_bytes() == b"1\n"


def test_unsynced_bytes_are_gone_and_synced_bytes_kept(mount):
    d = mount.mountpoint
    _write(d / "log", b"A" * 10000, sync="fdatasync")  # durable
    _write(d / "log", b"B" * 50, offset=5000)  # overwrite, never synced
    _write(d / "log", b"C" * 3000, offset=10000)  # append, never synced
    assert (d / "log").read_bytes() == b"A" * 5000 + b"B" * 50 + b"A" * 4950 + b"C" * 3000
    lost = mount.drop()
    assert (d / "log").read_bytes() == b"A" * 10000
    assert lost["reverted_files"] == ["/log"] and lost["bytes_cut"] == 3000


def test_fsync_and_fdatasync_keep_every_byte_written_before_them(mount):
    d = mount.mountpoint
    _write(d / "a", b"x" * 100, sync="fsync")
    _write(d / "a", b"y" * 100, offset=100, sync="fdatasync")
    _write(d / "a", b"z" * 100, offset=200)  # after the last sync: lost
    mount.drop()
    assert (d / "a").read_bytes() == b"x" * 100 + b"y" * 100


def test_a_file_never_synced_nor_its_directory_is_gone_whole(mount):
    d = mount.mountpoint
    _write(d / "new", b"never synced")
    (d / "newdir").mkdir()
    _write(d / "newdir" / "inner", b"never synced either")
    lost = mount.drop()
    assert not (d / "new").exists() and not (d / "newdir").exists()
    assert sorted(os.listdir(d)) == ["myid"]
    assert set(lost["removed_entries"]) == {"/new", "/newdir"}


def test_a_created_file_whose_directory_was_synced_exists_but_loses_its_data(mount):
    d = mount.mountpoint
    _write(d / "entry-only", b"data never synced")
    _fsync_dir(d)
    mount.drop()
    assert (d / "entry-only").exists() and (d / "entry-only").read_bytes() == b""


def test_fsync_of_a_new_file_makes_it_and_its_new_directories_durable(mount):
    d = mount.mountpoint
    (d / "version-2").mkdir()
    _write(d / "version-2" / "log.1", b"txn", sync="fsync")
    mount.drop()
    assert (d / "version-2" / "log.1").read_bytes() == b"txn"


def test_truncation_and_o_trunc_are_undone(mount):
    d = mount.mountpoint
    _write(d / "t", bytes(range(256)) * 40, sync="fsync")
    os.truncate(d / "t", 100)
    _write(d / "u", b"keep me", sync="fsync")
    _write(d / "u", b"new", flags=os.O_WRONLY | os.O_TRUNC)
    mount.drop()
    assert (d / "t").read_bytes() == bytes(range(256)) * 40
    assert (d / "u").read_bytes() == b"keep me"


def test_an_atomic_replace_by_rename_of_a_synced_file_is_kept(mount):
    d = mount.mountpoint
    _write(d / "snap", b"old", sync="fsync")
    _write(d / "snap.tmp", b"new snapshot", sync="fsync")
    os.rename(d / "snap.tmp", d / "snap")
    _fsync_dir(d)
    _write(d / "snap2.tmp", b"unsynced snapshot")
    os.rename(d / "snap2.tmp", d / "snap2")
    mount.drop()
    assert (d / "snap").read_bytes() == b"new snapshot"
    assert not (d / "snap2").exists()
    assert not (d / "snap.tmp").exists()


def test_a_second_drop_loses_nothing_more(mount):
    d = mount.mountpoint
    _write(d / "f", b"one", sync="fsync")
    mount.drop()
    lost = mount.drop()
    assert (d / "f").read_bytes() == b"one"
    assert lost == {"reverted_files": [], "bytes_cut": 0, "removed_entries": [], "open_handles": 0}


def test_the_mount_is_gone_when_the_harness_is_killed(tmp_path):
    """SIGKILL of the process that owns the mount: its server sees EOF and unmounts."""
    _need_fuse()
    node_dir = tmp_path / "n1"
    (node_dir / "data").mkdir(parents=True)
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from harness.backends import lazyfs
        m = lazyfs.mount_data_dir(Path({str(node_dir)!r}), Path({str(tmp_path / "lazyfs.log")!r}))
        print(m.proc.pid, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    server_pid = None
    try:
        server_pid = int(owner.stdout.readline())
        assert lazyfs.is_mounted(node_dir / "data")
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        assert lazyfs.wait_unmounted(node_dir / "data", timeout_s=30), "the server did not unmount itself"
        _wait_gone(server_pid)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(node_dir / "data")], capture_output=True)
        if server_pid is not None:
            _kill_quietly(server_pid)


def test_a_stale_mount_whose_server_died_is_unmounted_at_the_next_setup(tmp_path):
    _need_fuse()
    node_dir = tmp_path / "n1"
    (node_dir / "data").mkdir(parents=True)
    m = lazyfs.mount_data_dir(node_dir, tmp_path / "lazyfs.log")
    try:
        m.proc.send_signal(signal.SIGKILL)  # the server dies; the kernel keeps the dead mount
        m.proc.wait(timeout=30)
        assert lazyfs.is_mounted(node_dir / "data")
        with pytest.warns(UserWarning, match="stale squall lazyfs mount"):
            stale = lazyfs.unmount_stale()
        assert str(node_dir / "data") in stale
        assert not lazyfs.is_mounted(node_dir / "data")
    finally:
        m.close()
        assert not lazyfs.is_mounted(node_dir / "data")


def test_require_fuse_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(lazyfs.shutil, "which", lambda name: None)
    with pytest.raises(SetupError, match="fusermount3 .*fuse3"):
        lazyfs.require_fuse()


def test_a_node_dir_without_data_is_refused(tmp_path):
    with pytest.raises(SetupError, match="does not exist"):
        lazyfs.mount_data_dir(tmp_path, tmp_path / "log")


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text().split()
        if len(stat) > 2 and stat[2] == "Z":
            return  # a zombie: exited, waiting for its reaper
        assert time.monotonic() < deadline, f"lazyfs server {pid} still running"
        time.sleep(0.1)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def test_settle_counts_everything_so_far_as_durable(tmp_path):
    """The Docker backend mounts an empty data dir, lets prepare write, then settles."""
    _need_fuse()
    m = lazyfs.mount_empty_data_dir(tmp_path / "n1", tmp_path / "lazyfs.log")
    try:
        d = m.mountpoint
        _write(d / "myid", b"1\n")  # prepare's file, never fsynced
        assert m.settle() == {"settled": ["/myid"]}
        _write(d / "later", b"lost")
        lost = m.drop()
        assert (d / "myid").read_bytes() == b"1\n" and not (d / "later").exists()
        assert lost["removed_entries"] == ["/later"]
    finally:
        m.close()
    assert not lazyfs.is_mounted(tmp_path / "n1" / "data")
