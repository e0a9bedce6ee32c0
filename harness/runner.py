"""The runner: the interpreter that turns a spec into a history.

Only this module owns threads and time (generators are pure, see
``harness.generator``), and it reads the time and waits only through its
clock (``harness.clock``): real time in a real run, simulated time in the
runner's tests. One worker thread per client process, each with its
own client (given every node, or pinned to one: ``_ClientSlot``); the
nemesis is its own thread and its own process ("nemesis") in the history. As in Jepsen, an op that comes back
``info`` (timeout, lost connection: it may or may not have happened) retires
its process: the thread continues as process ``p + concurrency`` with a fresh
client, so no process ever has two ops in flight.

Phases: setup (create the cluster, wait until ready, workload setup) ->
main (client ops under the rate and time limit, faults every interval) ->
heal (the nemesis's final ops, started while the main phase's last client
calls may still be in flight; the heal then waits for them) -> recovery
(wait until ready again) ->
final (the workload's final reads) -> converge (every node's copy of the
workload's znodes, read from each node alone: ``run_convergence_phase``) ->
history.jsonl written -> teardown -> check -> results.json, report.html,
junit.xml.

Cleanup is unconditional: the cluster is torn down in a ``finally``, also on
an exception, a failed setup or an interrupt (``RunControl.interrupt``, which
the CLI wires to SIGINT/SIGTERM).

``squall.log`` in the run directory is the harness's own log of the run (as
Jepsen's jepsen.log): setup steps, phases, every fault and its effect, notes,
teardown and the verdict, from every ``harness``/``nemesis``/``workloads``
logger while the run lasts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import queue
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers.history import INFO, INVOKE, NEMESIS, Op
from harness import generator as gen
from harness import store
from harness.clock import Clock, MonotonicClock
from harness.progress import Progress
from harness.spec import TestSpec, stream_rng

log = logging.getLogger(__name__)

# Exit codes (see harness/cli.py): 0 valid, 1 invalid, 2 unknown, 3 bad input.
EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
EXIT_SETUP_FAILED = 4  # the cluster or the workload could not be set up
EXIT_CRASHED = 5  # the harness itself failed during the run
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: torn down, what was recorded is kept

SETUP_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 60.0
FINAL_PHASE_LIMIT_S = 60.0
FINAL_ATTEMPTS = 5
CONVERGE_ROUNDS = 8  # snapshot rounds until the nodes agree (see run_convergence_phase)
CONVERGE_LIMIT_S = 45.0
AVAILABILITY_GRACE_S = 0.0  # recovery time after a fault not held to --min-availability
_POLL_S = 0.1  # how often the interpreter wakes to check for an interrupt


class _SetupFailed(Exception):
    """Internal: leave the run's try block after a reported setup failure."""


class RunInterrupted(KeyboardInterrupt):
    """Raised out of a blocking setup step when the run is interrupted."""


@dataclass
class RunControl:
    """Interrupt plumbing between signal handlers and the runner.

    ``interrupt()`` always sets ``stop``; while the runner sits in a blocking
    step it cannot poll (cluster creation, waiting for readiness) it also
    raises, so the ``finally`` that tears down runs at once.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    raise_on_interrupt: bool = False
    signal_name: str | None = None

    def interrupt(self, signal_name: str = "SIGINT") -> None:
        first = not self.stop.is_set()
        self.stop.set()
        self.signal_name = self.signal_name or signal_name
        if first and self.raise_on_interrupt:
            raise RunInterrupted(signal_name)


@dataclass
class RunOutcome:
    run_dir: Path
    valid: bool | str | None  # None: no verdict (error or interrupt)
    summary: str
    exit_code: int
    error: str | None = None
    interrupted: bool = False
    history_len: int = 0
    wall_s: float = 0.0
    written: list[Path] = field(default_factory=list)  # files analysis wrote (results, junit, report)


def verdict_exit_code(valid: Any) -> int:
    if valid is True:
        return EXIT_VALID
    if valid is False:
        return EXIT_INVALID
    return EXIT_UNKNOWN


class Recorder:
    """Appends ops with indices and times (ns since the run started)."""

    def __init__(self, clock_ns: Callable[[], int]) -> None:
        self._clock_ns = clock_ns
        self._t0 = clock_ns()
        self.ops: list[Op] = []
        self._last = 0
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        return self._clock_ns() - self._t0

    def now_s(self) -> float:
        return self.now_ns() / 1e9

    def record(
        self,
        type_: str,
        process: Any,
        f: str,
        value: Any,
        *,
        at_ns: int | None = None,
        node: str | None = None,
        error: Any = None,
        zxid: int | None = None,
        session: Any = None,
    ) -> Op:
        with self._lock:
            t = self.now_ns() if at_ns is None else at_ns
            t = max(t, self._last)  # keep times non-decreasing in index order
            self._last = t
            op = Op(len(self.ops), t, type_, process, f, value, node, error, zxid, session=session)
            self.ops.append(op)
            return op


@dataclass
class _Completion:
    thread: Any
    invocation: dict
    result: dict
    at_ns: int
    node: str | None


class _Worker(threading.Thread):
    """Runs ops for one thread; reports completions on the shared queue."""

    def __init__(
        self,
        thread_id: Any,
        execute: Callable[[dict], tuple[dict, str | None]],
        completions: queue.Queue[_Completion],
        recorder: Recorder,
        on_exit: Callable[[], None] = lambda: None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=f"squall-worker-{thread_id}", daemon=True)
        self.thread_id = thread_id
        self.inbox: queue.Queue[dict | None] = queue.Queue()
        self._execute = execute
        self._completions = completions
        self._recorder = recorder
        self._on_exit = on_exit
        self._clock = clock or MonotonicClock()

    def run(self) -> None:
        try:
            while True:
                op = self.inbox.get()
                if op is None:
                    return
                try:
                    try:
                        result, node = self._execute(op)
                    except Exception as exc:  # noqa: BLE001 - a crashed op is indeterminate, as in Jepsen
                        result, node = {"type": INFO, "error": f"{type(exc).__name__}: {exc}"}, None
                    self._completions.put(_Completion(self.thread_id, op, result, self._recorder.now_ns(), node))
                finally:
                    self._clock.call_ended()  # after the put: the completion is there to be taken
        finally:
            try:
                self._on_exit()
            except Exception:  # noqa: BLE001
                log.exception("closing worker %s", self.thread_id)


class _ClientSlot:
    """One client thread's connection: reopened whenever its process changes.

    ``clients="pinned"``: process p talks to node p mod n only. ``"roaming"``
    (the default): each process gets every node's address, in an order
    shuffled by its own seeded stream, and its client may move to another
    node when its connection drops, as real ZooKeeper clients are configured.
    The node an op ran on is the client's connected server after the reply
    (``result["server"]``, mapped back to the node's name)."""

    def __init__(
        self, workload: Any, cluster: Any, nodes: list[str], timeout_s: float, clients: str = "pinned", seed: int = 0
    ) -> None:
        self._workload = workload
        self._cluster = cluster
        self._nodes = nodes
        self._timeout_s = timeout_s
        self._clients = clients
        self._seed = seed
        self._client: Any = None
        self._process: Any = None
        self._node: str | None = None
        self._by_address = {cluster.client_address(n): n for n in nodes}

    def node_for(self, process: int) -> str:
        return self._nodes[process % len(self._nodes)]

    def hosts_for(self, process: int) -> str:
        if self._clients == "pinned":
            return self._cluster.client_address(self.node_for(process))
        order = list(self._nodes)
        random.Random(f"{self._seed}:client-hosts:{process}").shuffle(order)
        return ",".join(self._cluster.client_address(n) for n in order)

    def execute(self, op: dict) -> tuple[dict, str | None]:
        process = op["process"]
        if self._process != process:
            self.close()
            self._process = process
            self._node = self.node_for(process) if self._clients == "pinned" else None
            client = self._workload.client()
            try:
                client.open(self.hosts_for(process), self._node or "any", self._timeout_s)
            except Exception as exc:  # noqa: BLE001 - reported as the op's definite failure
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
                self._process = None
                where = self._node or "any node"
                return {"type": "fail", "error": f"no client: could not connect to {where}: {exc}"}, self._node
            self._client = client
        result = self._client.invoke({"f": op["f"], "value": op.get("value")})
        server = result.get("server") if isinstance(result, dict) else None
        return result, self._by_address.get(server, self._node)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing must never fail a run
                log.exception("closing a client")
            self._client = None


def _fault_label(op: dict, result: dict) -> str:
    value = result.get("value") if result.get("value") is not None else op.get("value")
    return f"{op['f']} {value}" if value is not None else op["f"]


class Interpreter:
    """Runs generators against worker threads, in the time of its clock (real
    time unless a test passes a ``harness.clock.VirtualClock``)."""

    def __init__(
        self,
        *,
        concurrency: int,
        client_execute: Callable[[int], Callable[[dict], tuple[dict, str | None]]],
        client_close: Callable[[int], None],
        nemesis_execute: Callable[[dict], tuple[dict, str | None]] | None,
        recorder: Recorder,
        progress: Progress,
        control: RunControl,
        rng: random.Random,
        drain_timeout_s: float,
        node_of: Callable[[Any], str | None] = lambda _p: None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or MonotonicClock()
        self.concurrency = concurrency
        self.node_of = node_of
        self.recorder = recorder
        self.progress = progress
        self.control = control
        self.rng = rng
        self.drain_timeout_s = drain_timeout_s
        self.completions: queue.Queue[_Completion] = queue.Queue()
        self._client_execute, self._client_close = client_execute, client_close
        self._next_thread = concurrency  # ids for threads that replace hung ones
        self.workers: dict[Any, Any] = {t: t for t in range(concurrency)}
        self.threads: set[Any] = set(range(concurrency))
        self._pool: dict[Any, _Worker] = {}
        for t in range(concurrency):
            self._pool[t] = _Worker(
                t, client_execute(t), self.completions, recorder, functools.partial(client_close, t), self.clock
            )
        if nemesis_execute is not None:
            self.workers[gen.NEMESIS_THREAD] = NEMESIS
            self.threads.add(gen.NEMESIS_THREAD)
            self._pool[gen.NEMESIS_THREAD] = _Worker(
                gen.NEMESIS_THREAD, nemesis_execute, self.completions, recorder, clock=self.clock
            )
        self.free: set[Any] = set(self.threads)
        self._abandoned: set[Any] = set()  # threads stuck in a hung call (daemon threads, never joined)
        self.in_flight: dict[Any, tuple[dict, Op]] = {}
        for w in self._pool.values():
            w.start()

    # -- completions -----------------------------------------------------
    def _absorb(self, c: _Completion) -> None:
        pending = self.in_flight.pop(c.thread, None)
        if pending is None:
            return  # this op was already closed as hung at the end of a phase
        op, invoke = pending
        r = c.result
        type_ = r.get("type", INFO)
        if type_ not in ("ok", "fail", "info"):
            type_, r = INFO, {**r, "error": f"client returned type {r.get('type')!r}; expected ok, fail or info"}
        value = r.get("value", op.get("value")) if "value" in r else op.get("value")
        self.recorder.record(
            type_,
            invoke.process,
            op["f"],
            value,
            at_ns=c.at_ns,
            node=c.node or invoke.node,
            error=r.get("error"),
            zxid=r.get("zxid"),
            session=r.get("session"),
        )
        self.free.add(c.thread)
        if c.thread == gen.NEMESIS_THREAD:
            log.info(
                "fault %s %s -> %s%s",
                op["f"],
                json.dumps(op.get("value"), default=str),
                json.dumps(r.get("value"), default=str, sort_keys=True),
                f" (error: {r.get('error')})" if r.get("error") else "",
            )
            self.progress.nemesis_done(op["f"], _fault_label(op, r))
        else:
            self.progress.completed(type_)
            if type_ == INFO:  # retire the process: it may still be acting
                self.workers[c.thread] = self._successor(invoke.process)

    def _wait(self, until_s: float | None) -> bool:
        """Wait for one completion until ``until_s`` (run time); True if one came."""
        while not self.control.stop.is_set():
            now = self.recorder.now_s()
            self.progress.tick(now)
            budget = _POLL_S if until_s is None else min(_POLL_S, until_s - now)
            if budget <= 0:
                return False
            try:
                c = self.clock.get(self.completions, budget)
            except queue.Empty:
                continue
            self._absorb(c)
            while True:  # absorb everything else that is already there
                try:
                    self._absorb(self.completions.get_nowait())
                except queue.Empty:
                    return True
        return False

    def _dispatch(self, op: dict) -> None:
        process = op["process"]
        thread = next(t for t, p in self.workers.items() if p == process)
        if thread not in self.free:
            raise RuntimeError(f"generator emitted {op} for busy thread {thread!r}")
        node = None if thread == gen.NEMESIS_THREAD else self.node_of(process)
        invoke = self.recorder.record(INVOKE, process, op["f"], op.get("value"), node=node)
        self.free.discard(thread)
        self.in_flight[thread] = (op, invoke)
        self.clock.call_started()
        self._pool[thread].inbox.put(op)

    # -- the loop -----------------------------------------------------------
    def run(self, generator: Any, drain: bool = True) -> None:
        """Interpret ``generator`` until it is exhausted or the run is stopped,
        then (``drain``) wait, boundedly, for the ops still in flight."""
        current = gen.lift(generator)
        while not self.control.stop.is_set():
            now = self.recorder.now_s()
            ctx = gen.Context(now, frozenset(self.threads), frozenset(self.free), dict(self.workers), self.rng)
            r = gen.step(current, ctx)
            if r is None:
                break
            op, nxt = r
            if isinstance(op, gen.Pending):
                if op.until is None and not self.in_flight:
                    # nothing can wake us: a generator bug, not a reason to hang a run
                    log.error("generator is pending with nothing in flight and no deadline; ending the phase")
                    break
                current = nxt
                self._wait(op.until)
                continue
            if op["time"] > now and self._wait(op["time"]):
                continue  # something completed first: ask the same generator again
            if self.control.stop.is_set():
                break
            self._dispatch(op)
            current = nxt
        if drain:
            self.drain()

    def drain(self) -> None:
        deadline = self.recorder.now_s() + self.drain_timeout_s
        while self.in_flight and self.recorder.now_s() < deadline:
            if not self._wait(deadline) and self.control.stop.is_set():
                # interrupted: give in-flight ops a short grace, then close them
                end = min(deadline, self.recorder.now_s() + 2.0)
                while self.in_flight and self.recorder.now_s() < end:
                    try:
                        self._absorb(self.clock.get(self.completions, 0.1))
                    except queue.Empty:
                        pass
                break
        for thread, (op, invoke) in list(self.in_flight.items()):
            # A hung call: close it as indeterminate so the history stays
            # well-formed, and take the thread out of the run. A client
            # thread is replaced by a fresh one with a fresh process (as an
            # info op retires its process), so later phases -- the final
            # reads above all -- still have every client slot.
            self.recorder.record(
                INFO,
                invoke.process,
                op["f"],
                op.get("value"),
                node=invoke.node,
                error="no completion before the end of the phase (the call hung)",
            )
            del self.in_flight[thread]
            self.threads.discard(thread)
            self.free.discard(thread)
            self._abandoned.add(thread)
            self.workers.pop(thread, None)
            if isinstance(thread, int):
                self._replace(self._successor(invoke.process))

    def _successor(self, process: int | str) -> int:
        """The process that takes over a retired client process's thread."""
        if not isinstance(process, int):  # only the nemesis's process is a name, and it is never retired
            raise TypeError(f"a client process is an int, not {process!r}")
        return process + self.concurrency

    def _replace(self, process: int) -> None:
        """Start a worker thread (with its own client) for ``process``."""
        thread = self._next_thread
        self._next_thread += 1
        self._pool[thread] = _Worker(
            thread,
            self._client_execute(thread),
            self.completions,
            self.recorder,
            functools.partial(self._client_close, thread),
            self.clock,
        )
        self.workers[thread] = process
        self.threads.add(thread)
        self.free.add(thread)
        self._pool[thread].start()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        for w in self._pool.values():
            w.inbox.put(None)
        deadline = time.monotonic() + timeout_s
        for t, w in self._pool.items():
            if t not in self._abandoned:
                w.join(max(0.0, deadline - time.monotonic()))


# -- the whole run ------------------------------------------------------------


def main_generator(spec: TestSpec, workload: Any, nemesis_package: Any) -> Any:
    """Client ops at the spec's rate plus faults every interval, for the time limit.

    Every client slot (see ``gen.EachSlot``) has its own op source, the
    workload's ``ops(rng, thread=s, threads=concurrency)`` with the slot's own
    random stream, and the nemesis's op source has its own too: two runs with
    the same seed invoke the same ops per slot and the same faults, whatever
    the timing. Values a workload needs unique (register writes, set adds)
    come from disjoint per-slot value spaces (the workload's ``thread`` and
    ``threads`` arguments).
    """
    n = spec.concurrency
    per_slot = gen.each_slot(
        n, lambda s: gen.source(workload.ops(stream_rng(spec.seed, f"client-{s}"), thread=s, threads=n))
    )
    parts = [gen.clients(gen.rate_limit(spec.rate, per_slot))]
    if nemesis_package is not None:
        interval = nemesis_package.interval_s
        fault_ops = nemesis_package.ops(stream_rng(spec.seed, "nemesis-ops"))
        parts.append(gen.nemesis([gen.Sleep(interval), gen.Delay(interval, gen.source(fault_ops))]))
    return gen.TimeLimit(spec.time_limit_s, gen.any_(*parts))


def run_final_phase(interp: Interpreter, workload: Any, recorder: Recorder, control: RunControl) -> None:
    """Run the workload's final reads until they succeed, as Jepsen's until-ok.

    A final read can fail for reasons that prove nothing (a client connecting
    to a node that has just restarted); a checker would then have to say
    "unknown". Final ops are reads, so repeating them is harmless: the phase
    is repeated, with a pause, until every expected read came back ok, at
    most FINAL_ATTEMPTS times and FINAL_PHASE_LIMIT_S seconds in all.
    """
    template = [dict(o) for o in workload.final_ops()]
    if not template:
        return
    each = bool(getattr(workload, "final_each_thread", False))
    deadline = recorder.now_s() + FINAL_PHASE_LIMIT_S
    for attempt in range(FINAL_ATTEMPTS):
        if control.stop.is_set() or recorder.now_s() >= deadline:
            return
        start = len(recorder.ops)
        expected = len(template) * (len([t for t in interp.threads if isinstance(t, int)]) if each else 1)
        interp.run(gen.TimeLimit(max(0.1, deadline - recorder.now_s()), final_generator(workload)))
        oks = sum(1 for op in recorder.ops[start:] if op.type == "ok" and op.process != NEMESIS)
        if oks >= expected:
            return
        if attempt + 1 < FINAL_ATTEMPTS:
            interp.clock.pause(1.0, control.stop)


def run_convergence_phase(
    workload: Any,
    cluster: Any,
    nodes: list[str],
    recorder: Recorder,
    control: RunControl,
    timeout_s: float,
    clock: Clock | None = None,
) -> None:
    """Read the workload's data from every node directly and record the
    snapshots as ``converge`` ops (``checkers.convergence``).

    Runs after the final phase, once the clients are closed. Rounds repeat,
    a second apart, until the snapshots agree or CONVERGE_ROUNDS /
    CONVERGE_LIMIT_S run out: a quiet, healed cluster converges, but an
    ephemeral of a session that expires meanwhile can make one round differ.
    Only workloads that name their paths (``converge_paths``) and can read
    one node's copy (``snapshot(address, timeout_s)``: the database's, see
    ``harness.dbs.base.BoundWorkload``) are read, and only clusters of two or
    more nodes (one node has nothing to agree with).
    """
    from checkers import convergence

    paths = tuple(getattr(workload, "converge_paths", ()) or ())
    snapshot = getattr(workload, "snapshot", None)
    if not paths or snapshot is None or len(nodes) < 2:
        return
    deadline = recorder.now_s() + CONVERGE_LIMIT_S
    for rnd in range(CONVERGE_ROUNDS):
        start = len(recorder.ops)
        for n in nodes:
            proc = f"converge-{n}"
            recorder.record(INVOKE, proc, convergence.F, {"round": rnd, "node": n}, node=n)
            try:
                snap = snapshot(cluster.client_address(n), timeout_s)
            except Exception as exc:  # noqa: BLE001 - an unreadable node is recorded, not raised
                recorder.record(
                    "fail", proc, convergence.F, {"round": rnd, "node": n}, node=n, error=f"{type(exc).__name__}: {exc}"
                )
                continue
            recorder.record(
                "ok", proc, convergence.F, {"round": rnd, "node": n, **snap}, node=n, zxid=snap.get("sync_zxid")
            )
        if convergence.check(recorder.ops[start:]).valid is True:
            return
        if control.stop.is_set() or recorder.now_s() + 1.0 >= deadline:
            return
        (clock or MonotonicClock()).pause(1.0, control.stop)


def final_generator(workload: Any) -> Any:
    ops = [dict(o) for o in workload.final_ops()]
    if not ops:
        return None
    if getattr(workload, "final_each_thread", False):
        return gen.clients(gen.each_thread(ops))
    return gen.clients(ops)


HARNESS_LOG = "squall.log"
_LOGGED = ("harness", "nemesis", "workloads")


@contextlib.contextmanager
def harness_log(run_dir: Path) -> Any:
    """Write the run's harness log (``squall.log``) while the block runs."""
    handler = logging.FileHandler(Path(run_dir) / HARNESS_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in _LOGGED]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def run_test(
    spec: TestSpec,
    backend: Any,
    db: Any,
    workload: Any,
    nemesis_package: Any,
    run_dir: Path,
    progress: Progress | None = None,
    control: RunControl | None = None,
    *,
    results_root: Path | None = None,
    clock: Clock | None = None,
    setup_timeout_s: float = SETUP_TIMEOUT_S,
    recovery_timeout_s: float = RECOVERY_TIMEOUT_S,
) -> RunOutcome:
    """Run one test end to end and store everything under ``run_dir``.

    ``clock`` is the run's time (``harness.clock``): real time by default; the
    runner's tests pass a ``VirtualClock``. The setup and recovery waits are
    the cluster's own (``wait_ready``) and so always real."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with harness_log(run_dir):
        log.info("run %s: %s", run_dir, spec.to_json().replace("\n", " "))
        outcome = _run_test(
            spec,
            backend,
            db,
            workload,
            nemesis_package,
            run_dir,
            progress,
            control,
            results_root=results_root,
            clock=clock or MonotonicClock(),
            setup_timeout_s=setup_timeout_s,
            recovery_timeout_s=recovery_timeout_s,
        )
        log.info("outcome: exit %d, verdict %s: %s", outcome.exit_code, outcome.valid, outcome.summary)
        return outcome


def _run_test(
    spec: TestSpec,
    backend: Any,
    db: Any,
    workload: Any,
    nemesis_package: Any,
    run_dir: Path,
    progress: Progress | None,
    control: RunControl | None,
    *,
    results_root: Path | None,
    clock: Clock,
    setup_timeout_s: float,
    recovery_timeout_s: float,
) -> RunOutcome:
    control = control or RunControl()
    progress = progress or Progress(spec.time_limit_s, enabled=False)
    started = time.monotonic()
    store.write_spec(run_dir, spec)
    if results_root is not None:
        store.update_latest(results_root, run_dir)
    recorder = Recorder(clock.now_ns)
    notes: list[str] = []
    cluster = None
    interp: Interpreter | None = None
    outcome: RunOutcome | None = None
    history_written = False
    rng = stream_rng(spec.seed, "schedule")  # pacing and which free thread goes next
    client_timeout_s = float(spec.option_dict.get("client_timeout_s", 5.0))
    try:
        # -- setup (blocking: an interrupt raises out of it) ----------------
        control.raise_on_interrupt = True
        if control.stop.is_set():
            raise RunInterrupted(control.signal_name or "SIGINT")
        progress.set_phase("setup", 0.0)
        try:
            log.info("setup: creating the cluster (%s backend, %d nodes)", spec.backend, len(spec.nodes))
            cluster = backend.create(spec, db, run_dir)
            log.info("setup: waiting up to %.0fs until the cluster is ready", setup_timeout_s)
            cluster.wait_ready(setup_timeout_s)
            log.info("setup: cluster ready; workload setup")
            workload.setup(cluster.connect_string())
            if nemesis_package is not None:
                log.info("setup: nemesis setup")
                nemesis_package.nemesis.setup(cluster)
            arm = getattr(db, "arm_failpoints", None) if spec.option_dict.get("failpoints") else None
            if arm is not None:  # test-only failpoints: armed once the cluster is up (harness/dbs/squall.py)
                # A fault like the nemesis's, in the history as one: the availability check then
                # judges no stretch in which members may stall or fail at a failpoint as fault-free.
                recorder.record(INVOKE, NEMESIS, "start-failpoints", spec.option_dict["failpoints"])
                armed = arm(cluster)
                recorder.record(INFO, NEMESIS, "start-failpoints", {"armed": armed})
                for line in armed:
                    log.info("setup: failpoint armed: %s", line)
        except RunInterrupted:
            raise
        except Exception as exc:  # noqa: BLE001 - any setup failure is reported with where to look
            msg = f"setup failed: {type(exc).__name__}: {exc}"
            if "log" not in str(exc):
                msg += f" (node logs: {run_dir / 'nodes'})"
            progress.message(msg)
            log.error(msg)
            outcome = RunOutcome(run_dir, None, msg, EXIT_SETUP_FAILED, error=msg)
            raise _SetupFailed() from exc
        finally:
            control.raise_on_interrupt = False

        # -- main, heal, recovery, final ------------------------------------
        nodes = list(cluster.nodes)
        slots: dict[int, _ClientSlot] = {}

        def slot(t: int) -> _ClientSlot:
            if t not in slots:
                slots[t] = _ClientSlot(workload, cluster, nodes, client_timeout_s, spec.clients, spec.seed)
            return slots[t]

        nemesis_exec = None
        if nemesis_package is not None:
            nem = nemesis_package.nemesis

            def nemesis_exec(op: dict) -> tuple[dict, None]:
                return nem.invoke(cluster, {"f": op["f"], "value": op.get("value")}), None

        interp = Interpreter(
            concurrency=spec.concurrency,
            client_execute=lambda t: slot(t).execute,
            client_close=lambda t: slot(t).close(),
            nemesis_execute=nemesis_exec,
            recorder=recorder,
            progress=progress,
            control=control,
            rng=rng,
            drain_timeout_s=client_timeout_s * 2 + 2.0,
            node_of=(lambda p: nodes[p % len(nodes)]) if spec.clients == "pinned" else (lambda _p: None),
            clock=clock,
        )
        progress.set_phase("main", recorder.now_s())
        log.info(
            "main phase: %gs of client ops at %g/s, %d client threads", spec.time_limit_s, spec.rate, spec.concurrency
        )
        # The heal starts as soon as the main phase's generator ends, with client ops
        # still in flight (as in Jepsen): a call hung on a killed or cut-off majority
        # would otherwise hold the heal back for a whole client timeout. The heal
        # phase's run then waits for every op, clients' included.
        interp.run(main_generator(spec, workload, nemesis_package), drain=nemesis_package is None)
        if nemesis_package is not None:
            if control.stop.is_set():
                interp.drain()
            else:
                progress.set_phase("heal", recorder.now_s())
                log.info("heal phase: the nemesis's final ops")
                interp.run(gen.nemesis(nemesis_package.final_ops()))
        disarm = getattr(db, "disarm_failpoints", None) if spec.option_dict.get("failpoints") else None
        if disarm is not None and not control.stop.is_set():
            # failpoints are faults of the main phase: healed with the rest (harness/dbs/squall.py)
            recorder.record(INVOKE, NEMESIS, "stop-failpoints", None)
            disarmed = disarm(cluster)
            recorder.record(INFO, NEMESIS, "stop-failpoints", {"disarmed": disarmed})
            log.info("heal: failpoints disarmed in %s", ", ".join(disarmed) or "no node (none answered)")
        if not control.stop.is_set():
            progress.set_phase("recover", recorder.now_s())
            log.info("recovery: waiting up to %.0fs until the cluster is ready again", recovery_timeout_s)
            try:
                control.raise_on_interrupt = True
                cluster.wait_ready(recovery_timeout_s)
            except RunInterrupted:
                pass
            except Exception as exc:  # noqa: BLE001 - the final reads will show what this means
                note = f"the cluster did not recover within {recovery_timeout_s:.0f}s after healing: {exc}"
                notes.append(note)
                log.warning(note)
                progress.message(note)
            finally:
                control.raise_on_interrupt = False
        if not control.stop.is_set():
            progress.set_phase("final", recorder.now_s())
            log.info("final phase: the workload's final ops")
            run_final_phase(interp, workload, recorder, control)
        interp.shutdown()
        if not control.stop.is_set():
            progress.set_phase("converge", recorder.now_s())
            run_convergence_phase(workload, cluster, nodes, recorder, control, client_timeout_s, clock)
        store.write_history(run_dir, recorder.ops)
        log.info("history.jsonl written: %d lines", len(recorder.ops))
        history_written = True
    except _SetupFailed:
        pass  # outcome is set; the finally below tears down what was started
    except KeyboardInterrupt:
        control.stop.set()
    except Exception as exc:  # noqa: BLE001 - recorded, torn down, reported with exit code 5
        msg = f"the run crashed: {type(exc).__name__}: {exc}"
        log.exception(msg)
        progress.message(msg + "\n" + traceback.format_exc())
        outcome = RunOutcome(run_dir, None, msg, EXIT_CRASHED, error=msg)
    finally:
        control.raise_on_interrupt = False
        progress.close()
        if interp is not None:
            interp.shutdown(timeout_s=1.0)
        if not history_written:
            store.write_history(run_dir, recorder.ops)
            history_written = True
        _teardown(cluster, nemesis_package, run_dir, progress)
    if outcome is not None:
        status = "crashed" if outcome.exit_code == EXIT_CRASHED else "setup-failed"
        write_error_outcome(spec, run_dir, outcome.summary, status, recorder.ops, time.monotonic() - started)
        outcome.history_len = len(recorder.ops)
        outcome.wall_s = time.monotonic() - started
        return outcome
    if control.stop.is_set():
        msg = (
            f"interrupted by {control.signal_name or 'SIGINT'}; cluster torn down; "
            f"{len(recorder.ops)} ops recorded in history.jsonl (not checked)"
        )
        store.write_results(run_dir, _error_results(spec, msg, "interrupted"))
        progress.message(msg)
        return RunOutcome(
            run_dir,
            None,
            msg,
            EXIT_INTERRUPTED,
            interrupted=True,
            history_len=len(recorder.ops),
            wall_s=time.monotonic() - started,
        )
    return analyze(spec, workload, recorder.ops, run_dir, progress, notes=notes, control=control, started=started)


def _teardown(cluster: Any, nemesis_package: Any, run_dir: Path, progress: Progress) -> None:
    """Heal, collect logs, stop everything; every step runs even if one fails."""
    if cluster is None:
        return
    log.info("teardown: healing, collecting node logs, stopping every node")
    if nemesis_package is not None:
        try:
            nemesis_package.nemesis.teardown(cluster)
        except Exception as exc:  # noqa: BLE001
            log.warning("nemesis teardown failed: %s", exc)
    try:
        cluster.collect_logs(run_dir / "logs")
    except Exception as exc:  # noqa: BLE001
        log.warning("collecting node logs failed: %s", exc)
    try:
        cluster.teardown()
    except Exception as exc:  # noqa: BLE001 - must be reported: something may be left running
        log.error("teardown failed: %s: %s", type(exc).__name__, exc)
        progress.message(f"teardown failed: {type(exc).__name__}: {exc}")


def client_ok_count(history: list[Op]) -> int:
    """How many client operations completed ``ok`` (the nemesis's ops and the
    harness's own end-of-run reads of every node aside)."""
    from checkers import convergence

    return sum(1 for op in history if op.type == "ok" and op.process != NEMESIS and op.f != convergence.F)


def verdict_of(result: Any, history: list[Op]) -> tuple[Any, str]:
    """The run's verdict and summary from its checker's result: a history
    without one ok client operation is "unknown" unless the checker proved
    an anomaly (an empty history proves nothing, whatever a checker says)."""
    if client_ok_count(history) == 0 and result.valid is not False:
        return "unknown", (
            f"no client operation completed ok ({len(history)} history lines): the run proved "
            f"nothing; the checker alone said: {result.summary}"
        )
    return result.valid, result.summary


def judge(spec: TestSpec, workload: Any, history: list[Op]) -> tuple[Any, str, Any]:
    """Check ``history`` as the run does: (verdict, summary, checker result)."""

    result = check_history(spec, workload, history)
    valid, summary = verdict_of(result, history)
    limits = known_limitations(spec, result.to_dict())
    if limits:  # as analyze() says it: a documented limitation of the database, not a finding
        note = limitation_note(limits)
        summary += note
        result = dataclasses.replace(
            result, summary=result.summary + note, details={**result.details, "known_limitations": limits}
        )
    return valid, summary, result


def analyze(
    spec: TestSpec,
    workload: Any,
    history: list[Op],
    run_dir: Path,
    progress: Progress | None = None,
    *,
    notes: list[str] | None = None,
    control: RunControl | None = None,
    started: float | None = None,
    out_dir: Path | None = None,
) -> RunOutcome:
    """Check a history with the workload's checker and write results, report, junit
    (into ``out_dir``, by default the run directory).

    A history without a single ``ok`` client operation is never valid: the
    run did nothing a checker could vouch for (a checker may well call an
    empty history "valid"), so the verdict is "unknown" and junit.xml shows
    an error.
    """

    started = time.monotonic() if started is None else started
    progress = progress or Progress(spec.time_limit_s, enabled=False)
    out_dir = Path(run_dir if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if control is not None:
        control.raise_on_interrupt = True
    try:
        result = check_history(spec, workload, history)
    except KeyboardInterrupt:
        msg = "interrupted during analysis; history.jsonl is complete, re-check it with `squall analyze`"
        store.write_results(out_dir, _error_results(spec, msg, "interrupted"))
        return RunOutcome(
            run_dir,
            None,
            msg,
            EXIT_INTERRUPTED,
            interrupted=True,
            history_len=len(history),
            written=[out_dir / "results.json"],
        )
    finally:
        if control is not None:
            control.raise_on_interrupt = False
    notes = list(notes or [])
    valid, summary = verdict_of(result, history)
    oks = client_ok_count(history)
    if summary != result.summary:
        notes.append(summary)
    results = {
        "valid": valid,
        "summary": summary,
        "status": "checked",
        "test": spec.name,
        "notes": notes,
        "result": result.to_dict(),
        "counts": _counts(history),
        "client_ok_ops": oks,
    }
    limits = known_limitations(spec, results["result"])
    if limits:
        results["known_limitations"] = limits
        summary = results["summary"] = summary + limitation_note(limits)
    written = [store.write_results(out_dir, results)]
    wall = time.monotonic() - started
    from harness.report import junit

    written.append(junit.write_junit(out_dir / "junit.xml", spec.name, results, wall))
    try:
        from harness.report import html

        html.write_report(out_dir / "report.html", spec.to_dict(), history, results)
        written.append(out_dir / "report.html")
    except Exception as exc:  # noqa: BLE001 - a report bug must not change the verdict
        progress.message(f"report.html could not be written: {type(exc).__name__}: {exc}")
    return RunOutcome(
        run_dir, valid, summary, verdict_exit_code(valid), history_len=len(history), wall_s=wall, written=written
    )


def _counts(history: list[Op]) -> dict[str, int]:
    from harness.report.stats import counts  # the report's and the results browser's counts

    return counts(history)


def limitation_note(limits: list[dict]) -> str:
    return " (known limitation of the database: " + ", ".join(sorted({k["issue"] for k in limits})) + ")"


def known_limitations(spec: TestSpec, result: dict) -> list[dict]:
    """Invalid sub-results that a documented limitation of the database under
    test explains (e.g. ZOOKEEPER-1675 for stale reads after sync on Apache
    ZooKeeper): the report names the issue instead of calling it a finding."""
    out = []
    for s in (result.get("details") or {}).get("results") or [result]:
        k = (s.get("details") or {}).get("known_limitation")
        if s.get("valid") is False and isinstance(k, dict) and k.get("db") == spec.db:
            out.append({**k, "checker": s.get("checker")})
    return out


def check_history(spec: TestSpec, workload: Any, history: list[Op]) -> Any:
    """The workload's checker on the client ops, composed with the harness's
    own checks: converged replicas (when the run read the nodes at the end)
    and session order (zxids never go back in a session; when the clients
    recorded their sessions and the workload did not check it itself)."""
    from checkers import convergence, session_order
    from checkers.result import merge, run_checker

    client_ops = [op for op in history if op.f != convergence.F]
    result = run_checker(f"{spec.workload}-workload", workload.check, client_ops)
    parts = _parts(result)
    extra = []
    if len(client_ops) != len(history):
        extra.append(run_checker(convergence.NAME, convergence.check, history))
    if any(op.session is not None for op in client_ops) and not any(p.checker == session_order.NAME for p in parts):
        extra.append(run_checker(session_order.NAME, session_order.check, client_ops))
    kinds = getattr(workload, "progress_kinds", None)
    if kinds:
        from checkers import availability

        final_fs = tuple(sorted({o["f"] for o in workload.final_ops()}))
        extra.append(
            run_checker(
                availability.NAME,
                availability.check,
                client_ops,
                dict(kinds),
                spec.min_availability,
                tuple(getattr(workload, "progress_answered", ())),
                final_fs,
                AVAILABILITY_GRACE_S,
            )
        )
    everything = [*parts, *extra]
    # A check that found nothing to judge (no session with two zxids, no
    # fault-free stretch long enough) tested nothing: it neither vouches for
    # the run nor makes it "unknown"; results.json lists it as not judged.
    judged = [r for r in everything if not (r.is_unknown and r.details.get("vacuous"))]
    if len(judged) == len(everything) and not extra:
        return result
    merged = merge(judged, checker=result.checker)
    skipped = [{"checker": r.checker, "summary": r.summary} for r in everything if r not in judged]
    if skipped:
        merged.details["not_judged"] = skipped
    return merged


def _parts(result: Any) -> list[Any]:
    """A composed result's sub-results (so the report lists every checker
    in one table), or the result itself."""
    from checkers.result import Result

    subs = result.details.get("results") if isinstance(result.details, dict) else None
    if not subs:
        return [result]
    try:
        return [
            Result(
                **{k: d.get(k) for k in ("valid", "checker", "summary", "explanation", "witness", "counterexample")},
                details=d.get("details") or {},
            )
            for d in subs
        ]
    except (TypeError, ValueError):
        return [result]


def write_error_outcome(
    spec: TestSpec, run_dir: Path, message: str, status: str, history: list[Op], wall_s: float
) -> None:
    """results.json, junit.xml (an error) and report.html for a run without a verdict."""
    results = {**_error_results(spec, message, status), "counts": _counts(history)}
    store.write_results(run_dir, results)
    from harness.report import junit

    junit.write_junit(run_dir / "junit.xml", spec.name, results, wall_s)
    try:
        from harness.report import html

        html.write_report(run_dir / "report.html", spec.to_dict(), history, results)
    except Exception:  # noqa: BLE001 - the error itself is what matters here
        log.exception("report.html for a failed run")


def _error_results(spec: TestSpec, message: str, status: str) -> dict:
    return {"valid": None, "summary": message, "status": status, "test": spec.name}
