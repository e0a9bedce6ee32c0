"""A segmented write-ahead log of checksummed records, with group-commit sync.

Record layout (big-endian)::

    u32 length | u32 crc32(payload) | u32 crc32(first 8 header bytes) | payload

The header carries its own checksum so that a damaged length field is told
apart from a record that was still being written when the process died.

Segments are files ``wal-<key:016x>.log`` where ``key`` is the key (the
zxid, for the node) of the first record appended to the segment; they are
read in key order. ``append`` only buffers; ``sync`` writes the buffer with
one ``write`` and ``fdatasync``s it, so many appends share one disk flush
(group commit). A segment is synced before the log rolls to the next one.

Preallocation: a segment grows in zero-filled steps of ``preallocate_bytes``
(1 MiB by default), written with real zeros, and records are written into
that space at the log's end. An ``fdatasync`` then only flushes data, not a
new file size and new block allocations, which on ext4 costs a journal
commit each time (ZooKeeper pads its transaction logs for the same reason).
A zero-filled remainder of a segment is therefore its normal end, not damage.

Recovery (``recover``) rules, which decide between a torn tail (cut, with a
log line) and corruption (refused with ``CorruptLogError``):

* Only the *last* segment may have a torn tail: the writer can die there
  mid-record. Any damage in an earlier segment is corruption.
* In the last segment, a damaged record at offset ``p`` (partial header,
  header checksum mismatch, payload running past the end of the file, or
  payload checksum mismatch) is a torn tail, and the file is truncated at
  ``p`` with a log line, when no intact record starts anywhere after ``p``
  (the bytes after it are zeros, a fragment, or garbage).
* A damaged record followed by an intact one is a corrupt middle: recovery
  stops with ``CorruptLogError`` naming the file, the offset and the fix,
  and nothing is truncated. (An intact record is found by scanning every
  offset for a header and payload that both verify: 64 bits of checksum, so
  garbage is not mistaken for a record.)
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import struct
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path

log = logging.getLogger("squall.node.storage")

_HEADER = struct.Struct(">III")
_LEN_CRC = struct.Struct(">II")
_U32 = struct.Struct(">I")
HEADER_BYTES = _HEADER.size
MAX_RECORD_BYTES = 256 << 20
_SEGMENT_RE = re.compile(r"^wal-([0-9a-f]{16})\.log$")


class CorruptLogError(Exception):
    """A record in the middle of the log is damaged; recovery refuses to guess."""


def encode_record(payload: bytes) -> bytes:
    """Frame one payload as a log record (header + payload)."""
    n = len(payload)
    head = _LEN_CRC.pack(n, zlib.crc32(payload))
    return head + _U32.pack(zlib.crc32(head)) + payload


def _next_intact_record(data: bytes, start: int) -> int | None:
    """The first offset >= ``start`` where a whole record verifies, or None."""
    size = len(data)
    rest = data[start:]
    if rest.count(0) == len(rest):
        return None  # a zero-filled tail holds no records
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    for off in range(start, size - HEADER_BYTES):
        n, crc, hcrc = unpack(data, off)
        if n == 0 or off + HEADER_BYTES + n > size:
            continue
        if crc32(data[off : off + 8]) == hcrc and crc32(data[off + HEADER_BYTES : off + HEADER_BYTES + n]) == crc:
            return off
    return None


def _segment_name(key: int) -> str:
    return f"wal-{key & 0xFFFFFFFFFFFFFFFF:016x}.log"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Append-only, checksummed, segmented log in one directory.

    Call ``recover()`` once (and exhaust it) before the first ``append``; it
    yields every intact payload in order and cuts a torn tail.
    """

    def __init__(
        self, directory: str | os.PathLike, segment_bytes: int = 64 << 20, preallocate_bytes: int = 1 << 20
    ) -> None:
        if preallocate_bytes < 0:
            raise ValueError(f"preallocate_bytes must be >= 0 (0 = no preallocation), got {preallocate_bytes}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.preallocate_bytes = preallocate_bytes
        self._fd: int | None = None
        self._seg_size = 0  # where the next record goes: the end of the records, not of the file
        self._file_size = 0  # the file's size, zero-filled past _seg_size
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._recovered = False
        self._roll_requested = False
        self.records_appended = 0
        self.syncs = 0

    # ------------------------------------------------------------- segments

    def segments(self) -> list[tuple[int, Path]]:
        """(start key, path) of every segment, in key order."""
        out = []
        for p in self.dir.iterdir():
            m = _SEGMENT_RE.match(p.name)
            if m:
                out.append((int(m.group(1), 16), p))
        return sorted(out)

    # ------------------------------------------------------------- recovery

    def recover(self) -> Iterator[bytes]:
        """Yield every intact record payload in order; cut a torn tail of the last segment.

        Raises ``CorruptLogError`` for a damaged record followed by more data.
        """
        segs = self.segments()
        end = 0
        for i, (_, path) in enumerate(segs):
            last = i == len(segs) - 1
            end = yield from self._read_segment(path, last)
        if segs:
            self._open_segment(segs[-1][1], end)
        self._recovered = True

    def _read_segment(self, path: Path, last: bool) -> Generator[bytes, None, int]:
        """Yield the segment's payloads; return where its records end."""
        data = path.read_bytes()
        size = len(data)
        pos = 0
        while pos < size:
            # A record's length is never 0, so a zero length field is where the zero-filled
            # (preallocated) rest of the segment may begin: only then is the rest scanned,
            # once, which keeps recovery linear in the segment (a zero *first byte* alone
            # is every record shorter than 16 MiB).
            if not any(data[pos : pos + 4]) and data.count(0, pos) == size - pos:
                return pos  # the zero-filled (preallocated) rest of the segment: its normal end
            problem, torn = self._check_record(data, pos, last)
            if problem is None:
                n = _HEADER.unpack_from(data, pos)[0]
                yield data[pos + HEADER_BYTES : pos + HEADER_BYTES + n]
                pos += HEADER_BYTES + n
                continue
            if torn:
                log.warning(
                    "wal: cutting torn tail of %s at offset %d (%d bytes dropped): %s",
                    path.name,
                    pos,
                    size - pos,
                    problem,
                )
                with open(path, "r+b") as f:
                    f.truncate(pos)
                    f.flush()
                    os.fsync(f.fileno())
                return pos
            where = "the last segment" if last else "a sealed (non-last) segment"
            raise CorruptLogError(
                f"corrupt write-ahead log record in {path} at offset {pos} ({where}): {problem}; "
                f"{size - pos} bytes from there on are not trusted. The log cannot be recovered past this point "
                f"automatically: restore the data dir from a replica or backup, or, accepting the loss of every "
                f"later transaction, truncate {path.name} to {pos} bytes and remove later segments."
            )
        return pos

    @staticmethod
    def _check_record(data: bytes, pos: int, last: bool) -> tuple[str | None, bool]:
        """(problem, is_torn_tail) for the record at ``pos``; problem None if intact."""
        size = len(data)
        remaining = size - pos
        if remaining < HEADER_BYTES:
            problem = f"partial header ({remaining} of {HEADER_BYTES} bytes)"
        else:
            n, crc, hcrc = _HEADER.unpack_from(data, pos)
            end = pos + HEADER_BYTES + n
            if zlib.crc32(data[pos : pos + 8]) != hcrc or n == 0 or n > MAX_RECORD_BYTES:
                problem = "record header checksum mismatch"
            elif end > size:
                problem = f"record of {n} bytes runs past the end of the file ({remaining - HEADER_BYTES} present)"
            elif zlib.crc32(data[pos + HEADER_BYTES : end]) != crc:
                problem = "record payload checksum mismatch"
            else:
                return None, False
        if not last:
            return problem, False
        after = _next_intact_record(data, pos + 1)
        if after is None:
            return problem, True
        return f"{problem}, yet an intact record follows at offset {after}", False

    # --------------------------------------------------------------- writing

    def _open_segment(self, path: Path, end: int | None = None) -> None:
        """Write at ``end`` of ``path`` from now on (None: the file's size)."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self._file_size = os.fstat(self._fd).st_size
        self._seg_size = self._file_size if end is None else end

    def _make_room(self, n: int) -> None:
        """Zero-fill the segment so that ``n`` more bytes fit before its end of file."""
        need = self._seg_size + n
        if need <= self._file_size or self._fd is None:
            return
        step = self.preallocate_bytes
        target = need if step == 0 else -(-need // step) * step
        zeros = bytes(min(target - self._file_size, 1 << 20))
        pos = self._file_size
        while pos < target:
            k = os.pwrite(self._fd, zeros[: target - pos], pos)
            pos += k
        self._file_size = target

    def _new_segment(self, key: int) -> None:
        path = self.dir / _segment_name(key)
        if path.exists() and path.stat().st_size > 0:
            # A key can repeat only if records were discarded; never append
            # into an older file out of order: pick the next free name.
            while path.exists():
                key += 1
                path = self.dir / _segment_name(key)
        self._open_segment(path)
        _fsync_dir(self.dir)

    def append(self, payload: bytes, key: int = 0) -> None:
        """Buffer one record (``key``, e.g. the zxid, names a new segment). Durable after ``sync``."""
        if not self._recovered:
            raise RuntimeError("WriteAheadLog.recover() must run (to the end) before append()")
        if not payload:
            raise ValueError("empty log records are not allowed (a zero header must stay detectable)")
        if (
            self._fd is None
            or self._roll_requested
            or (self._seg_size + self._pending_bytes > self.segment_bytes and self._seg_size + self._pending_bytes > 0)
        ):
            self._write_pending(sync=True)
            self._new_segment(key)
            self._roll_requested = False
        rec = encode_record(payload)
        self._pending.append(rec)
        self._pending_bytes += len(rec)
        self.records_appended += 1

    def roll(self) -> None:
        """Start a new segment at the next append (after a snapshot, so old ones can be purged)."""
        self._roll_requested = True

    def _write_pending(self, sync: bool) -> None:
        if self._pending and self._fd is not None:
            buf = b"".join(self._pending)
            self._make_room(len(buf))
            view = memoryview(buf)
            pos = self._seg_size
            while view:
                n = os.pwrite(self._fd, view, pos)
                view = view[n:]
                pos += n
            self._seg_size += len(buf)
            self._pending.clear()
            self._pending_bytes = 0
        if sync and self._fd is not None:
            os.fdatasync(self._fd)
            self.syncs += 1

    def sync(self, durable: bool = True) -> None:
        """Write every buffered record and fdatasync: all appended records are durable after this.

        ``durable=False`` writes without the fdatasync (only the TEST-ONLY skip-fsync fault does)."""
        self._write_pending(sync=durable)

    @property
    def pending(self) -> int:
        """Bytes appended but not yet synced."""
        return self._pending_bytes

    def purge_through(self, key: int) -> list[Path]:
        """Delete segments whose records all have keys <= ``key`` (never the current one)."""
        segs = self.segments()
        removed = []
        for (_, path), (next_start, _) in itertools.pairwise(segs):
            if next_start <= key + 1:
                path.unlink()
                removed.append(path)
        if removed:
            _fsync_dir(self.dir)
        return removed

    def close(self) -> None:
        """Sync and close the current segment."""
        if self._fd is not None:
            self._write_pending(sync=True)
            os.close(self._fd)
            self._fd = None
