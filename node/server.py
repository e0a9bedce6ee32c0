"""The asyncio shell of a standalone node: client port, timers, disk, admin words.

Nothing here decides what the data tree decides. The shell decodes frames
(``node.wire.protocol``), turns writes into transactions that :class:`Node`
proposes (stamp zxid + time + identities, apply to the tree, queue for the
log), serves reads straight from the tree, and carries out the effects:
watch notifications, replies, fsyncs, session expiry, container cleanup,
snapshots.

Ordering and durability, in one rule: every outgoing packet carries the zxid
it depends on, and a connection writes its packets in order, each only once
that zxid is durable (``Node.committed_zxid``). A write's reply depends on its
own zxid; a read's reply and a watch notification depend on the newest
applied zxid at the time they were computed. Hence:

* replies leave in request order per connection;
* a watch notification is queued when its txn is applied, so it reaches the
  client before the reply of the write that fired it and before any later
  read that can see the new data (as ZooKeeper does);
* nobody sees data that is not yet fsynced (the log is written and fsynced in
  a worker thread; all txns that arrive during one fsync share the next one:
  group commit).

An ensemble extends :class:`Node` by replacing the local commit with
replication; the gating rule above is unchanged (``committed_zxid`` becomes
the quorum-committed zxid).

TEST-ONLY FAULTS (``node.faults``): armed by ``--unsafe-test-fault NAME`` (or
the environment variable ``SQUALL_UNSAFE_TEST_FAULT``), the node misbehaves on
purpose so that the harness can prove its checkers catch a broken database.
Never arm one outside such a test. The standalone node supports two:

* ``stale-reads``: exists/getData/getChildren are served from a copy of the
  tree that lags :data:`STALE_LAG` writes behind;
* ``lose-writes``: every :data:`LOSE_EVERY`-th write among setData and plain
  (persistent, non-sequential) create is acknowledged -- with a plausible
  Stat, or the path -- but never applied.

An ensemble member supports these and the others ``node.faults`` lists. A
loud warning is logged at start when one is armed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

from node import faults
from node import tree as T
from node.admin import four_letter
from node.config import NodeConfig
from node.errors import Err, ZkError
from node.sessions import SessionTracker
from node.storage import Storage
from node.watches import WatchManager
from node.wire import protocol as P
from node.wire.jute import INT, JuteError

log = logging.getLogger("squall.node")

FAULT_ENV = faults.FAULT_ENV
STALE_LAG = faults.STALE_LAG
LOSE_EVERY = faults.LOSE_EVERY

EPOCH = 1  # standalone epoch; an ensemble bumps it per leader term
ZERO_PASSWORD = b"\x00" * 16
CONTAINER_CHECK_S = 1.0


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- the node (state + propose + durability)


@dataclass
class Committed:
    txn: Any
    result: Any


class Node:
    """Owns the tree, the session tracker, the watches and the storage.

    ``propose(op, session_id, identities)`` is the one way anything changes:
    it stamps a zxid ((epoch << 32) | counter), wall time and the proposer's
    identities into a ``Txn``, applies it (standalone: locally, at once),
    hands the watch events to ``on_events`` and queues the txn for the log.
    ``committed_zxid`` advances when the log is fsynced; ``on_commit`` is
    called then.
    """

    def __init__(self, cfg: NodeConfig, storage: Any, tree: Any, last_zxid: int, rng: random.Random) -> None:
        self.cfg = cfg
        self.storage = storage
        self.tree = tree
        self.rng = rng
        self.tracker = SessionTracker(cfg.tick_ms, cfg.server_id, _now_ms())
        self.watches = WatchManager()
        epoch = last_zxid >> 32
        self.zxid = last_zxid if epoch >= EPOCH else (EPOCH << 32)
        self.committed_zxid = self.zxid
        self.on_events: Callable[[Any, list], None] = lambda txn, events: None
        self.on_commit: Callable[[int], None] = lambda zxid: None
        self.on_fatal: Callable[[BaseException], None] = lambda exc: None
        self._log_pending: list[Any] = []
        self._log_times: list[float] = []
        self._flushing = False
        self._disk = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="squall-disk")
        self.fsyncs = 0
        self.latencies = LatencyStats()
        self.failed: BaseException | None = None
        # fsync on the loop thread instead of the disk thread: no thread handoff per commit (lower
        # latency for lone writes on a fast disk) at the price of blocking the loop for each fsync.
        self.inline_fsync = cfg.fsync_inline
        fault = faults.check(cfg.unsafe_test_fault or faults.from_env(), standalone=True)
        self.fault = fault
        self._stale_tree = None
        self._stale_queue: collections.deque = collections.deque()
        self._set_data_count = 0
        if fault == "stale-reads":
            self._stale_tree = T.DataTree.deserialize(tree.serialize())

    # -- proposing

    def next_zxid(self) -> int:
        self.zxid += 1
        return self.zxid

    def propose(self, op: Any, session_id: int, identities: tuple = ()) -> Committed:
        txn = T.Txn(self.next_zxid(), _now_ms(), session_id, identities, op)
        result = self.tree.apply(txn)
        if self._stale_tree is not None:
            self._stale_queue.append(txn)
            while len(self._stale_queue) > STALE_LAG:
                self._stale_tree.apply(self._stale_queue.popleft())
        if result.events:
            self.on_events(txn, result.events)
        self._log_pending.append(txn)
        self._log_times.append(time.monotonic())
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        return Committed(txn, result)

    @property
    def read_tree(self) -> Any:
        """The tree reads are served from (a lagging copy under the stale-reads test fault)."""
        return self._stale_tree if self._stale_tree is not None else self.tree

    def lose_this_write(self) -> bool:
        """Under the lose-writes test fault: True for every LOSE_EVERY-th setData or plain create."""
        if self.fault != "lose-writes":
            return False
        self._set_data_count += 1
        return self._set_data_count % LOSE_EVERY == 0

    # -- durability (group commit)

    def _start_flush(self) -> None:
        if self.failed is not None:
            return
        batch, times = self._log_pending, self._log_times
        self._log_pending, self._log_times = [], []
        if not batch:
            self._flushing = False
            self._maybe_snapshot()
            return
        if self.inline_fsync:
            try:
                self._write_batch(batch)
            except Exception as exc:
                self._flush_done(exc, batch, times)
                return
            self._flush_done(None, batch, times)
            return
        fut = asyncio.get_running_loop().run_in_executor(self._disk, self._write_batch, batch)
        fut.add_done_callback(lambda f: self._flush_done(f.exception(), batch, times))

    def _write_batch(self, batch: list) -> None:
        """Append every txn, then one fsync for all of them (in the disk thread unless inline)."""
        for txn in batch:
            self.storage.log(txn)
        self.storage.flush()

    def _flush_done(self, exc: BaseException | None, batch: list, times: list[float]) -> None:
        if exc is not None:
            # Without a durable log no write may ever be acknowledged again.
            self.failed = exc
            log.critical("write-ahead log failed, the node stops acknowledging writes: %r", exc)
            self.on_fatal(exc)
            return
        self.fsyncs += 1
        self.committed_zxid = batch[-1].zxid
        now = time.monotonic()
        for t0 in times:
            self.latencies.add((now - t0) * 1000.0)
        self.on_commit(self.committed_zxid)
        if self.inline_fsync and self._log_pending:
            asyncio.get_running_loop().call_soon(self._start_flush)  # let the loop read more requests first
        else:
            self._start_flush()

    def _maybe_snapshot(self) -> None:
        """Snapshot when due, only while no log write is in flight (the tree then equals the durable log).

        Runs on the loop thread because the tree must not change while it is
        serialized; with snapCount txns between snapshots the pause is rare.
        """
        if self.failed is not None:
            return
        try:
            if self.storage.maybe_snapshot(self.tree):
                log.info("snapshot taken at zxid 0x%x (%d znodes)", self.tree.last_zxid, self.tree.node_count)
        except Exception as exc:  # a failed snapshot is not fatal: the log still has everything
            log.error("snapshot at zxid 0x%x failed: %r", self.tree.last_zxid, exc)

    async def drain(self) -> None:
        """Wait until every proposed txn is durable (used at shutdown)."""
        while self._flushing and self.failed is None:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._disk.shutdown(wait=True)
        self.storage.close()


@dataclass
class LatencyStats:
    count: int = 0
    total: float = 0.0
    min: float = 0.0
    max: float = 0.0

    def add(self, ms: float) -> None:
        if self.count == 0 or ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms
        self.count += 1
        self.total += ms

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else 0.0


# ---------------------------------------------------------------- one client connection


NEW, CONNECTED, CLOSING, CLOSED = 0, 1, 2, 3  # CLOSING: a close is queued behind pending replies


class ClientConnection(asyncio.Protocol):
    """One TCP connection: frames in, replies out in order, gated on durability."""

    def __init__(self, server: "NodeServer") -> None:
        self.server = server
        self.node = server.node
        self.transport: asyncio.Transport | None = None
        self.state = NEW
        self.buf = bytearray()
        self.address = "?"
        self.ip = "?"
        self.session_id = 0
        self.timeout_ms = 0
        self.identities: list[tuple[str, str]] = []
        self._out: list[bytes] = []
        self._out_bytes = 0  # bytes in _out
        self._pending: collections.deque = collections.deque()  # (required zxid, bytes | None=close)
        self._pending_bytes = 0  # bytes in _pending
        # Backpressure: while this connection holds output_limit bytes of output (a client that
        # does not read), no further request of it is handled and its socket is not read.
        self.output_limit = 2 * server.cfg.max_frame_bytes
        self._stalled = False
        self._resume_scheduled = False
        self._flush_scheduled = False
        self._in_batch = False
        self.received = 0
        self.sent = 0
        self.last_zxid = 0
        self.counted_ip = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.ip = str(peer[0])
        self.address = f"{peer[0]}:{peer[1]}"
        self.identities = [("ip", self.ip)]
        if not self.server.admit(self):
            log.warning("too many connections from %s (limit %d per address, maxClientCnxns); closing",
                        self.ip, self.server.cfg.max_client_cnxns)
            self.state = CLOSED
            transport.close()
            return
        self.counted_ip = True
        self.server.connections.add(self)
        self._handshake_timer = asyncio.get_running_loop().call_later(
            self.server.cfg.handshake_timeout_ms / 1000.0, self._handshake_overdue)

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
        self._in_batch = True
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
                body = bytes(buf[off + 4:end])
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
            log.exception("internal error serving %s (session 0x%x); closing that connection", self.address, self.session_id)
            self.abort("internal error")
            return
        finally:
            self._in_batch = False
            if off:
                del buf[:off]
        if self.session_id:
            self._touch_session()
        self._flush()

    def _touch_session(self) -> None:
        """The session showed life (any request). The ensemble's connection overrides this."""
        self.node.tracker.touch(self.session_id, self.server.now_ms())

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its requests until it catches up.
        if self.transport is not None and self.state < CLOSED:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._stalled:
            self._maybe_resume()
        elif self.transport is not None and self.state < CLOSED:
            self.transport.resume_reading()

    # -- backpressure

    def buffered(self) -> int:
        """Output bytes this connection holds: queued here plus the transport's write buffer."""
        t = self.transport
        return (t.get_write_buffer_size() if t is not None else 0) + self._out_bytes + self._pending_bytes

    def _output_full(self) -> bool:
        return self.buffered() >= self.output_limit

    def _input_full(self) -> bool:
        """Whether to stop handling this connection's requests for now (the ensemble adds its queue)."""
        return self._output_full()

    def _stall(self) -> None:
        if not self._stalled:
            self._stalled = True
            if self.transport is not None and self.state < CLOSED:
                self.transport.pause_reading()

    def _maybe_resume(self) -> None:
        """Once the output drained below the limit, handle what was read and read again (next turn)."""
        if self._stalled and not self._resume_scheduled and self.state < CLOSING and not self._input_full():
            self._resume_scheduled = True
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_scheduled = False
        if not self._stalled or self.state >= CLOSING or self._input_full():
            return
        self._stalled = False
        t = self.transport
        if t is not None and t.get_write_buffer_size() < self.output_limit:
            t.resume_reading()
        self.data_received(b"")  # the requests already read; may stall again

    # -- output, in order, gated on durability

    def send(self, data: bytes | None, required: int) -> None:
        """Queue ``data`` (None = close) to go out once ``required`` is durable and all before it went."""
        if self.state == CLOSED:
            return
        if data is None:
            self.state = CLOSING
        if not self._pending and data is not None and required <= self.node.committed_zxid:
            self._out.append(data)
            self._out_bytes += len(data)
            self.sent += 1
            self.server.sent += 1
        else:
            self._pending.append((required, data))
            self._pending_bytes += len(data) if data is not None else 0
            if len(self._pending) == 1:
                self.server.waiting.add(self)
        if not self._in_batch and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def release(self, committed: int) -> None:
        """Move packets whose zxid is now durable from the pending queue to the socket."""
        pending = self._pending
        close = False
        while pending and pending[0][0] <= committed:
            _, data = pending.popleft()
            if data is None:
                close = True
                pending.clear()
                self._pending_bytes = 0
                break
            self._pending_bytes -= len(data)
            self._out.append(data)
            self._out_bytes += len(data)
            self.sent += 1
            self.server.sent += 1
        if not pending:
            self.server.waiting.discard(self)
        self._write_out()
        if close:
            self.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending and self._pending[0][0] <= self.node.committed_zxid:
            self.release(self.node.committed_zxid)
        else:
            self._write_out()

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
        self._pending.clear()
        self._pending_bytes = 0
        self.server.waiting.discard(self)
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Bad input: log a line, drop this connection, leave every other client alone."""
        log.warning("closing connection from %s (session 0x%x): %s", self.address, self.session_id, reason)
        self._flush()
        self.close()

    # -- four-letter words

    def _four_letter(self, word: str) -> None:
        self.state = CLOSED
        try:
            if word not in self.server.cfg.four_letter_words:  # 4lw.commands.whitelist
                text = four_letter.not_whitelisted(word)
            elif word == "srst":  # the one word that changes something: the server's statistics
                self.server.reset_stats()
                text = four_letter.answer(word, self.server.admin_view())
            else:
                text = four_letter.answer(word, self.server.admin_view())
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
        node = self.node
        if req.last_zxid_seen > node.zxid:
            # Single system image: this client has seen a newer state than ours.
            log.warning("refusing session request from %s: it has seen zxid 0x%x, our last zxid is 0x%x",
                        self.address, req.last_zxid_seen, node.zxid)
            self.close()
            return
        timeout = min(max(req.timeout_ms, srv.cfg.min_timeout_ms), srv.cfg.max_timeout_ms)
        self.state = CONNECTED  # send(None) below turns it into CLOSING
        if req.session_id == 0:
            sid = srv.new_session_id()
            password = node.rng.randbytes(16)
            c = node.propose(T.CreateSessionOp(sid, timeout, password), sid, tuple(self.identities))
            node.tracker.add(sid, timeout, srv.now_ms())
            self._attach(sid, timeout)
            self.send(P.ConnectResponse(0, timeout, sid, password, False).encode_framed(), c.txn.zxid)
            return
        known = srv.session_table().get(req.session_id)
        if known is None or known[1] != req.password or not node.tracker.touch(req.session_id, srv.now_ms()):
            why = "unknown or expired session" if known is None else "wrong password or expired session"
            log.info("session 0x%x from %s: %s; answering expired", req.session_id, self.address, why)
            self.send(P.ConnectResponse(0, 0, 0, ZERO_PASSWORD, False).encode_framed(), 0)
            self.send(None, 0)
            return
        self._attach(req.session_id, known[0])
        self.send(P.ConnectResponse(0, known[0], req.session_id, req.password, False).encode_framed(), node.zxid)

    def _attach(self, sid: int, timeout: int) -> None:
        """Bind the session to this connection; an older connection of the same session is closed."""
        old = self.server.session_conns.get(sid)
        if old is not None and old is not self:
            log.info("session 0x%x moved from %s to %s", sid, old.address, self.address)
            old.session_id = 0  # it no longer owns the session: its close must not drop our watches
            old.close()
            # Watches belong to the connection (as in ZooKeeper); the client re-registers (setWatches).
            self.node.watches.remove_session(sid)
        self.session_id = sid
        self.timeout_ms = timeout
        self.server.session_conns[sid] = self

    # -- requests

    def _request(self, body: bytes) -> None:
        try:
            req = P.decode_request(body)
        except P.MalformedRequest as exc:
            if exc.op == P.AUTH:
                raise  # ZooKeeper closes a connection whose auth packet does not decode
            log.info("answering MarshallingError to %s (session 0x%x): %s", self.address, self.session_id, exc)
            self.send(P.reply(exc.xid, self.node.zxid, Err.MARSHALLING_ERROR), self.node.zxid)
            return
        except P.UnknownOpcode as exc:
            log.warning("closing connection from %s (session 0x%x): %s; answered Unimplemented",
                        self.address, self.session_id, exc)
            self.send(P.reply(exc.xid, self.node.zxid, Err.UNIMPLEMENTED), self.node.zxid)
            self.send(None, self.node.zxid)
            return
        handler = _HANDLERS[req.op]
        stats = self.server.request_stats[req.op]
        t0 = time.perf_counter()
        handler(self, req.xid, req.record)
        # count and handling time by opcode (for a write: until it is proposed;
        # its commit latency is measured by the node)
        stats[0] += 1
        stats[1] += time.perf_counter() - t0

    # reads -----------------------------------------------------------

    def _watch(self, path: str, kind: str) -> None:
        self.node.watches.add(self.session_id, path, kind)

    def _exists(self, xid: int, r: P.PathWatchRequest) -> None:
        node = self.node
        zxid = node.zxid
        try:
            stat = node.read_tree.exists(r.path)
        except ZkError as exc:
            self.send(P.reply(xid, zxid, exc.code), zxid)
            return
        if r.watch:
            self._watch(r.path, "data" if stat is not None else "exist")
        if stat is None:
            self.send(P.reply(xid, zxid, Err.NO_NODE), zxid)
        else:
            self.send(P.reply_stat(xid, zxid, stat), zxid)

    def _get_data(self, xid: int, r: P.PathWatchRequest) -> None:
        node = self.node
        zxid = node.zxid
        try:
            data, stat = node.read_tree.get_data(r.path, self.identities)
        except ZkError as exc:
            self.send(P.reply(xid, zxid, exc.code), zxid)
            return
        if r.watch:
            self._watch(r.path, "data")
        self.send(P.reply_data(xid, zxid, data, stat), zxid)

    def _get_children(self, xid: int, r: P.PathWatchRequest, with_stat: bool = False) -> None:
        node = self.node
        zxid = node.zxid
        try:
            children, stat = node.read_tree.get_children(r.path, self.identities)
        except ZkError as exc:
            self.send(P.reply(xid, zxid, exc.code), zxid)
            return
        if r.watch:
            self._watch(r.path, "child")
        self.send(P.reply_children(xid, zxid, list(children), stat if with_stat else None), zxid)

    def _get_children2(self, xid: int, r: P.PathWatchRequest) -> None:
        self._get_children(xid, r, True)

    def _get_acl(self, xid: int, r: P.PathRequest) -> None:
        zxid = self.node.zxid
        try:
            acls, stat = self.node.tree.get_acl(r.path, self.identities)
        except ZkError as exc:
            self.send(P.reply(xid, zxid, exc.code), zxid)
            return
        self.send(P.reply_acl(xid, zxid, acls, stat), zxid)

    def _sync(self, xid: int, r: P.PathRequest) -> None:
        zxid = self.node.zxid
        self.send(P.reply_path(xid, zxid, r.path), zxid)

    def _ping(self, xid: int, r: Any) -> None:
        zxid = self.node.zxid
        self.send(P.reply(P.PING_XID, zxid, 0), zxid)

    def _get_ephemerals(self, xid: int, r: P.PathRequest) -> None:
        zxid = self.node.zxid
        paths = self.node.tree.get_ephemerals(self.session_id, r.path or "/")
        self.send(P.reply_children(xid, zxid, sorted(paths)), zxid)

    def _all_children_number(self, xid: int, r: P.PathRequest) -> None:
        zxid = self.node.zxid
        try:
            n = self.node.tree.count_all_children(r.path, self.identities)
        except ZkError as exc:
            self.send(P.reply(xid, zxid, exc.code), zxid)
            return
        self.send(P.reply_int(xid, zxid, n), zxid)

    def _who_am_i(self, xid: int, r: Any) -> None:
        zxid = self.node.zxid
        # As ZooKeeper's AuthenticationProvider.getUserName: a digest id shows its user part only.
        infos = [(scheme, ident.split(":", 1)[0] if scheme == "digest" else ident) for scheme, ident in self.identities]
        self.send(P.reply_whoami(xid, zxid, infos), zxid)

    def _multi_read(self, xid: int, r: P.MultiRequest) -> None:
        node = self.node
        zxid = node.zxid
        results = []
        for op, rec in r.ops:
            if op not in P.MULTI_READ_OPS:
                self.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS), zxid)
                return
            try:
                if op == P.GET_DATA:
                    results.append(P.OpResult(P.GET_DATA, 0, node.read_tree.get_data(rec.path, self.identities)))
                else:
                    children, _ = node.read_tree.get_children(rec.path, self.identities)
                    results.append(P.OpResult(P.GET_CHILDREN, 0, list(children)))
            except ZkError as exc:
                results.append(P.OpResult(P.ERROR, int(exc.code)))
        self.send(P.reply_multi(xid, zxid, results), zxid)

    # watches ---------------------------------------------------------

    def _add_watch(self, xid: int, r: P.AddWatchRequest) -> None:
        zxid = self.node.zxid
        if r.mode not in (P.ADD_WATCH_PERSISTENT, P.ADD_WATCH_PERSISTENT_RECURSIVE):
            self.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS), zxid)
            return
        self._watch(r.path, "persistent" if r.mode == P.ADD_WATCH_PERSISTENT else "persistent_recursive")
        self.send(P.reply_int(xid, zxid, 0), zxid)

    def _remove_watches(self, xid: int, r: P.WatchTypeRequest, remove: bool = True) -> None:
        zxid = self.node.zxid
        kind = {P.WATCHER_CHILDREN: "child", P.WATCHER_DATA: "data", P.WATCHER_ANY: "any"}.get(r.type)
        if kind is None:
            self.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS), zxid)
            return
        w = self.node.watches
        found = w.remove(self.session_id, r.path, kind) if remove else w.contains(self.session_id, r.path, kind)
        self.send(P.reply(xid, zxid, 0 if found else Err.NO_WATCHER), zxid)

    def _check_watches(self, xid: int, r: P.WatchTypeRequest) -> None:
        self._remove_watches(xid, r, remove=False)

    def _set_watches(self, xid: int, r: P.SetWatches) -> None:
        node = self.node
        events = node.watches.set_watches(self.session_id, r.relative_zxid, list(r.data), list(r.exist),
                                          list(r.child), list(r.persistent), list(r.persistent_recursive),
                                          node.tree)
        zxid = node.zxid
        for ev in events:
            self.send(P.notification(ev.type, P.STATE_SYNC_CONNECTED, ev.path, ev.zxid), zxid)
        self.send(P.reply(xid, zxid, 0), zxid)

    # auth ------------------------------------------------------------

    def _auth(self, xid: int, r: P.AuthPacket) -> None:
        zxid = self.node.zxid
        ident = None
        if r.scheme == "digest":
            ident = ("digest", _digest_identity(r.auth.decode("utf-8", "replace")))
            if self.server.cfg.super_digest and ident[1] == self.server.cfg.super_digest:
                self.identities.append(("super", ""))  # ZooKeeper's superDigest: bypasses every ACL
        elif r.scheme == "ip":
            ident = ("ip", self.ip)
        if ident is None:
            # As ZooKeeper: an AuthFailed reply (the client turns it into its AUTH_FAILED state), then close.
            log.info("auth with unknown scheme %r from %s; answering AuthFailed and closing (known: digest, ip)",
                     r.scheme, self.address)
            self.send(P.reply(P.AUTH_XID, 0, Err.AUTH_FAILED), zxid)
            self.send(None, zxid)
            return
        if ident not in self.identities:
            self.identities.append(ident)
        self.send(P.reply(P.AUTH_XID, 0, 0), zxid)

    # writes ----------------------------------------------------------

    def _propose(self, op: Any) -> Committed:
        return self.node.propose(op, self.session_id, tuple(self.identities))

    def _create(self, xid: int, r: P.CreateRequest, opcode: int) -> None:
        node = self.node
        if node.fault and opcode == P.CREATE and r.flags == 0 and node.lose_this_write():
            tree = node.tree
            parent = r.path.rsplit("/", 1)[0] or "/"
            try:
                fits = tree.exists(parent) is not None and tree.exists(r.path) is None
            except ZkError:
                fits = False
            if fits:  # TEST-ONLY FAULT: acknowledge a create that would succeed, without applying it
                self.send(P.reply_path(xid, node.zxid, r.path), node.zxid)
                return
        c = self._propose(_create_op(r, opcode))
        self.send(write_reply(opcode, r, xid, c.txn.zxid, c.result.err, c.result.value), c.txn.zxid)

    def _delete(self, xid: int, r: P.DeleteRequest) -> None:
        c = self._propose(T.DeleteOp(r.path, r.version))
        self.send(P.reply(xid, c.txn.zxid, c.result.err), c.txn.zxid)

    def _set_data(self, xid: int, r: P.SetDataRequest) -> None:
        node = self.node
        if node.fault and node.lose_this_write():
            try:
                stat = node.tree.exists(r.path)
            except ZkError:
                stat = None
            if stat is not None:  # TEST-ONLY FAULT: acknowledge without applying
                fake = T.Stat(**{**_stat_dict(stat), "version": stat.version + 1,
                                 "data_length": len(r.data or b"")})
                self.send(P.reply_stat(xid, node.zxid, fake), node.zxid)
                return
        c = self._propose(T.SetDataOp(r.path, r.data, r.version))
        self.send(write_reply(P.SET_DATA, r, xid, c.txn.zxid, c.result.err, c.result.value), c.txn.zxid)

    def _set_acl(self, xid: int, r: P.SetACLRequest) -> None:
        c = self._propose(T.SetACLOp(r.path, _acls(r.acl), r.version))
        self.send(write_reply(P.SET_ACL, r, xid, c.txn.zxid, c.result.err, c.result.value), c.txn.zxid)

    def _check(self, xid: int, r: P.CheckVersionRequest) -> None:
        c = self._propose(T.CheckOp(r.path, r.version))
        self.send(P.reply(xid, c.txn.zxid, c.result.err), c.txn.zxid)

    def _multi(self, xid: int, r: P.MultiRequest) -> None:
        op = multi_op(r)
        if op is None:
            zxid = self.node.zxid
            self.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS), zxid)
            return
        c = self._propose(op)
        self.send(write_reply(P.MULTI, r, xid, c.txn.zxid, c.result.err, c.result.value), c.txn.zxid)

    def _reconfig(self, xid: int, r: P.ReconfigRequest) -> None:
        zxid = self.node.zxid
        self.send(P.reply(xid, zxid, Err.RECONFIG_DISABLED), zxid)

    def _close_session(self, xid: int, r: Any) -> None:
        sid = self.session_id
        c = self.server.close_session(sid)
        self.send(P.reply(xid, c.txn.zxid, 0), c.txn.zxid)
        self.send(None, c.txn.zxid)


async def serve_until_stopped(server: Any, stop: asyncio.Event | None, ready: Callable[[str, int], None] | None,
                              install_signals: bool, admin: tuple[str, int, str | None] | None,
                              started: Callable[[], None] | None = None) -> None:
    """Start ``server`` (and, with ``admin`` = (host, port, token), the admin HTTP API), announce
    the address, wait for ``stop``, SIGINT/SIGTERM (with ``install_signals``) or a fatal stop
    of the server, then stop both. ``started`` runs once both are up.

    Shared by the standalone and the ensemble shells."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    admin_runner = None
    try:
        host, port = await server.start()
        if admin is not None:
            from node.admin.http import start_admin
            admin_runner = await start_admin(server, *admin)
        if started is not None:
            started()
        log.info("squall node serving on %s:%d", host, port)
        if ready is not None:
            ready(host, port)
        stopper = asyncio.create_task(stop.wait())
        fatal = asyncio.create_task(server.stopped.wait())
        await asyncio.wait({stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        fatal.cancel()
        log.info("shutting down")
    finally:
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        try:
            if admin_runner is not None:
                await admin_runner.close()
        finally:
            await server.stop()


def _digest_identity(text: str) -> str:
    """ZooKeeper's digest id: ``user:base64(sha1(whole auth string))``, user = text before the first colon."""
    if ":" in text:
        user, _, password = text.partition(":")
        return T.digest_id(user, password)
    import base64
    import hashlib

    return f"{text}:{base64.b64encode(hashlib.sha1(text.encode('utf-8')).digest()).decode('ascii')}"


def _stat_dict(stat: Any) -> dict:
    return {name: getattr(stat, name) for name in P.StatRecord._fields}


def _acls(records: tuple) -> tuple:
    return tuple(T.ACL(a.perms, a.scheme, a.id) for a in records)


_CREATE_KINDS = {P.CREATE: "create", P.CREATE2: "create2", P.CREATE_CONTAINER: "createContainer",
                 P.CREATE_TTL: "createTTL"}


def _create_op(r: P.CreateRequest, opcode: int) -> Any:
    return T.CreateOp(r.path, r.data, _acls(r.acl), r.flags, r.ttl, _CREATE_KINDS[opcode])


def _write_op(opcode: int, rec: Any) -> Any:
    if opcode in _CREATE_KINDS:
        return _create_op(rec, opcode)
    if opcode == P.DELETE:
        return T.DeleteOp(rec.path, rec.version)
    if opcode == P.SET_DATA:
        return T.SetDataOp(rec.path, rec.data, rec.version)
    return T.CheckOp(rec.path, rec.version)


def multi_op(r: P.MultiRequest) -> Any:
    """The MultiOp of a multi request, or None when it holds a non-write op (BAD_ARGUMENTS)."""
    ops = []
    for opcode, rec in r.ops:
        if opcode not in P.MULTI_WRITE_OPS:
            return None
        ops.append(_write_op(opcode, rec))
    return T.MultiOp(tuple(ops))


def write_reply(opcode: int, r: Any, xid: int, zxid: int, err: int, value: Any) -> bytes:
    """The reply frame of an applied write: pure, shared by the standalone node and the ensemble.

    ``(err, value)`` is the tree's ApplyResult for the write's op.
    """
    if opcode == P.MULTI:
        results = value
        if err and not results:
            return P.reply(xid, zxid, err)
        failed = any(e for e, _ in results)
        out = []
        for (op, _), (e, v) in zip(r.ops, results):
            if failed:
                out.append(P.OpResult(P.ERROR, int(e)))
            elif op == P.CREATE:
                out.append(P.OpResult(P.CREATE, 0, v[0]))
            elif op in (P.CREATE2, P.CREATE_TTL, P.CREATE_CONTAINER):
                out.append(P.OpResult(op, 0, v))
            elif op == P.SET_DATA:
                out.append(P.OpResult(P.SET_DATA, 0, v))
            else:
                out.append(P.OpResult(op))
        return P.reply_multi(xid, zxid, out)
    if err or opcode in (P.DELETE, P.CHECK, P.CLOSE_SESSION):
        return P.reply(xid, zxid, err)
    if opcode == P.CREATE:
        return P.reply_path(xid, zxid, value[0])
    if opcode in _CREATE_KINDS:
        path, stat = value
        return P.reply_path_stat(xid, zxid, path, stat)
    return P.reply_stat(xid, zxid, value)  # setData, setACL


_HANDLERS: dict[int, Callable] = {
    P.CREATE: lambda c, x, r: c._create(x, r, P.CREATE),
    P.CREATE2: lambda c, x, r: c._create(x, r, P.CREATE2),
    P.CREATE_CONTAINER: lambda c, x, r: c._create(x, r, P.CREATE_CONTAINER),
    P.CREATE_TTL: lambda c, x, r: c._create(x, r, P.CREATE_TTL),
    P.DELETE: ClientConnection._delete,
    P.EXISTS: ClientConnection._exists,
    P.GET_DATA: ClientConnection._get_data,
    P.SET_DATA: ClientConnection._set_data,
    P.GET_ACL: ClientConnection._get_acl,
    P.SET_ACL: ClientConnection._set_acl,
    P.GET_CHILDREN: ClientConnection._get_children,
    P.GET_CHILDREN2: ClientConnection._get_children2,
    P.SYNC: ClientConnection._sync,
    P.PING: ClientConnection._ping,
    P.CHECK: ClientConnection._check,
    P.MULTI: ClientConnection._multi,
    P.MULTI_READ: ClientConnection._multi_read,
    P.RECONFIG: ClientConnection._reconfig,
    P.CHECK_WATCHES: ClientConnection._check_watches,
    P.REMOVE_WATCHES: ClientConnection._remove_watches,
    P.AUTH: ClientConnection._auth,
    P.SET_WATCHES: ClientConnection._set_watches,
    P.SET_WATCHES2: ClientConnection._set_watches,
    P.GET_EPHEMERALS: ClientConnection._get_ephemerals,
    P.GET_ALL_CHILDREN_NUMBER: ClientConnection._all_children_number,
    P.ADD_WATCH: ClientConnection._add_watch,
    P.WHO_AM_I: ClientConnection._who_am_i,
    P.CLOSE_SESSION: ClientConnection._close_session,
}
assert set(_HANDLERS) == set(P.KNOWN_OPS), "every decodable opcode needs a handler"


# ---------------------------------------------------------------- the server


class NodeServer:
    """Listens on the client port and runs the timers of one standalone node."""

    def __init__(self, cfg: NodeConfig, node: Node) -> None:
        self.cfg = cfg
        self.node = node
        self.connections: set[ClientConnection] = set()
        self.session_conns: dict[int, ClientConnection] = {}
        self.waiting: set[ClientConnection] = set()
        self.ip_counts: dict[str, int] = collections.Counter()
        self.sent = 0
        self.received = 0
        # opcode -> [requests, seconds spent handling them] (the admin's /metrics)
        self.request_stats: collections.defaultdict[int, list] = collections.defaultdict(lambda: [0, 0.0])
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = time.monotonic()
        self.stopped = asyncio.Event()
        node.on_events = self._dispatch_events
        node.on_commit = self._committed
        node.on_fatal = lambda exc: self.stopped.set()

    # -- lifecycle

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientConnection(self), self.cfg.host, self.cfg.port,
                                                reuse_address=True, backlog=512)
        now = self.now_ms()
        for sid, (timeout, _pw) in self.session_table().items():
            # Recovered sessions get a full timeout to come back, as ZooKeeper gives them.
            self.node.tracker.add(sid, timeout, now)
        self._tasks.append(asyncio.create_task(self._ticker()))
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            self._server.close()
        await self.node.drain()
        for conn in list(self.connections):
            conn.release(self.node.committed_zxid)
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    def now_ms(self) -> int:
        return int(time.monotonic() * 1000)

    # -- connections and sessions

    def admit(self, conn: ClientConnection) -> bool:
        cap = self.cfg.max_client_cnxns
        if cap and self.ip_counts[conn.ip] >= cap:
            return False
        self.ip_counts[conn.ip] += 1
        return True

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.waiting.discard(conn)
        if conn.counted_ip:
            conn.counted_ip = False
            self.ip_counts[conn.ip] -= 1
            if self.ip_counts[conn.ip] <= 0:
                del self.ip_counts[conn.ip]
        sid = conn.session_id
        if sid and self.session_conns.get(sid) is conn:
            # ZooKeeper keeps watches per connection: the client re-registers them (setWatches).
            del self.session_conns[sid]
            self.node.watches.remove_session(sid)

    def session_table(self) -> dict[int, tuple[int, bytes]]:
        """session id -> (timeout ms, password), from the replicated state."""
        return {sid: (s.timeout_ms, s.password) for sid, s in self.node.tree.sessions.items()}

    def new_session_id(self) -> int:
        """ZooKeeper's layout: high byte = server id, then time-derived bits; never reuse a live id."""
        table = self.node.tree.sessions
        while True:
            sid = self.node.tracker.new_session_id()
            if sid not in table and sid not in self.session_conns:
                return sid

    def close_session(self, sid: int) -> Committed:
        """Propose CloseSessionOp (ephemerals go, watchers fire) and forget the session locally."""
        c = self.node.propose(T.CloseSessionOp(sid), sid, ())
        self.node.tracker.remove(sid)
        self.node.watches.remove_session(sid)
        return c

    def expire(self, sid: int) -> None:
        log.info("session 0x%x expired", sid)
        c = self.close_session(sid)
        conn = self.session_conns.pop(sid, None)
        if conn is not None:
            conn.session_id = 0
            conn.send(None, c.txn.zxid)

    # -- effects from the node

    def _dispatch_events(self, txn: Any, events: list) -> None:
        watches = self.node.watches
        conns = self.session_conns
        for ev in events:
            for sid, wev in watches.trigger(ev):
                conn = conns.get(sid)
                if conn is not None:
                    conn.send(P.notification(wev.type, P.STATE_SYNC_CONNECTED, wev.path, wev.zxid), txn.zxid)

    def _committed(self, zxid: int) -> None:
        for conn in list(self.waiting):
            conn.release(zxid)

    # -- timers

    async def _ticker(self) -> None:
        interval = max(0.02, min(self.cfg.tick_ms / 2000.0, 0.5))
        last_containers = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                for sid in self.node.tracker.expired(self.now_ms()):
                    self.expire(sid)
                now = time.monotonic()
                if now - last_containers >= CONTAINER_CHECK_S:
                    last_containers = now
                    for path in self.node.tree.expired_containers_and_ttls(_now_ms()):
                        self.node.propose(T.DeleteContainerOp(path), 0, ())
            except Exception:
                log.exception("timer failed; continuing")

    # -- admin

    def reset_stats(self) -> None:
        self.sent = 0
        self.received = 0
        self.node.latencies = LatencyStats()

    def admin_view(self) -> four_letter.AdminView:
        node = self.node
        tree = node.tree
        lat = node.latencies
        conns = tuple(
            four_letter.ConnectionInfo(c.address, c.session_id, len(c._pending), c.received, c.sent,
                                       c.timeout_ms, node.zxid)
            for c in list(self.connections))
        eph = {sid: list(paths) for sid, paths in tree.ephemerals_by_session.items() if paths}
        w = node.watches
        by_session = w.by_session()
        by_path = w.by_path()
        _, _, watch_count = w.summary()
        cfg = self.cfg
        return four_letter.AdminView(
            mode="standalone",
            zxid=node.zxid,
            node_count=tree.zk_node_count,
            latency_min_ms=lat.min, latency_avg_ms=lat.avg, latency_max_ms=lat.max,
            received=self.received,
            sent=self.sent,
            outstanding=sum(len(c._pending) for c in self.connections),
            connections=conns,
            ephemerals=eph,
            ephemerals_count=sum(len(v) for v in eph.values()),
            session_timeouts={sid: t for sid, (t, _) in self.session_table().items()},
            watch_count=watch_count,
            watched_paths=len(by_path),
            watches_by_session=by_session,
            watches_by_path=by_path,
            config={
                "clientPort": str(cfg.port), "clientPortAddress": cfg.host, "dataDir": str(cfg.data_dir),
                "dataLogDir": str(cfg.data_dir), "tickTime": str(cfg.tick_ms),
                "maxClientCnxns": str(cfg.max_client_cnxns), "minSessionTimeout": str(cfg.min_timeout_ms),
                "maxSessionTimeout": str(cfg.max_timeout_ms), "serverId": str(cfg.server_id),
                "jute.maxbuffer": str(cfg.max_frame_bytes),
            },
            fsyncs=node.fsyncs,
            uptime_s=time.monotonic() - self._started,
            approximate_data_size=four_letter.approximate_data_size((p, n.data) for p, n in tree.nodes.items()),
            data_dir_size=(size := four_letter.storage_size(cfg.data_dir)), log_dir_size=size,
        )


# ---------------------------------------------------------------- running a node


async def serve(cfg: NodeConfig, ready: Callable[[str, int], None] | None = None,
                stop: asyncio.Event | None = None, install_signals: bool = True,
                admin: tuple[str, int, str | None] | None = None) -> None:
    """Open storage, recover, serve until ``stop`` is set or SIGINT/SIGTERM arrives."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    storage = Storage.open(cfg.data_dir, snapshot_every=cfg.snapshot_every, keep_snapshots=cfg.snap_retain_count,
                           purge_interval_s=cfg.purge_interval_h * 3600.0)
    tree, last_zxid = storage.tree, storage.tree.last_zxid
    tree.enforce_quota = cfg.enforce_quota
    try:
        node = Node(cfg, storage, tree, last_zxid, random.Random(os.urandom(16)))
    except BaseException:
        storage.close()  # release the data dir's lock
        raise
    if node.fault:
        for _ in range(3):
            log.warning("%s", faults.warning(node.fault))
    server = NodeServer(cfg, node)

    def started() -> None:
        log.info("recovered %d znodes, %d sessions, last zxid 0x%x from %s", tree.node_count,
                 len(tree.sessions), last_zxid, cfg.data_dir)

    try:
        await serve_until_stopped(server, stop, ready, install_signals, admin, started)
    finally:
        node.close()
    if node.failed is not None:
        raise RuntimeError(f"the write-ahead log failed: {node.failed!r}")


class BackgroundNode:
    """A node serving from a background thread with its own event loop (tests, benches, embedding).

    ``with BackgroundNode(cfg) as n: KazooClient(n.hosts)...``; leaving the
    block stops the node and joins the thread, even when the body failed.
    """

    def __init__(self, cfg: NodeConfig, start_timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.start_timeout_s = start_timeout_s
        self.host = cfg.host
        self.port = cfg.port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: Any = None
        self._ready: Any = None
        self.error: BaseException | None = None

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "BackgroundNode":
        import threading

        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="squall-node", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise RuntimeError(f"node did not start within {self.start_timeout_s} s")
        if self.error is not None:
            raise RuntimeError(f"node failed to start: {self.error!r}") from self.error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(host: str, port: int) -> None:
                self.host, self.port = host, port
                self._ready.set()

            if self.cfg.peers:  # an ensemble member (a one-member ensemble runs in-process too)
                from node.ensemble import serve_ensemble
                await serve_ensemble(self.cfg, ready=ready, stop=self._stop, install_signals=False)
            else:
                await serve(self.cfg, ready=ready, stop=self._stop, install_signals=False)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the starting thread
            self.error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> "BackgroundNode":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
