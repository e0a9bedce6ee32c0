"""No-false-alarm matrix: short `squall run` campaigns against a correct
database, one line each, with the verdict, the checkers that were not valid
and the lowest fault-free availability share.

    python bench/false_alarms.py --db zookeeper --workloads register,set --faults partition,kill --seeds 11,12

Campaign settings default to the short ones of tests/harness/test_campaigns.py
(--time-limit 12 --nemesis-interval 3). Sequential: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(db: str, workload: str, fault: str, seed: int, extra: list[str], results: Path) -> dict:
    args = [sys.executable, "-m", "harness.cli", "run", "--db", db, "--nodes", "3", "--workload", workload,
            "--nemesis", fault, "--seed", str(seed), "--no-progress", "--results", str(results), *extra]
    started = time.monotonic()
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - started
    try:
        d = json.loads(((results / "latest").resolve() / "results.json").read_text())
    except (OSError, ValueError):
        return {"exit": r.returncode, "valid": None, "bad": r.stderr[-200:], "avail": None, "wall": wall}
    subs = ((d.get("result") or {}).get("details") or {}).get("results") or []
    bad = [f"{s['checker']}={s['valid']}" for s in subs if s.get("valid") is not True]
    avail = None
    for s in subs:
        if s.get("checker") == "availability":
            shares = [w["share"] for w in s["details"].get("windows", [])
                      if w["window"] == "fault-free" and w["share"] is not None and w["ops"] >= 10]
            avail = min(shares) if shares else None
    return {"exit": r.returncode, "valid": d.get("valid"), "bad": ", ".join(bad), "avail": avail, "wall": wall,
            "summary": d.get("summary", "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="zookeeper")
    ap.add_argument("--workloads", default="register,set,lock,session")
    ap.add_argument("--faults", default="partition,pause,kill")
    ap.add_argument("--seeds", default="11")
    ap.add_argument("--time-limit", default="12")
    ap.add_argument("--nemesis-interval", default="3")
    ap.add_argument("--extra", default="", help="more `squall run` flags, space separated")
    a = ap.parse_args()
    extra = ["--time-limit", a.time_limit, "--nemesis-interval", a.nemesis_interval, *a.extra.split()]
    valid = total = 0
    print(f"{'db':10} {'workload':9} {'fault':10} {'seed':>5} {'exit':>4} {'verdict':8} {'min-avail':>9} {'wall':>6}  not valid")
    with tempfile.TemporaryDirectory(prefix="squall-fa-") as tmp:
        for w in a.workloads.split(","):
            for f in a.faults.split(","):
                for s in a.seeds.split(","):
                    o = run_one(a.db, w, f, int(s), extra, Path(tmp) / f"{w}-{f}-{s}")
                    total += 1
                    valid += o["valid"] is True
                    av = "-" if o["avail"] is None else f"{o['avail']:.2f}"
                    print(f"{a.db:10} {w:9} {f:10} {s:>5} {o['exit']:>4} {str(o['valid']):8} {av:>9} "
                          f"{o['wall']:6.1f}  {o['bad']}", flush=True)
    print(f"valid: {valid}/{total}")


if __name__ == "__main__":
    main()
