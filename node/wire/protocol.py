"""ZooKeeper's client protocol records, opcodes and reply encoders (a pure codec).

Everything here maps bytes to records and back; nothing touches a socket, a
clock or the tree. The server (``node/server.py``) decodes a request with
:func:`decode_request`, asks the node for the answer, and encodes the reply
with the ``reply_*`` helpers, which build one framed ``bytes`` per reply with
a single struct pack where possible (this is the hot path).

Records follow ``zookeeper.jute`` field for field. Stats and ACLs are encoded
from any object with the right attribute names (the tree's ``Stat`` and
``ACL``) and decoded into :class:`StatRecord` / :class:`AclRecord`, which
keeps the codec independent of the tree.

Special xids: -1 notification, -2 ping, -4 auth, -8 setWatches.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from node.values import value_record
from node.wire.jute import (
    INT,
    JuteError,
    read_bool,
    read_buffer,
    read_int,
    read_long,
    read_string,
    read_string_vector,
    read_ustring,
    write_buffer,
    write_int,
    write_long,
    write_string_vector,
    write_ustring,
)

# ---------------------------------------------------------------- opcodes

NOTIFICATION = 0
CREATE = 1
DELETE = 2
EXISTS = 3
GET_DATA = 4
SET_DATA = 5
GET_ACL = 6
SET_ACL = 7
GET_CHILDREN = 8
SYNC = 9
PING = 11
GET_CHILDREN2 = 12
CHECK = 13
MULTI = 14
CREATE2 = 15
RECONFIG = 16
CHECK_WATCHES = 17
REMOVE_WATCHES = 18
CREATE_CONTAINER = 19
DELETE_CONTAINER = 20
CREATE_TTL = 21
MULTI_READ = 22
AUTH = 100
SET_WATCHES = 101
SASL = 102
GET_EPHEMERALS = 103
GET_ALL_CHILDREN_NUMBER = 104
SET_WATCHES2 = 105
ADD_WATCH = 106
WHO_AM_I = 107
CREATE_SESSION = -10
CLOSE_SESSION = -11
ERROR = -1  # the MultiHeader type of an error result

NOTIFICATION_XID = -1
PING_XID = -2
AUTH_XID = -4
SET_WATCHES_XID = -8

# Keeper states carried in WatcherEvent.state
STATE_SYNC_CONNECTED = 3
STATE_AUTH_FAILED = 4
STATE_EXPIRED = -112

# WatcherType for checkWatches/removeWatches
WATCHER_CHILDREN = 1
WATCHER_DATA = 2
WATCHER_ANY = 3

# addWatch modes
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1

OP_NAMES = {
    CREATE: "create",
    DELETE: "delete",
    EXISTS: "exists",
    GET_DATA: "getData",
    SET_DATA: "setData",
    GET_ACL: "getACL",
    SET_ACL: "setACL",
    GET_CHILDREN: "getChildren",
    SYNC: "sync",
    PING: "ping",
    GET_CHILDREN2: "getChildren2",
    CHECK: "check",
    MULTI: "multi",
    CREATE2: "create2",
    RECONFIG: "reconfig",
    CHECK_WATCHES: "checkWatches",
    REMOVE_WATCHES: "removeWatches",
    CREATE_CONTAINER: "createContainer",
    CREATE_TTL: "createTTL",
    MULTI_READ: "multiRead",
    AUTH: "auth",
    SASL: "sasl",
    SET_WATCHES: "setWatches",
    GET_EPHEMERALS: "getEphemerals",
    GET_ALL_CHILDREN_NUMBER: "getAllChildrenNumber",
    SET_WATCHES2: "setWatches2",
    ADD_WATCH: "addWatch",
    WHO_AM_I: "whoAmI",
    CLOSE_SESSION: "closeSession",
}

# ---------------------------------------------------------------- structs

STAT = struct.Struct(">qqqqiiiqiiq")  # 68 bytes
REPLY = struct.Struct(">iiqi")  # frame length, xid, zxid, err
REPLY_INT = struct.Struct(">iiqii")  # ... plus one int of body
REQ_HEADER = struct.Struct(">ii")
MULTI_HEADER = struct.Struct(">i?i")
CONNECT_RESPONSE = struct.Struct(">iiiqi")  # frame length, protoVer, timeOut, sessionId, passwd length
CONNECT_REQUEST = struct.Struct(">iqiqi")  # protoVer, lastZxidSeen, timeOut, sessionId, passwd length


class StatRecord(NamedTuple):
    """A znode Stat as decoded from the wire (the tree's Stat has the same field names)."""

    czxid: int = 0
    mzxid: int = 0
    ctime: int = 0
    mtime: int = 0
    version: int = 0
    cversion: int = 0
    aversion: int = 0
    ephemeral_owner: int = 0
    data_length: int = 0
    num_children: int = 0
    pzxid: int = 0


class AclRecord(NamedTuple):
    """An ACL entry as decoded from the wire (the tree's ACL has the same field names)."""

    perms: int
    scheme: str
    id: str


def pack_stat(s: Any) -> bytes:
    return STAT.pack(
        s.czxid,
        s.mzxid,
        s.ctime,
        s.mtime,
        s.version,
        s.cversion,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children,
        s.pzxid,
    )


def read_stat(buf: bytes | memoryview, off: int) -> tuple[StatRecord, int]:
    end = off + STAT.size
    if end > len(buf):
        raise JuteError(f"truncated Stat at offset {off} (needs 68 bytes, record is {len(buf)})")
    return StatRecord(*STAT.unpack_from(buf, off)), end


def write_acls(out: bytearray, acls: Any) -> None:
    if acls is None:
        write_int(out, -1)
        return
    write_int(out, len(acls))
    for a in acls:
        write_int(out, a.perms)
        write_ustring(out, a.scheme)
        write_ustring(out, a.id)


def read_acls(buf: bytes | memoryview, off: int) -> tuple[list[AclRecord], int]:
    n, off = read_int(buf, off)
    if n < 0:  # -1 is null; jute reads any other negative count as no items too (then InvalidACL)
        return [], off
    if n * 12 > len(buf) - off:
        raise JuteError(f"ACL vector count {n} at offset {off - 4} is impossible for a {len(buf)}-byte record")
    out = []
    for _ in range(n):
        perms, off = read_int(buf, off)
        scheme, off = read_string(buf, off)
        ident, off = read_string(buf, off)
        out.append(AclRecord(perms, scheme, ident))
    return out, off


# ---------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    protocol_version: int = 0
    last_zxid_seen: int = 0
    timeout_ms: int = 10000
    session_id: int = 0
    password: bytes = b"\x00" * 16
    read_only: bool | None = False  # None: an old client that omitted the field

    def encode(self) -> bytes:
        out = bytearray(
            CONNECT_REQUEST.pack(
                self.protocol_version, self.last_zxid_seen, self.timeout_ms, self.session_id, len(self.password)
            )
        )
        out += self.password
        if self.read_only is not None:
            out.append(1 if self.read_only else 0)
        return bytes(out)

    @staticmethod
    def decode(buf: bytes | memoryview) -> ConnectRequest:
        proto, off = read_int(buf, 0)
        zxid, off = read_long(buf, off)
        timeout, off = read_int(buf, off)
        sid, off = read_long(buf, off)
        pw, off = read_buffer(buf, off)
        ro: bool | None = None
        if off < len(buf):
            ro, off = read_bool(buf, off)
        if off != len(buf):
            raise JuteError(f"ConnectRequest has {len(buf) - off} unexpected trailing bytes")
        return ConnectRequest(proto, zxid, timeout, sid, pw or b"", ro)


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    protocol_version: int = 0
    timeout_ms: int = 0
    session_id: int = 0
    password: bytes = b"\x00" * 16
    read_only: bool = False

    def encode_framed(self) -> bytes:
        """The whole packet: length prefix + 37-byte record (with a 16-byte password)."""
        body_len = 4 + 4 + 8 + 4 + len(self.password) + 1
        return (
            CONNECT_RESPONSE.pack(body_len, self.protocol_version, self.timeout_ms, self.session_id, len(self.password))
            + self.password
            + (b"\x01" if self.read_only else b"\x00")
        )

    @staticmethod
    def decode(buf: bytes | memoryview) -> ConnectResponse:
        proto, off = read_int(buf, 0)
        timeout, off = read_int(buf, off)
        sid, off = read_long(buf, off)
        pw, off = read_buffer(buf, off)
        ro = False
        if off < len(buf):
            ro, off = read_bool(buf, off)
        return ConnectResponse(proto, timeout, sid, pw or b"", ro)


# ---------------------------------------------------------------- request records


@value_record
class CreateRequest:
    """create(1), create2(15), createContainer(19), createTTL(21: carries ttl)."""

    path: str
    data: bytes | None
    acl: tuple[AclRecord, ...]
    flags: int
    ttl: int = -1


@value_record
class DeleteRequest:
    path: str
    version: int


@value_record
class PathWatchRequest:
    """exists(3), getData(4), getChildren(8), getChildren2(12)."""

    path: str
    watch: bool


@value_record
class SetDataRequest:
    path: str
    data: bytes | None
    version: int


@value_record
class PathRequest:
    """getACL(6), sync(9), getEphemerals(103: path is the prefix), getAllChildrenNumber(104)."""

    path: str


@dataclass(frozen=True, slots=True)
class SetACLRequest:
    path: str
    acl: tuple[AclRecord, ...]
    version: int


@dataclass(frozen=True, slots=True)
class CheckVersionRequest:
    path: str
    version: int


@dataclass(frozen=True, slots=True)
class MultiRequest:
    """multi(14) and multiRead(22): a list of (opcode, record)."""

    ops: tuple[tuple[int, Any], ...]


@dataclass(frozen=True, slots=True)
class ReconfigRequest:
    joining: str | None
    leaving: str | None
    new_members: str | None
    cur_config_id: int


@dataclass(frozen=True, slots=True)
class WatchTypeRequest:
    """checkWatches(17) and removeWatches(18); type is WATCHER_CHILDREN/DATA/ANY."""

    path: str
    type: int


@dataclass(frozen=True, slots=True)
class AuthPacket:
    type: int
    scheme: str
    auth: bytes


@dataclass(frozen=True, slots=True)
class SaslRequest:
    """sasl(102): GetSASLRequest, one token of a SASL exchange (answered by SetSASLResponse)."""

    token: bytes


@dataclass(frozen=True, slots=True)
class SetWatches:
    """setWatches(101) and setWatches2(105, which adds the persistent lists)."""

    relative_zxid: int
    data: tuple[str, ...] = ()
    exist: tuple[str, ...] = ()
    child: tuple[str, ...] = ()
    persistent: tuple[str, ...] = ()
    persistent_recursive: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddWatchRequest:
    path: str
    mode: int


@dataclass(frozen=True, slots=True)
class Empty:
    """ping(11), closeSession(-11), whoAmI(107): no body."""


EMPTY = Empty()


@value_record
class Request:
    xid: int
    op: int
    record: Any = field(default=EMPTY)


# ---------------------------------------------------------------- request codec


def _r_create(buf: bytes | memoryview, off: int, ttl: bool) -> tuple[CreateRequest, int]:
    path, off = read_string(buf, off)
    data, off = read_buffer(buf, off)
    acl, off = read_acls(buf, off)
    flags, off = read_int(buf, off)
    t = -1
    if ttl:
        t, off = read_long(buf, off)
    return CreateRequest(path, data, tuple(acl), flags, t), off


def _w_create(out: bytearray, r: CreateRequest, ttl: bool) -> None:
    write_ustring(out, r.path)
    write_buffer(out, r.data)
    write_acls(out, r.acl)
    write_int(out, r.flags)
    if ttl:
        write_long(out, r.ttl)


def _r_path_version(cls: type) -> Callable:
    def reader(buf: bytes | memoryview, off: int) -> tuple[Any, int]:
        path, off = read_string(buf, off)
        v, off = read_int(buf, off)
        return cls(path, v), off

    return reader


def _r_path_watch(buf: bytes | memoryview, off: int) -> tuple[PathWatchRequest, int]:
    path, off = read_string(buf, off)
    w, off = read_bool(buf, off)
    return PathWatchRequest(path, w), off


def _r_set_data(buf: bytes | memoryview, off: int) -> tuple[SetDataRequest, int]:
    path, off = read_string(buf, off)
    data, off = read_buffer(buf, off)
    v, off = read_int(buf, off)
    return SetDataRequest(path, data, v), off


def _r_path(buf: bytes | memoryview, off: int) -> tuple[PathRequest, int]:
    path, off = read_string(buf, off)
    return PathRequest(path), off


def _r_set_acl(buf: bytes | memoryview, off: int) -> tuple[SetACLRequest, int]:
    path, off = read_string(buf, off)
    acl, off = read_acls(buf, off)
    v, off = read_int(buf, off)
    return SetACLRequest(path, tuple(acl), v), off


def _r_reconfig(buf: bytes | memoryview, off: int) -> tuple[ReconfigRequest, int]:
    j, off = read_ustring(buf, off)
    lv, off = read_ustring(buf, off)
    m, off = read_ustring(buf, off)
    c, off = read_long(buf, off)
    return ReconfigRequest(j, lv, m, c), off


def _r_auth(buf: bytes | memoryview, off: int) -> tuple[AuthPacket, int]:
    t, off = read_int(buf, off)
    scheme, off = read_string(buf, off)
    auth, off = read_buffer(buf, off)
    return AuthPacket(t, scheme, auth or b""), off


def _r_sasl(buf: bytes | memoryview, off: int) -> tuple[SaslRequest, int]:
    token, off = read_buffer(buf, off)
    return SaslRequest(token or b""), off


def _r_set_watches(v2: bool) -> Callable:
    def reader(buf: bytes | memoryview, off: int) -> tuple[SetWatches, int]:
        rel, off = read_long(buf, off)
        lists = []
        for _ in range(5 if v2 else 3):
            items, off = read_string_vector(buf, off)
            lists.append(tuple(items))
        return SetWatches(rel, *lists), off

    return reader


def _r_add_watch(buf: bytes | memoryview, off: int) -> tuple[AddWatchRequest, int]:
    path, off = read_string(buf, off)
    mode, off = read_int(buf, off)
    return AddWatchRequest(path, mode), off


def _r_empty(buf: bytes | memoryview, off: int) -> tuple[Empty, int]:
    return EMPTY, off


# ops allowed inside multi(14) and multiRead(22), as in MultiOperationRecord
MULTI_WRITE_OPS = frozenset({CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL, DELETE, SET_DATA, CHECK})
MULTI_READ_OPS = frozenset({GET_DATA, GET_CHILDREN})


def _r_multi(buf: bytes | memoryview, off: int) -> tuple[MultiRequest, int]:
    ops: list[tuple[int, Any]] = []
    while True:
        if off + MULTI_HEADER.size > len(buf):
            raise JuteError(f"truncated MultiHeader at offset {off}")
        t, done, _err = MULTI_HEADER.unpack_from(buf, off)
        off += MULTI_HEADER.size
        if done:
            return MultiRequest(tuple(ops)), off
        if t not in MULTI_WRITE_OPS and t not in MULTI_READ_OPS:
            raise JuteError(
                f"op type {t} is not allowed inside multi; allowed: create, create2, "
                "createContainer, createTTL, delete, setData, check, getData, getChildren"
            )
        rec, off = _READERS[t](buf, off)
        ops.append((t, rec))
        if len(ops) > 1_000_000:
            raise JuteError("multi has too many ops")


_READERS: dict[int, Callable[[Any, int], tuple[Any, int]]] = {
    CREATE: lambda b, o: _r_create(b, o, False),
    CREATE2: lambda b, o: _r_create(b, o, False),
    CREATE_CONTAINER: lambda b, o: _r_create(b, o, False),
    CREATE_TTL: lambda b, o: _r_create(b, o, True),
    DELETE: _r_path_version(DeleteRequest),
    EXISTS: _r_path_watch,
    GET_DATA: _r_path_watch,
    SET_DATA: _r_set_data,
    GET_ACL: _r_path,
    SET_ACL: _r_set_acl,
    GET_CHILDREN: _r_path_watch,
    GET_CHILDREN2: _r_path_watch,
    SYNC: _r_path,
    PING: _r_empty,
    CHECK: _r_path_version(CheckVersionRequest),
    MULTI: _r_multi,
    MULTI_READ: _r_multi,
    RECONFIG: _r_reconfig,
    CHECK_WATCHES: _r_path_version(WatchTypeRequest),
    REMOVE_WATCHES: _r_path_version(WatchTypeRequest),
    AUTH: _r_auth,
    SASL: _r_sasl,
    SET_WATCHES: _r_set_watches(False),
    SET_WATCHES2: _r_set_watches(True),
    GET_EPHEMERALS: _r_path,
    GET_ALL_CHILDREN_NUMBER: _r_path,
    ADD_WATCH: _r_add_watch,
    WHO_AM_I: _r_empty,
    CLOSE_SESSION: _r_empty,
}

KNOWN_OPS = frozenset(_READERS)


class UnknownOpcode(JuteError):
    """The request header names an opcode this server does not implement."""

    def __init__(self, xid: int, op: int) -> None:
        super().__init__(f"unknown opcode {op} (xid {xid})")
        self.xid = xid
        self.op = op


class MalformedRequest(JuteError):
    """A valid request header followed by a body that does not decode as its opcode's record.

    ZooKeeper answers such a request MarshallingError (-5) under its xid and
    keeps the connection (except for an auth packet, which closes it)."""

    def __init__(self, xid: int, op: int, reason: str) -> None:
        super().__init__(f"malformed body of opcode {op} (xid {xid}): {reason}")
        self.xid = xid
        self.op = op


def decode_request(buf: bytes | memoryview) -> Request:
    """Decode one request body (without its length prefix).

    Raises :class:`UnknownOpcode` for an opcode outside :data:`KNOWN_OPS`
    (the caller answers Unimplemented and closes), :class:`MalformedRequest`
    for a body that does not decode (the caller answers MarshallingError) and
    :class:`JuteError` for a frame shorter than the request header (the
    caller closes). Trailing bytes are tolerated, as ZooKeeper does.
    """
    if len(buf) < 8:
        raise JuteError(f"request of {len(buf)} bytes is shorter than the 8-byte RequestHeader")
    xid, op = REQ_HEADER.unpack_from(buf, 0)
    reader = _READERS.get(op)
    if reader is None:
        raise UnknownOpcode(xid, op)
    try:
        rec, _ = reader(buf, 8)
    except JuteError as exc:
        raise MalformedRequest(xid, op, str(exc)) from None
    return Request(xid, op, rec)


def encode_request(req: Request) -> bytes:
    """Encode a request body (client side; used by tests, fuzzers and probes)."""
    out = bytearray(REQ_HEADER.pack(req.xid, req.op))
    _write_record(out, req.op, req.record)
    return bytes(out)


def _write_record(out: bytearray, op: int, r: Any) -> None:
    if op in (CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL):
        _w_create(out, r, op == CREATE_TTL)
    elif op in (DELETE, CHECK, CHECK_WATCHES, REMOVE_WATCHES):
        write_ustring(out, r.path)
        write_int(out, r.version if op in (DELETE, CHECK) else r.type)
    elif op in (EXISTS, GET_DATA, GET_CHILDREN, GET_CHILDREN2):
        write_ustring(out, r.path)
        out.append(1 if r.watch else 0)
    elif op == SET_DATA:
        write_ustring(out, r.path)
        write_buffer(out, r.data)
        write_int(out, r.version)
    elif op in (GET_ACL, SYNC, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER):
        write_ustring(out, r.path)
    elif op == SET_ACL:
        write_ustring(out, r.path)
        write_acls(out, r.acl)
        write_int(out, r.version)
    elif op in (MULTI, MULTI_READ):
        for t, rec in r.ops:
            out += MULTI_HEADER.pack(t, False, -1)
            _write_record(out, t, rec)
        out += MULTI_HEADER.pack(-1, True, -1)
    elif op == RECONFIG:
        write_ustring(out, r.joining)
        write_ustring(out, r.leaving)
        write_ustring(out, r.new_members)
        write_long(out, r.cur_config_id)
    elif op == AUTH:
        write_int(out, r.type)
        write_ustring(out, r.scheme)
        write_buffer(out, r.auth)
    elif op == SASL:
        write_buffer(out, r.token)
    elif op in (SET_WATCHES, SET_WATCHES2):
        write_long(out, r.relative_zxid)
        lists = [r.data, r.exist, r.child]
        if op == SET_WATCHES2:
            lists += [r.persistent, r.persistent_recursive]
        for items in lists:
            write_string_vector(out, list(items))
    elif op == ADD_WATCH:
        write_ustring(out, r.path)
        write_int(out, r.mode)
    elif op in (PING, WHO_AM_I, CLOSE_SESSION):
        pass
    else:
        raise ValueError(f"cannot encode a request with opcode {op}; known: {sorted(KNOWN_OPS)}")


# ---------------------------------------------------------------- reply encoders (server side, hot path)


def _s(s: str) -> bytes:
    b = s.encode("utf-8")
    return INT.pack(len(b)) + b


def reply(xid: int, zxid: int, err: int, body: bytes = b"") -> bytes:
    """A framed reply: ReplyHeader{xid, zxid, err} + body (empty when err != 0)."""
    return REPLY.pack(16 + len(body), xid, zxid, err) + body


def reply_stat(xid: int, zxid: int, stat: Any) -> bytes:
    """exists, setData, setACL replies."""
    return REPLY.pack(84, xid, zxid, 0) + pack_stat(stat)


def reply_data(xid: int, zxid: int, data: bytes | None, stat: Any) -> bytes:
    """getData: buffer + Stat."""
    if data is None:
        return REPLY_INT.pack(88, xid, zxid, 0, -1) + pack_stat(stat)
    n = len(data)
    return b"".join((REPLY_INT.pack(88 + n, xid, zxid, 0, n), data, pack_stat(stat)))


def reply_path(xid: int, zxid: int, path: str) -> bytes:
    """create(1) and sync: one ustring."""
    body = _s(path)
    return REPLY.pack(16 + len(body), xid, zxid, 0) + body


def reply_path_stat(xid: int, zxid: int, path: str, stat: Any) -> bytes:
    """create2, createContainer, createTTL: path + Stat."""
    body = _s(path) + pack_stat(stat)
    return REPLY.pack(16 + len(body), xid, zxid, 0) + body


def buffer_body(data: bytes) -> bytes:
    """A reply body of one buffer (SetSASLResponse)."""
    return INT.pack(len(data)) + data


def children_body(children: list[str]) -> bytes:
    parts = [INT.pack(len(children))]
    for c in children:
        parts.append(_s(c))
    return b"".join(parts)


def reply_children(xid: int, zxid: int, children: list[str], stat: Any = None) -> bytes:
    """getChildren (stat None) and getChildren2 (names + Stat)."""
    body = children_body(children)
    if stat is not None:
        body += pack_stat(stat)
    return REPLY.pack(16 + len(body), xid, zxid, 0) + body


def reply_acl(xid: int, zxid: int, acls: Any, stat: Any) -> bytes:
    out = bytearray()
    write_acls(out, acls)
    out += pack_stat(stat)
    return REPLY.pack(16 + len(out), xid, zxid, 0) + bytes(out)


def reply_int(xid: int, zxid: int, value: int) -> bytes:
    """getAllChildrenNumber and addWatch (ErrorResponse(0))."""
    return REPLY_INT.pack(20, xid, zxid, 0, value)


def reply_whoami(xid: int, zxid: int, infos: list[tuple[str, str]]) -> bytes:
    out = bytearray(INT.pack(len(infos)))
    for scheme, user in infos:
        write_ustring(out, scheme)
        write_ustring(out, user)
    return REPLY.pack(16 + len(out), xid, zxid, 0) + bytes(out)


def notification(event_type: int, state: int, path: str | None, zxid: int = -1) -> bytes:
    """A watch or session event: xid -1, WatcherEvent{type, state, path}."""
    out = bytearray(INT.pack(event_type) + INT.pack(state))
    write_ustring(out, path)
    return REPLY.pack(16 + len(out), NOTIFICATION_XID, zxid, 0) + bytes(out)


@dataclass(frozen=True, slots=True)
class OpResult:
    """One entry of a multi/multiRead reply.

    ``type`` is the op's opcode on success or :data:`ERROR` (-1) with ``err``;
    ``value`` is the path (create), (path, Stat) (create2/TTL/container),
    Stat (setData), None (delete/check), (data, Stat) (getData) or the
    children list (getChildren).
    """

    type: int
    err: int = 0
    value: Any = None


def multi_body(results: list[OpResult]) -> bytes:
    """MultiResponse exactly as ZooKeeper writes it, ending with {-1, true, -1}."""
    out = bytearray()
    for r in results:
        out += MULTI_HEADER.pack(r.type, False, r.err if r.type == ERROR else 0)
        t = r.type
        if t == ERROR:
            write_int(out, r.err)
        elif t == CREATE:
            write_ustring(out, r.value)
        elif t in (CREATE2, CREATE_TTL, CREATE_CONTAINER):
            write_ustring(out, r.value[0])
            out += pack_stat(r.value[1])
        elif t == SET_DATA:
            out += pack_stat(r.value)
        elif t == GET_DATA:
            write_buffer(out, r.value[0])
            out += pack_stat(r.value[1])
        elif t == GET_CHILDREN:
            out += children_body(r.value)
        elif t in (DELETE, CHECK):
            pass
        else:
            raise ValueError(f"multi result of type {t} cannot be encoded")
    out += MULTI_HEADER.pack(-1, True, -1)
    return bytes(out)


def reply_multi(xid: int, zxid: int, results: list[OpResult]) -> bytes:
    body = multi_body(results)
    return REPLY.pack(16 + len(body), xid, zxid, 0) + body


# ---------------------------------------------------------------- reply decoders (client side: tests, fuzzers, probes)


@dataclass(frozen=True, slots=True)
class ReplyHeader:
    xid: int
    zxid: int
    err: int


@dataclass(frozen=True, slots=True)
class WatcherEvent:
    type: int
    state: int
    path: str | None


def decode_reply(buf: bytes | memoryview, op: int) -> tuple[ReplyHeader, Any]:
    """Decode a reply body (without its length prefix) to the request ``op`` it answers.

    Notifications (xid -1) decode to a :class:`WatcherEvent` whatever ``op``.
    """
    if len(buf) < 16:
        raise JuteError(f"reply of {len(buf)} bytes is shorter than the 16-byte ReplyHeader")
    xid, zxid, err = struct.unpack_from(">iqi", buf, 0)
    hdr = ReplyHeader(xid, zxid, err)
    off = 16
    if xid == NOTIFICATION_XID:
        t, off = read_int(buf, off)
        st, off = read_int(buf, off)
        p, off = read_ustring(buf, off)
        return hdr, WatcherEvent(t, st, p)
    if err != 0 or off == len(buf):
        return hdr, None
    return hdr, _read_response(buf, off, op)[0]


def _read_response(buf: bytes | memoryview, off: int, op: int) -> tuple[Any, int]:
    if op in (EXISTS, SET_DATA, SET_ACL):
        return read_stat(buf, off)
    if op == GET_DATA:
        data, off = read_buffer(buf, off)
        st, off = read_stat(buf, off)
        return (data, st), off
    if op in (CREATE, SYNC):
        return read_string(buf, off)
    if op in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
        p, off = read_string(buf, off)
        st, off = read_stat(buf, off)
        return (p, st), off
    if op in (GET_CHILDREN, GET_EPHEMERALS):
        return read_string_vector(buf, off)
    if op == GET_CHILDREN2:
        names, off = read_string_vector(buf, off)
        st, off = read_stat(buf, off)
        return (names, st), off
    if op == GET_ACL:
        acls, off = read_acls(buf, off)
        st, off = read_stat(buf, off)
        return (acls, st), off
    if op in (GET_ALL_CHILDREN_NUMBER, ADD_WATCH):
        return read_int(buf, off)
    if op == WHO_AM_I:
        n, off = read_int(buf, off)
        infos = []
        for _ in range(max(n, 0)):
            s, off = read_string(buf, off)
            u, off = read_string(buf, off)
            infos.append((s, u))
        return infos, off
    if op in (MULTI, MULTI_READ):
        results: list[OpResult] = []
        while True:
            if off + MULTI_HEADER.size > len(buf):
                raise JuteError(f"truncated MultiHeader at offset {off}")
            t, done, err = MULTI_HEADER.unpack_from(buf, off)
            off += MULTI_HEADER.size
            if done:
                return results, off
            if t == ERROR:
                e, off = read_int(buf, off)
                results.append(OpResult(ERROR, e))
            elif t in (DELETE, CHECK):
                results.append(OpResult(t))
            else:
                v, off = _read_response(buf, off, t)
                results.append(OpResult(t, 0, v))
    return None, off
