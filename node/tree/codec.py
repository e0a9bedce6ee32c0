"""Binary forms of the tree's records: transactions (the log's hot path) and whole-tree snapshots.

Pure functions of bytes, with no knowledge of the tree's internals: the tree
hands ``write_snapshot`` its nodes in order and rebuilds itself from what
``read_snapshot`` returns. Every decoder raises ``ValueError`` naming the
problem for malformed input, never anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from node.tree.records import (
    ACL,
    CREATE_KINDS,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DeleteContainerOp,
    DeleteOp,
    ErrorOp,
    MultiOp,
    ReconfigOp,
    SessionInfo,
    SetACLOp,
    SetConfigOp,
    SetDataOp,
    Txn,
)

_SNAP_MAGIC = b"SQTREE1\n"
_NODE_FIELDS = struct.Struct(">qqqqiiiqq")
_TXN_HEAD = struct.Struct(">qqqB")
_Q = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_QI = struct.Struct(">qi")

_T_CREATE, _T_DELETE, _T_SET_DATA, _T_SET_ACL, _T_CHECK, _T_MULTI = 1, 2, 3, 4, 5, 6
_T_CREATE_SESSION, _T_CLOSE_SESSION, _T_DELETE_CONTAINER, _T_ERROR = 7, 8, 9, 10
_T_SET_CONFIG, _T_RECONFIG = 11, 12
_KIND_CODE = {k: i for i, k in enumerate(CREATE_KINDS)}


class Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def raw(self, b: bytes) -> None:
        self.parts.append(b)

    def q(self, v: int) -> None:
        self.parts.append(_Q.pack(v))

    def i32(self, v: int) -> None:
        self.parts.append(_I32.pack(v))

    def u32(self, v: int) -> None:
        self.parts.append(_U32.pack(v))

    def blob(self, b: bytes) -> None:
        self.parts.append(_U32.pack(len(b)))
        self.parts.append(b)

    def text(self, s: str) -> None:
        self.blob(s.encode("utf-8", "surrogatepass"))

    def data(self, b: bytes | None) -> None:
        """Znode data: i32 length, -1 for null (ZooKeeper keeps null apart from empty)."""
        if b is None:
            self.parts.append(_I32.pack(-1))
        else:
            self.parts.append(_I32.pack(len(b)))
            self.parts.append(b)

    def acl(self, acl: tuple[ACL, ...]) -> None:
        self.u32(len(acl))
        for a in acl:
            self.i32(a.perms)
            self.text(a.scheme)
            self.text(a.id)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def raw(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError(f"truncated: wanted {n} bytes at offset {self.pos}, have {len(self.buf) - self.pos}")
        b = bytes(self.buf[self.pos : end])
        self.pos = end
        return b

    def q(self) -> int:
        (v,) = _Q.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u32(self) -> int:
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def blob(self) -> bytes:
        return self.raw(self.u32())

    def text(self) -> str:
        return self.blob().decode("utf-8", "surrogatepass")

    def data(self) -> bytes | None:
        n = self.i32()
        if n < -1:
            raise ValueError(f"negative data length {n}")
        return None if n == -1 else self.raw(n)

    def acl(self) -> tuple[ACL, ...]:
        return tuple(ACL(self.i32(), self.text(), self.text()) for _ in range(self.u32()))


def _encode_op(w: Writer, op: Any) -> None:
    t = type(op)
    if t is SetDataOp:
        w.raw(b"\x03")
        w.text(op.path)
        w.data(op.data)
        w.i32(op.version)
    elif t is CreateOp:
        w.raw(b"\x01")
        w.text(op.path)
        w.data(op.data)
        w.acl(op.acl)
        w.i32(op.flags)
        w.q(op.ttl)
        w.raw(bytes((_KIND_CODE.get(op.kind, 255),)))
    elif t is DeleteOp:
        w.raw(b"\x02")
        w.text(op.path)
        w.i32(op.version)
    elif t is SetACLOp:
        w.raw(b"\x04")
        w.text(op.path)
        w.acl(op.acl)
        w.i32(op.version)
    elif t is CheckOp:
        w.raw(b"\x05")
        w.text(op.path)
        w.i32(op.version)
    elif t is MultiOp:
        w.raw(b"\x06")
        w.u32(len(op.ops))
        for sub in op.ops:
            _encode_op(w, sub)
    elif t is CreateSessionOp:
        w.raw(b"\x07")
        w.raw(_QI.pack(op.session_id, op.timeout_ms))
        w.blob(op.password)
    elif t is CloseSessionOp:
        w.raw(b"\x08")
        w.q(op.session_id)
    elif t is DeleteContainerOp:
        w.raw(b"\x09")
        w.text(op.path)
    elif t is ErrorOp:
        w.raw(b"\x0a")
        w.i32(op.code)
    elif t is SetConfigOp:
        w.raw(b"\x0b")
        w.blob(op.data)
    elif t is ReconfigOp:
        w.raw(b"\x0c")
        for text in (op.joining, op.leaving, op.new_members):
            w.data(None if text is None else text.encode("utf-8", "surrogatepass"))
        w.q(op.from_config)
    else:
        raise TypeError(f"cannot encode {t.__name__}: not a tree op")


def _decode_op(r: Reader) -> Any:
    tag = r.raw(1)[0]
    if tag == _T_SET_DATA:
        return SetDataOp(r.text(), r.data(), r.i32())
    if tag == _T_CREATE:
        path, data, acl, flags, ttl = r.text(), r.data(), r.acl(), r.i32(), r.q()
        kind_code = r.raw(1)[0]
        if kind_code >= len(CREATE_KINDS):
            raise ValueError(f"bad create kind {kind_code}")
        return CreateOp(path, data, acl, flags, ttl, CREATE_KINDS[kind_code])
    if tag == _T_DELETE:
        return DeleteOp(r.text(), r.i32())
    if tag == _T_SET_ACL:
        return SetACLOp(r.text(), r.acl(), r.i32())
    if tag == _T_CHECK:
        return CheckOp(r.text(), r.i32())
    if tag == _T_MULTI:
        return MultiOp(tuple(_decode_op(r) for _ in range(r.u32())))
    if tag == _T_CREATE_SESSION:
        sid, timeout = _QI.unpack(r.raw(12))
        return CreateSessionOp(sid, timeout, r.blob())
    if tag == _T_CLOSE_SESSION:
        return CloseSessionOp(r.q())
    if tag == _T_DELETE_CONTAINER:
        return DeleteContainerOp(r.text())
    if tag == _T_ERROR:
        return ErrorOp(r.i32())
    if tag == _T_SET_CONFIG:
        return SetConfigOp(r.blob())
    if tag == _T_RECONFIG:
        texts = [r.data() for _ in range(3)]
        joining, leaving, members = (None if b is None else b.decode("utf-8", "surrogatepass") for b in texts)
        return ReconfigOp(joining, leaving, members, r.q())
    raise ValueError(f"unknown op tag {tag}")


_SET_DATA_HEAD = struct.Struct(">BI")  # tag 3, path length
_SET_DATA_NULL = _I32.pack(-1)


def encode_txn(txn: Txn) -> bytes:
    """Compact binary form of a Txn (the WAL record payload)."""
    op = txn.op
    if type(op) is SetDataOp and not txn.identities:
        # The most frequent write, in one join: the same bytes as the general path below.
        path = op.path.encode("utf-8", "surrogatepass")
        data = op.data
        return b"".join(
            (
                _TXN_HEAD.pack(txn.zxid, txn.time_ms, txn.session_id, 0),
                _SET_DATA_HEAD.pack(_T_SET_DATA, len(path)),
                path,
                _SET_DATA_NULL if data is None else _I32.pack(len(data)),
                data or b"",
                _I32.pack(op.version),
            )
        )
    w = Writer()
    w.raw(_TXN_HEAD.pack(txn.zxid, txn.time_ms, txn.session_id, len(txn.identities)))
    for scheme, ident in txn.identities:
        w.text(scheme)
        w.text(ident)
    _encode_op(w, txn.op)
    return w.getvalue()


def decode_txn(blob: bytes) -> Txn:
    """Inverse of ``encode_txn``; raises ValueError for malformed input."""
    try:
        zxid, time_ms, sid, n = _TXN_HEAD.unpack_from(blob, 0)
        r = Reader(blob)
        r.pos = _TXN_HEAD.size
        idents = tuple((r.text(), r.text()) for _ in range(n))
        op = _decode_op(r)
    except (struct.error, UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"malformed txn record: {e}") from None
    if r.pos != len(blob):
        raise ValueError(f"malformed txn record: {len(blob) - r.pos} trailing bytes")
    return Txn(zxid, time_ms, sid, idents, op)


def txn_op_tag(blob: bytes) -> int:
    """The op tag of an encoded txn without decoding it (a cheap look at what kind of write it is).

    Raises ValueError for a record too short to hold one."""
    try:
        _zxid, _time, _sid, n = _TXN_HEAD.unpack_from(blob, 0)
        pos = _TXN_HEAD.size
        for _ in range(2 * n):
            (length,) = _U32.unpack_from(blob, pos)
            pos += 4 + length
        return blob[pos]
    except (struct.error, IndexError) as e:
        raise ValueError(f"malformed txn record: {e}") from None


TAG_RECONFIG = _T_RECONFIG

# --------------------------------------------------------------------------
# Whole-tree snapshots
# --------------------------------------------------------------------------

# One node of a snapshot: path, data, ACL and the stored stat fields
# (czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid).
NodeRecord = tuple[str, bytes | None, tuple[ACL, ...], tuple[int, ...]]


def write_snapshot(
    last_zxid: int, sessions: dict[int, SessionInfo], node_count: int, nodes: Iterable[NodeRecord]
) -> bytes:
    """The tree as bytes; ``nodes`` must list every parent before its children."""
    w = Writer()
    w.raw(_SNAP_MAGIC)
    w.q(last_zxid)
    w.u32(len(sessions))
    for sid, info in sorted(sessions.items()):
        w.q(sid)
        w.i32(info.timeout_ms)
        w.blob(info.password)
    w.u32(node_count)
    for path, data, acl, fields in nodes:
        w.text(path)
        w.data(data)
        w.acl(acl)
        w.raw(_NODE_FIELDS.pack(*fields))
    return w.getvalue()


def read_snapshot(blob: bytes) -> tuple[int, dict[int, SessionInfo], Iterator[NodeRecord]]:
    """Inverse of ``write_snapshot``: (last zxid, sessions, the nodes in order).

    The nodes are decoded lazily, parents first: a truncated node or trailing
    bytes after the last one raise ValueError from the iterator."""
    r = Reader(blob)
    try:
        if r.raw(len(_SNAP_MAGIC)) != _SNAP_MAGIC:
            raise ValueError("not a squall tree snapshot (bad magic)")
        last_zxid = r.q()
        sessions: dict[int, SessionInfo] = {}
        for _ in range(r.u32()):
            sid = r.q()
            sessions[sid] = SessionInfo(r.i32(), r.blob())
        count = r.u32()
    except (struct.error, UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"malformed tree snapshot: {e}") from None

    def nodes() -> Iterator[NodeRecord]:
        try:
            for _ in range(count):
                path = r.text()
                data = r.data()
                acl = r.acl()
                fields = _NODE_FIELDS.unpack(r.raw(_NODE_FIELDS.size))
                yield path, data, acl, fields
        except (struct.error, UnicodeDecodeError, IndexError) as e:
            raise ValueError(f"malformed tree snapshot: {e}") from None
        if r.pos != len(blob):
            raise ValueError(f"{len(blob) - r.pos} trailing bytes after the snapshot")

    return last_zxid, sessions, nodes()
