"""No-false-alarm table for the multi, watch, queue, counter and election
workloads: each against each database (3 nodes) under each fault, over
several seeds, as short `squall run` campaigns; prints one line per run and
a verdict table (counts of valid / invalid / unknown / setup errors per
workload, database and fault) with the wall time of each run.

Usage::

    python bench/new_workloads.py [--seeds 3] [--time-limit 10] [--dbs zookeeper,squall]
                                  [--workloads multi,watch,queue,counter,election]
                                  [--faults partition,pause,kill] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERDICT = {0: "valid", 1: "invalid", 2: "unknown"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--dbs", default="zookeeper,squall")
    ap.add_argument("--workloads", default="multi,watch,queue,counter,election")
    ap.add_argument("--faults", default="partition,pause,kill")
    ap.add_argument("--results", default=None, help="results folder [default: a temporary one]")
    args = ap.parse_args()
    results = Path(args.results or tempfile.mkdtemp(prefix="squall-bench-"))
    table: dict[tuple, list[str]] = defaultdict(list)
    for db in args.dbs.split(","):
        for workload in args.workloads.split(","):
            for fault in args.faults.split(","):
                for seed in range(1, args.seeds + 1):
                    t0 = time.monotonic()
                    r = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "harness.cli",
                            "run",
                            "--db",
                            db,
                            "--nodes",
                            "3",
                            "--workload",
                            workload,
                            "--nemesis",
                            fault,
                            "--seed",
                            str(seed),
                            "--time-limit",
                            str(args.time_limit),
                            "--nemesis-interval",
                            "3",
                            "--no-progress",
                            "--results",
                            str(results),
                        ],
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                    )
                    verdict = VERDICT.get(r.returncode, f"error({r.returncode})")
                    table[(workload, db, fault)].append(verdict)
                    summary = (r.stdout.strip().splitlines() or [""])[0][:100]
                    print(
                        f"{db:9} {workload:8} {fault:9} seed {seed}: {verdict:8} "
                        f"{time.monotonic() - t0:5.1f}s  {summary}",
                        flush=True,
                    )
    print(f"\n{'workload':8} {'db':9} {'fault':9} verdicts")
    for (workload, db, fault), verdicts in sorted(table.items()):
        print(f"{workload:8} {db:9} {fault:9} {' '.join(verdicts)}")
    print(f"\nresults in {results}")
    json.dump({"/".join(k): v for k, v in table.items()}, sys.stderr)


if __name__ == "__main__":
    main()
