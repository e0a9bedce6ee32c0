"""How reliably a broken-database gate fails: the same short `squall run`
campaign against a node with a test-only fault armed, over many seeds, one
line each -- the exit code, the checkers that were not valid, and, under a
lagging follower, how many reads ran on the lagging member while it lagged
(the reads that can expose a sync that does not wait).

    python bench/gates.py --fault sync-no-wait --workload register \\
        --extra "--reads sync --nemesis lagging-follower --nemesis-interval 1 --time-limit 12" --runs 10

    python bench/gates.py --all --runs 10      # every gate of tests/harness/test_campaigns.py

A gate is reliable when every run exits 1. Sequential; say the load average
beside the figures (it is printed at the start and the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The gate campaigns of tests/harness/test_campaigns.py: (fault, workload, extra flags).
LAG = "--nemesis lagging-follower --nemesis-interval 1 --time-limit 12 --concurrency 18 --rate 60"
GATES: list[tuple[str, str, str]] = [
    ("sync-no-wait", "register", f"--reads sync {LAG}"),
    ("stale-reconnect", "register", LAG),
    ("idempotent-delete", "queue", LAG),
    ("local-version-check", "counter", LAG),
    ("stale-read-cache", "election", "--nemesis none --time-limit 8"),
    ("sequence-from-child-count", "queue", "--nemesis none --time-limit 8"),
    ("throttle-leak", "register", "--reads sync --nemesis none --time-limit 8"),
]


def lagging_reads(history: list[dict[str, Any]]) -> tuple[int, int]:
    """(ok reads on a member whose links were slowed while they were, all ok reads)."""
    slowed: set[str] = set()
    on_lagging = total = 0
    for op in history:
        if op.get("process") == "nemesis" and op.get("type") == "info":
            value = op.get("value")
            if op.get("f") == "start-packet" and isinstance(value, dict):
                slowed = set(value.get("nodes") or ())
            elif op.get("f") == "stop-packet":
                slowed = set()
            continue
        if op.get("type") == "ok" and op.get("f") == "read":
            total += 1
            on_lagging += op.get("node") in slowed
    return on_lagging, total


def run_one(fault: str, workload: str, seed: int, extra: list[str], results: Path) -> dict[str, Any]:
    args = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--db",
        "squall",
        "--nodes",
        "3",
        "--workload",
        workload,
        "--unsafe-db-fault",
        fault,
        "--seed",
        str(seed),
        "--no-progress",
        "--results",
        str(results),
        *extra,
    ]
    started = time.monotonic()
    r = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    wall = time.monotonic() - started
    run_dir = (results / "latest").resolve()
    try:
        d = json.loads((run_dir / "results.json").read_text())
        history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line]
    except (OSError, ValueError):
        return {"exit": r.returncode, "bad": r.stderr.strip()[-200:], "lag": None, "wall": wall}
    subs = ((d.get("result") or {}).get("details") or {}).get("results") or []
    bad = [f"{s['checker']}={s['valid']}" for s in subs if s.get("valid") is not True]
    return {"exit": r.returncode, "bad": ", ".join(bad), "lag": lagging_reads(history), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fault", help="the --unsafe-db-fault to arm")
    ap.add_argument("--workload", default="register")
    ap.add_argument("--extra", default="", help="more `squall run` flags, space separated")
    ap.add_argument("--all", action="store_true", help="every gate of tests/harness/test_campaigns.py")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1)
    a = ap.parse_args()
    if a.all:
        gates = GATES
    elif a.fault:
        gates = [(a.fault, a.workload, a.extra)]
    else:
        ap.error("name a --fault (with --workload/--extra) or --all")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'fault':20} {'workload':9} {'seed':>4} {'exit':>4} {'lag reads':>10} {'wall':>6}  not valid")
    totals = []
    with tempfile.TemporaryDirectory(prefix="squall-gates-") as tmp:
        for fault, workload, extra in gates:
            caught = 0
            for seed in range(a.first_seed, a.first_seed + a.runs):
                o = run_one(fault, workload, seed, shlex.split(extra), Path(tmp) / f"{fault}-{seed}")
                caught += o["exit"] == 1
                lag = "-" if not o["lag"] or not o["lag"][0] else f"{o['lag'][0]}/{o['lag'][1]}"
                print(
                    f"{fault:20} {workload:9} {seed:>4} {o['exit']:>4} {lag:>10} {o['wall']:6.1f}  {o['bad']}",
                    flush=True,
                )
            totals.append(f"{fault} ({workload}, {extra}): exit 1 in {caught}/{a.runs} runs")
    print(*totals, sep="\n")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
