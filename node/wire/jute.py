"""Jute primitives: ZooKeeper's big-endian record encoding, as pure functions.

Readers take ``(buf, offset)`` and return ``(value, new_offset)``; writers
append to a ``bytearray``. Structs are precompiled once because this is the
server's hot path. Any malformed input raises :class:`JuteError` (never an
``IndexError`` or ``struct.error``), so the shell can close the one connection
that sent it and log why.

Encoding (zookeeper.jute): ``int`` 4 B, ``long`` 8 B, ``bool`` 1 B, all
big-endian; ``buffer`` and ``ustring`` are an int length then the bytes, with
-1 meaning null; a ``vector`` is an int count then the items (-1 = null).
"""

from __future__ import annotations

import struct

INT = struct.Struct(">i")
LONG = struct.Struct(">q")
BOOL = struct.Struct(">?")
INT_INT = struct.Struct(">ii")
INT_LONG_INT = struct.Struct(">iqi")  # ReplyHeader: xid, zxid, err


class JuteError(ValueError):
    """The bytes are not a valid jute record (truncated, negative length, bad UTF-8...)."""


def read_int(buf: bytes | memoryview, off: int) -> tuple[int, int]:
    end = off + 4
    if end > len(buf):
        raise JuteError(f"truncated int at offset {off} (record is {len(buf)} bytes)")
    return INT.unpack_from(buf, off)[0], end


def read_long(buf: bytes | memoryview, off: int) -> tuple[int, int]:
    end = off + 8
    if end > len(buf):
        raise JuteError(f"truncated long at offset {off} (record is {len(buf)} bytes)")
    return LONG.unpack_from(buf, off)[0], end


def read_bool(buf: bytes | memoryview, off: int) -> tuple[bool, int]:
    if off >= len(buf):
        raise JuteError(f"truncated bool at offset {off} (record is {len(buf)} bytes)")
    return buf[off] != 0, off + 1


def read_buffer(buf: bytes | memoryview, off: int) -> tuple[bytes | None, int]:
    """A length-prefixed byte string; length -1 is null (``None``)."""
    n, off = read_int(buf, off)
    if n == -1:
        return None, off
    if n < -1:
        raise JuteError(f"negative buffer length {n} at offset {off - 4}; allowed: -1 (null) or >= 0")
    end = off + n
    if end > len(buf):
        raise JuteError(f"buffer of {n} bytes at offset {off - 4} runs past the end of the {len(buf)}-byte record")
    return bytes(buf[off:end]), end


def read_ustring(buf: bytes | memoryview, off: int) -> tuple[str | None, int]:
    """A length-prefixed UTF-8 string; length -1 is null (``None``).

    Invalid UTF-8 is decoded with U+FFFD replacement characters, as ZooKeeper
    (Java's ``new String(bytes, UTF_8)``) does: a path holding them then fails
    path validation on a write (BadArguments) and is simply absent on a read
    (NoNode), and the connection stays open, as with ZooKeeper."""
    raw, off = read_buffer(buf, off)
    if raw is None:
        return None, off
    return raw.decode("utf-8", "replace"), off


def read_string(buf: bytes | memoryview, off: int) -> tuple[str, int]:
    """A ustring where null is read as the empty string (paths, schemes)."""
    s, off = read_ustring(buf, off)
    return ("" if s is None else s), off


def read_string_vector(buf: bytes | memoryview, off: int) -> tuple[list[str], int]:
    n, off = read_int(buf, off)
    if n < 0:  # -1 is null; jute reads any other negative count as no items too
        return [], off
    if n > len(buf) - off:  # every item takes at least 4 bytes; cheap sanity bound
        raise JuteError(f"vector count {n} at offset {off - 4} is impossible for a {len(buf)}-byte record")
    out = []
    for _ in range(n):
        s, off = read_string(buf, off)
        out.append(s)
    return out, off


def write_int(out: bytearray, v: int) -> None:
    out += INT.pack(v)


def write_long(out: bytearray, v: int) -> None:
    out += LONG.pack(v)


def write_bool(out: bytearray, v: bool) -> None:
    out.append(1 if v else 0)


def write_buffer(out: bytearray, b: bytes | None) -> None:
    if b is None:
        out += INT.pack(-1)
    else:
        out += INT.pack(len(b))
        out += b


def write_ustring(out: bytearray, s: str | None) -> None:
    if s is None:
        out += INT.pack(-1)
    else:
        b = s.encode("utf-8")
        out += INT.pack(len(b))
        out += b


def write_string_vector(out: bytearray, items: list[str] | tuple[str, ...] | None) -> None:
    if items is None:
        out += INT.pack(-1)
        return
    out += INT.pack(len(items))
    for s in items:
        write_ustring(out, s)


def frame(body: bytes | bytearray) -> bytes:
    """Prefix a record with its 4-byte length, as every packet on the wire is."""
    return INT.pack(len(body)) + bytes(body)
