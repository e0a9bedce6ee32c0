"""No-false-alarm matrix: short `squall run` campaigns against correct
databases -- every workload under each fault (and the composed schedule),
over several seeds -- one line per run with the verdict, the checkers that
were not valid and the lowest fault-free availability share, then a table of
valid runs per workload and fault.

    python bench/false_alarms.py                       # the full matrix (issue #12): both databases,
                                                       # 9 workloads x 5 fault lists x 3 seeds (long)
    python bench/false_alarms.py --db zookeeper --workloads register,set --faults "partition;kill" --seeds 11

``--faults`` takes semicolon-separated nemesis lists (a list is what
``squall run --nemesis`` takes: ``partition,pause,kill`` is the composed,
overlapping schedule of the three). Campaign settings default to
``--time-limit 12 --nemesis-interval 3`` (the short ones of
tests/harness/test_campaigns.py). Sequential: a quiet machine gives the
fairest figures; the load average is printed at the start and the end.

Every run that is not valid keeps its run directory (under ``--keep``, by
default a fresh directory under /tmp whose path is printed), so it can be
investigated with ``squall analyze`` / report.html; valid runs are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = "register,set,lock,session,multi,watch,queue,counter,election"
FAULTS = "partition;pause;kill;partition,pause,kill;lagging-follower"


def run_one(db: str, workload: str, fault: str, seed: int, extra: list[str], results: Path) -> dict[str, Any]:
    args = [
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
    except (OSError, ValueError):
        return {
            "exit": r.returncode,
            "valid": None,
            "bad": r.stderr.strip()[-200:],
            "avail": None,
            "wall": wall,
            "dir": run_dir,
        }
    subs = ((d.get("result") or {}).get("details") or {}).get("results") or []
    bad = [f"{s['checker']}={s['valid']}" for s in subs if s.get("valid") is not True]
    avail = None
    for s in subs:
        if s.get("checker") == "availability":
            shares = [
                w["share"]
                for w in (s.get("details") or {}).get("windows", [])
                if w["window"] == "fault-free" and w["share"] is not None and w["ops"] >= 10
            ]
            avail = min(shares) if shares else None
    return {
        "exit": r.returncode,
        "valid": d.get("valid"),
        "bad": ", ".join(bad),
        "avail": avail,
        "wall": wall,
        "summary": d.get("summary", ""),
        "dir": run_dir,
    }


def table(
    cells: dict[tuple[str, str, str], list[bool]], dbs: list[str], workloads: list[str], faults: list[str]
) -> str:
    """valid/total per (db, workload) row and fault column."""
    width = max(9, *(len(f) for f in faults))
    lines = [f"{'db':10} {'workload':9} " + " ".join(f"{f:>{width}}" for f in faults)]
    for db in dbs:
        for w in workloads:
            row = []
            for f in faults:
                got = cells.get((db, w, f), [])
                row.append(f"{sum(got)}/{len(got)}" if got else "-")
            lines.append(f"{db:10} {w:9} " + " ".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="zookeeper,squall", help="comma-separated databases")
    ap.add_argument("--workloads", default=WORKLOADS)
    ap.add_argument("--faults", default=FAULTS, help="semicolon-separated nemesis lists")
    ap.add_argument("--seeds", default="11,12,13")
    ap.add_argument("--time-limit", default="12")
    ap.add_argument("--nemesis-interval", default="3")
    ap.add_argument("--extra", default="", help="more `squall run` flags, space separated")
    ap.add_argument("--keep", default=None, help="directory for the run dirs of runs that were not valid")
    a = ap.parse_args()
    dbs = [d for d in a.db.split(",") if d]
    workloads = [w for w in a.workloads.split(",") if w]
    faults = [f for f in a.faults.split(";") if f]
    seeds = [int(s) for s in a.seeds.split(",") if s]
    extra = ["--time-limit", a.time_limit, "--nemesis-interval", a.nemesis_interval, *a.extra.split()]
    keep = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="squall-false-alarms-"))
    keep.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; runs that are not valid are kept under {keep}")
    print(
        f"{'db':10} {'workload':9} {'fault':22} {'seed':>4} {'exit':>4} {'verdict':8} {'min-avail':>9} "
        f"{'wall':>6}  not valid"
    )
    cells: dict[tuple[str, str, str], list[bool]] = {}
    started = time.monotonic()
    for db in dbs:
        for w in workloads:
            for f in faults:
                for s in seeds:
                    results = keep / f"{db}-{w}-{f.replace(',', '+')}-{s}"
                    o = run_one(db, w, f, s, extra, results)
                    ok = o["valid"] is True
                    cells.setdefault((db, w, f), []).append(ok)
                    if ok:
                        shutil.rmtree(results, ignore_errors=True)
                    av = "-" if o["avail"] is None else f"{o['avail']:.2f}"
                    where = "" if ok else f"  [{o['dir']}]"
                    print(
                        f"{db:10} {w:9} {f:22} {s:>4} {o['exit']:>4} {str(o['valid']):8} {av:>9} "
                        f"{o['wall']:6.1f}  {o['bad']}{where}",
                        flush=True,
                    )
    valid = sum(sum(v) for v in cells.values())
    total = sum(len(v) for v in cells.values())
    print()
    print(table(cells, dbs, workloads, faults))
    print(
        f"valid: {valid}/{total} in {(time.monotonic() - started) / 60:.1f} min; "
        f"load average at end: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
