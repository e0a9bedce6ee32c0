"""The jute codec: golden bytes, round trips of every record, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.wire import protocol as P
from node.wire.jute import JuteError, frame, read_buffer, read_int, read_string_vector, read_ustring

PW = bytes(range(16))
STAT = P.StatRecord(1, 2, 3, 4, 5, 6, 7, 0x0100000000000001, 9, 10, 11)
ACLS = (P.AclRecord(31, "world", "anyone"), P.AclRecord(1, "digest", "u:abc="))


def test_connect_request_golden_45_bytes() -> None:
    req = P.ConnectRequest(0, 0x100000005, 10000, 0x0100000000000001, b"\x01" * 16, False)
    raw = req.encode()
    assert len(raw) == 45
    # the same bytes kazoo 2.11 sends (captured from kazoo.protocol.serialization.Connect)
    assert raw.hex() == "000000000000000100000005000027100100000000000001000000100101010101010101010101010101010100"
    assert P.ConnectRequest.decode(raw) == req


def test_connect_request_without_read_only_flag() -> None:
    raw = P.ConnectRequest(0, 0, 4000, 0, PW, None).encode()
    assert len(raw) == 44
    assert P.ConnectRequest.decode(raw).read_only is None


def test_connect_response_golden_37_bytes() -> None:
    resp = P.ConnectResponse(0, 4000, 0x0100000000000002, PW, False)
    framed = resp.encode_framed()
    assert framed[:4] == b"\x00\x00\x00\x25"  # 37
    body = framed[4:]
    assert len(body) == 37
    assert body.hex() == "0000000000000fa0010000000000000200000010" + PW.hex() + "00"
    assert P.ConnectResponse.decode(body) == resp


def test_connect_request_rejects_trailing_garbage() -> None:
    with pytest.raises(JuteError):
        P.ConnectRequest.decode(P.ConnectRequest().encode() + b"xyz")


REQUESTS = [
    P.Request(1, P.CREATE, P.CreateRequest("/a", b"x", ACLS, 3)),
    P.Request(2, P.CREATE2, P.CreateRequest("/a", None, ACLS, 0)),
    P.Request(3, P.CREATE_CONTAINER, P.CreateRequest("/c", b"", ACLS[:1], 4)),
    P.Request(4, P.CREATE_TTL, P.CreateRequest("/t", b"y", ACLS[:1], 5, 12345)),
    P.Request(5, P.DELETE, P.DeleteRequest("/a", -1)),
    P.Request(6, P.EXISTS, P.PathWatchRequest("/a", True)),
    P.Request(7, P.GET_DATA, P.PathWatchRequest("/a", False)),
    P.Request(8, P.SET_DATA, P.SetDataRequest("/a", b"\x00\xff", 7)),
    P.Request(9, P.GET_ACL, P.PathRequest("/a")),
    P.Request(10, P.SET_ACL, P.SetACLRequest("/a", ACLS, 2)),
    P.Request(11, P.GET_CHILDREN, P.PathWatchRequest("/", True)),
    P.Request(12, P.GET_CHILDREN2, P.PathWatchRequest("/", False)),
    P.Request(13, P.SYNC, P.PathRequest("/")),
    P.Request(P.PING_XID, P.PING),
    P.Request(14, P.CHECK, P.CheckVersionRequest("/a", 3)),
    P.Request(
        15,
        P.MULTI,
        P.MultiRequest(
            (
                (P.CREATE, P.CreateRequest("/m", b"1", ACLS[:1], 0)),
                (P.SET_DATA, P.SetDataRequest("/m", b"2", -1)),
                (P.CHECK, P.CheckVersionRequest("/m", 1)),
                (P.DELETE, P.DeleteRequest("/m", -1)),
                (P.CREATE_TTL, P.CreateRequest("/n", b"", ACLS[:1], 5, 99)),
            )
        ),
    ),
    P.Request(
        16,
        P.MULTI_READ,
        P.MultiRequest(
            (
                (P.GET_DATA, P.PathWatchRequest("/m", False)),
                (P.GET_CHILDREN, P.PathWatchRequest("/", False)),
            )
        ),
    ),
    P.Request(17, P.RECONFIG, P.ReconfigRequest("server.4=h:1:2", None, None, -1)),
    P.Request(18, P.CHECK_WATCHES, P.WatchTypeRequest("/a", P.WATCHER_DATA)),
    P.Request(19, P.REMOVE_WATCHES, P.WatchTypeRequest("/a", P.WATCHER_ANY)),
    P.Request(P.AUTH_XID, P.AUTH, P.AuthPacket(0, "digest", b"user:pw")),
    P.Request(25, P.SASL, P.SaslRequest(b'charset=utf-8,username="u"')),
    P.Request(P.SET_WATCHES_XID, P.SET_WATCHES, P.SetWatches(77, ("/d",), ("/e", "/f"), ())),
    P.Request(P.SET_WATCHES_XID, P.SET_WATCHES2, P.SetWatches(78, ("/d",), (), ("/c",), ("/p",), ("/r",))),
    P.Request(20, P.GET_EPHEMERALS, P.PathRequest("/e")),
    P.Request(21, P.GET_ALL_CHILDREN_NUMBER, P.PathRequest("/")),
    P.Request(22, P.ADD_WATCH, P.AddWatchRequest("/w", P.ADD_WATCH_PERSISTENT_RECURSIVE)),
    P.Request(23, P.WHO_AM_I),
    P.Request(24, P.CLOSE_SESSION),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: P.OP_NAMES.get(r.op, str(r.op)))
def test_request_round_trip(req: P.Request) -> None:
    assert P.decode_request(P.encode_request(req)) == req


def test_every_known_opcode_has_a_round_trip_case() -> None:
    assert {r.op for r in REQUESTS} == set(P.KNOWN_OPS)


def test_kazoo_encoded_requests_decode() -> None:
    """Requests as kazoo itself serializes them decode to the records we expect."""
    from kazoo.protocol.serialization import Create, GetData, SetData
    from kazoo.security import OPEN_ACL_UNSAFE

    body = bytes(P.REQ_HEADER.pack(5, 1) + Create("/k", b"v", OPEN_ACL_UNSAFE, 2).serialize())
    assert P.decode_request(body) == P.Request(
        5, 1, P.CreateRequest("/k", b"v", (P.AclRecord(31, "world", "anyone"),), 2)
    )
    body = bytes(P.REQ_HEADER.pack(6, 4) + GetData("/k", True).serialize())
    assert P.decode_request(body) == P.Request(6, 4, P.PathWatchRequest("/k", True))
    body = bytes(P.REQ_HEADER.pack(7, 5) + SetData("/k", b"w", 3).serialize())
    assert P.decode_request(body) == P.Request(7, 5, P.SetDataRequest("/k", b"w", 3))
    from kazoo.protocol.serialization import SASL

    body = bytes(P.REQ_HEADER.pack(8, P.SASL) + SASL(b"token").serialize())
    assert P.decode_request(body) == P.Request(8, P.SASL, P.SaslRequest(b"token"))


def test_unknown_opcode_is_reported_with_its_xid() -> None:
    with pytest.raises(P.UnknownOpcode) as info:
        P.decode_request(P.REQ_HEADER.pack(42, 999))
    assert (info.value.xid, info.value.op) == (42, 999)


def test_multi_rejects_ops_not_allowed_inside() -> None:
    body = P.REQ_HEADER.pack(1, P.MULTI) + P.MULTI_HEADER.pack(P.SYNC, False, -1) + b"\x00\x00\x00\x01/"
    with pytest.raises(JuteError, match="not allowed inside multi"):
        P.decode_request(body)


def _unframe(framed: bytes) -> bytes:
    n, _ = read_int(framed, 0)
    assert n == len(framed) - 4
    return framed[4:]


@pytest.mark.parametrize(
    "op,framed,expected",
    [
        (P.EXISTS, P.reply_stat(3, 9, STAT), STAT),
        (P.SET_DATA, P.reply_stat(3, 9, STAT), STAT),
        (P.GET_DATA, P.reply_data(3, 9, b"hello", STAT), (b"hello", STAT)),
        (P.GET_DATA, P.reply_data(3, 9, None, STAT), (None, STAT)),
        (P.CREATE, P.reply_path(3, 9, "/a0000000001"), "/a0000000001"),
        (P.SYNC, P.reply_path(3, 9, "/"), "/"),
        (P.CREATE2, P.reply_path_stat(3, 9, "/é", STAT), ("/é", STAT)),
        (P.CREATE_TTL, P.reply_path_stat(3, 9, "/t", STAT), ("/t", STAT)),
        (P.GET_CHILDREN, P.reply_children(3, 9, ["a", "b"]), ["a", "b"]),
        (P.GET_CHILDREN2, P.reply_children(3, 9, [], STAT), ([], STAT)),
        (P.GET_ACL, P.reply_acl(3, 9, ACLS, STAT), (list(ACLS), STAT)),
        (P.GET_ALL_CHILDREN_NUMBER, P.reply_int(3, 9, 42), 42),
        (
            P.WHO_AM_I,
            P.reply_whoami(3, 9, [("ip", "127.0.0.1"), ("digest", "u")]),
            [("ip", "127.0.0.1"), ("digest", "u")],
        ),
        (P.DELETE, P.reply(3, 9, 0), None),
    ],
)
def test_reply_round_trip(op: int, framed: bytes, expected: object) -> None:
    hdr, value = P.decode_reply(_unframe(framed), op)
    assert hdr == P.ReplyHeader(3, 9, 0)
    assert value == expected


def test_error_reply_has_empty_body() -> None:
    framed = P.reply(8, 100, -101)
    assert len(framed) == 20
    assert P.decode_reply(_unframe(framed), P.GET_DATA) == (P.ReplyHeader(8, 100, -101), None)


def test_notification_round_trip() -> None:
    hdr, ev = P.decode_reply(_unframe(P.notification(3, P.STATE_SYNC_CONNECTED, "/a", 17)), P.GET_DATA)
    assert hdr.xid == P.NOTIFICATION_XID
    assert ev == P.WatcherEvent(3, 3, "/a")


def test_multi_results_round_trip_and_terminator() -> None:
    ok = [
        P.OpResult(P.CREATE, 0, "/m"),
        P.OpResult(P.CREATE2, 0, ("/n", STAT)),
        P.OpResult(P.SET_DATA, 0, STAT),
        P.OpResult(P.DELETE),
        P.OpResult(P.CHECK),
    ]
    framed = P.reply_multi(4, 10, ok)
    assert framed.endswith(P.MULTI_HEADER.pack(-1, True, -1))
    assert P.decode_reply(_unframe(framed), P.MULTI)[1] == ok
    failed = [P.OpResult(P.ERROR, 0), P.OpResult(P.ERROR, -101), P.OpResult(P.ERROR, -2)]
    raw = _unframe(P.reply_multi(4, 10, failed))
    # each error result is MultiHeader{-1, false, err} + ErrorResponse{err}
    assert raw[16 : 16 + 13] == P.MULTI_HEADER.pack(-1, False, 0) + b"\x00\x00\x00\x00"
    assert P.decode_reply(raw, P.MULTI)[1] == failed
    reads = [P.OpResult(P.GET_DATA, 0, (b"d", STAT)), P.OpResult(P.GET_CHILDREN, 0, ["x"]), P.OpResult(P.ERROR, -101)]
    assert P.decode_reply(_unframe(P.reply_multi(5, 10, reads)), P.MULTI_READ)[1] == reads


def test_kazoo_parses_our_multi_reply() -> None:
    from kazoo.exceptions import NoNodeError, RolledBackError
    from kazoo.protocol.serialization import Transaction

    raw = _unframe(P.reply_multi(4, 10, [P.OpResult(P.ERROR, 0), P.OpResult(P.ERROR, -101)]))
    results = Transaction.deserialize(raw, 16)
    assert isinstance(results[0], RolledBackError) and isinstance(results[1], NoNodeError)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x00\x01",
        P.REQ_HEADER.pack(1, P.GET_DATA) + b"\x00\x00\x00\x10/a",  # string longer than the record
        P.REQ_HEADER.pack(1, P.GET_DATA) + b"\xff\xff\xff\xf0/a\x00",  # negative length
        P.REQ_HEADER.pack(1, P.SET_ACL) + b"\x00\x00\x00\x01/" + b"\x7f\xff\xff\xff",  # huge ACL count
        P.REQ_HEADER.pack(1, P.MULTI) + b"\x00\x00\x00\x01",  # truncated multi header
    ],
)
def test_malformed_requests_raise_jute_error(raw: bytes) -> None:
    with pytest.raises(JuteError):
        P.decode_request(raw)


def test_malformed_bodies_carry_the_xid_and_opcode_for_a_marshalling_error_reply() -> None:
    with pytest.raises(P.MalformedRequest) as info:
        P.decode_request(P.REQ_HEADER.pack(9, P.SET_DATA) + b"\x00\x00\x00\x01/")
    assert (info.value.xid, info.value.op) == (9, P.SET_DATA)


def test_invalid_utf8_decodes_with_replacement_characters_as_java_does() -> None:
    req = P.decode_request(P.REQ_HEADER.pack(1, P.GET_DATA) + b"\x00\x00\x00\x03/\xff\xfe\x00")
    assert req.record.path == "/\ufffd\ufffd"


def test_primitives_null_values() -> None:
    assert read_buffer(b"\xff\xff\xff\xff", 0) == (None, 4)
    assert read_ustring(b"\xff\xff\xff\xff", 0) == (None, 4)
    assert read_string_vector(b"\xff\xff\xff\xff", 0) == ([], 4)
    assert frame(b"ab") == b"\x00\x00\x00\x02ab"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_jute_error(raw: bytes) -> None:
    try:
        P.decode_request(raw)
    except JuteError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(REQUESTS), st.data())
def test_mutated_requests_only_ever_raise_jute_error(req: P.Request, data: st.DataObject) -> None:
    raw = bytearray(P.encode_request(req))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        P.decode_request(bytes(raw[:cut]))
    except JuteError:
        pass
