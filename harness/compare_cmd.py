"""`squall compare BASE NEW`: a change against a baseline.

BASE and NEW are each a run directory (it holds test.json) or a test-all
directory (it holds summary.json; ``results/test-all/latest`` works). Runs
are paired by test name (and by seed, then by order, when a name repeats);
two single run directories are paired whatever their names.

For every pair it shows the verdict change and, per operation (``f``), the
ok-rate (ok completions / operations, an operation being an invocation, so
fail, info and unanswered calls all count against it) and the p50 and p99
latency of ok operations. Exit 1 on a regression, 0 without, 3 on bad input:

- a verdict regression: a base run that was valid is not valid now, or has
  no counterpart in NEW;
- ``--max-latency-regression R`` (a ratio, e.g. 1.5): an operation's new
  p50 or p99 exceeds R times the base's;
- ``--max-availability-drop D`` (an absolute ok-rate drop in [0, 1], e.g.
  0.05 for five percentage points): an operation's ok-rate fell by more
  than D.

Without those two flags latency and availability changes are shown but do
not fail the comparison.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness import store
from harness.report import stats
from harness.spec import SpecError, TestSpec
from harness.summary import read_summary

EXIT_REGRESSION = 1


class CompareError(ValueError):
    """BASE or NEW is not something compare can read; the message says what is allowed."""


@dataclass
class Run:
    test: str
    seed: Any
    verdict: str
    run_dir: Path | None


def _verdict_of_results(results: dict | None) -> str:
    if results is None:
        return "incomplete"
    valid = results.get("valid")
    return {True: "valid", False: "invalid", "unknown": "unknown"}.get(valid, str(results.get("status") or "error"))  # type: ignore[arg-type]


def load_runs(path: str | Path) -> list[Run]:
    """The runs of a run directory or of a test-all directory."""
    path = Path(path)
    if (path / "test.json").is_file():
        try:
            spec = TestSpec.load(path)
        except SpecError as exc:
            raise CompareError(str(exc)) from exc
        return [Run(spec.name, spec.seed, _verdict_of_results(store.read_results(path)), path.resolve())]
    if (path / "summary.json").is_file():
        try:
            doc = read_summary(path)
        except ValueError as exc:
            raise CompareError(str(exc)) from exc
        results_root = path.resolve().parent.parent  # <results>/test-all/<timestamp>
        runs = []
        for row in doc["runs"]:
            run_dir = None
            for candidate in (
                results_root / row["run_path"] if row.get("run_path") else None,
                Path(row["run_dir"]) if row.get("run_dir") else None,
            ):
                if candidate is not None and (candidate / "history.jsonl").is_file():
                    run_dir = candidate
                    break
            runs.append(Run(str(row["test"]), row.get("seed"), str(row["verdict"]), run_dir))
        return runs
    raise CompareError(f"{path}: neither a run directory (with test.json) nor a test-all directory (with summary.json)")


def pair_runs(base: list[Run], new: list[Run]) -> list[tuple[Run | None, Run | None]]:
    if len(base) == 1 and len(new) == 1:
        return [(base[0], new[0])]
    left = list(new)
    out: list[tuple[Run | None, Run | None]] = []
    for b in base:
        match = next((n for n in left if n.test == b.test and n.seed == b.seed), None) or next(
            (n for n in left if n.test == b.test), None
        )
        if match is not None:
            left.remove(match)
        out.append((b, match))
    out.extend((None, n) for n in left)
    return out


def op_stats(run_dir: Path | None) -> dict[str, dict[str, float | int | None]]:
    """f -> operations, ok, ok_rate, p50_ms, p99_ms (latencies of ok operations)."""
    if run_dir is None:
        return {}
    try:
        history = store.read_history(run_dir)
    except store.StoreError:
        return {}
    by_f: dict[str, list[stats.Pair]] = {}
    for p in stats.pairs(history):
        by_f.setdefault(p.invoke.f, []).append(p)
    out = {}
    for f, ps in sorted(by_f.items()):
        lat = sorted(p.latency_s for p in ps if p.type == "ok" and p.latency_s is not None)
        ok = sum(p.type == "ok" for p in ps)
        out[f] = {
            "operations": len(ps),
            "ok": ok,
            "ok_rate": ok / len(ps),
            "p50_ms": stats.quantile(lat, 0.5) * 1000 if lat else None,
            "p99_ms": stats.quantile(lat, 0.99) * 1000 if lat else None,
        }
    return out


def compare(
    base: list[Run],
    new: list[Run],
    max_latency_regression: float | None = None,
    max_availability_drop: float | None = None,
) -> dict[str, Any]:
    verdicts, operations, regressions = [], [], []
    for b, n in pair_runs(base, new):
        test = (b or n).test  # type: ignore[union-attr]
        bv, nv = (b.verdict if b else "missing"), (n.verdict if n else "missing")
        if b is None:
            change = "new test"
        elif bv == nv:
            change = "same"
        elif bv == "valid":
            change = "regression"
            regressions.append(f"{test}: verdict {bv} -> {nv}")
        elif nv == "valid":
            change = "fixed"
        else:
            change = "changed"
        verdicts.append({"test": test, "base": bv, "new": nv, "change": change})
        if b is None or n is None:
            continue
        bs, ns = op_stats(b.run_dir), op_stats(n.run_dir)
        for f in sorted(set(bs) | set(ns)):
            row: dict[str, Any] = {"test": test, "f": f, "base": bs.get(f), "new": ns.get(f), "regressions": []}
            if f in bs and f in ns:
                drop = bs[f]["ok_rate"] - ns[f]["ok_rate"]  # type: ignore[operator]
                row["ok_rate_drop"] = drop
                if max_availability_drop is not None and drop > max_availability_drop:
                    row["regressions"].append(f"ok-rate fell by {drop:.3f} (allowed {max_availability_drop})")
                for q in ("p50_ms", "p99_ms"):
                    old, now = bs[f][q], ns[f][q]
                    ratio = (now / old) if old and now is not None else None
                    row[f"{q[:3]}_ratio"] = ratio
                    if max_latency_regression is not None and ratio is not None and ratio > max_latency_regression:
                        row["regressions"].append(
                            f"{q[:3]} {old:.1f} -> {now:.1f} ms (x{ratio:.2f}, allowed x{max_latency_regression})"
                        )
            regressions.extend(f"{test} {f}: {r}" for r in row["regressions"])
            operations.append(row)
    return {
        "verdicts": verdicts,
        "operations": operations,
        "regressions": regressions,
        "exit_code": EXIT_REGRESSION if regressions else 0,
        "limits": {"max_latency_regression": max_latency_regression, "max_availability_drop": max_availability_drop},
    }


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render_text(doc: dict[str, Any]) -> str:
    parts = [
        _table(
            [("test", "base", "new", "change")]
            + [(v["test"], v["base"], v["new"], v["change"]) for v in doc["verdicts"]]
        )
    ]
    if doc["operations"]:
        rows = [("test", "f", "ok-rate base", "ok-rate new", "p50 ms base", "p50 ms new", "p99 ms base", "p99 ms new")]
        for o in doc["operations"]:
            b, n = o["base"] or {}, o["new"] or {}
            rows.append(
                (
                    o["test"],
                    o["f"],
                    _num(b.get("ok_rate"), ".3f"),
                    _num(n.get("ok_rate"), ".3f"),
                    _num(b.get("p50_ms"), ".1f"),
                    _num(n.get("p50_ms"), ".1f"),
                    _num(b.get("p99_ms"), ".1f"),
                    _num(n.get("p99_ms"), ".1f"),
                )
            )
        parts.append(_table(rows))
    if doc["regressions"]:
        parts.append("REGRESSIONS:\n" + "\n".join(f"  {r}" for r in doc["regressions"]))
    else:
        parts.append("no regression")
    return "\n\n".join(parts)


@click.command("compare")
@click.argument("base", type=click.Path(exists=True, file_okay=False))
@click.argument("new", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--max-latency-regression",
    type=click.FloatRange(min=1.0),
    default=None,
    help="Fail when an operation's p50 or p99 latency grows beyond this ratio of the base's (e.g. 1.5).",
)
@click.option(
    "--max-availability-drop",
    type=click.FloatRange(min=0.0, max=1.0),
    default=None,
    help="Fail when an operation's ok-rate falls by more than this (absolute, 0..1; 0.05 = 5 points).",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the comparison as JSON.")
@click.pass_context
def compare_cmd(
    ctx: click.Context,
    base: str,
    new: str,
    max_latency_regression: float | None,
    max_availability_drop: float | None,
    as_json: bool,
) -> None:
    """Compare NEW runs against BASE runs (run or test-all directories); exit 1 on a regression."""
    try:
        doc = compare(load_runs(base), load_runs(new), max_latency_regression, max_availability_drop)
    except CompareError as exc:
        raise click.UsageError(str(exc)) from exc
    doc["base"], doc["new"] = str(base), str(new)
    click.echo(json.dumps(doc, indent=2, sort_keys=True) if as_json else render_text(doc))
    ctx.exit(doc["exit_code"])
