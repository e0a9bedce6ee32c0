"""Peer transport of an ensemble member: asyncio TCP, framed versioned messages.

Each member listens on its peer port and keeps **one outgoing connection per
peer**, used only to send; what a peer sends us arrives on the connection it
opened to us. So every link has one writer and one reader, and a member that
restarts simply reconnects.

Frame: ``u32 length | payload`` where the payload is ``node.replica.encode_peer``
(a versioned header: version, kind, from, to; then a Raft message's
``to_bytes`` or a replica-level Forward/Touch). A frame longer than
``max_frame_bytes`` or a payload that does not decode closes *that link* with
a log line; the sender reconnects and Raft retransmits what was lost.

Sending never blocks the event loop and never queues without bound: while a
link is down, or while its socket buffer holds more than ``max_buffer_bytes``,
messages to that peer are dropped. Raft is built for lossy links (heartbeats
and appends are retried; a lost vote costs one election timeout), so dropping
is safe, and it keeps a dead peer from eating the leader's memory.

Reconnection backs off exponentially from ``backoff_min_s`` to
``backoff_max_s`` so a down peer costs a connect attempt a second at most.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Callable

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


class _Link:
    """The outgoing side to one peer: a connection task and its current writer."""

    def __init__(self, addr: PeerAddress) -> None:
        self.addr = addr
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.dropped = 0
        self.sent = 0
        self.connects = 0


class PeerTransport:
    """Sends PeerMsgs to peers by id and hands received ones to ``on_message``."""

    def __init__(self, my_id: int, peers: dict[int, PeerAddress], on_message: Callable[[PeerMsg], None], *,
                 listen_host: str = "127.0.0.1", max_frame_bytes: int = DEFAULT_MAX_FRAME,
                 max_buffer_bytes: int = 8 << 20, backoff_min_s: float = 0.02, backoff_max_s: float = 1.0,
                 connect_timeout_s: float = 1.0) -> None:
        if my_id not in peers:
            raise ValueError(f"my id {my_id} is not among the peers {sorted(peers)}")
        self.my_id = my_id
        self.peers = peers
        self.on_message = on_message
        self.listen_host = listen_host
        self.max_frame_bytes = max_frame_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.links = {pid: _Link(a) for pid, a in peers.items() if pid != my_id}
        self._server: asyncio.AbstractServer | None = None
        self._inbound: set[asyncio.Task] = set()
        self._closed = False
        self.received = 0
        self.bad_frames = 0

    async def start(self) -> None:
        me = self.peers[self.my_id]
        self._server = await asyncio.start_server(self._serve_inbound, self.listen_host, me.peer_port,
                                                  reuse_address=True)
        for link in self.links.values():
            link.task = asyncio.create_task(self._keep_connected(link), name=f"peer-out-{link.addr.id}")

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self.links.values() if link.task is not None] + list(self._inbound)
        for t in tasks:
            t.cancel()
        for link in self.links.values():
            if link.writer is not None:
                link.writer.close()
                link.writer = None
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
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

    def connected(self) -> list[int]:
        return sorted(pid for pid, link in self.links.items() if link.writer is not None)

    async def _keep_connected(self, link: _Link) -> None:
        backoff = self.backoff_min_s
        a = link.addr
        while not self._closed:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(a.host, a.peer_port),
                                                        self.connect_timeout_s)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(backoff)
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
                await asyncio.sleep(backoff)

    # -- receiving

    async def _serve_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        who = writer.get_extra_info("peername")
        try:
            while True:
                head = await reader.readexactly(_LEN.size)
                (n,) = _LEN.unpack(head)
                if n == 0 or n > self.max_frame_bytes:
                    self.bad_frames += 1
                    log.warning("closing peer link from %s: frame length %d is outside 1..%d", who, n,
                                self.max_frame_bytes)
                    return
                try:
                    # A frame that starts must finish: a stream that lost bytes would otherwise
                    # leave us waiting for a body that never comes while the link looks alive.
                    payload = await asyncio.wait_for(reader.readexactly(n), FRAME_BODY_TIMEOUT_S + n / 1e6)
                except asyncio.TimeoutError:
                    self.bad_frames += 1
                    log.warning("closing peer link from %s: a %d-byte frame did not arrive in time", who, n)
                    return
                try:
                    m = decode_peer(payload)
                except PeerDecodeError as exc:
                    self.bad_frames += 1
                    log.warning("closing peer link from %s: malformed frame: %s", who, exc)
                    return
                if m.to != self.my_id:
                    self.bad_frames += 1
                    log.warning("closing peer link from %s: message addressed to %d, I am %d", who, m.to, self.my_id)
                    return
                self.received += 1
                try:
                    self.on_message(m)
                except Exception:  # a bug handling one message must not kill the link silently
                    log.exception("handling a message from peer %d failed", m.frm)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except asyncio.CancelledError:
            return  # shutting down; a cancelled handler would make asyncio log a traceback
        finally:
            writer.close()
            if task is not None:
                self._inbound.discard(task)


def parse_peers(text: str) -> dict[int, PeerAddress]:
    """``1=host:client_port:peer_port,2=...`` -> {id: PeerAddress}; errors say what is allowed."""
    out: dict[int, PeerAddress] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        sid, sep, rest = item.partition("=")
        parts = rest.split(":")
        if not sep or not sid.strip().isdigit() or len(parts) != 3 or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"peer {item!r} is not ID=HOST:CLIENT_PORT:PEER_PORT (e.g. 1=127.0.0.1:2181:2888)")
        pid = int(sid)
        if not 1 <= pid <= 254:
            raise ValueError(f"peer id {pid} is out of range; allowed: 1..254")
        if pid in out:
            raise ValueError(f"peer id {pid} appears twice in the peer list")
        cport, pport = int(parts[1]), int(parts[2])
        for port in (cport, pport):
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} of peer {pid} is out of range; allowed: 0..65535")
        out[pid] = PeerAddress(pid, parts[0], cport, pport)
    if len(out) not in (1, 3, 5):
        raise ValueError(f"an ensemble has 1, 3 or 5 members; the peer list names {len(out)}")
    return out


__all__ = ["PeerAddress", "PeerTransport", "parse_peers"]
