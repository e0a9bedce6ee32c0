"""A TCP proxy mesh the harness controls, so partitions need no root.

Every directed peer link ``src -> dst`` gets its own listener(s) on
127.0.0.1; node ``src``'s config names those listeners as ``dst``'s peer
addresses, so every byte ``src`` sends on a connection it opened to ``dst``
passes through a proxy dedicated to that link. ZooKeeper opens peer
connections in both directions (a follower dials the leader's quorum port;
election connections are dialled by both sides and the lower sid's is
dropped), so each node dials every other node through its own link proxies.

``drop(src, dst)`` blackholes the link: its open connections are closed (both
ends see a reset/EOF, as a partition is eventually noticed) and new
connections are accepted and closed at once, so ``src`` cannot reach ``dst``.
TCP carries replies on the same connection, so cutting a link also cuts the
replies on connections ``src`` opened; connections ``dst`` opens to ``src`` go
through the link ``dst -> src`` and are cut only by ``drop(dst, src)``. The
nemesis's partition shapes are symmetric, so they always drop both.

Packet faults (``shape(src, dst, ...)``) degrade the bytes ``src`` sends to
``dst``, on every connection between them whichever side dialled: a delay
with jitter (each chunk is held until its delivery time; TCP order is kept,
so a chunk never overtakes the one before it), loss and a bandwidth limit.
The proxy sits above TCP, so it cannot drop bytes without corrupting the
stream: a "lost" chunk is delivered after a retransmission timeout
(``LOSS_RTO_MS``), which is what TCP makes of a lost segment, as seen by
the application. The bandwidth limit serialises the chunks of that
direction of the link (all its connections together) at ``rate_kbps``.
``set_latency(ms)`` adds a base delay to every link for the whole run
(``--latency``); ``unshape`` clears the packet faults but keeps it.

A link may also be a Unix socket (``add_unix``): the proxy listens at a path
and forwards to another. A database whose members must all name a peer by
the same address (etcd derives member ids from peer URLs) gets one per link
that way: each member dials the same *relative* socket name, resolved in its
own working directory, where the link's proxy listens (``harness/dbs/etcd.py``).
Paths longer than a socket address allows are reached through the directory's
``/proc/self/fd`` entry.

The proxies run on one asyncio loop in a daemon thread; the public methods are
thread-safe and synchronous.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
from dataclasses import dataclass, field

from harness import ports

Link = tuple[str, str]
_CHUNK = 65536
UPSTREAM_RETRY_S = 1.5
LOSS_RTO_MS = 200.0  # Linux's minimum TCP retransmission timeout
_QUEUE_CHUNKS = 64


@dataclass(frozen=True)
class Shape:
    """A packet fault on the bytes of one direction of one link."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    rate_kbps: float | None = None

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"delay and jitter must be >= 0 ms, got {self.delay_ms}, {self.jitter_ms}")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], got {self.loss}")
        if self.rate_kbps is not None and self.rate_kbps <= 0:
            raise ValueError(f"rate_kbps must be > 0 (or None for no limit), got {self.rate_kbps}")


@dataclass
class _Pace:
    """Delivery bookkeeping of one direction of one connection."""

    last_at: float = 0.0  # delivery time of the previous chunk (keeps order)


@dataclass
class _Listener:
    link: Link
    kind: str
    target: tuple[str, int] | str  # (host, port), or a Unix socket's path
    server: asyncio.AbstractServer | None = None
    port: int = 0
    conns: set[asyncio.BaseTransport] = field(default_factory=set)
    path: str = ""  # a Unix listener's socket path ("" for TCP)


UNIX_PATH_MAX = 100  # sun_path holds 108 bytes; longer paths go through /proc/self/fd


class ProxyMesh:
    """Listeners for directed links; ``add`` them, then ``drop``/``heal``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="proxy-mesh", daemon=True)
        self._thread.start()
        self._listeners: dict[tuple[Link, str], _Listener] = {}
        self._dropped: set[Link] = set()
        self._shapes: dict[Link, Shape] = {}
        self._latency_ms = 0.0
        self._rng = random.Random(0)  # jitter and loss; only the loop thread draws
        self._wire_free_at: dict[Link, float] = {}  # bandwidth limits; loop thread only
        self._lock = threading.Lock()
        self._closed = False
        self._dir_fds: dict[str, int] = {}  # directories of long Unix socket paths

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro, timeout_s: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    # ---------------------------------------------------------------- public
    def add(self, src: str, dst: str, kind: str, target_port: int, listen_port: int = 0) -> int:
        """Listen for link ``src -> dst`` (``kind`` e.g. "peer"/"election"),
        forwarding to 127.0.0.1:target_port; returns the listening port."""
        if self._closed:
            raise RuntimeError("proxy mesh is closed")
        key = ((src, dst), kind)
        if key in self._listeners:
            raise ValueError(f"a proxy for {src}->{dst} ({kind}) exists already")
        lst = _Listener((src, dst), kind, (self.host, target_port))
        self._call(self._start_listener(lst, listen_port))
        self._listeners[key] = lst
        return lst.port

    def add_unix(self, src: str, dst: str, kind: str, target_path: str, listen_path: str) -> str:
        """Listen for link ``src -> dst`` on the Unix socket ``listen_path``,
        forwarding to the Unix socket ``target_path``; returns ``listen_path``."""
        if self._closed:
            raise RuntimeError("proxy mesh is closed")
        key = ((src, dst), kind)
        if key in self._listeners:
            raise ValueError(f"a proxy for {src}->{dst} ({kind}) exists already")
        lst = _Listener((src, dst), kind, self._reachable(target_path), path=str(listen_path))
        self._call(self._start_listener(lst, 0))
        self._listeners[key] = lst
        return str(listen_path)

    def _reachable(self, path: str) -> str:
        """``path``, or the same file through its directory's /proc/self/fd
        entry when it is too long for a socket address."""
        path = str(path)
        if len(path.encode()) <= UNIX_PATH_MAX:
            return path
        directory, name = os.path.split(path)
        with self._lock:
            fd = self._dir_fds.get(directory)
            if fd is None:
                fd = self._dir_fds[directory] = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{fd}/{name}"

    def port(self, src: str, dst: str, kind: str) -> int:
        return self._listeners[((src, dst), kind)].port

    def ports(self) -> list[int]:
        """Every listening TCP port (for leak checks)."""
        return [lst.port for lst in self._listeners.values() if not lst.path]

    def socket_paths(self) -> list[str]:
        """Every listening Unix socket path (for leak checks)."""
        return [lst.path for lst in self._listeners.values() if lst.path]

    def drop(self, src: str, dst: str) -> None:
        """Blackhole the link src -> dst: close its connections, refuse new ones."""
        with self._lock:
            self._dropped.add((src, dst))
        self._call(self._close_link_conns((src, dst)))

    def heal(self) -> None:
        """Forward every link again (new connections go through)."""
        with self._lock:
            self._dropped.clear()

    def shape(
        self,
        src: str,
        dst: str,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        rate_kbps: float | None = None,
    ) -> None:
        """Degrade the bytes src sends to dst (replaces this link's shape)."""
        sh = Shape(float(delay_ms), float(jitter_ms), float(loss), None if rate_kbps is None else float(rate_kbps))
        with self._lock:
            self._shapes[(src, dst)] = sh

    def unshape(self) -> None:
        """Clear every packet fault; the base latency stays."""
        with self._lock:
            self._shapes.clear()

    def shapes(self) -> dict[Link, Shape]:
        with self._lock:
            return dict(self._shapes)

    def set_latency(self, ms: float) -> None:
        """A base delay on every link, both directions (``--latency``)."""
        if ms < 0:
            raise ValueError(f"latency must be >= 0 ms, got {ms}")
        with self._lock:
            self._latency_ms = float(ms)

    @property
    def latency_ms(self) -> float:
        return self._latency_ms

    def dropped(self) -> set[Link]:
        with self._lock:
            return set(self._dropped)

    def connection_count(self, src: str, dst: str) -> int:
        return sum(len(lis.conns) for (link, _), lis in self._listeners.items() if link == (src, dst))

    def close(self) -> None:
        """Close every listener and connection and stop the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._loop.is_running():
                self._call(self._shutdown(), timeout_s=10.0)
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
            if not self._thread.is_alive():
                self._loop.close()
            for lst in self._listeners.values():
                if lst.path:
                    try:
                        os.unlink(lst.path)
                    except OSError:
                        pass
            for fd in self._dir_fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._dir_fds.clear()

    # ----------------------------------------------------------- loop side
    async def _start_listener(self, lst: _Listener, listen_port: int) -> None:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._serve(lst, reader, writer)
            except asyncio.CancelledError:
                # Shutdown cancels handlers; asyncio's stream callback would
                # report a cancelled handler as an error, so end quietly.
                _abort(writer.transport)

        if lst.path:
            lst.server = await asyncio.start_unix_server(on_client, path=self._reachable(lst.path))
            return
        lst.server = await asyncio.start_server(on_client, self.host, listen_port, reuse_address=True)
        lst.port = lst.server.sockets[0].getsockname()[1]

    def _is_dropped(self, link: Link) -> bool:
        with self._lock:
            return link in self._dropped

    async def _serve(self, lst: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._is_dropped(lst.link):
            _abort(writer.transport)
            return
        upstream = await self._connect_upstream(lst)
        if upstream is None or self._is_dropped(lst.link):
            if upstream is not None:
                _abort(upstream[1].transport)
            _abort(writer.transport)  # dst is down: the dialler sees a reset
            return
        up_reader, up_writer = upstream
        transports = (writer.transport, up_writer.transport)
        lst.conns.update(transports)
        try:
            src, dst = lst.link
            await asyncio.gather(
                self._pump(lst.link, (src, dst), reader, up_writer), self._pump(lst.link, (dst, src), up_reader, writer)
            )
        finally:
            for t in transports:
                lst.conns.discard(t)
                _abort(t)

    async def _connect_upstream(self, lst: _Listener):
        """Dial dst, retrying a refused connect for a short while.

        The dialler's connect already succeeded (the proxy accepted it), so a
        refusal upstream can only be reported as a reset, which some peers
        treat harder than a refused connect: a ZooKeeper follower dialling a
        leader that has not bound its quorum port yet would give up and
        re-run the election. Retrying for ~1.5 s covers that window; a dead
        node still costs the dialler only that long."""
        delay, deadline = 0.02, self._loop.time() + UPSTREAM_RETRY_S
        while True:
            try:
                if isinstance(lst.target, str):
                    return await asyncio.wait_for(asyncio.open_unix_connection(lst.target), timeout=2.0)
                return await asyncio.wait_for(asyncio.open_connection(*lst.target), timeout=2.0)
            except (TimeoutError, OSError):
                if self._loop.time() + delay > deadline or self._is_dropped(lst.link):
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _delivery_time(self, direction: Link, size: int, pace: _Pace, now: float) -> float:
        """When a chunk read now may be written on, under the current faults."""
        with self._lock:
            sh = self._shapes.get(direction)
            base = self._latency_ms
        if sh is None and not base:
            return max(now, pace.last_at)
        delay = base
        if sh is not None:
            delay += sh.delay_ms
            if sh.jitter_ms:
                delay += self._rng.uniform(-sh.jitter_ms, sh.jitter_ms)
            if sh.loss and self._rng.random() < sh.loss:
                delay += LOSS_RTO_MS
        at = now + max(0.0, delay) / 1000.0
        if sh is not None and sh.rate_kbps:
            # one wire per direction of a link, shared by all its connections
            free_at = max(self._wire_free_at.get(direction, 0.0), now) + size * 8 / (sh.rate_kbps * 1000.0)
            self._wire_free_at[direction] = free_at
            at = max(at, free_at)
        return max(at, pace.last_at)

    async def _pump(
        self, link: Link, direction: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy reader -> writer, each chunk at its delivery time (in order)."""
        queue: asyncio.Queue = asyncio.Queue(_QUEUE_CHUNKS)
        pace = _Pace()

        broken = False
        pending = 0  # chunks queued or being written by the sender

        async def deliver() -> None:
            # On a write error it keeps taking chunks (and drops them), so
            # the reader below never blocks on a full queue; it then stops.
            nonlocal broken, pending
            while (item := await queue.get()) is not None:
                try:
                    if broken:
                        continue
                    at, data = item
                    wait = at - self._loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if self._is_dropped(link):
                        broken = True
                        continue
                    writer.write(data)
                    await writer.drain()
                except (OSError, ConnectionError):
                    broken = True
                finally:
                    pending -= 1

        sender = asyncio.ensure_future(deliver())
        try:
            while not broken:
                data = await reader.read(_CHUNK)
                if not data or self._is_dropped(link):
                    break
                now = self._loop.time()
                pace.last_at = self._delivery_time(direction, len(data), pace, now)
                if pending == 0 and pace.last_at <= now:
                    # Nothing held back and no fault on this chunk: write it
                    # here, as a plain proxy would (no extra task hop).
                    writer.write(data)
                    await writer.drain()
                    continue
                pending += 1
                await queue.put((pace.last_at, data))
            await queue.put(None)
            await sender
        except (OSError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            if not sender.done():
                sender.cancel()
            _abort(writer.transport)

    async def _close_link_conns(self, link: Link) -> None:
        for (lk, _), lst in self._listeners.items():
            if lk == link:
                for t in list(lst.conns):
                    _abort(t)
                lst.conns.clear()

    async def _shutdown(self) -> None:
        for lst in self._listeners.values():
            if lst.server is not None:
                lst.server.close()
            for t in list(lst.conns):
                _abort(t)
            lst.conns.clear()
        # Connection handlers still pending (e.g. retrying a dead upstream)
        # are cancelled and awaited, so the loop closes with no task left.
        tasks = [task for task in asyncio.all_tasks(self._loop) if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for lst in self._listeners.values():
            if lst.server is not None:
                try:
                    await asyncio.wait_for(lst.server.wait_closed(), timeout=2.0)
                except (TimeoutError, Exception):  # noqa: BLE001
                    pass


def _abort(transport: asyncio.BaseTransport) -> None:
    """Close a connection with a RST, so the peer notices at once."""
    try:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        transport.abort()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free on host a moment ago
    (``harness.ports``: from ``$SQUALL_PORT_RANGE`` when it is set); another
    process may still take one before we bind it, a race the caller
    tolerates by retrying setup."""
    return ports.free_ports(count, host)
