"""`squall sim`: run the deterministic ensemble simulator over many seeds and judge each history.

For every seed (S, S+1, ...; alternating 3 and 5 nodes unless --nodes is
given) the simulator (`node.sim`) runs a safety phase with faults and a
liveness phase; its history is converted to `checkers.history.Op`s (after
dropping indeterminate writes nobody observed, which changes no verdict:
`prune_unobserved_indeterminate_writes`) and checked:

- **linearizable** writes and cas (reads left out: ZooKeeper does not promise
  linearizable reads), per key, cas-register model;
- **sequential** consistency in ZooKeeper's sense, reads included, with the
  zxid fast path (every ok completion carries its zxid);
- **sync**: a read after `sync` has a zxid at least that of every write
  acknowledged before the sync was invoked (`check_sync`);
- **client order**: one client's ok zxids never decrease, across
  reconnections too (`check_client_zxids`).

A seed fails on an invalid verdict, a liveness failure (the healed cluster did
not acknowledge a new write within the bound) or a violation the simulator
found itself (replicas that applied the same log prefix hold different trees,
a replica keeps an ephemeral of a closed session, or a replica raised).
Every failing seed is printed with the command that replays it.

The simulator runs as a separate process (`python -m node.sim`, one JSON
line per seed): the harness may not import node/ (docs/architecture.md), and
the simulator and the checkers then use two cores.

`--workers N` (default: the usable cores) splits the seeds into contiguous
chunks that N worker processes simulate and judge; the parent takes the
chunks' outcomes back in seed order, so the output, `--fail-fast` and every
verdict are the same for any N (each seed's run depends on its seed alone).
With N = 1 everything runs as before: one simulator process, judged here.

The workers are fresh interpreters (`python -m harness.sim_worker`, started
with fork+exec), never forks of this process: `squall sim` may run inside a
threaded process (the test suite), and a forked child of a threaded process
can deadlock on a lock another thread held at the fork. Each worker reads
chunk tasks on its stdin -- the simulator command for the chunk, made here,
so what a worker runs is decided in one place -- starts that simulator and
writes each seed's outcome back as a JSON line; one thread here feeds each
worker and collects what it writes. A worker stopped by SIGTERM (fail-fast,
an error, Ctrl-C), whose stdin closes or whose parent dies kills its
simulator process first.

Exit codes: 0 all valid, 1 any violation or liveness failure, 2 some verdict
unknown (and nothing failed), 3 bad usage or a simulator process failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from checkers import linearizable, sequential
from checkers.history import Op
from checkers.models import get_model
from checkers.result import Result

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SimulatorError(click.ClickException):
    """The simulator process failed (not a verdict): exit 3."""

    exit_code = 3


# Per checker per seed; running out is "unknown", never "valid". The zxid fast
# path answers almost every seed in milliseconds; a history where an
# indeterminate write took effect and two keys interleave falls back to the
# search, which could take minutes before unobserved indeterminate writes
# were pruned (see prune_unobserved_indeterminate_writes).
CHECK_BUDGET_S = 30.0


@dataclass
class SeedOutcome:
    seed: int
    nodes: int
    verdict: str  # "valid" | "invalid" | "unknown"
    problems: list[str] = field(default_factory=list)
    history_hash: str = ""
    ops: int = 0
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "nodes": self.nodes,
            "verdict": self.verdict,
            "problems": self.problems,
            "history_hash": self.history_hash,
            "ops": self.ops,
            "elapsed_s": round(self.elapsed_s, 4),
        }


def to_ops(history: list[dict]) -> list[Op]:
    """The simulator's plain-dict events as checker `Op`s."""
    return [
        Op(
            index=d["index"],
            time=d["time"],
            type=d["type"],
            process=d["process"],
            f=d["f"],
            value=d.get("value"),
            node=d.get("node"),
            error=d.get("error"),
            zxid=d.get("zxid"),
            key=d.get("key"),
        )
        for d in history
    ]


def _written(d: dict) -> Any:
    return d["value"][1] if d["f"] == "cas" else d["value"]


def prune_unobserved_indeterminate_writes(history: list[dict]) -> list[dict]:
    """Drop indeterminate (info) writes and cas whose written value nobody observed.

    Sound for a (cas-)register history in which every written value is unique
    (the simulator writes a fresh integer each time; checked here, and nothing
    is pruned otherwise): an info op may be left out of an order, so a valid
    order of the pruned history is one of the full history; conversely, in a
    valid order of the full history, the ops between an unobserved write W
    and the next write of its key cannot depend on W's value (a read would
    return it, a cas would compare with it: both count as observing it), so
    removing W leaves the order valid. Removing it prunes the search: an
    indeterminate write forces the sequential checker off its zxid fast path
    and multiplies the orders it must try.
    """
    written = [(d["key"], _written(d)) for d in history if d["type"] == "invoke" and d["f"] in ("write", "cas")]
    if len(written) != len(set(written)) or any(v is None for _k, v in written):
        return history
    observed = {(d["key"], d["value"]) for d in history if d["type"] == "ok" and d["f"] == "read"}
    observed |= {(d["key"], d["value"][0]) for d in history if d["f"] == "cas"}
    drop: set[int] = set()
    open_invoke: dict[Any, dict] = {}
    for d in history:
        if d["type"] == "invoke":
            open_invoke[d["process"]] = d
            continue
        inv = open_invoke.pop(d["process"], None)
        if (
            d["type"] == "info"
            and inv is not None
            and d["f"] in ("write", "cas")
            and inv["f"] == d["f"]
            and (d["key"], _written(d)) not in observed
        ):
            drop.update((inv["index"], d["index"]))
    return [d for d in history if d["index"] not in drop] if drop else history


def judge(history: list[dict], budget_s: float = CHECK_BUDGET_S) -> tuple[Result, Result]:
    """(linearizable writes/cas, sequential consistency) verdicts for one history
    (after `prune_unobserved_indeterminate_writes`, which keeps every verdict)."""
    ops = to_ops(prune_unobserved_indeterminate_writes(history))
    writes = [o for o in ops if o.f in ("write", "cas")]
    lin = linearizable.check(writes, get_model("cas-register"), budget_s=budget_s)
    seq = sequential.check(ops, get_model("cas-register"), budget_s=budget_s)
    return lin, seq


def check_sync(history: list[dict]) -> list[str]:
    """`sync` then read must see every write acknowledged before the sync was
    invoked: the read's zxid (the replica's applied point) is at least theirs.
    (Its value is then judged by the sequential check, which replays reads at
    their zxid.) Returns one line per violation."""
    problems = []
    acked: list[tuple[int, int, int]] = []  # (completion time, zxid, index) of ok writes/cas
    invoked_at: dict[Any, int] = {}
    for d in history:
        if d["type"] == "ok" and d["f"] in ("write", "cas"):
            acked.append((d["time"], d["zxid"], d["index"]))
        if d.get("sync") and d["type"] == "invoke":
            invoked_at[d["process"]] = d["time"]
        elif d.get("sync") and d["type"] == "ok":
            t = invoked_at.pop(d["process"], None)
            if t is None:
                continue
            before = [a for a in acked if a[0] < t]
            if before:
                top = max(before, key=lambda a: a[1])
                if d["zxid"] < top[1]:
                    problems.append(
                        f"sync+read at op index {d['index']} returned zxid {d['zxid']:#x}, below "
                        f"the write acknowledged before the sync (op index {top[2]}, zxid {top[1]:#x})"
                    )
    return problems


def check_client_zxids(history: list[dict]) -> list[str]:
    """A ZooKeeper client never sees the tree go back in time, even across
    reconnections (the server refuses a client ahead of it): the zxids of one
    client's ok completions never decrease. The sequential check cannot see
    this across an indeterminate op, after which the client continues as a
    new process; the simulator records the client too (`client`)."""
    problems = []
    last: dict[Any, dict] = {}
    for d in history:
        if d["type"] != "ok" or d.get("client") is None or d.get("zxid") is None:
            continue
        prev = last.get(d["client"])
        if prev is not None and d["zxid"] < prev["zxid"]:
            problems.append(
                f"client {d['client']} saw zxid {d['zxid']:#x} at op index {d['index']} after "
                f"{prev['zxid']:#x} at op index {prev['index']}: the tree went back in time"
            )
        if prev is None or d["zxid"] >= prev["zxid"]:
            last[d["client"]] = d
    return problems


def assess(run: dict[str, Any], budget_s: float = CHECK_BUDGET_S) -> SeedOutcome:
    """Judge one seed's result, as `python -m node.sim` prints it (a dict)."""
    t0 = time.monotonic()
    history = run["history"]
    out = SeedOutcome(run["seed"], run["nodes"], "valid", history_hash=run["history_hash"], ops=len(history))
    for v in run["violations"]:
        out.problems.append(f"simulator: {v}")
    if not run["liveness_ok"]:
        out.problems.append(f"liveness: {run['liveness_detail']}")
    for p in check_sync(history):
        out.problems.append(f"sync: {p}")
    for p in check_client_zxids(history):
        out.problems.append(f"client order: {p}")
    unknown = False
    try:
        lin, seq = judge(history, budget_s)
    except Exception as e:  # noqa: BLE001 - a history the checkers refuse is a failure to report, not a pass
        out.problems.append(f"checker error: {type(e).__name__}: {e}")
        unknown = True
    else:
        for name, r in (("linearizable", lin), ("sequential", seq)):
            if r.is_invalid:
                out.problems.append(f"{name}: {r.summary}")
            elif r.is_unknown:
                unknown = True
                out.problems.append(f"{name} unknown: {r.summary}")
    if any(not p.startswith(("sequential unknown", "linearizable unknown", "checker error")) for p in out.problems):
        out.verdict = "invalid"
    elif unknown:
        out.verdict = "unknown"
    out.elapsed_s = time.monotonic() - t0
    return out


def failure_counts(outcomes: list[SeedOutcome]) -> tuple[int, int]:
    """(seeds with a safety violation, seeds with a liveness failure).

    A seed may count in both. A violation is any problem other than a
    liveness failure or an unknown verdict (simulator, checker, sync, client
    order findings)."""
    violations = liveness = 0
    for o in outcomes:
        if any(p.startswith("liveness:") for p in o.problems):
            liveness += 1
        if any(
            not p.startswith(("liveness:", "sequential unknown", "linearizable unknown", "checker error"))
            for p in o.problems
        ):
            violations += 1
    return violations, liveness


def simulator_command(seeds: int, first: int, nodes: int | None, ops: int, unsafe: str) -> list[str]:
    """The node's simulator as a process (the harness may not import node/).

    ``unsafe``: a TEST-ONLY fault armed in every replica ("" = none)."""
    cmd = [sys.executable, "-m", "node.sim", "--seeds", str(seeds), "--seed", str(first), "--ops", str(ops)]
    if nodes:
        cmd += ["--nodes", str(nodes)]
    if unsafe:
        cmd += ["--unsafe-test-fault", unsafe]
    return cmd


def _child_env() -> dict[str, str]:
    """This environment, with the project on PYTHONPATH (a checkout need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def stream_runs(
    seeds: int, first: int, nodes: int | None, ops: int, unsafe: str
) -> Generator[dict[str, Any], None, None]:
    """Run the simulator process and yield each seed's result as it arrives.

    The process is always stopped when the caller stops iterating (fail-fast,
    an exception, Ctrl-C). A process that dies early is reported as an error.
    """
    return stream_command(simulator_command(seeds, first, nodes, ops, unsafe), seeds)


def stream_command(command: list[str], seeds: int) -> Generator[dict[str, Any], None, None]:
    """``stream_runs`` for a simulator command made elsewhere (a worker's task)."""
    errfile = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: it can never fill up and block the child
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errfile, text=True, env=_child_env())
    got = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            got += 1
            yield json.loads(line)
        rc = proc.wait()
        if rc != 0 or got != seeds:
            errfile.seek(0)
            err = errfile.read().strip()[-2000:]
            raise SimulatorError(f"the simulator process exited with {rc} after {got} of {seeds} seeds: {err}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        errfile.close()


# The most seeds in one worker task. A task starts one simulator process
# (about 0.15 s of CPU), so big chunks amortise that (10,000 seeds on 2
# workers: 40 starts); chunks are also made small enough that every worker
# gets about four, so the last worker's tail stays short. Outcomes stream back
# seed by seed, so progress and --fail-fast do not wait for a chunk's end.
CHUNK_SEEDS = 250
_CHUNKS_PER_WORKER = 4
_STOP_GRACE_S = 5.0


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def chunks(seeds: int, first: int, workers: int) -> list[tuple[int, int]]:
    """(first seed, count) of each task, contiguous and in seed order.

    Every chunk but the last has an even size: the simulator alternates 3 and
    5 nodes by a seed's position in its own run, so a chunk starting at an
    even offset gives each seed the cluster size one run of all seeds would."""
    size = max(1, min(CHUNK_SEEDS, -(-seeds // (workers * _CHUNKS_PER_WORKER))))
    size += size % 2
    return [(s, min(size, first + seeds - s)) for s in range(first, first + seeds, size)]


@dataclass
class _Chunk:
    """One task's outcomes as its worker reports them (guarded by the pool's lock)."""

    command: list[str]
    count: int
    outcomes: list[SeedOutcome] = field(default_factory=list)
    done: bool = False
    error: str | None = None


class _WorkerPool:
    """N worker processes (``python -m harness.sim_worker``), one feeding thread each.

    Tasks go out in seed order to whichever worker is free; ``outcomes()``
    yields them back in seed order as they arrive. ``close()`` stops every
    worker (and so its simulator) and joins the threads, whatever state they
    are in.
    """

    def __init__(self, tasks: list[_Chunk], workers: int, budget: float) -> None:
        self._tasks = tasks
        self._budget = budget
        self._next = 0
        self._cond = threading.Condition()
        self._closing = False
        self._procs: list[subprocess.Popen[str]] = []
        self._errfiles: list[Any] = []
        self._threads: list[threading.Thread] = []
        try:
            for n in range(min(workers, len(tasks))):
                errfile = tempfile.TemporaryFile(mode="w+")
                self._errfiles.append(errfile)
                # Started from this thread: PR_SET_PDEATHSIG (set by the worker)
                # follows the thread that started it, and this one outlives them.
                proc = subprocess.Popen(
                    [sys.executable, "-m", "harness.sim_worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errfile,
                    text=True,
                    env=_child_env(),
                )
                self._procs.append(proc)
                t = threading.Thread(
                    target=self._feed, args=(proc, errfile), name=f"squall-sim-worker-{n}", daemon=True
                )
                self._threads.append(t)
                t.start()
        except BaseException:
            self.close()  # the workers already started
            raise

    def _take(self) -> _Chunk | None:
        with self._cond:
            if self._closing or self._next >= len(self._tasks):
                return None
            task = self._tasks[self._next]
            self._next += 1
            return task

    def _feed(self, proc: subprocess.Popen[str], errfile: Any) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        while (task := self._take()) is not None:
            error = None
            try:
                proc.stdin.write(
                    json.dumps({"command": task.command, "seeds": task.count, "budget": self._budget}) + "\n"
                )
                proc.stdin.flush()
                for line in proc.stdout:
                    msg = json.loads(line)
                    if "outcome" in msg:
                        with self._cond:
                            task.outcomes.append(SeedOutcome(**msg["outcome"]))
                            self._cond.notify_all()
                    else:
                        error = msg.get("error")
                        break
                else:
                    error = self._died(proc, errfile)
            except Exception as exc:  # noqa: BLE001 - a closed pipe, a garbled line: the task must still end
                error = self._died(proc, errfile) if proc.poll() is not None else f"a sim worker failed: {exc!r}"
            with self._cond:
                task.done, task.error = True, error
                self._cond.notify_all()
            if error is not None:
                return

    def _died(self, proc: subprocess.Popen[str], errfile: Any) -> str:
        rc = proc.wait()
        if self._closing:
            return "stopped"
        errfile.seek(0)
        return f"a sim worker exited with {rc}: {errfile.read().strip()[-2000:]}"

    def outcomes(self) -> Iterator[SeedOutcome]:
        for task in self._tasks:
            i = 0
            while True:
                with self._cond:
                    while len(task.outcomes) <= i and not task.done:
                        self._cond.wait()
                    if len(task.outcomes) > i:
                        outcome = task.outcomes[i]
                    elif task.error is not None:
                        raise SimulatorError(task.error)
                    else:
                        break
                yield outcome
                i += 1

    def close(self) -> None:
        with self._cond:
            self._closing = True
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()  # the worker kills its simulator, then exits
        for proc in self._procs:
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join()
        for proc in self._procs:
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
        for errfile in self._errfiles:
            errfile.close()


def seed_outcomes(
    seeds: int, first: int, nodes: int | None, ops: int, unsafe: str, budget: float, workers: int
) -> Generator[SeedOutcome, None, None]:
    """Every seed's outcome, in seed order, from ``workers`` processes. The
    workers and their simulators are always stopped when the caller stops
    iterating."""
    if workers <= 1 or seeds == 1:
        runs = stream_runs(seeds, first, nodes, ops, unsafe)
        try:
            for run in runs:
                yield assess(run, budget)
        finally:
            runs.close()  # stops the simulator process if we stopped early
        return
    tasks = [_Chunk(simulator_command(c, s, nodes, ops, unsafe), c) for s, c in chunks(seeds, first, workers)]
    pool = _WorkerPool(tasks, workers, budget)
    try:
        yield from pool.outcomes()
    finally:
        pool.close()


def replay_command(seed: int, nodes: int, ops: int, unsafe: str) -> str:
    cmd = f"squall sim --seeds 1 --seed {seed} --nodes {nodes} --ops {ops}"
    if unsafe == "commit-without-quorum":
        return cmd + " --unsafe-commit-without-quorum"
    return cmd + (f" --unsafe-test-fault {unsafe}" if unsafe else "")


@click.command("sim")
@click.option("--seeds", type=click.IntRange(min=1), default=100, show_default=True, help="How many seeds to run.")
@click.option("--seed", "first", type=int, default=0, show_default=True, help="The first seed.")
@click.option(
    "--nodes",
    type=click.Choice(["1", "3", "5"]),
    default=None,
    help="Cluster size (default: alternate 3 and 5, starting with 3).",
)
@click.option(
    "--ops",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Client operations per seed in the safety phase.",
)
@click.option(
    "--unsafe-commit-without-quorum",
    "commit_without_quorum",
    is_flag=True,
    help="TEST ONLY: let leaders commit without a quorum, to show the checks catch a real bug "
    "(the same as --unsafe-test-fault commit-without-quorum).",
)
@click.option(
    "--unsafe-test-fault",
    "fault",
    default=None,
    metavar="NAME",
    hidden=True,
    help="TEST ONLY: arm a deliberate bug of node/faults.py in every simulated replica "
    "(those the replica carries out itself; the simulator refuses the others).",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0.1),
    default=CHECK_BUDGET_S,
    show_default=True,
    metavar="SECONDS",
    help="Time budget per checker per seed; running out gives 'unknown'.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Worker processes, each simulating and judging chunks of seeds (default: the number of usable cores).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every seed's outcome.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing seed.")
@click.pass_context
def sim(
    ctx: click.Context,
    seeds: int,
    first: int,
    nodes: str | None,
    ops: int,
    commit_without_quorum: bool,
    fault: str | None,
    budget: float,
    workers: int | None,
    as_json: bool,
    fail_fast: bool,
) -> None:
    """Run the deterministic ensemble simulator on SEEDS seeds and check every history.

    Exit codes: 0 all valid, 1 any violation or liveness failure, 2 unknown.
    """
    if commit_without_quorum and fault and fault != "commit-without-quorum":
        raise click.UsageError("--unsafe-commit-without-quorum and --unsafe-test-fault: give one of them")
    unsafe = fault or ("commit-without-quorum" if commit_without_quorum else "")
    if unsafe:
        click.echo(f"WARNING: the test-only fault {unsafe} injects a bug; failures are expected.", err=True)
    outcomes: list[SeedOutcome] = []
    t0 = time.monotonic()
    every = max(1, seeds // 20)
    tty = sys.stderr.isatty()
    size_opt = int(nodes) if nodes else None
    workers = workers or default_workers()
    runs = seed_outcomes(seeds, first, size_opt, ops, unsafe, budget, workers)
    try:
        for n, o in enumerate(runs):
            outcomes.append(o)
            if o.verdict != "valid":
                click.echo(f"seed {o.seed} ({o.nodes} nodes): {o.verdict.upper()}", err=True)
                for p in o.problems:
                    click.echo(f"  {p}", err=True)
                click.echo(f"  replay: {replay_command(o.seed, o.nodes, ops, unsafe)}", err=True)
            done = n + 1
            if done % every == 0 or done == seeds:
                el = time.monotonic() - t0
                bad = sum(1 for x in outcomes if x.verdict == "invalid")
                msg = f"[{done}/{seeds}] {bad} failing, {el:.1f} s, {done / el * 60 if el else 0:.0f} seeds/min"
                click.echo(("\r" + msg) if tty else msg, err=True, nl=not tty or done == seeds)
            if fail_fast and o.verdict == "invalid":
                break
    finally:
        runs.close()  # stops the workers and simulator processes if we stopped early
    elapsed = time.monotonic() - t0
    invalid = [o for o in outcomes if o.verdict == "invalid"]
    unknown = [o for o in outcomes if o.verdict == "unknown"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "seeds": len(outcomes),
                    "invalid": len(invalid),
                    "unknown": len(unknown),
                    "violations": failure_counts(outcomes)[0],
                    "liveness_failures": failure_counts(outcomes)[1],
                    "elapsed_s": round(elapsed, 3),
                    "seeds_per_min": round(len(outcomes) / elapsed * 60, 1) if elapsed else None,
                    "workers": workers,
                    "outcomes": [o.to_json() for o in outcomes],
                },
                indent=1,
            )
        )
    else:
        click.echo(
            f"{len(outcomes)} seeds in {elapsed:.1f} s: {len(outcomes) - len(invalid) - len(unknown)} valid, "
            f"{len(invalid)} failing, {len(unknown)} unknown"
        )
        click.echo(
            f"{len(outcomes) / elapsed * 60 if elapsed else 0:.0f} seeds/min with {workers} "
            f"worker{'s' if workers != 1 else ''}"
        )
        violations, liveness = failure_counts(outcomes)
        click.echo(f"{violations} seeds with violations, {liveness} seeds with liveness failures")
        for o in invalid:
            click.echo(f"FAIL seed {o.seed} ({o.nodes} nodes): {replay_command(o.seed, o.nodes, ops, unsafe)}")
    ctx.exit(EXIT_INVALID if invalid else EXIT_UNKNOWN if unknown else EXIT_VALID)
