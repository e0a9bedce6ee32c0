"""etcd's no-false-alarm table: every etcd workload (register, set, lock,
watch) under each fault (partition, pause, kill) over several seeds, as short
``squall run --db etcd`` campaigns on 3 members; then the broken variants
(``--unsafe-db-fault``), which must be invalid. Prints one line per run
(verdict, wall time, the run's summary), a verdict table, and the machine's
load average (on a shared machine the runs share its cores).

Usage::

    python bench/etcd.py [--seeds 3] [--time-limit 10] [--workloads register,set,lock,watch-stream]
                         [--faults partition,pause,kill] [--backend local] [--reads linearizable]
                         [--no-broken] [--results DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERDICT = {0: "valid", 1: "invalid", 2: "unknown"}
BROKEN = (
    ("register", "stale-reads", "partition"),
    ("set", "stale-reads", "kill"),
    ("watch-stream", "drop-watch-events", "pause"),
)


def run(
    args: argparse.Namespace, results: Path, workload: str, fault: str, seed: int, unsafe: str | None = None
) -> tuple[str, float, str]:
    argv = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--db",
        "etcd",
        "--backend",
        args.backend,
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
    ]
    if args.reads:
        argv += ["--reads", args.reads]
    if unsafe:
        argv += ["--unsafe-db-fault", unsafe]
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    summary = (lines or r.stderr.strip().splitlines() or [""])[0][:110]
    # the verdict is what the run printed: a crash before it (a traceback) also exits 1
    said = lines[0].split(":")[0].strip().lower() if lines else ""
    verdict = VERDICT.get(r.returncode, f"error({r.returncode})")
    if said not in ("valid", "invalid", "unknown"):
        verdict = f"error({r.returncode})"
    return verdict, time.monotonic() - t0, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workloads", default="register,set,lock,watch-stream")
    ap.add_argument("--faults", default="partition,pause,kill")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--reads", default=None, help="--reads for every run [default: etcd's, linearizable]")
    ap.add_argument("--no-broken", action="store_true", help="skip the broken-database runs")
    ap.add_argument("--results", default=None, help="results folder [default: a temporary one]")
    args = ap.parse_args()
    results = Path(args.results or tempfile.mkdtemp(prefix="squall-bench-etcd-"))
    table: dict[tuple[str, str], list[str]] = defaultdict(list)
    walls: list[float] = []
    for workload in args.workloads.split(","):
        for fault in args.faults.split(","):
            for seed in range(1, args.seeds + 1):
                verdict, wall, summary = run(args, results, workload, fault, seed)
                walls.append(wall)
                table[(workload, fault)].append(verdict)
                print(f"etcd {workload:8} {fault:9} seed {seed}: {verdict:8} {wall:5.1f}s  {summary}", flush=True)
    print(f"\n{'workload':8} {'fault':9} verdicts (seeds 1..{args.seeds})")
    for (workload, fault), verdicts in sorted(table.items()):
        print(f"{workload:8} {fault:9} {' '.join(verdicts)}")
    if not args.no_broken:
        print("\nbroken variants (must be invalid):")
        for workload, unsafe, fault in BROKEN:
            verdict, wall, summary = run(args, results, workload, fault, 1, unsafe)
            print(
                f"etcd {workload:8} --unsafe-db-fault {unsafe:17} {fault:9}: {verdict:8} {wall:5.1f}s  {summary}",
                flush=True,
            )
    load = os.getloadavg()
    print(
        f"\n{len(walls)} runs, {sum(walls):.0f}s in all; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"on {os.cpu_count()} cores; results in {results}"
    )


if __name__ == "__main__":
    main()
