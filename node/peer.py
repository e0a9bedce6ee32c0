"""Peer transport of an ensemble member: asyncio TCP, framed versioned messages.

Each member listens on its peer port and keeps **one outgoing connection per
peer**, used only to send; what a peer sends us arrives on the connection it
opened to us. So every link has one writer and one reader, and a member that
restarts simply reconnects.

Frame: ``u32 length | payload`` where the payload is ``node.replica.encode_peer``
(a versioned header: version, kind, from, to; then a Raft message's
``to_bytes`` or a replica-level Forward/Touch). A frame longer than
``max_frame_bytes`` (or of length 0), a payload that does not decode, a
message addressed to another member, or a frame whose body does not arrive
within ``FRAME_BODY_TIMEOUT_S`` (plus 1 s per MB) of its length closes *that
link* with a log line; the sender reconnects and Raft retransmits what was
lost.

The per-message CPU cost matters (the ensemble is CPU-bound), so both
directions work in batches. Receiving is an ``asyncio.Protocol`` that keeps
one buffer per link and decodes every complete frame a read delivers; with
``on_batch`` those messages reach the caller in one call (in order), else
``on_message`` is called once per message. Frames before a bad one in the
same read are delivered before the link is closed. An exception raised by the
handler is logged and the link carries on. ``send_many`` writes all the
frames for one peer with a single socket write; ``send`` is the one-message
case.

Sending never blocks the event loop and never queues without bound: while a
link is down, or while its socket buffer (plus what ``send_many`` already
queued ahead of a message in the same call) holds more than
``max_buffer_bytes``, messages to that peer are dropped. Raft is built for
lossy links (heartbeats and appends are retried; a lost vote costs one
election timeout), so dropping is safe, and it keeps a dead peer from eating
the leader's memory.

When an outgoing link that was up goes down (the peer closed it: it died,
restarted or refused us), ``on_link_lost(peer_id)`` is called: a hint that
lets a follower stop waiting a whole election timeout for a dead leader.

Reconnection backs off exponentially from ``backoff_min_s`` to
``backoff_max_s`` so a down peer costs a connect attempt a second at most.
A peer that connects to us is likely back (a restarted member dials every
peer as it starts), so a new inbound connection cuts short the backoff of
every link that is down: they redial at once instead of up to a second later
(a restarted follower hears from its leader that much sooner). A link is
woken at most once per ``backoff_max_s``, so however often peers connect, a
down link still costs at most two connect attempts a second.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from node.replica import PeerDecodeError, PeerMsg, decode_peer, encode_peer

log = logging.getLogger("squall.node.peer")

_LEN = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 << 20  # a snapshot travels in one frame
STABLE_LINK_S = 1.0  # a link that lived this long resets the reconnect backoff
FRAME_BODY_TIMEOUT_S = 10.0  # plus 1 s per MB: how long a started frame may take to arrive


@dataclass(frozen=True)
class PeerAddress:
    id: int
    host: str
    client_port: int
    peer_port: int
    election_port: int = 0  # shown in /zookeeper/config only (ZooKeeper's form); 0: none given
    role: str = "participant"  # or "observer" (a Raft learner)


class _Link:
    """The outgoing side to one peer: a connection task and its current writer."""

    def __init__(self, addr: PeerAddress) -> None:
        self.addr = addr
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.dropped = 0
        self.sent = 0
        self.connects = 0
        self.wake = asyncio.Event()  # set: stop backing off and redial now (see the module docstring)
        self.woken_at = float("-inf")  # the loop time of the last wake


class PeerTransport:
    """Sends PeerMsgs to peers by id; hands received ones to ``on_batch`` or ``on_message``."""

    def __init__(
        self,
        my_id: int,
        peers: dict[int, PeerAddress],
        on_message: Callable[[PeerMsg], None] | None,
        *,
        listen_host: str = "127.0.0.1",
        max_frame_bytes: int = DEFAULT_MAX_FRAME,
        max_buffer_bytes: int = 8 << 20,
        backoff_min_s: float = 0.02,
        backoff_max_s: float = 1.0,
        connect_timeout_s: float = 1.0,
        on_batch: Callable[[list[PeerMsg]], None] | None = None,
        on_link_lost: Callable[[int], None] | None = None,
    ) -> None:
        if my_id not in peers:
            raise ValueError(f"my id {my_id} is not among the peers {sorted(peers)}")
        if on_message is None and on_batch is None:
            raise ValueError("a peer transport needs on_message or on_batch to hand received messages to")
        self.my_id = my_id
        self.peers = peers
        self.on_message = on_message
        self.on_batch = on_batch
        self.on_link_lost = on_link_lost
        self.listen_host = listen_host
        self.max_frame_bytes = max_frame_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.links = {pid: _Link(a) for pid, a in peers.items() if pid != my_id}
        self._me = peers[my_id]
        self._server: asyncio.AbstractServer | None = None
        self._inbound: set[_Inbound] = set()
        self._closed = False
        self.received = 0
        self.bad_frames = 0

    async def start(self) -> None:
        me = self._me
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Inbound(self), self.listen_host, me.peer_port, reuse_address=True
        )
        for link in self.links.values():
            link.task = asyncio.create_task(self._keep_connected(link), name=f"peer-out-{link.addr.id}")

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self.links.values() if link.task is not None]
        for t in tasks:
            t.cancel()
        for link in self.links.values():
            if link.writer is not None:
                link.writer.close()
                link.writer = None
        inbound = list(self._inbound)
        for conn in inbound:
            conn.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if inbound:
            await asyncio.gather(*(conn.lost for conn in inbound), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- sending

    def send(self, m: PeerMsg) -> bool:
        """Queue ``m`` on its link's socket; False (dropped) when the link is down or congested."""
        link = self.links.get(m.to)
        if link is None:
            log.warning("dropping a message to unknown peer %d (known: %s)", m.to, sorted(self.links))
            return False
        w = link.writer
        if w is None or w.is_closing() or w.transport.get_write_buffer_size() > self.max_buffer_bytes:
            link.dropped += 1
            return False
        payload = encode_peer(m)
        w.write(_LEN.pack(len(payload)) + payload)
        link.sent += 1
        return True

    def send_many(self, msgs: Iterable[PeerMsg]) -> int:
        """Queue ``msgs`` with one socket write per peer; returns how many were queued.

        The drop rules are ``send``'s, applied message by message in order: a
        message is dropped when its link is down, or when the link's socket
        buffer plus what this call already queued ahead of it on that link
        exceeds ``max_buffer_bytes``. Order per peer is kept.
        """
        # peer id -> [link, writer, frames, bytes queued so far]; writer None: link down
        out: dict[int, list] = {}
        limit = self.max_buffer_bytes
        pack = _LEN.pack
        for m in msgs:
            to = m.to
            g = out.get(to)
            if g is None:
                link = self.links.get(to)
                if link is None:
                    log.warning("dropping a message to unknown peer %d (known: %s)", to, sorted(self.links))
                    continue
                w = link.writer
                if w is None or w.is_closing():
                    g = out[to] = [link, None, None, 0]
                else:
                    g = out[to] = [link, w, [], w.transport.get_write_buffer_size()]
            if g[1] is None or g[3] > limit:
                g[0].dropped += 1
                continue
            payload = encode_peer(m)
            n = len(payload)
            frames = g[2]
            frames.append(pack(n))
            frames.append(payload)
            g[3] += 4 + n
        queued = 0
        for link, w, frames, _ in out.values():
            if frames:
                w.write(b"".join(frames))
                k = len(frames) >> 1
                link.sent += k
                queued += k
        return queued

    def connected(self) -> list[int]:
        return sorted(pid for pid, link in self.links.items() if link.writer is not None)

    def set_peers(self, peers: dict[int, PeerAddress]) -> None:
        """Follow a membership change: links to new members start, links to departed ones close.

        A member whose address changed gets a new link. Our own entry only
        updates the table (the listening socket stays where it is)."""
        for pid in [p for p in self.links if p not in peers or peers[p] != self.links[p].addr]:
            link = self.links.pop(pid)
            if link.task is not None:
                link.task.cancel()
            if link.writer is not None:
                link.writer.close()
                link.writer = None
        self.peers = dict(peers)
        if self.my_id not in self.peers and self._me is not None:
            self.peers[self.my_id] = self._me
        for pid, addr in peers.items():
            if pid == self.my_id or pid in self.links:
                continue
            link = self.links[pid] = _Link(addr)
            if self._server is not None and not self._closed:
                link.task = asyncio.create_task(self._keep_connected(link), name=f"peer-out-{pid}")

    async def _keep_connected(self, link: _Link) -> None:
        backoff = self.backoff_min_s
        a = link.addr
        while not self._closed:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(a.host, a.peer_port), self.connect_timeout_s
                )
            except (TimeoutError, OSError):
                await self._back_off(link, backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            up_at = asyncio.get_running_loop().time()
            link.connects += 1
            link.writer = writer
            log.info("peer link to %d (%s:%d) up", a.id, a.host, a.peer_port)
            try:
                # We never expect data on an outgoing link: EOF means the peer closed it.
                while await reader.read(65536):
                    pass
            except OSError:
                pass
            finally:
                link.writer = None
                writer.close()
            if asyncio.get_running_loop().time() - up_at >= STABLE_LINK_S:
                backoff = self.backoff_min_s
            else:
                # Accepted, then closed at once (a proxy refusing the link, a peer
                # that rejects us): keep backing off instead of spinning.
                backoff = min(backoff * 2, self.backoff_max_s)
            if not self._closed:
                log.info("peer link to %d lost; reconnecting", a.id)
                if self.on_link_lost is not None:
                    try:
                        self.on_link_lost(a.id)
                    except Exception:  # noqa: BLE001 - a hint only; the link must keep reconnecting
                        log.exception("handling the loss of the link to peer %d failed", a.id)
                await self._back_off(link, backoff)

    @staticmethod
    async def _back_off(link: _Link, seconds: float) -> None:
        """Sleep ``seconds`` before the next connect attempt, or less if woken (``_wake_down_links``)."""
        try:
            await asyncio.wait_for(link.wake.wait(), seconds)
        except TimeoutError:
            pass
        link.wake.clear()

    def _wake_down_links(self) -> None:
        """A peer connected to us: every link that is down redials now instead of after its backoff
        (each at most once per ``backoff_max_s``)."""
        now = asyncio.get_running_loop().time()
        for link in self.links.values():
            if link.writer is None and now - link.woken_at >= self.backoff_max_s:
                link.woken_at = now
                link.wake.set()


class _Inbound(asyncio.Protocol):
    """One link a peer opened to us: buffers bytes, decodes whole frames, hands them on.

    ``_buf`` holds only an unfinished frame (or the start of its length). While
    a frame's length has arrived but its body has not, one timer runs
    (``_timer``, for the frame at stream offset ``_timer_at``); it is cancelled
    when that frame completes and closes the link if it fires first.
    """

    def __init__(self, owner: PeerTransport) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.who: object = None
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._consumed = 0  # stream bytes before _buf[0]
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = -1
        self._dead = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.who = transport.get_extra_info("peername")
        if self.owner._closed:
            self._dead = True
            transport.close()
            return
        self.owner._inbound.add(self)
        self.owner._wake_down_links()

    def connection_lost(self, exc: Exception | None) -> None:
        self._dead = True
        self._cancel_timer()
        self._buf = bytearray()
        self.owner._inbound.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._dead:
            return
        owner = self.owner
        buf = self._buf
        src: bytes | memoryview
        if buf:
            buf += data
            src = memoryview(buf)
        else:
            src = data  # the usual case: no unfinished frame, decode straight from the read
        end = len(src)
        pos = 0
        limit = owner.max_frame_bytes
        me = owner.my_id
        unpack = _LEN.unpack_from
        msgs: list[PeerMsg] = []
        bad: tuple | None = None  # (log format, args) of the frame that closes the link
        n = 0
        try:
            while end - pos >= 4:
                (n,) = unpack(src, pos)
                if n == 0 or n > limit:
                    bad = ("closing peer link from %s: frame length %d is outside 1..%d", (self.who, n, limit))
                    break
                stop = pos + 4 + n
                if stop > end:
                    break  # body still on its way
                try:
                    m = decode_peer(bytes(src[pos + 4 : stop]))
                except PeerDecodeError as exc:
                    bad = ("closing peer link from %s: malformed frame: %s", (self.who, exc))
                    break
                if m.to != me:
                    bad = ("closing peer link from %s: message addressed to %d, I am %d", (self.who, m.to, me))
                    break
                msgs.append(m)
                pos = stop
        finally:
            if src is not data:
                src.release()  # type: ignore[union-attr]
        if bad is None:
            # Keep only the unfinished frame; time it from when its length arrived.
            if buf:
                del buf[:pos]
            elif pos < end:
                self._buf = bytearray(data[pos:] if pos else data)
            self._consumed += pos
            if end - pos >= 4:
                if self._timer_at != self._consumed:
                    self._cancel_timer()
                    self._timer_at = self._consumed
                    self._timer = asyncio.get_running_loop().call_later(
                        FRAME_BODY_TIMEOUT_S + n / 1e6, self._frame_timed_out, n
                    )
            elif self._timer is not None:
                self._cancel_timer()
        if msgs:
            owner.received += len(msgs)
            self._deliver(msgs)
        if bad is not None:
            owner.bad_frames += 1
            log.warning(bad[0], *bad[1])
            self.close()

    def eof_received(self) -> bool | None:
        return None  # the peer is done sending: close our side too

    # -- the rest

    def _deliver(self, msgs: list[PeerMsg]) -> None:
        owner = self.owner
        if owner.on_batch is not None:
            try:
                owner.on_batch(msgs)
            except Exception:  # a bug handling messages must not kill the link silently
                log.exception("handling %d messages from peer %d failed", len(msgs), msgs[0].frm)
            return
        on_message = owner.on_message
        for m in msgs:
            if owner._closed:
                return  # the handler shut the transport down
            try:
                on_message(m)  # type: ignore[misc]
            except Exception:  # a bug handling one message must not kill the link silently
                log.exception("handling a message from peer %d failed", m.frm)

    def _frame_timed_out(self, n: int) -> None:
        self._timer = None
        if self._dead:
            return
        self.owner.bad_frames += 1
        log.warning("closing peer link from %s: a %d-byte frame did not arrive in time", self.who, n)
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = -1

    def close(self) -> None:
        self._dead = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()


PEER_FORM = "ID=HOST:CLIENT_PORT:PEER_PORT[:ELECTION_PORT][:participant|observer]"


def parse_peers(text: str, *, any_size: bool = False) -> dict[int, PeerAddress]:
    """``1=host:client_port:peer_port,2=...`` -> {id: PeerAddress}; errors say what is allowed.

    An optional election port (shown in /zookeeper/config, as ZooKeeper's
    form has one) and role may follow. A founding ensemble has 1, 3 or 5
    participants (an even one tolerates no more failures than the odd one
    below it); ``any_size`` lifts that for a member joining an existing
    ensemble, whose list names the current members and itself."""
    out: dict[int, PeerAddress] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        sid, sep, rest = item.partition("=")
        parts = rest.split(":")
        role = "participant"
        if len(parts) in (4, 5) and parts[-1] in ("participant", "observer"):
            role = parts.pop()
        if not sep or not sid.strip().isdigit() or len(parts) not in (3, 4) or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"peer {item!r} is not {PEER_FORM} (e.g. 1=127.0.0.1:2181:2888)")
        pid = int(sid)
        if not 1 <= pid <= 254:
            raise ValueError(f"peer id {pid} is out of range; allowed: 1..254")
        if pid in out:
            raise ValueError(f"peer id {pid} appears twice in the peer list")
        ports = [int(p) for p in parts[1:]]
        for port in ports:
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} of peer {pid} is out of range; allowed: 0..65535")
        if len(ports) == 3 and ports[2] == ports[1]:
            raise ValueError(f"peer {pid}: the election port must differ from the peer port (or be left out)")
        out[pid] = PeerAddress(pid, parts[0], ports[0], ports[1], ports[2] if len(ports) == 3 else 0, role)
    voters = sum(1 for p in out.values() if p.role == "participant")
    if not any_size and voters not in (1, 3, 5):
        raise ValueError(
            f"an ensemble has 1, 3 or 5 members (participants); the peer list names {voters} "
            "(a member joining a running ensemble may list any number: --join)"
        )
    if not out:
        raise ValueError(f"the peer list is empty; expected {PEER_FORM},...")
    return out


__all__ = ["PeerAddress", "PeerTransport", "parse_peers"]
