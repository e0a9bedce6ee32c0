"""No false alarm: the composed fault schedule with every fault, against
Apache ZooKeeper and the node, on the local backend.

Runs ``squall run --nemesis all`` (partition, pause, kill, packet, clock,
overlapping, with the targeted sequences) for each database, workload and
seed, one run at a time, and prints a table: verdict, exit code, nemesis ops
that took effect (and the ones that reported an error), the fault kinds and
sequences seen, wall time. A correct database must come out valid on every
row; an "unknown" row says the run could not decide (e.g. no successful
final read), which is not a pass.

Usage::

    python bench/composed_faults.py [--dbs zookeeper,squall] [--workloads register,set]
        [--seeds 1,2,3] [--time-limit 30] [--interval 3] [--results results/bench-composed]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _summary(run_dir: Path) -> tuple[str, int, int, set[str], set[str]]:
    results = json.loads((run_dir / "results.json").read_text())
    verdict = {True: "valid", False: "INVALID"}.get(results.get("valid"), str(results.get("valid")))
    done = errors = 0
    kinds: set[str] = set()
    seqs: set[str] = set()
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        op = json.loads(line)
        if op.get("process") != "nemesis":
            continue
        value = op.get("value")
        if op["type"] == "invoke":
            kinds.add(op["f"])
            if isinstance(value, dict) and value.get("sequence"):
                seqs.add(value["sequence"])
        elif op.get("error"):
            errors += 1
        else:
            done += 1
    return verdict, done, errors, kinds, seqs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default="zookeeper,squall")
    ap.add_argument("--workloads", default="register,set")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=3.0)
    ap.add_argument("--results", default=str(ROOT / "results" / "bench-composed"))
    args = ap.parse_args()
    rows = []
    worst = 0
    for db in args.dbs.split(","):
        for workload in args.workloads.split(","):
            for seed in args.seeds.split(","):
                name = f"composed-{db}-{workload}-s{seed}"
                cmd = [
                    sys.executable,
                    "-m",
                    "harness.cli",
                    "run",
                    "--db",
                    db,
                    "--workload",
                    workload,
                    "--nemesis",
                    "all",
                    "--nodes",
                    "3",
                    "--seed",
                    seed,
                    "--time-limit",
                    str(args.time_limit),
                    "--nemesis-interval",
                    str(args.interval),
                    "--results",
                    args.results,
                    "--name",
                    name,
                    "--no-progress",
                ]
                t0 = time.monotonic()
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                wall = time.monotonic() - t0
                worst = max(worst, proc.returncode)
                run_dir = Path(args.results) / name / "latest"
                latest = (
                    sorted(p for p in (Path(args.results) / name).iterdir() if p.is_dir())[-1]
                    if (Path(args.results) / name).exists()
                    else None
                )
                run_dir = latest or run_dir
                try:
                    verdict, done, errors, kinds, seqs = _summary(run_dir)
                except (OSError, ValueError) as exc:
                    verdict, done, errors, kinds, seqs = f"no results ({exc})", 0, 0, set(), set()
                rows.append(
                    (
                        db,
                        workload,
                        seed,
                        verdict,
                        proc.returncode,
                        done,
                        errors,
                        ",".join(sorted(kinds)),
                        ",".join(sorted(seqs)) or "-",
                        f"{wall:.0f}s",
                    )
                )
                print(" | ".join(map(str, rows[-1])), flush=True)
                if proc.returncode not in (0, 1, 2):
                    print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", flush=True)
    print(
        "\n| db | workload | seed | verdict | exit | nemesis ops ok | ops with error | fault ops | sequences | wall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    return worst


if __name__ == "__main__":
    sys.exit(main())
