"""A FUSE filesystem that forgets what was never fsynced (one process per node).

Run as ``python -m harness.backends.lazyfs_server BACKING MOUNTPOINT``; the
harness starts it (``harness/backends/lazyfs.py``), never a user. Every
operation passes through to the BACKING directory at once, so reads always
see the latest writes, as through the page cache of a real disk. Beside it
the server keeps an *undo record* of everything not yet durable:

* data: before a write (or truncate, fallocate) touches a 4 KiB block of a
  file for the first time since that file's last fsync/fdatasync, the
  block's old bytes are saved, and so is the file's size at that sync;
* entries: a file or directory created since it, or its parent directory,
  was last fsynced. Fsyncing a file also makes its own entry and every
  ancestor directory's entry durable (what ext4's journal does in practice;
  ZooKeeper never fsyncs a directory).

``drop`` (on the control channel) puts every block back, cuts every file to
its synced size and removes every entry never made durable: the disk as a
power cut would leave it. Renames, unlinks, rmdirs, links and attribute
changes are durable at once (a real disk may lose those too; this
filesystem does not model it, so it never loses *more* than a disk could).

Control channel: the server's stdin and stdout, one line a command —
``drop`` answers one JSON line describing what was lost; ``status`` answers
the pending undo state; ``settle`` counts everything so far as durable (for
files the harness writes through the mount before the node starts). It prints ``ready`` once mounted. EOF on stdin means
the harness is gone (even killed by SIGKILL): the server then lazily
unmounts (``fusermount3 -u -z``) and exits, so no mount outlives its run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import mfusepy

from harness.backends.lazyfs import FSNAME_PREFIX

BLOCK = 4096
_STAT_FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_blksize")


@dataclass
class _Undo:
    """How to put one file back as it was at its last fsync."""

    size: int
    blocks: dict[int, bytes] = field(default_factory=dict)


def _parents(path: str) -> list[str]:
    """ "/a/b/c" -> ["/a/b", "/a"] (not "/": the mount root is always durable)."""
    out: list[str] = []
    while True:
        path = os.path.dirname(path)
        if path in ("/", ""):
            return out
        out.append(path)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


class LazyOps(mfusepy.Operations):
    """Passthrough operations with an undo record of everything unsynced."""

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.root = os.path.realpath(backing)
        self._mu = threading.RLock()
        self.undo: dict[str, _Undo] = {}
        self.created: set[str] = set()
        self.open_handles = 0
        self.all_closed = threading.Condition(self._mu)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # ----------------------------------------------------------- undo state
    def _record(self, path: str) -> _Undo:
        rec = self.undo.get(path)
        if rec is None:
            size = 0 if path in self.created else os.lstat(self._full(path)).st_size
            rec = self.undo[path] = _Undo(size)
        return rec

    def _save(self, path: str, start: int, end: int) -> None:
        """Save the synced bytes of every block in [start, end) not saved yet."""
        rec = self._record(path)
        last = min(end, rec.size)
        if start >= last:
            return
        todo = [b for b in range(start // BLOCK, (last - 1) // BLOCK + 1) if b not in rec.blocks]
        if not todo:
            return
        fd = os.open(self._full(path), os.O_RDONLY)
        try:
            for b in todo:
                rec.blocks[b] = os.pread(fd, BLOCK, b * BLOCK)
        finally:
            os.close(fd)

    def _synced(self, path: str) -> None:
        self.undo.pop(path, None)
        self._synced_entry(path)

    def _synced_entry(self, path: str) -> None:
        self.created.discard(path)
        for parent in _parents(path):
            self.created.discard(parent)

    def drop(self) -> dict[str, Any]:
        """Forget everything never fsynced; return what was lost."""
        with self._mu:
            self.all_closed.wait_for(lambda: self.open_handles == 0, timeout=5.0)
            reverted, cut = [], 0
            for path, rec in sorted(self.undo.items()):
                if any(_under(path, c) for c in self.created):
                    continue
                full = self._full(path)
                try:
                    fd = os.open(full, os.O_WRONLY)
                except FileNotFoundError:
                    continue
                try:
                    cut += max(0, os.fstat(fd).st_size - rec.size)
                    for b, data in rec.blocks.items():
                        os.pwrite(fd, data, b * BLOCK)
                    os.ftruncate(fd, rec.size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                reverted.append(path)
            removed: list[str] = []
            for path in sorted(self.created, key=len):
                if any(_under(path, r) for r in removed):
                    continue
                full = self._full(path)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                elif os.path.lexists(full):
                    os.unlink(full)
                else:
                    continue
                removed.append(path)
            self.undo.clear()
            self.created.clear()
            return {
                "reverted_files": reverted,
                "bytes_cut": cut,
                "removed_entries": removed,
                "open_handles": self.open_handles,
            }

    def settle(self) -> dict[str, Any]:
        """Count everything written so far as durable (the harness's own setup files)."""
        with self._mu:
            settled = sorted(set(self.undo) | self.created)
            self.undo.clear()
            self.created.clear()
            return {"settled": settled}

    def status(self) -> dict[str, Any]:
        with self._mu:
            return {
                "unsynced_files": sorted(self.undo),
                "unsynced_entries": sorted(self.created),
                "saved_blocks": sum(len(r.blocks) for r in self.undo.values()),
                "open_handles": self.open_handles,
            }

    # ----------------------------------------------------------- metadata
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
        attrs = {k: getattr(st, k) for k in _STAT_FIELDS}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._full(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._full(path))
        return {
            k: getattr(st, k)
            for k in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._full(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._full(path), ns=times) if times else os.utime(self._full(path))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._mu:
            os.mkdir(self._full(path), mode)
            self.created.add(path)
        return 0

    def rmdir(self, path: str) -> int:
        with self._mu:
            os.rmdir(self._full(path))
            self.created.discard(path)
        return 0

    def unlink(self, path: str) -> int:
        with self._mu:
            os.unlink(self._full(path))
            self.undo.pop(path, None)
            self.created.discard(path)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._full(target))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._full(source), self._full(target))
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mu:
            replaced = os.path.lexists(self._full(new))
            os.rename(self._full(old), self._full(new))
            for p in [p for p in self.undo if _under(p, new)]:
                del self.undo[p]
            for p in [p for p in self.undo if _under(p, old)]:
                self.undo[new + p[len(old) :]] = self.undo.pop(p)
            self.created = {c for c in self.created if not _under(c, new)}
            moved = {c for c in self.created if _under(c, old)}
            self.created -= moved
            self.created |= {new + c[len(old) :] for c in moved if not (replaced and c == old)}
        return 0

    # ----------------------------------------------------------- file data
    def open(self, path: str, flags: int) -> int:
        with self._mu:
            if flags & os.O_TRUNC:
                self._save(path, 0, os.lstat(self._full(path)).st_size)
            fd = os.open(self._full(path), flags)
            self.open_handles += 1
            return fd

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        with self._mu:
            full = self._full(path)
            existed = os.path.lexists(full)
            if existed and flags & os.O_TRUNC:
                self._save(path, 0, os.lstat(full).st_size)
            fd = os.open(full, flags | os.O_CREAT, mode)
            if not existed:
                self.created.add(path)
            self.open_handles += 1
            return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mu:
            self._save(path, offset, offset + len(data))
            return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mu:
            size = os.fstat(fh).st_size if fh is not None else os.lstat(self._full(path)).st_size
            self._save(path, length, size)
            self._record(path)
            os.ftruncate(fh, length) if fh is not None else os.truncate(self._full(path), length)
        return 0

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        if mode != 0:
            raise mfusepy.FuseOSError(errno.EOPNOTSUPP)
        with self._mu:
            self._record(path)  # allocating only grows the file: the synced size undoes it
            os.posix_fallocate(fh, offset, size)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        (os.fdatasync if datasync else os.fsync)(fh)
        with self._mu:
            self._synced(path)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        """The directory's entries become durable, and so do it and its ancestors."""
        with self._mu:
            self.created = {c for c in self.created if os.path.dirname(c) != path}
            if path != "/":
                self._synced_entry(path)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        with self._mu:
            self.open_handles -= 1
            self.all_closed.notify_all()
        return 0

    def opendir(self, path: str) -> int:
        return 0

    def releasedir(self, path: str, fh: int) -> int:
        return 0

    def init(self, path: str) -> None:
        print("ready", flush=True)


def _unmount(mountpoint: str) -> None:
    subprocess.run(
        ["fusermount3", "-u", "-z", mountpoint], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )


def _serve_control(ops: LazyOps, mountpoint: str) -> None:
    """Answer drop/status lines on stdin; at EOF (the harness is gone) unmount and exit."""
    try:
        for line in sys.stdin:
            cmd = line.strip()
            try:
                if cmd == "drop":
                    reply: dict[str, Any] = {"ok": True, **ops.drop()}
                elif cmd == "status":
                    reply = {"ok": True, **ops.status()}
                elif cmd == "settle":
                    reply = {"ok": True, **ops.settle()}
                else:
                    reply = {"ok": False, "error": f"unknown command {cmd!r}; known: drop, settle, status"}
            except Exception as exc:  # noqa: BLE001 - reported to the harness, which raises
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    finally:
        _unmount(mountpoint)
        # fuse_main returns once unmounted; if it does not, do not linger.
        threading.Timer(10.0, lambda: os._exit(0)).start()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m harness.backends.lazyfs_server BACKING MOUNTPOINT", file=sys.stderr)
        return 3
    backing, mountpoint = argv
    ops = LazyOps(backing)
    threading.Thread(target=_serve_control, args=(ops, mountpoint), daemon=True).start()
    mfusepy.FUSE(
        ops,
        mountpoint,
        foreground=True,
        nothreads=True,
        fsname=f"{FSNAME_PREFIX}-{os.getpid()}",
        subtype="squall",
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
