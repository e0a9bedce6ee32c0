"""One client connection: ZooKeeper's client protocol on a TCP socket, replies in request order.

Frames in (``node.wire.protocol``), replies out. Each connection keeps one
ordered queue of *slots*, one per request:

* a write, ``sync``, ``closeSession`` or the handshake is handed to the
  replica (``node.replica``) and its slot waits for the replica's
  ``ClientReply`` (which the server delivers only once what produced it is
  durable, see ``node.runner``);
* any other request (reads, watches, whoAmI; ``node.handlers``) is a slot
  holding a function that is run when the slot reaches the head of the queue,
  so a read is computed from the applied tree only after every earlier
  request of the same connection was answered (a client reads its own
  writes), and a watch is registered at that moment.

Pings and auth packets are answered at once (the client matches them by
their special xids, not by order). Four-letter words are answered on a
connection whose first four bytes are one.

Bad input costs one request or this connection, never the node: a body that
does not decode is answered MarshallingError (-5) and the connection stays
open (as ZooKeeper 3.8); an unknown opcode is answered Unimplemented and the
connection closed; a frame outside 0..jute.maxbuffer, an undecodable
handshake or auth packet, or a connection that sends no handshake within
five ticks closes it.

Backpressure: while a connection holds 2 x jute.maxbuffer of output (a
client that does not read its replies), its queued reads are not computed
and its socket is not read until the output drains; a connection with
``MAX_PARKED`` requests queued stops being read too. Other connections are
unaffected.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.admin import four_letter
from node.errors import Err
from node.handlers import LOCAL_HANDLERS
from node.metrics import op_name
from node.replica import ClientReply, CloseSession, CreateSession, Reconfig, Sync, Write
from node.replies import TREE_WRITES, digest_identity, multi_op, write_op, write_reply
from node.sasl import DigestMd5Server, SaslError
from node.sessions import generate_password, new_session_id
from node.wire import protocol as P
from node.wire.jute import INT, JuteError

if TYPE_CHECKING:
    from node.server import MemberServer

log = logging.getLogger("squall.node")

ZERO_PASSWORD = b"\x00" * 16
# What a read-only session is refused with NotReadOnly (ZooKeeper's ReadOnlyRequestProcessor).
NOT_READ_ONLY = TREE_WRITES | {P.SYNC, P.RECONFIG}
NEW, CONNECTED, CLOSING, CLOSED = 0, 1, 2, 3  # CLOSING: a close is queued behind pending replies

# Requests one connection may have in the replica at once; later ones wait in the
# connection (in order) until earlier ones are answered. This keeps the replica's queue
# short enough that nothing waits longer than the retry time merely because the leader is
# busy (which would make the replica resubmit, and flood the log with duplicates), and keeps
# a session's in-flight seqs far inside the replica's dedupe window (DEDUPE_WINDOW = 256).
MAX_INFLIGHT_WRITES = 64
# Requests queued in one connection beyond which we stop reading it (backpressure).
MAX_PARKED = 1024


def wall_ms() -> int:
    # Wall time: the leader stamps it into transactions (ctime/mtime), as ZooKeeper does.
    return int(time.time() * 1000)


class _Slot:
    """One request's place in a connection's reply order."""

    __slots__ = ("seq", "fmt", "run", "data", "close", "done", "t0", "op", "code")

    def __init__(
        self,
        seq: int = -1,
        fmt: Callable[[ClientReply], tuple[bytes | None, bool]] | None = None,
        run: Callable[[], None] | None = None,
        op: str = "",
        code: int = 0,
    ) -> None:
        self.seq = seq
        self.fmt = fmt  # waits for the replica's reply with this seq
        self.run = run  # computed locally when the slot reaches the head
        self.data: bytes | None = None
        self.close = False
        self.done = False
        self.t0 = time.monotonic()  # the request's arrival: mntr's latency runs from here to its reply
        self.op = op  # a transaction's name for the write metrics ("" for anything else)
        self.code = code  # a local request's opcode: its reply's computing time is counted against it


class ClientConnection(asyncio.Protocol):
    """One TCP connection of a client (or of a four-letter word)."""

    def __init__(self, server: MemberServer) -> None:
        self.server = server
        self.conn_id = server.next_conn_id()
        self.transport: asyncio.Transport | None = None
        self.state = NEW
        self.buf = bytearray()
        self.address = "?"
        self.ip = "?"
        self.session_id = 0
        self.timeout_ms = 0
        self.identities: list[tuple[str, str]] = []
        self.received = 0
        self.sent = 0
        self.notified = 0  # watch notifications dispatched to this connection
        self.read_only_session = False  # served by this member alone while it has no quorum
        self._sasl_server: DigestMd5Server | None = None  # a SASL exchange in progress or done
        self.counted_ip = False
        self._slots: collections.deque[_Slot] = collections.deque()
        self._waiting: dict[int, _Slot] = {}  # seq -> the slot waiting for the replica's reply
        # Replica dedupe keys must be unique within a session across connections
        # (clients restart their xid counter): prefix the xid with a random tag.
        self._seq_base = (random.getrandbits(30) + 1) << 32
        self._seq = 0
        self._close_after = False
        self._inflight = 0  # requests handed to the replica and not answered yet
        self._parked: collections.deque[Callable[[], None]] = collections.deque()  # waiting for room
        self._out: list[bytes] = []
        self._out_bytes = 0  # bytes in _out
        # Backpressure: while this connection holds output_limit bytes of output (a client that
        # does not read), no further request of it is handled and its socket is not read.
        self.output_limit = 2 * server.cfg.max_frame_bytes
        self._stalled = False
        self._resume_scheduled = False
        self._throttled = False
        self._write_paused = False
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._touched = False  # a request of the current input reached the replica (which touched the session)

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.ip = str(peer[0])
        self.address = f"{peer[0]}:{peer[1]}"
        self.identities = [("ip", self.ip)]
        srv = self.server
        if not srv.admit(self):
            log.warning(
                "too many connections from %s (limit %d per address, maxClientCnxns); closing",
                self.ip,
                srv.cfg.max_client_cnxns,
            )
            self.state = CLOSED
            transport.close()
            return
        self.counted_ip = True
        self._handshake_timer = asyncio.get_running_loop().call_later(
            srv.cfg.handshake_timeout_ms / 1000.0, self._handshake_overdue
        )

    def _handshake_overdue(self) -> None:
        self._handshake_timer = None
        if self.state == NEW:
            self.abort(f"no handshake within {self.server.cfg.handshake_timeout_ms} ms (5 ticks)")

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self.state >= CLOSING:
            return
        buf = self.buf
        buf += data
        off = 0
        limit = self.server.cfg.max_frame_bytes
        self._touched = False
        try:
            while len(buf) - off >= 4:
                if self.state != NEW and self._input_full():
                    self._stall()  # the rest waits in buf (and the kernel) until the output drains
                    break
                if self.state == NEW and off == 0 and bytes(buf[:4]) in four_letter.WORD_BYTES:
                    self._four_letter(bytes(buf[:4]).decode("ascii"))
                    return
                n = INT.unpack_from(buf, off)[0]
                if n < 0 or n > limit:
                    self.abort(f"frame length {n} is outside 0..{limit} (--max-frame-bytes)")
                    return
                end = off + 4 + n
                if len(buf) < end:
                    break
                body = bytes(buf[off + 4 : end])
                off = end
                self.received += 1
                self.server.received += 1
                if self.state == NEW:
                    self._handshake(body)
                else:
                    self._request(body)
                if self.state >= CLOSING:
                    break  # nothing after a closing request is read, as ZooKeeper
        except JuteError as exc:
            self.abort(f"malformed frame: {exc}")
            return
        except Exception:  # a bug must cost one connection, never the node
            log.exception(
                "internal error serving %s (session 0x%x); closing that connection", self.address, self.session_id
            )
            self.abort("internal error")
            return
        finally:
            if off:
                del buf[:off]
        if self.session_id and not self._touched:
            # The session showed life (no effects); a request handed to the replica touched it already.
            self.server.replica.client_ping(self.conn_id, wall_ms())
        self._flush()

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its requests until it catches up.
        self._write_paused = True
        if self.transport is not None and self.state < CLOSED:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._throttled:
            return
        if self._stalled:
            self._maybe_resume()
        elif self.transport is not None and self.state < CLOSED:
            self.transport.resume_reading()

    # -- backpressure

    def buffered(self) -> int:
        """Output bytes this connection holds: queued here plus the transport's write buffer."""
        t = self.transport
        return (t.get_write_buffer_size() if t is not None else 0) + self._out_bytes

    def _output_full(self) -> bool:
        return self.buffered() >= self.output_limit

    def _input_full(self) -> bool:
        """Whether to stop handling this connection's requests for now."""
        return len(self._slots) >= MAX_PARKED or self._output_full()

    def _stall(self) -> None:
        if not self._stalled:
            self._stalled = True
            if self.transport is not None and self.state < CLOSED:
                self.transport.pause_reading()

    def _maybe_resume(self) -> None:
        """Once the output drained below the limit, compute queued reads and read again (next turn)."""
        slots = self._slots
        if slots and slots[0].run is not None and not self._output_full() and self.state < CLOSED:
            # The pump stopped computing queued reads while the output was full: pump again
            # (through the server's effect loop, which keeps events before replies).
            self.server.dirty.add(self)
            self.server.kick()
        if self._stalled and not self._resume_scheduled and self.state < CLOSING and not self._input_full():
            self._resume_scheduled = True
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_scheduled = False
        if not self._stalled or self.state >= CLOSING or self._input_full():
            return
        self._stalled = False
        t = self.transport
        if t is not None and t.get_write_buffer_size() < self.output_limit and not self._throttled:
            t.resume_reading()
        self.data_received(b"")  # the requests already read; may stall again

    def _throttle(self) -> None:
        if not self._throttled and len(self._parked) >= MAX_PARKED and self.transport is not None:
            self._throttled = True
            self.transport.pause_reading()

    def _unthrottle(self) -> None:
        while self._parked and self._inflight < MAX_INFLIGHT_WRITES and self.state != CLOSED:
            self._inflight += 1
            self._parked.popleft()()
        if self._throttled and len(self._parked) <= MAX_PARKED // 2:
            self._throttled = False
            if self.transport is not None and self.state < CLOSED and not self._write_paused and not self._stalled:
                self.transport.resume_reading()

    # -- output, in request order

    def _send_and_close(self, data: bytes) -> None:
        """Queue ``data``, then close once it went."""
        self.send(data)
        self.send(None)

    def send(self, data: bytes | None) -> None:
        """Queue ``data`` for the socket (None: close once everything before it went)."""
        if self.state == CLOSED:
            return
        if data is None:
            self.state = CLOSING
            self._close_after = True
            self.server.dirty.add(self)
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self.sent += 1
        self.server.sent += 1
        self.server.dirty.add(self)

    def _flush(self) -> None:
        if self.server.busy():
            # Some input applied entries whose watch events are not dispatched yet (or whose
            # durability is not settled): a read computed now could show data before its
            # notification, or before it is on disk. Pump after them.
            self.server.dirty.add(self)
            self.server.kick()
        else:
            self.pump()

    def pump(self) -> None:
        """Answer every slot at the head that is ready, in order; then write."""
        slots = self._slots
        srv = self.server
        latencies = srv.latencies
        answered: list[_Slot] = []  # replies from the replica: their latencies are recorded after the write
        while slots and not self._close_after and self.state != CLOSED:
            s = slots[0]
            if s.run is not None:
                if self._output_full():
                    self._stall()  # a client that does not read: compute no more replies until it does
                    break
                fn, s.run = s.run, None
                slots.popleft()
                t = time.perf_counter()
                fn()
                now = time.perf_counter()
                srv.request_stats[s.code][1] += now - t
                latencies.add((time.monotonic() - s.t0) * 1000.0)
                continue
            if not s.done:
                break
            slots.popleft()
            answered.append(s)
            if s.data is not None:
                self.send(s.data)
            if s.close:
                self.send(None)
        self._write_out()
        if answered:
            now = time.monotonic()
            metrics = srv.metrics
            for s in answered:
                latencies.add((now - s.t0) * 1000.0)
                if s.op:
                    metrics.write_done(s.op, now - s.t0)
        if self._close_after and self.state != CLOSED:
            self.close()

    def _write_out(self) -> None:
        if self._out and self.transport is not None and self.state != CLOSED:
            out = self._out
            self._out = []
            self._out_bytes = 0
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._stalled:
            self._maybe_resume()

    def close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Bad input: log a line, drop this connection, leave every other client alone."""
        log.warning("closing connection from %s (session 0x%x): %s", self.address, self.session_id, reason)
        self._write_out()
        self.close()

    # -- replies from the replica

    def on_reply(self, rep: ClientReply) -> None:
        s = self._waiting.pop(rep.seq, None)
        if s is None or s.fmt is None:
            return  # a reply for a request whose connection state was reset; nothing waits for it
        self._inflight -= 1
        if self._parked or self._throttled:
            self._unthrottle()
        try:
            s.data, s.close = s.fmt(rep)
        except Exception:
            log.exception("formatting the reply to %s (session 0x%x) failed; closing", self.address, self.session_id)
            s.data, s.close = None, True
        s.done = True
        self.server.dirty.add(self)

    def _wait(self, slot: _Slot) -> None:
        self._slots.append(slot)
        self._waiting[slot.seq] = slot

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq_base | (self._seq & 0xFFFFFFFF)

    # -- four-letter words

    def _four_letter(self, word: str) -> None:
        self.state = CLOSED
        srv = self.server
        try:
            if word not in srv.cfg.four_letter_words:  # 4lw.commands.whitelist
                text = four_letter.not_whitelisted(word)
            else:
                if word == "srst":  # the one word that changes something: the server's statistics
                    srv.reset_stats()
                text = four_letter.answer(word, srv.admin_view())
        except Exception:
            log.exception("four-letter word %s failed", word)
            text = ""
        assert self.transport is not None
        self.transport.write(text.encode("utf-8"))
        self.transport.close()

    # -- handshake

    def _handshake(self, body: bytes) -> None:
        req = P.ConnectRequest.decode(body)
        srv = self.server
        cfg = srv.cfg
        replica = srv.replica
        self.state = CONNECTED
        now = wall_ms()
        if srv.read_only_mode:
            self._read_only_handshake(req)
            return
        if req.session_id == 0:
            if req.last_zxid_seen > replica.last_zxid:
                # Single system image: this client has seen a newer state than ours.
                log.warning(
                    "refusing session request from %s: it has seen zxid 0x%x, our last zxid is 0x%x",
                    self.address,
                    req.last_zxid_seen,
                    replica.last_zxid,
                )
                self.close()
                return
            timeout = min(max(req.timeout_ms, cfg.min_timeout_ms), cfg.max_timeout_ms)
            seq = self._next_seq()
            self._wait(_Slot(seq, fmt=self._created, op="createSession"))
            self._inflight += 1
            srv.metrics.txn("createSession")
            srv.run(replica.client_request(self.conn_id, 0, seq, CreateSession(timeout), now))
            return
        self._wait(_Slot(0, fmt=lambda rep: self._resumed(rep, req)))
        self._inflight += 1
        srv.run(replica.client_connect(self.conn_id, req.session_id, req.password, req.last_zxid_seen, now))

    def _read_only_handshake(self, req: P.ConnectRequest) -> None:
        """This member has no quorum: a client that allows it gets a read-only session, others none.

        As ZooKeeper's ReadOnlyZooKeeperServer: a new session is this member's
        own (never replicated; it lives as long as its connection); a known
        session may reattach with its password; the response says readOnly."""
        srv = self.server
        if not req.read_only:
            log.info(
                "refusing a session to %s: this member has no quorum and the client does not allow read-only sessions",
                self.address,
            )
            self._local(lambda: self.send(None))
            return
        timeout = min(max(req.timeout_ms, srv.cfg.min_timeout_ms), srv.cfg.max_timeout_ms)
        if req.session_id == 0:
            sid = new_session_id(srv.cfg.server_id, srv.rng.getrandbits(56))
            password = generate_password(srv.rng)
        else:
            info = srv.replica.tree.sessions.get(req.session_id)
            if info is None or info.password != bytes(req.password):
                log.info(
                    "read-only: session 0x%x from %s is not live here; answering expired", req.session_id, self.address
                )
                self._local(
                    lambda: self._send_and_close(P.ConnectResponse(0, 0, 0, ZERO_PASSWORD, True).encode_framed())
                )
                return
            sid, password, timeout = req.session_id, bytes(req.password), info.timeout_ms
        self.read_only_session = True
        self._attach(sid, timeout)
        log.info("read-only session 0x%x for %s", sid, self.address)
        self._local(lambda: self.send(P.ConnectResponse(0, timeout, sid, password, True).encode_framed()))

    def _created(self, rep: ClientReply) -> tuple[bytes | None, bool]:
        if rep.err:
            log.info("session for %s not created: %s (err %d); closing", self.address, rep.value, rep.err)
            return None, True
        sid, password, timeout = rep.value
        self._attach(sid, timeout)
        return P.ConnectResponse(0, timeout, sid, password, False).encode_framed(), False

    def _resumed(self, rep: ClientReply, req: P.ConnectRequest) -> tuple[bytes | None, bool]:
        if rep.err == Err.OK:
            info = self.server.replica.tree.sessions.get(req.session_id)
            timeout = info.timeout_ms if info is not None else req.timeout_ms
            self._attach(req.session_id, timeout)
            return P.ConnectResponse(0, timeout, req.session_id, req.password, False).encode_framed(), False
        if rep.err == Err.SESSION_EXPIRED:
            log.info("session 0x%x from %s: %s; answering expired", req.session_id, self.address, rep.value)
            return P.ConnectResponse(0, 0, 0, ZERO_PASSWORD, False).encode_framed(), True
        log.warning("refusing session 0x%x from %s: %s", req.session_id, self.address, rep.value)
        return None, True

    def _attach(self, sid: int, timeout: int) -> None:
        """Bind the session to this connection; an older connection of the same session is closed."""
        srv = self.server
        old = srv.session_conns.get(sid)
        if old is not None and old is not self:
            log.info("session 0x%x moved from %s to %s", sid, old.address, self.address)
            old.session_id = 0  # it no longer owns the session: its close must not drop our watches
            old.close()
            # Watches belong to the connection (as in ZooKeeper); the client re-registers (setWatches).
            srv.watches.remove_session(sid)
        self.session_id = sid
        self.timeout_ms = timeout
        srv.session_conns[sid] = self

    # -- requests

    def _request(self, body: bytes) -> None:
        try:
            req = P.decode_request(body)
        except P.MalformedRequest as exc:
            if exc.op == P.AUTH:
                raise  # ZooKeeper closes a connection whose auth packet does not decode
            log.info("answering MarshallingError to %s (session 0x%x): %s", self.address, self.session_id, exc)
            bad = exc.xid
            self._local(lambda: self.send(P.reply(bad, self.server.replica.last_zxid, Err.MARSHALLING_ERROR)))
            return
        except P.UnknownOpcode as exc:
            log.warning(
                "closing connection from %s (session 0x%x): %s; answered Unimplemented",
                self.address,
                self.session_id,
                exc,
            )
            unknown = exc.xid
            self.state = CLOSING

            def unimplemented() -> None:
                self.send(P.reply(unknown, self.server.replica.last_zxid, Err.UNIMPLEMENTED))
                self.send(None)

            self._local(unimplemented)
            return
        op, xid, rec = req.op, req.xid, req.record
        stats = self.server.request_stats[op]
        t = time.perf_counter()
        self._dispatch(op, xid, rec)
        # count and handling time by opcode (a write: until it is handed to the replica; a read adds
        # the time its reply takes to compute, in pump)
        stats[0] += 1
        stats[1] += time.perf_counter() - t

    def _dispatch(self, op: int, xid: int, rec: Any) -> None:
        if self.read_only_session:
            if op in NOT_READ_ONLY:
                self._local(lambda: self.send(P.reply(xid, self.server.replica.last_zxid, Err.NOT_READ_ONLY)))
                return
            if op == P.CLOSE_SESSION:
                self.state = CLOSING
                self._local(lambda: self._send_and_close(P.reply(xid, self.server.replica.last_zxid, 0)))
                return
        elif op in TREE_WRITES:  # the most frequent case first (opcodes are distinct: order is free)
            self._submit_write(op, xid, rec)
            return
        if op == P.PING:
            self.send(P.reply(P.PING_XID, self.server.replica.last_zxid, 0))
        elif op == P.AUTH:
            self._auth(rec)  # identities must apply to the writes pipelined right behind it
        elif op == P.SASL:
            self._sasl(xid, rec)  # as auth: the identity applies to what follows
        elif op == P.SYNC:
            path = rec.path
            self._submit(
                Sync(path), lambda rep: self._plain(rep, xid) if rep.err else (P.reply_path(xid, rep.zxid, path), False)
            )
        elif op in (P.SET_WATCHES, P.SET_WATCHES2) and self.server.fault == "setwatches-ignored":
            # TEST-ONLY FAULT (node.faults): answered OK, nothing registered
            self._local(lambda: self.send(P.reply(xid, self.server.replica.last_zxid, 0)), op)
        elif op == P.CLOSE_SESSION:
            self.state = CLOSING  # nothing after a close is read, as ZooKeeper
            self.server.metrics.txn("closeSession")
            self._submit(CloseSession(), lambda rep: self._closed_session(rep, xid), op="closeSession")
        elif op == P.RECONFIG:
            request = Reconfig(rec.joining, rec.leaving, rec.new_members, rec.cur_config_id, tuple(self.identities))
            self._submit(
                request,
                lambda rep: (
                    self._plain(rep, xid)
                    if rep.err
                    else (P.reply_data(xid, rep.zxid, rep.value[0], rep.value[1]), False)
                ),
                op="reconfig",
            )
        else:
            handler = LOCAL_HANDLERS[op]
            if not self._slots and not self.server.busy() and not self._output_full():
                handler(self, xid, rec)  # nothing before it to wait for: answer at once (as pump would)
            else:
                self._local(lambda: handler(self, xid, rec), op)

    def _local(self, fn: Callable[[], Any], code: int = 0) -> None:
        self._slots.append(_Slot(run=fn, code=code))
        self.server.dirty.add(self)

    def _submit(self, request: Any, fmt: Callable[[ClientReply], tuple[bytes | None, bool]], op: str = "") -> None:
        seq = self._next_seq()
        self._wait(_Slot(seq, fmt=fmt, op=op))
        srv = self.server
        sid = self.session_id
        conn_id = self.conn_id
        if self._inflight < MAX_INFLIGHT_WRITES and not self._parked:
            self._inflight += 1
            self._touched = True
            srv.run(srv.replica.client_request(conn_id, sid, seq, request, wall_ms()))
            return

        def submit() -> None:
            srv.run(srv.replica.client_request(conn_id, sid, seq, request, wall_ms()))

        self._parked.append(submit)
        self._throttle()

    def _submit_write(self, opcode: int, xid: int, rec: Any) -> None:
        if opcode == P.MULTI:
            op = multi_op(rec)
            if op is None:
                self._local(lambda: self.send(P.reply(xid, self.server.replica.last_zxid, Err.BAD_ARGUMENTS)))
                return
        else:
            op = write_op(opcode, rec)

        def fmt(rep: ClientReply) -> tuple[bytes | None, bool]:
            if rep.err and (rep.value is None or isinstance(rep.value, str)):
                return self._plain(rep, xid)
            return write_reply(opcode, rec, xid, rep.zxid, rep.err, rep.value), False

        name = op_name(op)
        self.server.metrics.txn(name)
        self._submit(Write(op, tuple(self.identities)), fmt, op=name)

    def _plain(self, rep: ClientReply, xid: int) -> tuple[bytes | None, bool]:
        """An error the replica answered instead of the tree; connection loss closes the connection."""
        if rep.err == Err.CONNECTION_LOSS:
            log.info("closing connection from %s (session 0x%x): %s", self.address, self.session_id, rep.value)
            return None, True
        return P.reply(xid, rep.zxid, rep.err), rep.err == Err.SESSION_EXPIRED

    def _closed_session(self, rep: ClientReply, xid: int) -> tuple[bytes | None, bool]:
        srv = self.server
        sid = self.session_id
        if sid and srv.session_conns.get(sid) is self:
            del srv.session_conns[sid]
            srv.watches.remove_session(sid)
        self.session_id = 0
        return P.reply(xid, rep.zxid, 0 if rep.err == Err.SESSION_EXPIRED else rep.err), True

    def _auth(self, r: P.AuthPacket) -> None:
        ident = None
        cfg = self.server.cfg
        if r.scheme == "digest":
            ident = ("digest", digest_identity(r.auth.decode("utf-8", "replace")))
            if cfg.super_digest and ident[1] == cfg.super_digest:
                self.identities.append(("super", ""))  # ZooKeeper's superDigest: bypasses every ACL
        elif r.scheme == "ip":
            ident = ("ip", self.ip)
        if ident is None:
            # As ZooKeeper: an AuthFailed reply (the client turns it into its AUTH_FAILED state), then close.
            log.info(
                "auth with unknown scheme %r from %s; answering AuthFailed and closing (known: digest, ip)",
                r.scheme,
                self.address,
            )
            self.send(P.reply(P.AUTH_XID, 0, Err.AUTH_FAILED))
            self.send(None)
            return
        if ident not in self.identities:
            self.identities.append(ident)
        self.send(P.reply(P.AUTH_XID, 0, 0))

    def _sasl(self, xid: int, r: P.SaslRequest) -> None:
        """One token of a SASL DIGEST-MD5 exchange (node.sasl), answered with SetSASLResponse.

        As ZooKeeper: a failed exchange (unknown user, wrong password, malformed token, or no
        --jaas-config) is answered AuthFailed and the connection closed; a completed one gives the
        connection the identity ("sasl", user)."""
        users = self.server.sasl_users
        try:
            if not users:
                raise SaslError("this node has no SASL users (start it with --jaas-config FILE)")
            if self._sasl_server is None:
                self._sasl_server = DigestMd5Server(users)
            token = self._sasl_server.step(r.token)
        except SaslError as exc:
            log.info("SASL authentication from %s failed: %s; answering AuthFailed and closing", self.address, exc)
            self._sasl_server = None
            self.send(P.reply(xid, 0, Err.AUTH_FAILED))
            self.send(None)
            return
        user = self._sasl_server.user
        if user is not None and ("sasl", user) not in self.identities:
            self.identities.append(("sasl", user))
        self.send(P.reply(xid, 0, 0, P.buffer_body(token)))


__all__ = ["ClientConnection", "MAX_INFLIGHT_WRITES", "MAX_PARKED", "ZERO_PASSWORD", "wall_ms"]
