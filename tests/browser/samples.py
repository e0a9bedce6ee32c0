"""Fabricated run folders, written with the store's own functions so the layout is the one `squall run` writes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from checkers.history import Op
from harness import store
from harness.spec import TestSpec

REPORT_MARKER = "sample-report-marker"


def _history(n_ok: int, n_fail: int, n_info: int) -> list[Op]:
    ops: list[Op] = []
    t = 0
    proc = 0
    for kind, count in (("ok", n_ok), ("fail", n_fail), ("info", n_info)):
        for i in range(count):
            t += 1000
            ops.append(Op(len(ops), t, "invoke", proc, "write", i))
            t += 1000
            ops.append(Op(len(ops), t, kind, proc, "write", i, node="n1", error=None if kind == "ok" else "boom"))
            proc += 1 if kind == "info" else 0
    ops.append(Op(len(ops), t + 1, "info", "nemesis", "start-kill", ["n1"]))
    ops.append(Op(len(ops), t + 2, "info", "nemesis", "stop-kill", ["n1"]))
    return ops


def make_run(
    root: Path,
    name: str,
    db: str,
    workload: str,
    nemesis: tuple[str, ...],
    valid: object,
    when: datetime,
    ops: tuple[int, int, int] = (5, 1, 1),
    with_results: bool = True,
) -> Path:
    run_dir = store.new_run_dir(root, name, now=when)
    spec = TestSpec(name=name, db=db, workload=workload, nemesis=nemesis, nodes=("n1",))
    store.write_spec(run_dir, spec)
    store.write_history(run_dir, _history(*ops))
    if with_results:
        store.write_results(
            run_dir,
            {"valid": valid, "summary": f"{name} is {valid}", "status": "checked", "test": name, "ops": sum(ops) * 2},
        )
        (run_dir / "report.html").write_text(
            f"<!doctype html><html><head><title>report {name}</title></head><body style='background:#fff'>"
            f"<h1 id='{REPORT_MARKER}'>Report for {name}</h1><p>verdict {valid}</p></body></html>",
            encoding="utf-8",
        )
        (run_dir / "junit.xml").write_text("<testsuite/>", encoding="utf-8")
    logs = run_dir / "logs"
    logs.mkdir()
    (logs / "n1.log").write_text(f"node n1 log of {name}\n", encoding="utf-8")
    store.update_latest(root, run_dir)
    return run_dir


def make_sample_results(root: Path) -> dict[str, Path]:
    """Four runs: valid/invalid/unknown and one without results (killed mid-run)."""
    root.mkdir(parents=True, exist_ok=True)
    t = lambda h: datetime(2026, 1, 2, h, 0, 0, tzinfo=UTC)  # noqa: E731
    return {
        "valid": make_run(root, "zk-register", "zookeeper", "register", ("partition",), True, t(1)),
        "invalid": make_run(root, "squall-set", "squall", "set", ("kill",), False, t(2), ops=(3, 0, 2)),
        "unknown": make_run(root, "squall-register", "squall", "register", ("pause", "kill"), "unknown", t(3)),
        "incomplete": make_run(root, "zk-lock", "zookeeper", "lock", (), None, t(4), with_results=False),
    }
