"""The `squall` pytest fixture (registered through the ``pytest11`` entry
point, so installing squall is enough).

    def test_my_change_keeps_the_register_linearizable(squall):
        result = squall.run(db="zookeeper", workload="register", nemesis="partition,kill", time_limit=20)
        result.assert_valid()        # or: assert result, or: assert result.valid is True

``squall.run(**flags)`` runs ``squall run --json`` in a child process (a
crashing or hung harness cannot take the test session down; it cleans its
cluster up itself, and a child that outlives its timeout gets SIGTERM, which
tears the cluster down, then SIGKILL) and returns a :class:`SquallResult`.
Keyword arguments are the flags of ``squall run`` with ``_`` for ``-``
(``time_limit=20`` is ``--time-limit 20``; ``True`` for a bare flag); an
unknown keyword is an error naming the allowed ones, and a flag value squall
refuses raises :class:`SquallUsageError` with squall's message.

Results go under the test's own temporary directory unless
``--squall-results DIR`` is given to pytest (then ``DIR/<test name>/``, e.g.
to keep them as a CI artifact).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

EXIT_BAD_INPUT = 3
TIMEOUT_MARGIN_S = 300.0  # setup, heal, recovery, final reads and checking on top of the time limit


class SquallUsageError(ValueError):
    """squall refused the flags (exit 3); the message is squall's own."""


@dataclass
class SquallResult:
    """One ``squall run``: ``valid`` is True, False, "unknown" or None (no verdict)."""

    exit_code: int
    summary: dict[str, Any]  # the JSON summary `squall run --json` printed (harness.summary)
    stderr: str = ""
    argv: list[str] = field(default_factory=list)

    @property
    def row(self) -> dict[str, Any]:
        runs = self.summary.get("runs") or [{}]
        return runs[0]

    @property
    def verdict(self) -> str:
        return str(self.summary.get("verdict", "error"))

    @property
    def valid(self) -> bool | str | None:
        verdicts: dict[str, bool | str] = {"valid": True, "invalid": False, "unknown": "unknown"}
        return verdicts.get(self.verdict)

    @property
    def run_dir(self) -> Path | None:
        return Path(self.row["run_dir"]) if self.row.get("run_dir") else None

    @property
    def report(self) -> Path | None:
        return Path(self.row["report"]) if self.row.get("report") else None

    def __bool__(self) -> bool:
        return self.valid is True

    def describe(self) -> str:
        r = self.row
        what = f"squall run {r.get('test', '?')} (seed {r.get('seed', '?')})"
        text = f"{what} is {self.verdict.upper()}, exit {self.exit_code}: {r.get('summary') or self._last_error()}"
        if self.report:
            text += f"\n  report: {self.report}"
        elif self.run_dir:
            text += f"\n  run directory: {self.run_dir}"
        return text

    def _last_error(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else "no summary"

    def __repr__(self) -> str:
        return f"<SquallResult {self.describe()}>"

    def assert_valid(self) -> SquallResult:
        """Raise AssertionError naming the anomaly and the report unless the run is valid."""
        __tracebackhide__ = True  # pytest shows the caller's line, not this one
        if self.valid is not True:
            raise AssertionError(self.describe())
        return self


def _run_flags() -> dict[str, Any]:
    import click

    from harness.run_cmd import run  # imported on use: loading the plugin stays cheap

    return {p.name: p for p in run.params if isinstance(p, click.Option)}


def build_argv(results_dir: Path, kwargs: dict[str, Any]) -> list[str]:
    flags = _run_flags()
    argv = ["run", "--json", "--no-progress", "--results", str(results_dir)]
    for key, value in kwargs.items():
        name = {"json": "as_json"}.get(key, key)
        opt = flags.get(name)
        if opt is None or name in ("as_json", "results_dir", "progress"):
            allowed = sorted(k for k in flags if k not in ("as_json", "results_dir", "progress"))
            raise TypeError(f"squall.run() got an unknown argument {key!r}; allowed: {', '.join(allowed)}")
        switch = opt.opts[0]
        if opt.is_flag:
            if value is True:
                argv.append(switch)
            elif value is not False:
                raise TypeError(f"squall.run({key}=...) is a flag: pass True or False, not {value!r}")
        elif value is not None:
            argv += [switch, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return argv


class Squall:
    """The fixture's value: ``run(**flags)`` one squall test."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.results: list[SquallResult] = []

    def run(self, *, timeout_s: float | None = None, **kwargs: Any) -> SquallResult:
        argv = build_argv(self.results_dir, kwargs)
        limit = float(kwargs.get("time_limit") or 60.0) * int(kwargs.get("test_count") or 1)
        timeout_s = timeout_s if timeout_s is not None else limit + TIMEOUT_MARGIN_S
        cmd = [sys.executable, "-m", "harness.cli", *argv]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the harness tears its cluster down on SIGTERM
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            raise AssertionError(
                f"squall run did not finish within {timeout_s:.0f} s (stopped); "
                f"results under {self.results_dir}\n{err[-2000:]}"
            ) from None
        finally:
            if proc.poll() is None:  # e.g. KeyboardInterrupt in communicate()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if proc.returncode == EXIT_BAD_INPUT:
            raise SquallUsageError(
                re.sub(r"^Error: ", "", err.strip().splitlines()[-1] if err.strip() else "bad input")
            )
        try:
            doc = json.loads(out) if out.strip() else {}
        except ValueError:
            doc = {}
        if not doc:
            doc = {"verdict": "error", "exit_code": proc.returncode, "runs": []}
        result = SquallResult(proc.returncode, doc, err, cmd)
        self.results.append(result)
        return result


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("squall")
    group.addoption(
        "--squall-results",
        default=None,
        metavar="DIR",
        help="Keep the squall fixture's runs under DIR/<test name>/ (default: the test's tmp dir).",
    )


@pytest.fixture
def squall(request: pytest.FixtureRequest, tmp_path: Path) -> Squall:
    """Run squall tests from a test: ``squall.run(db=..., workload=..., nemesis=..., time_limit=...)``."""
    base = request.config.getoption("--squall-results")
    if base:
        safe = re.sub(r"[^A-Za-z0-9._+\-]+", "_", request.node.name)
        results = Path(base).resolve() / safe
    else:
        results = tmp_path / "squall-results"
    results.mkdir(parents=True, exist_ok=True)
    return Squall(results)
