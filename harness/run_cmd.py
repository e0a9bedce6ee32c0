"""`squall run`, `squall test-all` and `squall analyze`: the thin CLI shell
around the runner. Every concrete part comes from the ``Registry`` that
``harness/cli.py`` (the composition root) puts into click's context object.

Exit codes: 0 valid, 1 invalid, 2 unknown, 3 bad input (usage), 4 setup
failed (the message names the log), 5 the harness crashed, 130 interrupted
(SIGINT/SIGTERM: the cluster is torn down and the history recorded so far is
kept in history.jsonl).

``test-all`` exits with the worst outcome of its runs, ranked
errors (3 and above, the highest code) > invalid (1) > unknown (2) > valid (0).
Jepsen's ``test-all`` ranks unknown above invalid; squall ranks a proven
anomaly above an undecided run, as ``checkers.result.merge`` does, so a CI
gate never reports "unknown" when some run found a bug.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from harness import plugins, store, summary
from harness.backends.base import SetupError
from harness.dbs.base import NotOffered, UnsafeFaults, bind
from harness.plugins import PluginError
from harness.progress import Progress
from harness.registry import Registry, UnknownName, lookup
from harness.runner import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_SETUP_FAILED,
    EXIT_UNKNOWN,
    EXIT_VALID,
    RunControl,
    RunOutcome,
    analyze,
    run_test,
    write_error_outcome,
)
from harness.spec import (
    CLIENT_MODES,
    READS_MODES,
    SpecError,
    TestSpec,
    default_name,
    normalize_nodes,
    parse_concurrency,
    parse_nemesis,
    stream_rng,
)

EXIT_BAD_INPUT = 3


def _registry(ctx: click.Context) -> Registry:
    reg = ctx.find_object(Registry)
    if reg is None:
        raise click.UsageError("internal: no registry in the click context (run through `squall`)")
    return reg


def _fail(message: str) -> None:
    raise click.UsageError(message)


# -- options shared by run and test-all ---------------------------------------


def _common_options(fn: Callable) -> Callable:
    options = [
        click.option("--backend", default="local", show_default=True, help="Where nodes run."),
        click.option(
            "--db",
            default=plugins.default("db", "squall"),
            show_default=True,
            help=f"The database under test: {plugins.help_list('db')} (`squall list` describes them).",
        ),
        click.option(
            "--nemesis-interval",
            type=float,
            default=5.0,
            show_default=True,
            help="Seconds between fault starts and stops.",
        ),
        click.option(
            "--nodes",
            default=None,
            help="Node count [default: 3; 1 for the node while its ensemble is not available]; "
            "for --backend ssh, the hosts: host1,host2[:port],...",
        ),
        click.option("--ssh-user", default=None, help="ssh backend: login user [default: root]."),
        click.option(
            "--ssh-key",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="ssh backend: private key file.",
        ),
        click.option(
            "--ssh-port", type=int, default=None, help="ssh backend: port of hosts given without :port [default: 22]."
        ),
        click.option(
            "--strict-host-key-checking",
            is_flag=True,
            default=False,
            help="ssh backend: refuse hosts that are not in ~/.ssh/known_hosts.",
        ),
        click.option("--time-limit", type=float, default=60.0, show_default=True, help="Seconds of client ops."),
        click.option(
            "--concurrency",
            default="2n",
            show_default=True,
            help="Client threads: N, or Nn for N times the node count.",
        ),
        click.option(
            "--rate", type=float, default=20.0, show_default=True, help="Target client ops per second, in total."
        ),
        click.option(
            "--seed",
            type=int,
            default=None,
            help="Seed for every random choice [default: random; stored in test.json].",
        ),
        click.option(
            "--results",
            "results_dir",
            type=click.Path(file_okay=False),
            default="results",
            show_default=True,
            help="Results folder.",
        ),
        click.option(
            "--reads",
            default=None,
            help=f"Read mode: {', '.join(READS_MODES)} [default: the database's: local for squall and "
            "zookeeper, linearizable for etcd].",
        ),
        click.option(
            "--clients",
            type=click.Choice(CLIENT_MODES),
            default="roaming",
            show_default=True,
            help="roaming: each client gets every node (shuffled per client) and moves to another "
            "when its connection drops; pinned: each client talks to one node only.",
        ),
        click.option(
            "--min-availability",
            type=float,
            default=0.5,
            show_default=True,
            help="Least share of ops that must succeed in fault-free stretches (0-1); below it the "
            "run is invalid (unavailable).",
        ),
        click.option(
            "--progress/--no-progress", default=True, show_default=True, help="Show the progress line on stderr."
        ),
        click.option(
            "--latency",
            "latency_ms",
            type=float,
            default=0.0,
            show_default=True,
            help="Base delay in ms added to every peer link, each direction, for the whole run "
            "(local backend: the proxy mesh).",
        ),
        click.option(
            "--failpoint",
            "failpoints",
            multiple=True,
            metavar="NAME=ACTION",
            help="TEST ONLY: arm a failpoint in every squall node (repeatable), e.g. before-fsync=panic, "
            "apply=10%error, campaign=sleep(300); `squall node --list-failpoints` lists them.",
        ),
        click.option(
            "--unsafe-db-fault",
            default=None,
            hidden=True,
            help="TEST ONLY: run a deliberately broken database (the db is started with that test-only "
            "fault armed) to prove the gate fails.",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


@dataclass
class _Common:
    backend: str
    db: str
    nemesis_interval: float
    nodes: str | None
    time_limit: float
    concurrency: str
    rate: float
    seed: int | None
    results_dir: str
    reads: str | None
    progress: bool
    unsafe_db_fault: str | None
    clients: str = "roaming"
    min_availability: float = 0.5
    ssh_user: str | None = None
    ssh_key: str | None = None
    ssh_port: int | None = None
    strict_host_key_checking: bool = False
    latency_ms: float = 0.0
    failpoints: tuple[str, ...] = ()


def _nodes_and_backend_options(c: _Common) -> tuple[int | None, dict[str, Any]]:
    """--nodes N, or (ssh backend) --nodes host1,host2,...; the ssh flags
    become spec options the ssh backend reads."""
    options: dict[str, Any] = {}
    count: int | None = None
    if c.nodes is not None:
        text = str(c.nodes).strip()
        if text.isdigit():
            count = int(text)
        elif c.backend == "ssh":
            hosts = [h.strip() for h in text.split(",") if h.strip()]
            options["ssh_hosts"] = ",".join(hosts)
            count = len(hosts)
        else:
            raise SpecError(f"--nodes {text!r}: expected a number (host lists are for --backend ssh)")
    if c.backend == "ssh":
        for key, value in (
            ("ssh_user", c.ssh_user),
            ("ssh_key", str(Path(c.ssh_key).resolve()) if c.ssh_key else None),
            ("ssh_port", c.ssh_port),
            ("ssh_strict_host_key_checking", True if c.strict_host_key_checking else None),
        ):
            if value is not None:
                options[key] = value
    elif c.ssh_user or c.ssh_key or c.ssh_port or c.strict_host_key_checking:
        raise SpecError("--ssh-user/--ssh-key/--ssh-port/--strict-host-key-checking need --backend ssh")
    return count, options


def _make_db(reg: Registry, db_name: str, options: dict[str, Any]) -> Any:
    try:
        return lookup(reg.dbs, "db", db_name)(options)
    except (UnknownName, PluginError) as exc:
        raise SpecError(str(exc)) from None
    except (ValueError, SetupError) as exc:  # a database refusing its options says why
        raise SpecError(f"--db {db_name}: {exc}") from None


def _check_cluster_size(
    reg: Registry, db_name: str, options: dict[str, Any], n: int, faults: tuple[str, ...], db: Any = None
) -> None:
    """Refuse a node count the database cannot run, and a fault that cannot
    bite on this many nodes (a partition of one node cuts no link)."""
    db = _make_db(reg, db_name, options) if db is None else db
    counts = tuple(db.supported_node_counts())
    if counts and n not in counts:
        raise SpecError(f"--db {db_name} cannot run {n} node(s); allowed: {', '.join(map(str, counts))}")
    if "partition" in faults and n < 2:
        raise SpecError(
            "--nemesis partition needs at least 2 nodes (a one-node cluster has no link to cut); "
            "use --nodes 3, or another fault (pause, kill)"
        )
    for seq in ("lagging-follower", "kill-leader-in-partition"):
        if seq in faults and n < 3:
            raise SpecError(
                f"--nemesis {seq} needs at least 3 nodes (a follower to cut off or slow down "
                "and a quorum without it); use --nodes 3"
            )


def unsafe_faults_of(reg: Registry, db: Any) -> tuple[str, ...]:
    """The test-only faults ``--unsafe-db-fault`` accepts for this database."""
    return tuple(db.unsafe_faults) if isinstance(db, UnsafeFaults) else tuple(reg.unsafe_db_faults)


def _check_serves(reg: Registry, db_name: str, db: Any, workload: str, options: dict[str, Any]) -> None:
    """Refuse a workload whose client interface the database does not offer."""
    try:
        w = lookup(reg.workloads, "workload", workload)(options)
    except (UnknownName, PluginError) as exc:
        raise SpecError(str(exc)) from None
    except ValueError as exc:
        raise SpecError(f"--workload {workload}: {exc}") from None
    interface = getattr(w, "interface", None)
    if interface is None:
        return  # a workload with clients of its own
    offered = tuple(db.interfaces)
    if interface not in offered:
        servable = [name for name in sorted(reg.workloads) if name != workload and _interface_of(reg, name) in offered]
        raise SpecError(
            f"--db {db_name} cannot serve the {workload} workload: it offers no {interface!r} client "
            f"(its interfaces: {', '.join(offered) or 'none'}; workloads it can run: "
            f"{', '.join(servable) or 'none'})"
        )


def _faults_the_db_takes(db: Any, db_name: str, asked: str, faults: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse a fault that cannot bite on this database (its
    ``unsupported_faults``: fault -> why; e.g. libfaketime's clock faults
    never reach etcd, a Go program): a run under it would test nothing of
    it. ``all`` leaves such faults out instead."""
    refused = dict(getattr(db, "unsupported_faults", {}) or {})
    if not refused:
        return faults
    named = [p.strip() for p in str(asked).split(",")]
    if "all" in named:
        faults = tuple(f for f in faults if f not in refused or f in named)
    bad = [f for f in faults if f in refused]
    if bad:
        raise SpecError(
            f"--db {db_name} cannot take the nemesis fault(s) {', '.join(bad)}: "
            + "; ".join(f"{f}: {refused[f]}" for f in bad)
        )
    return faults


def workload_for(db: Any, workload: str) -> str:
    """The workload a database runs for ``workload``: a database whose
    meaning of a workload's name differs names its own in
    ``workload_aliases`` (etcd's ``watch`` is ``watch-stream``: a revision
    stream, not ZooKeeper's one-shot watches)."""
    return str(dict(getattr(db, "workload_aliases", {}) or {}).get(workload, workload))


def servable_workloads(reg: Registry, db: Any) -> list[str]:
    """The registered workloads whose interface ``db`` offers (or that bring
    their own clients), after the database's aliases, once each."""
    offered = tuple(db.interfaces)
    out: list[str] = []
    for name in sorted(reg.workloads):
        name = workload_for(db, name)
        if name in out:
            continue
        try:
            w = lookup(reg.workloads, "workload", name)({})
        except Exception:  # noqa: BLE001 - a workload that cannot be built is not servable
            continue
        interface = getattr(w, "interface", None)
        if interface is None or interface in offered:
            out.append(name)
    return out


def _interface_of(reg: Registry, workload: str) -> str | None:
    try:
        return getattr(lookup(reg.workloads, "workload", workload)({}), "interface", None)
    except Exception:  # noqa: BLE001 - a workload that cannot be built is not offered
        return None


def build_spec(reg: Registry, c: _Common, workload: str, nemesis: str, name: str | None) -> TestSpec:
    """Validate CLI values against the registry and make a spec (raises SpecError)."""
    for table, kind, value in (
        (reg.backends, "backend", c.backend),
        (reg.dbs, "db", c.db),
        (reg.workloads, "workload", workload),
    ):
        if value not in table:
            raise SpecError(f"unknown {kind} {value!r}; allowed: {', '.join(sorted(table))}")
    faults = parse_nemesis(
        nemesis,
        reg.nemesis_faults,
        reg.faults_for(c.backend),
        c.backend,
        reg.nemesis_sequences,
        everything=reg.all_faults_for(c.backend),
    )
    count, options = _nodes_and_backend_options(c)
    db = _make_db(reg, c.db, options)
    faults = _faults_the_db_takes(db, c.db, nemesis, faults)
    workload = workload_for(db, workload)
    try:
        nodes = normalize_nodes(count if count is not None else reg.nodes_for(c.db))
    except PluginError as exc:
        raise SpecError(str(exc)) from None
    _check_serves(reg, c.db, db, workload, options)
    _check_cluster_size(reg, c.db, options, len(nodes), faults, db)
    reads = c.reads or str(getattr(db, "default_reads", "local"))
    modes = tuple(getattr(db, "reads_modes", ("local", "sync")))
    if reads not in modes:
        raise SpecError(f"--reads {reads} is not offered by --db {c.db}; allowed: {', '.join(modes)}")
    if c.latency_ms:
        if c.latency_ms < 0:
            raise SpecError(f"--latency must be >= 0 ms, got {c.latency_ms:g}")
        if c.backend != "local":
            raise SpecError(
                f"--latency needs the local backend (its proxy mesh delays links); the {c.backend} "
                "backend cannot delay packets (iptables has no delay, tc netem is not available)"
            )
        options["latency_ms"] = c.latency_ms
    if c.unsafe_db_fault:
        allowed = unsafe_faults_of(reg, db)
        if c.unsafe_db_fault not in allowed:
            raise SpecError(
                f"unknown --unsafe-db-fault {c.unsafe_db_fault!r} for --db {c.db}; allowed: "
                f"{', '.join(allowed) or 'none (this database has no test-only faults)'}"
            )
        options["unsafe_db_fault"] = c.unsafe_db_fault
    if c.failpoints:
        if c.db not in reg.failpoint_dbs:
            raise SpecError(
                f"--failpoint arms the squall node's test-only failpoints; --db {c.db} has none "
                f"(allowed with: {', '.join(reg.failpoint_dbs) or 'no database'})"
            )
        if c.backend != "local":
            raise SpecError(
                f"--failpoint needs the local backend (the harness arms every node through its "
                f"loopback failpoint API); the {c.backend} backend cannot reach it"
            )
        for fp in c.failpoints:
            try:
                reg.check_failpoint(fp)
            except ValueError as exc:
                raise SpecError(f"--failpoint {fp}: {exc}") from None
        options["failpoints"] = ",".join(fp.strip() for fp in c.failpoints)
    seed = c.seed if c.seed is not None else random.SystemRandom().randrange(2**31)
    return TestSpec(
        name=name
        or default_name(c.db, workload, faults)
        + (f"-unsafe-{c.unsafe_db_fault}" if c.unsafe_db_fault else "")
        + "".join(f"-fp-{fp.partition('=')[0].strip()}" for fp in c.failpoints),
        nodes=nodes,
        backend=c.backend,
        db=c.db,
        workload=workload,
        nemesis=faults,
        nemesis_interval_s=c.nemesis_interval,
        time_limit_s=c.time_limit,
        concurrency=parse_concurrency(c.concurrency, len(nodes)),
        rate=c.rate,
        seed=seed,
        reads=reads,
        clients=c.clients,
        min_availability=c.min_availability,
        options=tuple(sorted(options.items())),
    )


@contextmanager
def _signals_to(control: RunControl) -> Iterator[None]:
    """SIGINT/SIGTERM interrupt the run (the runner tears down and keeps the history)."""

    def handler(signum: int, _frame: Any) -> None:
        control.interrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. called from a test thread)
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def execute(reg: Registry, spec: TestSpec, results_root: Path, control: RunControl, show_progress: bool) -> RunOutcome:
    """Build the parts for ``spec`` from the registry and run it once."""
    # absolute: node processes run with their own data dir as cwd
    results_root = Path(results_root).resolve()
    run_dir = store.new_run_dir(results_root, spec.name)
    progress = Progress(spec.time_limit_s, enabled=show_progress)
    options = spec.option_dict
    try:
        backend = lookup(reg.backends, "backend", spec.backend)(options)
        db = lookup(reg.dbs, "db", spec.db)(options)
        workload = lookup(reg.workloads, "workload", spec.workload)({**options, "reads": spec.reads, "seed": spec.seed})
        workload = bind(workload, db)  # the database's clients for the workload's interface
        package = (
            reg.nemesis_package(list(spec.nemesis), spec.nemesis_interval_s, stream_rng(spec.seed, "nemesis"))
            if spec.nemesis
            else None
        )
    except (UnknownName, NotOffered) as exc:
        raise SpecError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - e.g. a part that is not installed yet
        msg = f"could not build the test's parts: {type(exc).__name__}: {exc}"
        store.write_spec(run_dir, spec)
        write_error_outcome(spec, run_dir, msg, "setup-failed", [], 0.0)
        store.update_latest(results_root, run_dir)
        return RunOutcome(run_dir, None, msg, EXIT_SETUP_FAILED, error=msg)
    return run_test(
        spec,
        backend,
        db,
        workload,
        package,
        run_dir,
        progress,
        control,
        results_root=results_root,
        clock=reg.clock() if reg.clock is not None else None,
    )


def _describe(outcome: RunOutcome) -> str:
    word = {True: "valid", False: "INVALID", "unknown": "UNKNOWN"}.get(outcome.valid, "ERROR")  # type: ignore[arg-type]
    if outcome.interrupted:
        word = "INTERRUPTED"
    text = f"{word}: {outcome.summary}\n  results: {outcome.run_dir}"
    written = [p for p in outcome.written if Path(p).name == "report.html"]
    report = Path(written[0]) if written else Path(outcome.run_dir) / "report.html"
    if report.exists():
        text += f"\n  report: {report}"  # the run's last line: where to look
    return text


def worst_exit_code(codes: list[int]) -> int:
    """errors (>= 3, highest first) > invalid (1) > unknown (2) > valid (0)."""
    errors = [c for c in codes if c >= 3]
    if errors:
        return max(errors)
    if EXIT_INVALID in codes:
        return EXIT_INVALID
    if EXIT_UNKNOWN in codes:
        return EXIT_UNKNOWN
    return EXIT_VALID


# -- squall run --------------------------------------------------------------

_REPLAY_KEEPS = ("replay", "results_dir", "progress", "test_count", "as_json")  # flags that apply to a replay


def _refuse_flags_replay_ignores(ctx: click.Context) -> None:
    """--replay runs the stored spec as it is: a test flag beside it would be
    silently ignored, so it is refused instead."""
    from click.core import ParameterSource

    given = []
    for param in ctx.command.params:
        if param.name in _REPLAY_KEEPS or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            given.append(param.opts[0] if param.opts else param.name)
    if given:
        _fail(
            f"--replay re-runs the stored test.json exactly (seed included), so {', '.join(given)} would be "
            f"ignored; drop {'it' if len(given) == 1 else 'them'} (only --results, --progress/--no-progress, "
            "--json and --test-count go with --replay), or start a new test without --replay"
        )


@click.command("run")
@click.option(
    "--workload",
    default=plugins.default("workload", "register"),
    show_default=True,
    help=f"{plugins.help_list('workload')} (the database must offer the workload's client interface; `squall list`).",
)
@click.option(
    "--nemesis",
    default="partition,kill",
    show_default=True,
    help=f"Comma-separated faults ({', '.join(plugins.names('nemesis'))}), all (every one of "
    "squall's own faults the backend supports) or none; they overlap on a seeded schedule. "
    "A targeted sequence (lagging-follower, kill-leader-in-partition, pause-majority) may be "
    "named too: it is then played over and over.",
)
@_common_options
@click.option("--test-count", type=int, default=1, show_default=True, help="Run the test this many times (seed + i).")
@click.option("--name", default=None, help="Test name (the results subfolder) [default: db-workload-nemesis].")
@click.option(
    "--replay",
    type=click.Path(exists=True),
    default=None,
    help="Re-run the spec stored in a run directory or its test.json, seed included; only "
    "--results, --progress/--no-progress, --json and --test-count may go with it.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print the runs' summary as JSON on stdout (the verdict lines go to stderr).",
)
@click.pass_context
def run(
    ctx: click.Context,
    workload: str,
    nemesis: str,
    test_count: int,
    name: str | None,
    replay: str | None,
    as_json: bool = False,
    **common: Any,
) -> None:
    """Start a cluster, drive it under faults, check the history, write a report."""
    reg = _registry(ctx)
    c = _Common(**common)
    if test_count < 1:
        _fail(f"--test-count must be at least 1, got {test_count}")
    if replay:
        _refuse_flags_replay_ignores(ctx)
    try:
        if replay:
            spec = TestSpec.load(replay)
            if spec.db in reg.dbs:  # an unknown db is reported when the run builds its parts
                _check_cluster_size(reg, spec.db, spec.option_dict, len(spec.nodes), spec.nemesis)
        else:
            spec = build_spec(reg, c, workload, nemesis, name)
    except SpecError as exc:
        _fail(str(exc))
    results_root = Path(c.results_dir)
    control = RunControl()
    codes = []
    rows = []
    with _signals_to(control):
        for i in range(test_count):
            this = spec if i == 0 else replace(spec, seed=spec.seed + i)
            try:
                outcome = execute(reg, this, results_root, control, c.progress)
            except SpecError as exc:
                _fail(str(exc))
            click.echo(_describe(outcome), err=as_json)  # the verdict on stdout (the JSON's place with --json)
            codes.append(outcome.exit_code)
            if as_json:
                rows.append(summary.run_row(this, outcome, results_root))
            if outcome.exit_code == EXIT_INTERRUPTED:
                break
    code = EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else worst_exit_code(codes)
    if as_json:
        click.echo(summary.to_json(summary.summary_doc(rows, code, "run")))
    ctx.exit(code)


# -- squall test-all ----------------------------------------------------------

# The standard suite (docs/running.md): with no --workloads/--nemeses,
# test-all runs every workload once under this composed schedule, in which
# partitions, pauses and kills overlap and targeted sequences (a lagging
# follower then a leader kill, a leader killed during a partition, a paused
# majority) come up.
STANDARD_NEMESES = "partition,pause,kill"


@click.command("test-all")
@click.option(
    "--workloads",
    default="all",
    show_default=True,
    help="Comma-separated workloads, or all (every registered workload the database can serve).",
)
@click.option(
    "--nemeses",
    default=STANDARD_NEMESES,
    show_default=True,
    help="Semicolon-separated nemesis lists, e.g. 'partition;kill;partition,pause;none'; each list "
    "is one composed, overlapping schedule. The default is the standard suite's schedule.",
)
@_common_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print the summary as JSON on stdout (the table goes to stderr).",
)
@click.pass_context
def test_all(ctx: click.Context, workloads: str, nemeses: str, as_json: bool = False, **common: Any) -> None:
    """Run every workload under every nemesis; print a summary table.

    Writes <results>/test-all/<timestamp>/summary.json (one row per run) and
    junit.xml (one test case per run), and points <results>/test-all/latest
    at them."""
    reg = _registry(ctx)
    c = _Common(**common)
    if c.seed is None:
        c.seed = random.SystemRandom().randrange(2**31)
    wls = [w.strip() for w in workloads.split(",") if w.strip()]
    if wls == ["all"]:  # every registered workload the database can serve
        try:
            db = _make_db(reg, c.db, {}) if c.db in reg.dbs else None
        except SpecError as exc:
            _fail(str(exc))
        wls = servable_workloads(reg, db) if db is not None else sorted(reg.workloads)
    nems = [n.strip() for n in nemeses.split(";") if n.strip()]
    if not wls or not nems:
        _fail("test-all needs at least one workload and one nemesis list")
    try:
        specs = [build_spec(reg, c, w, n, None) for w in wls for n in nems]
    except SpecError as exc:
        _fail(str(exc))
    control = RunControl()
    rows: list[tuple[TestSpec, RunOutcome]] = []
    with _signals_to(control):
        for spec in specs:
            outcome = execute(reg, spec, Path(c.results_dir), control, c.progress)
            click.echo(_describe(outcome), err=True)
            rows.append((spec, outcome))
            if outcome.exit_code == EXIT_INTERRUPTED:
                break
    codes = [o.exit_code for _, o in rows]
    code = EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else worst_exit_code(codes)
    doc = summary.summary_doc([summary.run_row(s, o, c.results_dir) for s, o in rows], code, "test-all")
    suite_dir = summary.write_suite(c.results_dir, doc)
    click.echo(summary_table(doc["runs"]), err=as_json)
    click.echo(f"summary: {suite_dir / 'summary.json'}\njunit:   {suite_dir / 'junit.xml'}", err=True)
    if as_json:
        click.echo(summary.to_json(doc))
    ctx.exit(code)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The summary's rows (``harness.summary.run_row``) as a text table."""
    header = ("test", "seed", "verdict", "exit", "operations", "wall s", "results")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["test"],
                str(r["seed"]),
                r["verdict"],
                str(r["exit_code"]),
                str(r["counts"]["operations"]),
                f"{r['wall_s']:.1f}",
                r["run_dir"],
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


# -- squall analyze -----------------------------------------------------------


@click.command("analyze")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write results.json, junit.xml and report.html here instead of rewriting RUN_DIR's.",
)
@click.pass_context
def analyze_cmd(ctx: click.Context, run_dir: str, out_dir: str | None) -> None:
    """Re-check a stored run's history with the workload named in its test.json.

    A run whose setup failed (or whose parts could not be built) has nothing
    to check: it is refused with exit 4 and its files are left as they are.
    """
    reg = _registry(ctx)
    path = Path(run_dir)
    try:
        spec = TestSpec.load(path)
        history = store.read_history(path)
        workload = lookup(reg.workloads, "workload", spec.workload)(
            {**spec.option_dict, "reads": spec.reads, "seed": spec.seed}
        )
    except (SpecError, store.StoreError, UnknownName) as exc:
        _fail(str(exc))
    previous = store.read_results(path) or {}
    if previous.get("status") == "setup-failed":
        click.echo(
            f"ERROR: {path} is a run whose setup failed ({previous.get('summary', 'no summary')}); "
            "there is no history to check, nothing was rewritten",
            err=True,
        )
        ctx.exit(EXIT_SETUP_FAILED)
    outcome = analyze(spec, workload, history, path, out_dir=Path(out_dir) if out_dir else None)
    click.echo(_describe(outcome))
    click.echo("wrote " + ", ".join(str(p) for p in outcome.written))
    ctx.exit(outcome.exit_code)
