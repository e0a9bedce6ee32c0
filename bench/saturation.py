"""Saturation throughput: squall's 3-member ensemble against Apache ZooKeeper 3.8's, in the same run.

The kazoo probes (``bench/node.py``, ``bench/ensemble.py``) are limited by
the Python client as much as by the server. Here the load comes from
``--processes`` worker processes, each driving ``--connections`` sessions
with a lean client of its own: raw sockets, the ZooKeeper handshake and
getData/setData/create encoded with the node's codec (``node/wire``),
``--outstanding`` requests in flight per connection (closed loop: every
reply sends the next request), replies matched to requests in order (a
ZooKeeper server answers a session's requests in the order they were sent).
Reply bodies are not decoded; only the header (xid, err) is read.

Connections are spread round-robin over the members, as real clients would
be, so reads are served by every member and writes take the forwarding path
from the followers. Two mixes, each after a warm-up that is not counted:

- ``90/10``: 90 % getData, 10 % setData on ``--keys`` znodes (``--value-bytes`` each);
- ``writes``: setData only.

The figures: reads/s and writes/s completed inside the measured window,
and p50/p99 latency (send to reply, over every operation of the mix; in a
closed loop latency is about outstanding / throughput). The ratio column
is squall / ZooKeeper for throughput and ZooKeeper / squall for latency, so
>= 1.0 means squall does at least as well. Beside them, the CPU each process
used over the window in % of one core: the servers' (a whole process group
each) and the load generator's. A generator process near 100 % would be the
limit; one well below it, while a server sits near 100 %, is not.

One ensemble runs at a time (they would compete for the CPUs otherwise).
Every loop is bounded in time and count; every process (workers and
servers) is killed at the end, on error and on Ctrl-C or SIGTERM too.

Usage::

    python bench/saturation.py [--duration 10] [--processes 2] [--connections 4] [--outstanding 32]
                               [--value-bytes 100] [--keys 100] [--mix both|90/10|writes] [--members 3]
                               [--skip-zookeeper] [--skip-squall] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import queue
import random
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.ensemble import squall_ensemble, start_all, wait_leader, zookeeper_ensemble  # noqa: E402
from node.wire import protocol as P  # noqa: E402
from tests.node.servers import (  # noqa: E402
    ServerProcess,
    server_mode,
    squall_node,
    zookeeper_installed,
    zookeeper_standalone,
)

MIXES = {"90/10": 0.9, "writes": 0.0}  # name -> share of reads
OPEN_ACL = (P.AclRecord(31, "world", "anyone"),)
ROOT = "/saturation"
FRAME = struct.Struct(">ii")  # length prefix, xid
HEADER = struct.Struct(">iqi")  # ReplyHeader: xid, zxid, err
LENGTH = struct.Struct(">i")
P_NODE_EXISTS = -110  # node/errors.py's NODE_EXISTS
CONNECT_TIMEOUT_S = 10.0
SESSION_TIMEOUT_MS = 30_000
DRAIN_S = 5.0  # after the window: how long a worker waits for its last replies
MAX_OPS_PER_CONNECTION = 50_000_000  # a count bound on the send loop, far above any real run
READY_TIMEOUT_S = 60.0
LIMITS = {
    "duration": (0.5, 600.0),
    "processes": (1, 64),
    "connections": (1, 256),
    "outstanding": (1, 1024),
    "value_bytes": (0, 1_000_000),
    "keys": (1, 100_000),
}


# ---------------------------------------------------------------- the lean client


class ProtocolError(RuntimeError):
    """The server answered something this client did not ask for (or closed the connection)."""


def _frame(xid: int, body: bytes) -> bytes:
    """``body`` is an encoded request without its xid; prefix length and xid."""
    return FRAME.pack(len(body) + 4, xid) + body


def _body(op: int, record: object) -> bytes:
    """An encoded request without its 4-byte xid (patched in per send)."""
    return P.encode_request(P.Request(0, op, record))[4:]


class Connection:
    """One session on a blocking socket: handshake, then framed requests and in-order replies."""

    def __init__(self, address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        host, port = address.rsplit(":", 1)
        self.address = address
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.xid = 0
        self.pending: deque[tuple[int, int, float]] = deque()  # (xid, op, sent at), oldest first
        hello = P.ConnectRequest(0, 0, SESSION_TIMEOUT_MS, 0, b"\x00" * 16, False).encode()
        self.sock.sendall(LENGTH.pack(len(hello)) + hello)
        reply = self._read_frame_blocking()
        resp = P.ConnectResponse.decode(reply)
        if resp.session_id == 0 or resp.timeout_ms <= 0:
            raise ProtocolError(f"{address} refused the session (timeout {resp.timeout_ms} ms)")

    def _read_frame_blocking(self) -> bytes:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            frame = self._next_frame()
            if frame is not None:
                return frame
            self._fill()
        raise ProtocolError(f"{self.address}: no whole frame within {CONNECT_TIMEOUT_S}s")

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ProtocolError(f"{self.address} closed the connection ({len(self.pending)} requests outstanding)")
        self.buf += data

    def _next_frame(self) -> bytes | None:
        if len(self.buf) < 4:
            return None
        (n,) = LENGTH.unpack_from(self.buf, 0)
        if n < 0 or n > 1 << 24:
            raise ProtocolError(f"{self.address} sent a frame length of {n}")
        if len(self.buf) < 4 + n:
            return None
        frame = bytes(self.buf[4 : 4 + n])
        del self.buf[: 4 + n]
        return frame

    def frame(self, op: int, body: bytes, now: float) -> bytes:
        """Register one request as outstanding and return its bytes (the caller sends them)."""
        self.xid += 1
        self.pending.append((self.xid, op, now))
        return _frame(self.xid, body)

    def replies(self) -> list[tuple[int, int, float]]:
        """Read what has arrived (the socket is readable); return ``(op, err, sent at)`` in order."""
        self._fill()
        out = []
        buf = self.buf
        off = 0
        end = len(buf)
        while end - off >= 4:
            (n,) = LENGTH.unpack_from(buf, off)
            if n < 16 or end - off - 4 < n:
                if n < 16:
                    raise ProtocolError(f"{self.address} sent a {n}-byte reply (a ReplyHeader is 16)")
                break
            xid, _zxid, err = HEADER.unpack_from(buf, off + 4)
            off += 4 + n
            if xid < 0:  # a notification (-1) or a ping reply (-2): none was asked for, skip
                continue
            if not self.pending or self.pending[0][0] != xid:
                want = self.pending[0][0] if self.pending else None
                raise ProtocolError(f"{self.address} answered xid {xid}, expected {want}: replies out of order")
            _, op, sent = self.pending.popleft()
            out.append((op, err, sent))
        del buf[:off]
        return out

    def call(self, op: int, record: object) -> int:
        """One synchronous request; returns its err code."""
        self.sock.sendall(self.frame(op, _body(op, record), time.perf_counter()))
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            got = self.replies()
            if got:
                return got[0][1]
        raise ProtocolError(f"{self.address}: no reply to {P.OP_NAMES.get(op, op)} within {CONNECT_TIMEOUT_S}s")

    def close(self) -> None:
        try:
            self.sock.sendall(_frame(self.xid + 1, _body(P.CLOSE_SESSION, P.EMPTY)))
        except OSError:
            pass
        self.sock.close()


def prepare_keys(address: str, keys: int, value_bytes: int) -> None:
    """Create ``ROOT`` and its ``keys`` children (pipelined, 64 at a time); existing ones are fine."""
    conn = Connection(address)
    try:
        value = b"v" * value_bytes
        err = conn.call(P.CREATE, P.CreateRequest(ROOT, b"", OPEN_ACL, 0))
        if err not in (0, P_NODE_EXISTS):
            raise ProtocolError(f"create {ROOT} on {address} failed with error {err}")
        for start in range(0, keys, 64):
            now = time.perf_counter()
            batch = [
                conn.frame(P.CREATE, _body(P.CREATE, P.CreateRequest(f"{ROOT}/k{i}", value, OPEN_ACL, 0)), now)
                for i in range(start, min(keys, start + 64))
            ]
            conn.sock.sendall(b"".join(batch))
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while conn.pending:
                if time.monotonic() > deadline:
                    raise ProtocolError(f"creating keys on {address}: no reply within {CONNECT_TIMEOUT_S}s")
                for _, err, _ in conn.replies():
                    if err not in (0, P_NODE_EXISTS):
                        raise ProtocolError(f"create under {ROOT} on {address} failed with error {err}")
    finally:
        conn.close()


# ---------------------------------------------------------------- one worker process


@dataclass
class WorkerSpec:
    index: int
    addresses: list[str]  # this worker's connections, one address each
    outstanding: int
    value_bytes: int
    keys: int
    read_share: float
    warmup_s: float
    duration_s: float
    seed: int


@dataclass
class WorkerResult:
    index: int
    reads: int = 0
    writes: int = 0
    errors: int = 0
    latencies_ms: bytes = b""  # array('d') of the window's operations
    cpu_s: float = 0.0  # this process's CPU over the window
    window_s: float = 0.0
    failure: str = ""
    first_errors: list[str] = field(default_factory=list)


def worker_main(spec: WorkerSpec, ready: mp.Queue, start: mp.Event, results: mp.Queue) -> None:
    """A worker: connect, report ready, wait for ``start``, run warm-up + window, drain, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides; it terminates us on Ctrl-C
    res = WorkerResult(spec.index)
    conns: list[Connection] = []
    try:
        try:
            conns = [Connection(a) for a in spec.addresses]
        finally:
            ready.put(spec.index)
        if not start.wait(READY_TIMEOUT_S):
            raise RuntimeError(f"no start signal within {READY_TIMEOUT_S}s")
        _drive(spec, conns, res)
    except Exception as exc:  # reported to the coordinator, which fails the run
        res.failure = f"worker {spec.index}: {type(exc).__name__}: {exc}"
    finally:
        for c in conns:
            c.close()
        results.put(res)


def _drive(spec: WorkerSpec, conns: list[Connection], res: WorkerResult) -> None:
    rng = random.Random(spec.seed)
    value = b"v" * spec.value_bytes
    reads = [_body(P.GET_DATA, P.PathWatchRequest(f"{ROOT}/k{i}", False)) for i in range(spec.keys)]
    writes = [_body(P.SET_DATA, P.SetDataRequest(f"{ROOT}/k{i}", value, -1)) for i in range(spec.keys)]

    def next_request(c: Connection, now: float) -> bytes:
        if rng.random() < spec.read_share:
            return c.frame(P.GET_DATA, reads[rng.randrange(spec.keys)], now)
        return c.frame(P.SET_DATA, writes[rng.randrange(spec.keys)], now)

    sel = selectors.DefaultSelector()
    try:
        t0 = time.perf_counter()
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
            c.sock.sendall(b"".join(next_request(c, t0) for _ in range(spec.outstanding)))
        window_start = t0 + spec.warmup_s
        window_end = window_start + spec.duration_s
        hard_end = window_end + DRAIN_S
        sent = spec.outstanding * len(conns)
        cap = MAX_OPS_PER_CONNECTION * len(conns)
        lat = array("d")
        cpu_start = None
        reads_n = writes_n = errors = 0
        while True:
            now = time.perf_counter()
            if cpu_start is None and now >= window_start:
                cpu_start = time.process_time()
            if now >= hard_end:
                break
            if now >= window_end and not any(c.pending for c in conns):
                break
            for key, _ in sel.select(timeout=0.1):
                c = key.data
                got = c.replies()
                now = time.perf_counter()
                counted = window_start <= now < window_end
                out = []
                for op, err, sent_at in got:
                    if err != 0:
                        errors += 1
                        if len(res.first_errors) < 5:
                            res.first_errors.append(f"{P.OP_NAMES.get(op, op)} -> error {err}")
                    elif counted:
                        if op == P.GET_DATA:
                            reads_n += 1
                        else:
                            writes_n += 1
                        lat.append((now - sent_at) * 1000.0)
                    if now < window_end and sent < cap:
                        out.append(next_request(c, now))
                        sent += 1
                if out:
                    c.sock.sendall(b"".join(out))
        if cpu_start is None:
            raise RuntimeError("the window never started")
        res.cpu_s = time.process_time() - cpu_start  # includes the short drain: an upper bound
        res.window_s = spec.duration_s
        res.reads, res.writes, res.errors = reads_n, writes_n, errors
        res.latencies_ms = lat.tobytes()
        left = sum(len(c.pending) for c in conns)
        if left:
            raise RuntimeError(f"{left} requests still unanswered {DRAIN_S}s after the window")
    finally:
        sel.close()


# ---------------------------------------------------------------- CPU accounting (Linux /proc)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every live process of process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th field of the whole line
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


# ---------------------------------------------------------------- one measurement


@dataclass
class Figures:
    reads_s: float
    writes_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: list[float]  # % of one core, per member
    worker_cpu: list[float]  # % of one core, per worker process
    load: tuple[float, float, float]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def _stop_workers(procs: list[mp.Process]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


def run_mix(
    addresses: list[str], members: list[ServerProcess], args: argparse.Namespace, read_share: float, seed: int
) -> Figures:
    """Drive the servers at ``addresses`` with one mix; ``members`` are measured for CPU (may be empty)."""
    ctx = mp.get_context("spawn")
    ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    warmup = min(2.0, args.duration / 5)
    specs = []
    for w in range(args.processes):
        conns = [addresses[(w * args.connections + c) % len(addresses)] for c in range(args.connections)]
        specs.append(
            WorkerSpec(
                w,
                conns,
                args.outstanding,
                args.value_bytes,
                args.keys,
                read_share,
                warmup,
                args.duration,
                seed * 1000 + w,
            )
        )
    procs = [ctx.Process(target=worker_main, args=(s, ready, start, results), daemon=True) for s in specs]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=READY_TIMEOUT_S)
        load_before = os.getloadavg()
        start.set()
        began = time.perf_counter()
        time.sleep(warmup)
        cpu0 = [group_cpu_s(m.proc.pid) for m in members if m.proc is not None]
        time.sleep(args.duration)
        cpu1 = [group_cpu_s(m.proc.pid) for m in members if m.proc is not None]
        load_after = os.getloadavg()
        got: list[WorkerResult] = []
        deadline = began + warmup + args.duration + DRAIN_S + READY_TIMEOUT_S
        while len(got) < len(procs):
            try:
                got.append(results.get(timeout=max(0.1, deadline - time.perf_counter())))
            except queue.Empty:
                raise RuntimeError(f"{len(procs) - len(got)} worker(s) sent no result in time") from None
    finally:
        _stop_workers(procs)
    failures = [r.failure for r in got if r.failure]
    if failures:
        raise RuntimeError("; ".join(failures))
    lat: list[float] = []
    for r in got:
        a = array("d")
        a.frombytes(r.latencies_ms)
        lat.extend(a)
    lat.sort()
    errors = sum(r.errors for r in got)
    if errors:
        samples = [e for r in got for e in r.first_errors][:5]
        print(f"    {errors} requests failed, e.g. {', '.join(samples)}", file=sys.stderr)
    return Figures(
        reads_s=sum(r.reads for r in got) / args.duration,
        writes_s=sum(r.writes for r in got) / args.duration,
        p50_ms=percentile(lat, 0.50),
        p99_ms=percentile(lat, 0.99),
        errors=errors,
        server_cpu=[100.0 * (b - a) / args.duration for a, b in zip(cpu0, cpu1, strict=True)],
        worker_cpu=[100.0 * r.cpu_s / r.window_s for r in sorted(got, key=lambda r: r.index)],
        load=tuple(round(max(x, y), 2) for x, y in zip(load_before, load_after, strict=True)),  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- servers and the report


def members_for(kind: str, count: int, base: Path) -> list[ServerProcess]:
    if count == 3:
        return squall_ensemble(base) if kind == "squall" else zookeeper_ensemble(base)
    if kind == "squall":
        return [squall_node(base / "n1" / "data", log_path=base / "n1.out")]
    return [zookeeper_standalone(base / "zk1")]


def measure(kind: str, members: list[ServerProcess], args: argparse.Namespace) -> dict[str, Figures]:
    start_all(members)
    if len(members) > 1:
        leader = wait_leader(members)
        print(f"{kind}: leader {leader.address}", file=sys.stderr)
    else:  # ZooKeeper answers ruok before it serves sessions; srvr tells when it does
        deadline = time.monotonic() + READY_TIMEOUT_S
        while server_mode(members[0]) != "standalone":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} on {members[0].address} not serving within {READY_TIMEOUT_S}s")
            time.sleep(0.05)
    addresses = [m.address for m in members]
    return measure_addresses(kind, addresses, members, args)


def measure_addresses(
    kind: str, addresses: list[str], members: list[ServerProcess], args: argparse.Namespace
) -> dict[str, Figures]:
    prepare_keys(addresses[0], args.keys, args.value_bytes)
    out = {}
    for i, (mix, share) in enumerate(MIXES.items()):
        if args.mix not in ("both", mix):
            continue
        f = run_mix(addresses, members, args, share, seed=i + 1)
        out[mix] = f
        print(
            f"    {kind} {mix}: {f.reads_s:,.0f} reads/s, {f.writes_s:,.0f} writes/s, p50 {f.p50_ms:.2f} ms, "
            f"p99 {f.p99_ms:.2f} ms; CPU % of a core: servers {_pcts(f.server_cpu)}, "
            f"load generator {_pcts(f.worker_cpu)}; load average {f.load}",
            file=sys.stderr,
        )
    return out


def _pcts(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values) if values else "n/a"


ROWS = (
    ("90/10", "reads/s"),
    ("90/10", "writes/s"),
    ("90/10", "p50 ms"),
    ("90/10", "p99 ms"),
    ("writes", "writes/s"),
    ("writes", "p50 ms"),
    ("writes", "p99 ms"),
)


def _value(f: Figures, figure: str) -> float:
    return {"reads/s": f.reads_s, "writes/s": f.writes_s, "p50 ms": f.p50_ms, "p99 ms": f.p99_ms}[figure]


def table(results: dict[str, dict[str, Figures]], args: argparse.Namespace) -> str:
    names = list(results)
    both = "squall" in results and "zookeeper" in results
    rows = [
        f"saturation: {args.members}-member {'ensembles' if len(names) > 1 else 'ensemble'}, "
        f"{args.processes} processes x {args.connections} connections x {args.outstanding} outstanding, "
        f"{args.value_bytes}-byte values on {args.keys} keys, {args.duration:g} s per mix",
        f"{'mix':<8}{'figure':<10}" + "".join(f"{n:>12}" for n in names) + (f"{'ratio':>8}" if both else ""),
    ]
    for mix, fig in ROWS:
        if args.mix not in ("both", mix):
            continue
        row = f"{mix:<8}{fig:<10}"
        fmt = "{:>12.2f}" if fig.endswith("ms") else "{:>12,.0f}"
        row += "".join(fmt.format(_value(results[n][mix], fig)) for n in names)
        if both:
            s, z = _value(results["squall"][mix], fig), _value(results["zookeeper"][mix], fig)
            ratio = (z / s if s else float("inf")) if fig.endswith("ms") else (s / z if z else float("inf"))
            row += f"{ratio:>7.2f}x"
        rows.append(row)
    rows.append("CPU over the window, % of one core (servers per member / load generator per process):")
    for n in names:
        for mix, f in results[n].items():
            rows.append(
                f"  {n:<10}{mix:<7} servers {_pcts(f.server_cpu):<14} load generator {_pcts(f.worker_cpu):<12}"
                f" load average {' '.join(f'{x:.1f}' for x in f.load)}"
            )
    return "\n".join(rows)


def _bounded(parser: argparse.ArgumentParser, name: str, value: float) -> None:
    lo, hi = LIMITS[name]
    if not lo <= value <= hi:
        parser.error(f"--{name.replace('_', '-')} {value} is out of range; allowed: {lo}..{hi}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per mix (default 10)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--connections", type=int, default=4, help="connections per process (default 4)")
    parser.add_argument("--outstanding", type=int, default=32, help="requests in flight per connection (default 32)")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size in bytes (default 100)")
    parser.add_argument("--keys", type=int, default=100, help="znodes read and written (default 100)")
    parser.add_argument("--mix", choices=("both", *MIXES), default="both", help="which mix to run (default both)")
    parser.add_argument(
        "--members",
        type=int,
        choices=(1, 3),
        default=3,
        help="3: ensembles (default); 1: standalone servers (a quick check)",
    )
    parser.add_argument("--skip-zookeeper", action="store_true", help="do not run Apache ZooKeeper")
    parser.add_argument("--skip-squall", action="store_true", help="do not run squall")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the servers' data and logs go (default: a temporary directory, removed after)",
    )
    args = parser.parse_args(argv)
    for name in LIMITS:
        _bounded(parser, name, getattr(args, name))
    return args


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a kill by a harness cleans up like Ctrl-C
    # Explicitly, as `squall run` does: Python leaves SIGINT alone when it starts ignored (a job
    # started in the background by a script), and then Ctrl-C or a harness's SIGINT would do nothing.
    signal.signal(signal.SIGINT, _raise_interrupt)
    results: dict[str, dict[str, Figures]] = {}
    started: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="squall-sat-bench-") as tmp:
        base = args.work_dir or Path(tmp)
        try:
            kinds = [] if args.skip_squall else ["squall"]
            if args.skip_zookeeper:
                pass
            elif not zookeeper_installed():
                print("Debian's zookeeper package is not installed: no ZooKeeper comparison", file=sys.stderr)
            else:
                kinds.append("zookeeper")
            for kind in kinds:
                members = members_for(kind, args.members, base / kind)
                started.extend(members)
                try:
                    results[kind] = measure(kind, members, args)
                finally:
                    for m in members:
                        m.kill()
        except KeyboardInterrupt:
            print("interrupted: every process stopped", file=sys.stderr)
            return 130
        finally:
            for m in started:
                m.kill()
    if not results:
        print("nothing was measured", file=sys.stderr)
        return 3
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
