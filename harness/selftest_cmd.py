"""`squall selftest`: the harness proves its power on a catalogue of known bugs.

For the bugs chosen (all, ``--fast`` or ``--only``), it first runs the
unmutated squall node on every campaign they use and on the failpoint
controls (``harness/selftest_catalogue.py``): each must be judged valid.
Then it runs each bug's campaign against a node with that bug armed, up to
the bug's number of attempts (seeds ``--seed``, ``--seed + 1``, ...), until
a run is judged invalid. It prints the track record (bug, kind, campaign,
caught?, runs and seconds to catch, the anomaly found, the command that
reproduces it) and exits 0 only when the real node passed every campaign
and every bug was caught; 1 otherwise; 4 when a run could not even be set
up (the environment, not a verdict). "Caught" means invalid (exit 1) with
the checker's counterexample; unknown (2) catches nothing.

Runs are ordinary ``squall run`` runs (in this process), stored under
``<results>/selftest/<timestamp>/``, with ``selftest.json`` beside them. A
simulator campaign (``Campaign.sim_seeds``) is one ``squall sim`` process over
seeds ``seed * N .. seed * N + N - 1`` (its JSON report is kept beside the
runs); the real node must pass the very seeds its bugs are tried on.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from harness import store
from harness.registry import Registry
from harness.runner import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_SETUP_FAILED, EXIT_VALID, RunControl
from harness.selftest_catalogue import CATALOGUE, FAILPOINT_CONTROLS, FAST_FAILPOINT_CONTROLS, Bug, Campaign
from harness.spec import SpecError

SELFTEST_DIR = "selftest"
EXIT_FAILED = 1


@dataclass
class Attempt:
    seed: int
    exit_code: int
    verdict: str
    seconds: float
    summary: str
    anomaly: str
    run_dir: str
    reproduce: str = ""  # set when the run has a sharper replay than the campaign's command (a failing sim seed)


@dataclass
class Row:
    """One line of the track record: a bug (``fault``) or a control (``fault`` None)."""

    name: str
    kind: str
    campaign: Campaign
    fault: str | None
    attempts: list[Attempt] = field(default_factory=list)
    allowed: int = 1

    @property
    def outcome(self) -> str:
        codes = [a.exit_code for a in self.attempts]
        if self.fault is None:
            return "passed" if codes and codes[-1] == EXIT_VALID else "FAILED"
        return "caught" if EXIT_INVALID in codes else "NOT CAUGHT"

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "caught")

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["campaign"] = self.campaign.describe()
        d["outcome"] = self.outcome
        d["ok"] = self.ok
        d["runs"] = len(self.attempts)
        d["seconds"] = round(self.seconds, 1)
        last = self.attempts[-1] if self.attempts else None
        d["anomaly"] = last.anomaly if last else ""
        d["reproduce"] = self.reproduce
        return d

    @property
    def reproduce(self) -> str:
        last = self.attempts[-1] if self.attempts else None
        if last is not None and last.reproduce:
            return last.reproduce
        seed = last.seed if last else 0
        c = self.campaign
        if c.sim_seeds:
            args = ["squall", "sim", *c.args(), "--seed", str(seed * c.sim_seeds)]
            return shlex.join(args + (["--unsafe-test-fault", self.fault] if self.fault else []))
        args = ["squall", "run", *c.args()]
        if self.fault:
            args += ["--unsafe-db-fault", self.fault]
        return shlex.join([*args, "--seed", str(seed)])


def _anomaly(run_dir: Path, summary: str) -> str:
    """The checker's summary and the first line of its explanation (the counterexample's headline)."""
    results = store.read_results(run_dir) or {}
    result = results.get("result") or {}
    first = str(result.get("explanation") or "").strip().splitlines()
    return summary + (f" -- {first[0]}" if first else "")


def run_sim(campaign: Campaign, fault: str | None, seed: int, results_root: Path) -> Attempt:
    """One ``squall sim`` over the campaign's seeds (``seed * N`` on), as a child process."""
    root = Path(__file__).resolve().parents[1]
    first = seed * campaign.sim_seeds
    cmd = [sys.executable, "-m", "harness.cli", "sim", *campaign.args(), "--seed", str(first), "--json"]
    if fault:
        cmd += ["--unsafe-test-fault", fault, "--fail-fast"]  # one failing seed is a catch; the real node runs all
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    seconds = time.monotonic() - t0
    report = results_root / f"sim-{fault or 'real'}-seeds-{first}-{first + campaign.sim_seeds - 1}.json"
    report.write_text(proc.stdout, encoding="utf-8")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        msg = f"squall sim exited {proc.returncode} without a report: {proc.stderr.strip()[-300:]}"
        return Attempt(seed, max(proc.returncode, EXIT_SETUP_FAILED), "error", seconds, msg, "", str(report))
    bad = [o for o in doc["outcomes"] if o["verdict"] == "invalid"]
    summary = (
        f"{doc['seeds']} seeds: {doc['seeds'] - doc['invalid'] - doc['unknown']} valid, "
        f"{doc['invalid']} failing, {doc['unknown']} unknown"
    )
    verdict = {EXIT_VALID: "valid", EXIT_INVALID: "invalid"}.get(proc.returncode, "unknown")
    anomaly = reproduce = ""
    if bad:
        first_bad = bad[0]
        anomaly = f"{summary} -- seed {first_bad['seed']}: {(first_bad['problems'] or ['?'])[0]}"
        reproduce = shlex.join(
            [
                "squall",
                "sim",
                "--seeds",
                "1",
                "--seed",
                str(first_bad["seed"]),
                "--nodes",
                str(first_bad["nodes"]),
                *(["--unsafe-test-fault", fault] if fault else []),
            ]
        )
    return Attempt(seed, proc.returncode, verdict, seconds, summary, anomaly, str(report), reproduce)


def run_once(
    reg: Registry, campaign: Campaign, fault: str | None, seed: int, results_root: Path, control: RunControl
) -> Attempt:
    """One ``squall run`` of ``campaign`` (with ``fault`` armed, if any) in this process
    (or one ``squall sim`` for a simulator campaign)."""
    if campaign.sim_seeds:
        return run_sim(campaign, fault, seed, results_root)
    from harness.run_cmd import _Common, build_spec, execute
    from harness.summary import verdict_word

    common = _Common(
        backend="local",
        db="squall",
        nemesis_interval=campaign.interval_s,
        nodes=str(campaign.nodes),
        time_limit=campaign.time_limit_s,
        concurrency=campaign.concurrency or "2n",
        rate=campaign.rate if campaign.rate is not None else 20.0,
        seed=seed,
        results_dir=str(results_root),
        reads=campaign.reads,
        progress=False,
        unsafe_db_fault=fault,
        failpoints=campaign.failpoints,
    )
    name = f"selftest-{fault or 'real'}-{campaign.workload}-{campaign.nemesis.replace(',', '+')}"
    spec = build_spec(reg, common, campaign.workload, campaign.nemesis, name)
    t0 = time.monotonic()
    outcome = execute(reg, spec, results_root, control, False)
    seconds = time.monotonic() - t0
    anomaly = _anomaly(Path(outcome.run_dir), outcome.summary) if outcome.exit_code == EXIT_INVALID else ""
    return Attempt(
        seed, outcome.exit_code, verdict_word(outcome), seconds, outcome.summary, anomaly, str(outcome.run_dir)
    )


def plan(bugs: list[Bug], fast: bool) -> list[Row]:
    """The real node's rows (each campaign the bugs use, once; then the failpoint controls), then the bugs'."""
    rows: list[Row] = []
    seen: set[Campaign] = set()
    for b in bugs:
        if b.campaign not in seen:
            seen.add(b.campaign)
            rows.append(Row("real node", "control", b.campaign, None))
    for c in FAST_FAILPOINT_CONTROLS if fast else FAILPOINT_CONTROLS:
        rows.append(Row("real node", "failpoints", c, None))
    for b in bugs:
        rows.append(Row(b.name, b.kind, b.campaign, b.name, allowed=b.attempts))
    return rows


def markdown_table(rows: list[Row]) -> str:
    """The track record as the Markdown table docs/track-record.md keeps."""
    lines = [
        "| bug | kind | campaign | caught? | runs | seconds | anomaly found | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        anomaly = (r.attempts[-1].anomaly or r.attempts[-1].summary) if r.attempts else ""
        anomaly = anomaly.replace("|", "\\|")
        if len(anomaly) > 200:
            anomaly = anomaly[:197] + "..."
        caught = {"caught": "yes", "NOT CAUGHT": "**no**", "passed": "valid (passes)", "FAILED": "**FAILED**"}
        lines.append(
            f"| {r.name if r.fault else '*' + r.name + '*'} | {r.kind} | {r.campaign.describe()} | "
            f"{caught[r.outcome]} | {len(r.attempts)}/{r.allowed} | {r.seconds:.0f} | {anomaly} | "
            f"`{r.reproduce}` |"
        )
    return "\n".join(lines)


def text_table(rows: list[Row]) -> str:
    header = ("bug", "kind", "outcome", "runs", "seconds", "anomaly / verdict")
    out = [header]
    for r in rows:
        last = r.attempts[-1] if r.attempts else None
        note = (last.anomaly or last.summary) if last else ""
        out.append((r.name, r.kind, r.outcome, f"{len(r.attempts)}/{r.allowed}", f"{r.seconds:.0f}", note[:110]))
    widths = [max(len(row[i]) for row in out) for i in range(len(header) - 1)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)] + [row[-1]]).rstrip() for row in out]
    lines.insert(1, "-" * min(160, sum(widths) + 2 * len(widths) + 20))
    return "\n".join(lines)


def select(fast: bool, only: str | None) -> list[Bug]:
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        known = {b.name: b for b in CATALOGUE}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise click.UsageError(f"--only: unknown bug(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
        return [known[n] for n in names]
    return [b for b in CATALOGUE if b.fast] if fast else list(CATALOGUE)


@click.command("selftest")
@click.option(
    "--fast", is_flag=True, default=False, help="Only the fast subset of the catalogue (for CI: a few minutes)."
)
@click.option("--only", default=None, metavar="BUG,BUG,...", help="Only these bugs (see --list).")
@click.option("--list", "list_only", is_flag=True, default=False, help="Print the catalogue and exit.")
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Seed of each campaign's first run; a bug's later attempts use seed + 1, + 2, ...",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 50),
    default=None,
    help="Cap every bug's attempts at this many runs [default: each bug's own bound].",
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
    show_default=True,
    help="Results folder (runs go to RESULTS/selftest/<timestamp>/).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print the track record as JSON on stdout (progress and the table go to stderr).",
)
@click.option(
    "--markdown",
    is_flag=True,
    default=False,
    help="Also print the track record as the Markdown table of docs/track-record.md.",
)
@click.pass_context
def selftest(
    ctx: click.Context,
    fast: bool,
    only: str | None,
    list_only: bool,
    seed: int,
    max_attempts: int | None,
    results_dir: str,
    as_json: bool,
    markdown: bool,
) -> None:
    """Run the real node and a catalogue of known bugs; exit 0 only if the node passes and every bug is caught."""
    from harness.run_cmd import _registry, _signals_to

    bugs = select(fast, only)
    if list_only:
        for b in bugs:
            click.echo(
                f"{b.name:28} {b.kind:12} {'fast ' if b.fast else ''}{b.campaign.describe()}"
                f" (<= {b.attempts} runs)\n{'':28} {b.what}"
            )
        return
    reg = _registry(ctx)
    rows = plan(bugs, fast)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    root = Path(results_dir).resolve() / SELFTEST_DIR / stamp
    root.mkdir(parents=True, exist_ok=True)
    control = RunControl()
    started = time.monotonic()
    total = len(rows)
    err = as_json  # progress goes to stderr anyway; the table too with --json

    def say(text: str) -> None:
        click.echo(text, err=True)

    say(
        f"squall selftest: {sum(1 for r in rows if r.fault is None)} real-node campaigns, "
        f"{sum(1 for r in rows if r.fault)} bugs; runs under {root}"
    )
    interrupted = False
    setup_failed = False
    with _signals_to(control):
        for n, row in enumerate(rows, 1):
            allowed = row.allowed if max_attempts is None or row.fault is None else min(row.allowed, max_attempts)
            row.allowed = allowed
            for k in range(allowed):
                what = row.fault or "the real node"
                say(f"[{n}/{total}] {what}: run {k + 1}/{allowed} ({row.campaign.describe()}) ...")
                try:
                    a = run_once(reg, row.campaign, row.fault, seed + k, root, control)
                except SpecError as exc:
                    raise click.UsageError(f"{what}: {exc}") from None
                row.attempts.append(a)
                note = a.anomaly or a.summary
                note = note if len(note) <= 240 else note[:237] + "..."
                say(
                    f"[{n}/{total}] {what}: {a.verdict} in {a.seconds:.1f} s"
                    + (f": {note}" if a.exit_code != EXIT_VALID else "")
                )
                if a.exit_code == EXIT_INTERRUPTED:
                    interrupted = True
                    break
                if a.exit_code >= EXIT_SETUP_FAILED:
                    setup_failed = True
                if row.fault is None or a.exit_code == EXIT_INVALID:
                    break  # the real node gets one run per campaign; a bug is caught once
            if interrupted:
                break
    wall = time.monotonic() - started
    passed = not interrupted and all(r.ok for r in rows)
    doc = {
        "format": 1,
        "passed": passed,
        "wall_s": round(wall, 1),
        "results": str(root),
        "rows": [r.to_dict() for r in rows],
    }
    (root / "selftest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    click.echo(text_table(rows), err=err)
    if markdown:
        click.echo("\n" + markdown_table(rows), err=err)
    real = [r for r in rows if r.fault is None]
    caught = [r for r in rows if r.fault and r.ok]
    say(
        f"\nreal node: {sum(r.ok for r in real)}/{len(real)} campaigns valid; bugs caught: "
        f"{len(caught)}/{len(rows) - len(real)}; {wall:.0f} s; {root / 'selftest.json'}"
    )
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    if interrupted:
        ctx.exit(EXIT_INTERRUPTED)
    if passed:
        ctx.exit(EXIT_VALID)
    failed_rows = [r for r in rows if not r.ok]
    if setup_failed and all(a.exit_code >= EXIT_SETUP_FAILED for r in failed_rows for a in r.attempts[-1:]):
        ctx.exit(EXIT_SETUP_FAILED)  # nothing failed on a verdict: the environment did
    ctx.exit(EXIT_FAILED)


__all__ = ["Attempt", "Row", "markdown_table", "plan", "run_once", "select", "selftest", "text_table"]
