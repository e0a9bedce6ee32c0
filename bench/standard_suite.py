"""The standard suite's wall time: `squall test-all` with its defaults
(every workload under the composed partition/pause/kill schedule) and
--time-limit 30, against the node (default) or Apache ZooKeeper.

    python bench/standard_suite.py [--db squall|zookeeper] [--time-limit 30] [--seed 1]

Prints one line per run (test, verdict, wall seconds) from test-all's
summary.json, then the suite's total wall time next to the 20-minute target,
and the machine's load average. Results go to a temporary folder unless
--results is given. Exit code: test-all's.
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

TARGET_S = 20 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="squall", choices=("squall", "zookeeper"))
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--results", default=None, help="results folder [default: a temporary one]")
    args = ap.parse_args()
    results = Path(args.results) if args.results else Path(tempfile.mkdtemp(prefix="squall-suite-"))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    argv = [
        sys.executable,
        "-m",
        "harness.cli",
        "test-all",
        "--db",
        args.db,
        "--time-limit",
        str(args.time_limit),
        "--seed",
        str(args.seed),
        "--results",
        str(results),
        "--no-progress",
        "--json",
    ]
    load = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3 * TARGET_S)
    wall = time.monotonic() - t0
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
        print(f"test-all printed no summary (exit {proc.returncode})")
        return proc.returncode or 1
    print(
        f"standard suite: {args.db}, --time-limit {args.time_limit:g}, seed {args.seed}, "
        f"load average at start {load[0]:.2f}"
    )
    for row in doc.get("runs", []):
        print(f"  {row.get('test', '?'):45s} {row.get('verdict', '?'):8s} {float(row.get('wall_s') or 0):7.1f} s")
    print(
        f"total wall time {wall:.0f} s ({wall / 60:.1f} min; target under {TARGET_S // 60} min), "
        f"exit {proc.returncode}, results in {results}"
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
