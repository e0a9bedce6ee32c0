"""How long `squall run --time-limit 10` takes beyond its 10 s of client ops.

For 3 and 5 nodes on both databases, prints wall time minus the time limit
(setup, readiness, heal, recovery, final reads, checking, report, teardown).
Target: <= 10 s. Configurations that cannot run here are skipped with the
reason (no Debian zookeeper package; the node not startable or without an
ensemble). Results go to a temporary folder.

Usage: python bench/run_overhead.py [--time-limit 10] [--workload register]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
TARGET_S = 10.0


def unavailable(db: str, nodes: int) -> str | None:
    if db == "zookeeper" and not ZK_JAR.exists():
        return f"{ZK_JAR} is missing (Debian's zookeeper package)"
    if db == "squall":
        r = subprocess.run(
            [sys.executable, "-m", "node", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        help_text = r.stdout + r.stderr
        if "--data-dir" not in help_text:
            return "`python -m node` cannot start a server yet"
        if nodes > 1 and "--peers" not in help_text:
            return "the node's ensemble is not available yet (no --peers)"
    return None


def measure(db: str, nodes: int, time_limit: float, workload: str) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "run",
                "--db",
                db,
                "--nodes",
                str(nodes),
                "--workload",
                workload,
                "--time-limit",
                str(time_limit),
                "--no-progress",
                "--seed",
                "1",
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=time_limit + 600,
        )
        wall = time.monotonic() - start
        summary = ""
        latest = Path(tmp) / "results" / "latest" / "results.json"
        if latest.exists():
            summary = str(json.loads(latest.read_text()).get("summary", ""))[:60]
        return wall, r.returncode, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workload", default="register")
    args = ap.parse_args()
    print(f"{'db':<10} {'nodes':>5} {'wall s':>8} {'overhead s':>11} {'exit':>5}  verdict / note")
    for db in ("zookeeper", "squall"):
        for nodes in (3, 5):
            why = unavailable(db, nodes)
            if why:
                print(f"{db:<10} {nodes:>5} {'-':>8} {'-':>11} {'-':>5}  skipped: {why}")
                continue
            wall, rc, summary = measure(db, nodes, args.time_limit, args.workload)
            overhead = wall - args.time_limit
            flag = "" if overhead <= TARGET_S else f"  (over the {TARGET_S:.0f} s target)"
            print(f"{db:<10} {nodes:>5} {wall:8.1f} {overhead:11.1f} {rc:>5}  {summary}{flag}", flush=True)


if __name__ == "__main__":
    main()
