"""Snapshots of the tree: written atomically, checksummed, a few kept.

File ``snap-<zxid:016x>.snap``::

    b"SQSNAP01" | u64 zxid | u64 length | u32 crc32(payload) | payload

Written to a temporary file, fsynced, renamed into place, and the directory
fsynced, so a crash leaves either the old set of snapshots or the new one.
Loading takes the newest snapshot that verifies; a damaged one is skipped
with a log line (the log still holds what it covered, because segments are
only purged up to the oldest kept snapshot).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path

log = logging.getLogger("squall.node.storage")

_MAGIC = b"SQSNAP01"
_HEAD = struct.Struct(">8sQQI")
_NAME_RE = re.compile(r"^snap-([0-9a-f]{16})\.snap$")


class Snapshots:
    """The snapshot files of one data dir."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        for stale in self.dir.glob("*.tmp"):
            stale.unlink()  # a crash mid-write leaves these; never valid

    def list(self) -> list[tuple[int, Path]]:
        """(zxid, path) of every snapshot file, oldest first."""
        out = []
        for p in self.dir.iterdir():
            m = _NAME_RE.match(p.name)
            if m:
                out.append((int(m.group(1), 16), p))
        return sorted(out)

    def write(self, zxid: int, payload: bytes) -> Path:
        """Atomically write a snapshot taken at ``zxid`` and prune to ``keep`` newest."""
        final = self.dir / f"snap-{zxid:016x}.snap"
        tmp = self.dir / (final.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(_HEAD.pack(_MAGIC, zxid, len(payload), zlib.crc32(payload)))
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for _, old in self.list()[: -self.keep]:
            old.unlink()
        return final

    @staticmethod
    def read(path: Path) -> tuple[int, bytes]:
        """(zxid, payload) of one snapshot file; ValueError saying what is wrong."""
        blob = path.read_bytes()
        if len(blob) < _HEAD.size:
            raise ValueError(f"{path.name}: {len(blob)} bytes, shorter than the {_HEAD.size}-byte header")
        magic, zxid, n, crc = _HEAD.unpack_from(blob, 0)
        if magic != _MAGIC:
            raise ValueError(f"{path.name}: bad magic {magic!r} (not a squall snapshot)")
        payload = blob[_HEAD.size:]
        if len(payload) != n:
            raise ValueError(f"{path.name}: payload is {len(payload)} bytes, header says {n}")
        if zlib.crc32(payload) != crc:
            raise ValueError(f"{path.name}: checksum mismatch")
        return zxid, payload

    def load_newest(self) -> tuple[int, bytes] | None:
        """The newest snapshot that verifies, or None; skipped ones are logged."""
        for _, path in reversed(self.list()):
            try:
                return self.read(path)
            except (ValueError, OSError) as e:
                log.error("snapshot %s is unusable, trying an older one: %s", path, e)
        return None

    def oldest_zxid(self) -> int | None:
        snaps = self.list()
        return snaps[0][0] if snaps else None
