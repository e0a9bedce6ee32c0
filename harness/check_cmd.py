"""`squall check PATH`: judge recorded histories with squall's checkers.

PATH is a history file or a directory (every history file under it,
recursively: *.jsonl, *.edn, *.log, *.txt, *.json). Each file is read in
``--format`` (``auto`` detects it from the content), checked against
``--model`` for ``--consistency`` (linearizable by default), and reported.

Model defaults, when ``--model`` is not given: the format's own model
(Porcupine etcd logs -> cas-register starting at nil; Porcupine kv logs ->
kv, every key starting at ""), else cas-register. ``--initial`` (an EDN or
JSON literal: ``0``, ``nil``, ``'{:x 0 :y 0}'``) overrides the initial
state; without it the format's own initial state (if it has one) or the
model's natural empty state (nil, "", {}, free, #{}, empty queue) is used.

A squall run is checked as the run checked it: for a run directory (one
holding ``test.json``), or a ``history.jsonl`` with ``test.json`` beside it,
the workload named in ``test.json`` judges the history with its own models
and checkers, so ``squall check RUN_DIR`` reproduces the run's verdict for
every workload (register, set, lock, session). ``--model`` checks such a
history against one model instead.

Jepsen ``independent`` histories (register ops whose values are ``[k v]``:
reads ``[k nil]``, writes ``[k v]``, cas ``[k [old new]]``) are detected and
checked key by key.

A history with no operation at all is "unknown" (exit 2): it proves nothing.
``--allow-empty`` checks it anyway (an empty history is then valid).

Exit codes: 0 valid, 1 invalid, 2 unknown, 3 bad input or usage. For a
directory the exit code is the worst verdict (invalid > unknown > valid),
and 3 if any file could not be read or checked at all (malformed history,
an operation the model does not know).

``--json`` prints ``{"results": [{"file", "valid", "summary", ...}]}``, where
``valid`` is true, false or "unknown", or null with an ``error`` for a file
that could not be checked. ``--html FILE`` writes one self-contained page
explaining the check: for a single file, that file's; for a directory, the
first invalid file's (or the first file's when none is invalid).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from checkers import linearizable, sequential
from checkers.history import (
    FORMATS,
    History,
    HistoryError,
    is_independent,
    iter_files,
    parse_literal,
    read_history,
    split_independent,
)
from checkers.models import MODEL_NAMES, Model, ModelError, get_model
from checkers.result import Result, jsonable

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_INPUT = 0, 1, 2, 3
_CHECKERS = {"linearizable": linearizable.check, "sequential": sequential.check}
_DEFAULT_MODEL = "cas-register"
_KEYED_MODELS = ("register", "cas-register")  # models a Jepsen independent history splits for


class BadInput(click.ClickException):
    """Bad input or usage: exit code 3 even in click's standalone mode."""

    exit_code = EXIT_BAD_INPUT


@dataclass
class FileOutcome:
    """One file's check: a Result, or the error that prevented one."""

    path: Path
    result: Result | None = None
    error: str | None = None
    model: Model | None = None
    history: History | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Any:
        return None if self.result is None else self.result.valid

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"file": str(self.path)}
        if self.result is None:
            d.update(valid=None, error=self.error)
            return d
        r = self.result
        d.update(valid=r.valid, checker=r.checker, summary=r.summary, **self.extra, elapsed_s=round(self.seconds, 6))
        if r.valid is not True:
            d["explanation"] = r.explanation
        if r.counterexample is not None:
            d["counterexample"] = jsonable(r.counterexample)
        if r.witness is not None:
            d["witness"] = jsonable(r.witness)
        d["details"] = jsonable(r.details)
        return d


def _parse_initial(text: str | None) -> Any:
    if text is None:
        return _UNSET
    try:
        return parse_literal(text)
    except ValueError as exc:
        raise BadInput(
            f"--initial: {exc}; give an EDN or JSON literal such as 0, nil, '{{:x 0 :y 0}}' or '{{\"x\": 0}}'"
        ) from None


_UNSET = object()


def _pick_model(name: str | None, initial: Any, history: History) -> Model:
    """The model to check with: the explicit choice, else the format's."""
    if name is None:
        name = history.default_model or _DEFAULT_MODEL
        if initial is _UNSET and history.default_model is not None:
            initial = history.default_initial
    if initial is _UNSET:
        return get_model(name)
    return get_model(name, initial)


def _consistency_names() -> tuple[str, ...]:
    """The registered checkers (squall.checkers entry points), squall's own first."""
    from harness import plugins

    return plugins.names("checker") or tuple(_CHECKERS)


def _checker(registry: Any, consistency: str) -> Any:
    """The check function for ``--consistency``: the registry's (a plugin's,
    loaded now so a broken one is bad input, not a verdict), else squall's own."""
    discovery = getattr(registry, "discovery", None)
    plugin = discovery.get("checker", consistency) if discovery is not None else None
    if plugin is not None:
        from harness.plugins import PluginError

        try:
            return plugin.load()
        except PluginError as exc:
            raise BadInput(str(exc)) from None
    if consistency in _CHECKERS:
        return _CHECKERS[consistency]
    raise BadInput(f"--consistency {consistency!r} is not a registered checker")


def check_file(
    path: Path,
    *,
    model_name: str | None,
    initial: Any,
    fmt: str,
    consistency: str,
    budget: float | None,
    allow_empty: bool = False,
    checker: Any = None,
) -> FileOutcome:
    """Read, check and time one file; bad input becomes ``error``, a checker
    crash becomes "unknown" (it proved nothing). ``checker`` is the check
    function (default: squall's own for ``consistency``)."""
    outcome = FileOutcome(path)
    started = time.monotonic()
    try:
        history = read_history(path, fmt)
        model = _pick_model(model_name, initial, history)
        independent = model.name in _KEYED_MODELS and is_independent(history)
        if independent:
            history = split_independent(history)
        outcome.history, outcome.model = history, model
        outcome.extra = {
            "model": model.name,
            "initial": jsonable(model.initial),
            "format": history.format,
            "consistency": consistency,
        }
        if independent:
            outcome.extra["independent"] = True
        if not history and not allow_empty:
            outcome.result = Result.unknown(
                consistency,
                "empty history: nothing was checked",
                f"{path} holds no operation, so it proves nothing; pass "
                "--allow-empty to accept an empty history as valid",
            )
        else:
            check_fn: Any = checker or _CHECKERS[consistency]
            outcome.result = check_fn(history, model, budget_s=budget)
    except (HistoryError, ModelError) as exc:
        msg = str(exc)
        if isinstance(exc, ModelError) and model_name is None and outcome.model is not None:
            msg += (
                f" (no --model given, so {outcome.model.name} was assumed: pass --model, one of "
                f"{', '.join(MODEL_NAMES)}; for a squall run, check its run directory, which holds test.json)"
            )
        outcome.error = msg if str(path) in msg else f"{path}: {msg}"
    except Exception as exc:  # noqa: BLE001 - a checker bug must not become a verdict
        outcome.result = Result.from_exception(consistency, exc)
    outcome.seconds = time.monotonic() - started
    return outcome


def run_spec_beside(path: Path) -> Path | None:
    """The test.json of the squall run ``path`` belongs to (a run directory,
    or its history.jsonl), or None."""
    if path.is_dir():
        return path / "test.json" if (path / "test.json").is_file() else None
    if path.name == "history.jsonl" and (path.parent / "test.json").is_file():
        return path.parent / "test.json"
    return None


def check_run_file(path: Path, spec_path: Path, registry: Any, allow_empty: bool = False) -> FileOutcome:
    """Judge a squall run's history.jsonl with the workload its test.json
    names: the same checkers and the same verdict rules as the run."""
    from harness import runner, store
    from harness.registry import UnknownName, lookup
    from harness.spec import SpecError, TestSpec

    outcome = FileOutcome(path)
    started = time.monotonic()
    try:
        spec = TestSpec.load(spec_path)
        ops = store.read_history(path)
        if registry is None:
            raise SpecError("no workload registry (run through `squall check`)")
        workload = lookup(registry.workloads, "workload", spec.workload)(
            {**spec.option_dict, "reads": spec.reads, "seed": spec.seed}
        )
        outcome.extra = {"workload": spec.workload, "test": spec.name, "spec": str(spec_path)}
        if not ops and allow_empty:
            outcome.result = Result.ok(
                f"{spec.workload}-workload", "empty history accepted (--allow-empty)", {"operations": 0}
            )
        else:
            valid, summary, result = runner.judge(spec, workload, ops)
            if valid != result.valid:
                result = Result.unknown(result.checker, summary, result.explanation, result.details)
            outcome.result = result
    except (SpecError, store.StoreError, UnknownName) as exc:
        msg = str(exc)
        outcome.error = (
            f"{path}: {msg}; to check it against one model instead, pass --model (one of {', '.join(MODEL_NAMES)})"
        )
    outcome.seconds = time.monotonic() - started
    return outcome


def exit_code(outcomes: list[FileOutcome]) -> int:
    """Worst verdict: bad input > invalid > unknown > valid."""
    if any(o.result is None for o in outcomes):
        return EXIT_BAD_INPUT
    if any(o.verdict is False for o in outcomes):
        return EXIT_INVALID
    if any(o.verdict is not True for o in outcomes):
        return EXIT_UNKNOWN
    return EXIT_VALID


def _label(o: FileOutcome) -> str:
    if o.result is None:
        return "ERROR"
    return {True: "valid", False: "INVALID"}.get(o.verdict, "unknown")  # type: ignore[arg-type]


def _ops(o: FileOutcome) -> str:
    if o.result is None:
        return "-"
    return str(o.result.details.get("operations", "-"))


def _print_table(outcomes: list[FileOutcome], root: Path) -> None:
    rows = []
    for o in outcomes:
        try:
            name = str(o.path.relative_to(root))
        except ValueError:
            name = str(o.path)
        note = o.error if o.result is None else o.result.summary
        rows.append((_label(o), _ops(o), f"{o.seconds:.3f}", name, note or ""))
    width = max([len("file")] + [len(r[3]) for r in rows])
    click.echo(f"{'verdict':<8} {'ops':>7} {'secs':>8}  {'file':<{width}}  summary")
    for label, ops, secs, name, note in rows:
        click.echo(f"{label:<8} {ops:>7} {secs:>8}  {name:<{width}}  {note[:100]}")
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[_label(o)] = counts.get(_label(o), 0) + 1
    click.echo(f"{len(outcomes)} files: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


def _print_one(o: FileOutcome) -> None:
    if o.result is None:
        return  # the error is raised as BadInput by the caller
    r = o.result
    click.echo(f"{o.path}: {_label(o)}: {r.summary}")
    if r.valid is not True and r.explanation and r.explanation != r.summary:
        click.echo(r.explanation)


def _write_html(target: Path, outcomes: list[FileOutcome]) -> None:
    from checkers.render import render_html  # only when asked: it loads jinja2

    checked = [o for o in outcomes if o.result is not None]
    if not checked:
        return
    checked = [o for o in checked if o.model is not None]  # a run's workload checks have no one model
    if not checked:
        click.echo("--html: not written: a squall run's page is its report.html", err=True)
        return
    pick = next((o for o in checked if o.verdict is False), checked[0])
    assert pick.result is not None  # checked holds outcomes with a result
    page = render_html(pick.result, pick.history, pick.model, title=str(pick.path))
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--html: cannot write {target}: {exc.strerror}") from None
    click.echo(f"wrote {target} ({pick.path})", err=True)


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive number of seconds, not {value:g}")
    return value


@click.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "model_name",
    type=click.Choice(MODEL_NAMES),
    default=None,
    help="Model to check against (default: the format's own, else cas-register).",
)
@click.option(
    "--initial", default=None, metavar="LITERAL", help="Initial state as an EDN or JSON literal: 0, nil, '{:x 0 :y 0}'."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("auto",) + tuple(FORMATS)),
    default="auto",
    show_default=True,
    help="History format.",
)
@click.option(
    "--consistency",
    type=click.Choice(_consistency_names()),
    default="linearizable",
    show_default=True,
    help="Consistency model to check (a registered checker: `squall list`).",
)
@click.option(
    "--budget",
    type=float,
    default=None,
    callback=_positive,
    metavar="SECONDS",
    help="Time budget per file; running out gives 'unknown' (default: none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a self-contained HTML page explaining the check.",
)
@click.option(
    "--allow-empty", is_flag=True, help="Accept a history with no operation as valid (default: unknown, exit 2)."
)
@click.pass_context
def check(
    ctx: click.Context,
    path: Path,
    model_name: str | None,
    initial: str | None,
    fmt: str,
    consistency: str,
    budget: float | None,
    as_json: bool,
    html: Path | None,
    allow_empty: bool,
) -> None:
    """Check the history at PATH (a file, or a directory of them).

    Exit codes: 0 valid, 1 invalid, 2 unknown, 3 bad input or usage.
    """
    init = _parse_initial(initial)
    from harness.registry import Registry

    registry = ctx.find_object(Registry)
    checker = _checker(registry, consistency)
    run_mode = model_name is None and fmt in ("auto", "jsonl")  # else: one model, as asked
    if run_mode and path.is_dir() and run_spec_beside(path) is not None:
        path = path / "history.jsonl"  # a run directory: its history, judged by its workload
        if not path.exists():
            raise BadInput(f"{path.parent}: a run directory without history.jsonl")
    is_dir = path.is_dir()
    files = list(iter_files(path))
    if not files:  # a gate pointed at the wrong folder must not pass
        raise BadInput(
            f"{path}: no history files found (looked for *.jsonl, *.edn, *.log, *.txt and *.json, recursively)"
        )
    outcomes = []
    progress = sys.stderr.isatty()
    every = max(1, len(files) // 20)  # without a terminal: about 20 lines in all
    for n, f in enumerate(files, 1):
        if is_dir:
            msg = f"[{n}/{len(files)}] {f}"
            if progress:
                click.echo(f"\r{msg[:100]:<100}", err=True, nl=False)
            elif n % every == 0 or n == 1 or n == len(files):
                click.echo(msg, err=True)
        spec_path = run_spec_beside(f) if run_mode else None
        if spec_path is not None:
            outcomes.append(check_run_file(f, spec_path, registry, allow_empty))
        else:
            outcomes.append(
                check_file(
                    f,
                    model_name=model_name,
                    initial=init,
                    fmt=fmt,
                    consistency=consistency,
                    budget=budget,
                    allow_empty=allow_empty,
                    checker=checker,
                )
            )
    if is_dir and progress:
        click.echo("", err=True)
    if html is not None:
        _write_html(html, outcomes)
    if as_json:
        click.echo(json.dumps({"results": [o.to_json() for o in outcomes]}, indent=1))
    elif is_dir:
        _print_table(outcomes, path)
    else:
        _print_one(outcomes[0])
    for o in outcomes:
        if o.result is None:
            click.echo(f"error: {o.error}", err=True)
    ctx.exit(exit_code(outcomes))
