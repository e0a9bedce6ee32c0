"""Machine-readable summaries of one or more runs, for CI.

``squall run --json`` and ``squall test-all --json`` print the same
document on stdout; ``squall test-all`` also writes it to
``results/test-all/<timestamp>/summary.json`` beside a ``junit.xml`` with
one test case per run, and points ``results/test-all/latest`` at it. The
pytest plugin and ``squall compare`` read these rows.

A row: test name, seed, db, workload, nemesis, verdict (valid, invalid,
unknown, interrupted, or the run's error status such as setup-failed),
exit code, the checker's summary, the op counts of
``harness.report.stats.counts`` (operations = client invocations), wall
seconds, the run directory (absolute, and relative to the results folder)
and its report.html when there is one.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness import store
from harness.report.stats import counts
from harness.runner import EXIT_INTERRUPTED, RunOutcome
from harness.spec import TestSpec

SUMMARY_FORMAT = 1
SUITE_DIR = "test-all"  # results/test-all/<timestamp>/


def verdict_word(outcome: RunOutcome, status: str | None = None) -> str:
    if outcome.interrupted or outcome.exit_code == EXIT_INTERRUPTED:
        return "interrupted"
    if outcome.valid is True:
        return "valid"
    if outcome.valid is False:
        return "invalid"
    if outcome.valid == "unknown":
        return "unknown"
    return status or "error"


def overall_verdict(exit_code: int) -> str:
    return {0: "valid", 1: "invalid", 2: "unknown", EXIT_INTERRUPTED: "interrupted"}.get(exit_code, "error")


def _history_counts(run_dir: Path) -> dict[str, int]:
    try:
        return counts(store.read_history(run_dir))
    except (store.StoreError, OSError):
        return counts([])


def run_row(spec: TestSpec, outcome: RunOutcome, results_root: str | Path) -> dict[str, Any]:
    run_dir = Path(outcome.run_dir).resolve()
    results = _read_results(run_dir)
    report = run_dir / "report.html"
    try:
        relative = str(run_dir.relative_to(Path(results_root).resolve()))
    except ValueError:
        relative = None
    return {
        "test": spec.name,
        "seed": spec.seed,
        "db": spec.db,
        "workload": spec.workload,
        "nemesis": list(spec.nemesis),
        "verdict": verdict_word(outcome, results.get("status")),
        "exit_code": outcome.exit_code,
        "summary": outcome.summary,
        "explanation": str((results.get("result") or {}).get("explanation", "")),
        "counts": _history_counts(run_dir),
        "wall_s": round(outcome.wall_s, 3),
        "run_dir": str(run_dir),
        "run_path": relative,
        "report": str(report) if report.is_file() else None,
    }


def _read_results(run_dir: Path) -> dict:
    try:
        return store.read_results(run_dir) or {}
    except (OSError, ValueError):
        return {}


def summary_doc(rows: list[dict[str, Any]], exit_code: int, command: str) -> dict[str, Any]:
    tally: dict[str, int] = {}
    for r in rows:
        tally[r["verdict"]] = tally.get(r["verdict"], 0) + 1
    return {
        "format": SUMMARY_FORMAT,
        "command": command,
        "verdict": overall_verdict(exit_code),
        "exit_code": exit_code,
        "runs": rows,
        "verdicts": dict(sorted(tally.items())),
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)


def junit_xml(doc: dict[str, Any]) -> str:
    """One testsuite, one testcase per run: invalid -> <failure> (the anomaly
    and the report's path); unknown, interrupted or no verdict -> <error>."""
    rows = doc["runs"]
    fails = sum(r["verdict"] == "invalid" for r in rows)
    errors = sum(r["verdict"] not in ("valid", "invalid") for r in rows)
    total_s = sum(float(r.get("wall_s") or 0) for r in rows)
    suite = ET.Element(
        "testsuite",
        name=f"squall {doc.get('command', 'test-all')}",
        tests=str(len(rows)),
        failures=str(fails),
        errors=str(errors),
        time=f"{total_s:.3f}",
    )
    for r in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"squall.{r['workload']}",
            name=f"{r['test']} seed={r['seed']}",
            time=f"{float(r.get('wall_s') or 0):.3f}",
        )
        if r["verdict"] == "valid":
            continue
        detail = "\n".join(
            x
            for x in (
                r.get("explanation") or "",
                f"report: {r['report']}" if r.get("report") else "",
                f"run: {r['run_dir']}",
            )
            if x
        )
        if r["verdict"] == "invalid":
            el = ET.SubElement(case, "failure", message=str(r["summary"]), type="invalid")
        else:
            el = ET.SubElement(case, "error", message=str(r["summary"]), type=str(r["verdict"]))
        el.text = detail
        ET.SubElement(case, "system-out").text = f"run directory: {r['run_dir']}"
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_suite(results_root: str | Path, doc: dict[str, Any]) -> Path:
    """results/test-all/<timestamp>/{summary.json,junit.xml}; results/test-all/latest."""
    parent = Path(results_root)
    suite_dir = store.new_run_dir(parent, SUITE_DIR)
    store.write_json(suite_dir / "summary.json", doc)
    (suite_dir / "junit.xml").write_text(junit_xml(doc), encoding="utf-8")
    store.update_latest(parent / SUITE_DIR, suite_dir)
    return suite_dir


def read_summary(path: str | Path) -> dict[str, Any]:
    """A summary.json, or the one in a test-all directory (raises ValueError naming the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no summary.json at {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a squall summary ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise ValueError(f"{path}: not a squall summary (no list of runs)")
    return doc
