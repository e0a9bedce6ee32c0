"""Data directories on a filesystem that loses unsynced writes (the ``disk`` fault).

``LazyMount(backing, mountpoint, log)`` starts ``harness/backends/lazyfs_server.py``
as its own process (so a killed node does not kill it) and waits until the
mount is up; ``drop()`` makes it forget every byte and entry never fsynced
(see that module for the exact model); ``close()`` unmounts. The local
backend mounts one per node, only when the run's faults include ``disk``.

Nothing outlives a run:

* ``close()`` runs from the cluster's teardown (``finally`` and ``atexit``);
* the server watches its stdin: when the harness dies, even by SIGKILL, the
  pipe closes and the server unmounts itself (``fusermount3 -u -z``);
* ``unmount_stale()`` at the next setup unmounts, with a warning, any
  squall mount whose server process is gone.

``require_fuse()`` says what is missing when FUSE cannot be used here.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from harness.backends.base import SetupError

FSNAME_PREFIX = "squall-lazyfs"  # + "-<server pid>", the fsname column of /proc/mounts


def require_fuse() -> None:
    """Raise SetupError naming what is missing for FUSE mounts on this machine."""
    missing = []
    if not Path("/dev/fuse").exists():
        missing.append(
            "/dev/fuse (load the fuse kernel module; in a container pass --device /dev/fuse and --cap-add SYS_ADMIN)"
        )
    if shutil.which("fusermount3") is None:
        missing.append("fusermount3 (install Debian's fuse3 package)")
    try:
        import mfusepy  # noqa: F401 - loads libfuse3 through ctypes
    except (ImportError, OSError) as exc:
        missing.append(
            f"the mfusepy binding or libfuse3 ({type(exc).__name__}: {exc}; pip install mfusepy, apt-get install fuse3)"
        )
    if missing:
        raise SetupError(
            "the disk fault needs a FUSE filesystem, which cannot be mounted here; missing: " + "; ".join(missing)
        )


def squall_mounts() -> list[tuple[str, str]]:
    """(fsname, mountpoint) of every squall lazyfs mount in /proc/mounts."""
    out = []
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith(FSNAME_PREFIX + "-"):
                out.append((parts[0], parts[1].replace("\\040", " ")))
    return out


def is_mounted(path: Path | str) -> bool:
    target = os.path.realpath(path)
    return any(os.path.realpath(m) == target for _, m in squall_mounts())


def unmount_stale() -> list[str]:
    """Unmount (lazily, with a warning) every squall mount whose server is dead."""
    stale = []
    for fsname, mountpoint in squall_mounts():
        pid = fsname.rsplit("-", 1)[-1]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue  # a live server: another run's mount
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True, check=False)
        warnings.warn(f"unmounted a stale squall lazyfs mount at {mountpoint} (its server is gone)", stacklevel=2)
        stale.append(mountpoint)
    return stale


class LazyMount:
    """One lazyfs server process: BACKING mounted on MOUNTPOINT."""

    def __init__(self, backing: Path, mountpoint: Path, log_path: Path, ready_timeout_s: float = 30.0) -> None:
        self.backing, self.mountpoint = Path(backing), Path(mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.backends.lazyfs_server", str(self.backing), str(self.mountpoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            line = self._readline(ready_timeout_s)
            if line != "ready":
                raise SetupError(
                    f"the lazyfs server for {self.mountpoint} did not mount it "
                    f"(it said {line!r}); its log is {log_path}{_tail(log_path)}"
                )
        except BaseException:
            self.close()
            raise

    def _readline(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return f"<nothing within {timeout_s:.0f}s>"
        line = self.proc.stdout.readline()
        return line.decode(errors="replace").strip() if line else "<exited>"

    def _command(self, cmd: str, timeout_s: float = 60.0) -> dict[str, Any]:
        if self.proc.poll() is not None or self.proc.stdin is None:
            raise RuntimeError(
                f"the lazyfs server for {self.mountpoint} is not running (exit code {self.proc.returncode})"
            )
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        line = self._readline(timeout_s)
        try:
            reply = json.loads(line)
        except ValueError:
            raise RuntimeError(f"lazyfs server for {self.mountpoint} answered {cmd!r} with {line!r}") from None
        if not reply.pop("ok", False):
            raise RuntimeError(f"lazyfs {cmd} failed on {self.mountpoint}: {reply.get('error')}")
        return reply

    def drop(self) -> dict[str, Any]:
        """Forget everything never fsynced (the node must be dead); return what was lost."""
        return self._command("drop")

    def status(self) -> dict[str, Any]:
        return self._command("status")

    def settle(self) -> dict[str, Any]:
        """Count everything written so far as durable (setup files written through the mount)."""
        return self._command("settle")

    def close(self) -> None:
        """Unmount and stop the server. Idempotent; never raises."""
        if is_mounted(self.mountpoint) or self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, check=False)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def mount_data_dir(node_dir: Path, log_path: Path) -> LazyMount:
    """Move ``node_dir/data`` (as the db's prepare left it) to
    ``node_dir/data.backing`` and mount it back on ``node_dir/data``."""
    data = Path(node_dir) / "data"
    backing = Path(node_dir) / "data.backing"
    if not data.is_dir():
        raise SetupError(
            f"the disk fault mounts each node's data dir, but {data} does not exist "
            "(the db's prepare must create <node dir>/data)"
        )
    if backing.exists():
        raise SetupError(f"{backing} already exists; a node dir is mounted only once")
    data.rename(backing)
    data.mkdir()
    return LazyMount(backing, data, log_path)


def mount_empty_data_dir(node_dir: Path, log_path: Path) -> LazyMount:
    """Mount an empty ``node_dir/data`` (backed by ``node_dir/data.backing``)
    before anything is written: for a container that bind-mounts it at
    creation, before the db's ``prepare`` runs. Call ``settle()`` after it."""
    data = Path(node_dir) / "data"
    backing = Path(node_dir) / "data.backing"
    data.mkdir(parents=True, exist_ok=True)
    if any(data.iterdir()) or backing.exists():
        raise SetupError(f"{data} must be empty and {backing} absent to mount an empty data dir")
    backing.mkdir()
    return LazyMount(backing, data, log_path)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- last lines ---\n" + "\n".join(text) if text else ""


def wait_unmounted(path: Path, timeout_s: float = 10.0) -> bool:
    """True once ``path`` is no longer a squall mount (for tests and teardown checks)."""
    deadline = time.monotonic() + timeout_s
    while is_mounted(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
