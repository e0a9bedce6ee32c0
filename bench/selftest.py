"""The whole `squall selftest` catalogue, printed as docs/track-record.md's table.

    python bench/selftest.py [--results DIR] [--seed N] [-- more selftest flags]

Runs ``squall selftest --markdown --json`` (every bug of
harness/selftest_catalogue.py and the real node on every campaign), then
prints the Markdown track record with the date, the commit, the wall time and
the machine's load average before and after, ready to paste into
docs/track-record.md. Exits with selftest's exit code. Takes a while (tens of
minutes on a shared 2-core machine): CI runs ``squall selftest --fast``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("rest", nargs="*", help="more `squall selftest` flags (after --)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    commit = (
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        or "?"
    )
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "selftest",
            "--json",
            "--markdown",
            "--results",
            args.results,
            "--seed",
            str(args.seed),
            *args.rest,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    wall = time.monotonic() - t0
    load_after = os.getloadavg()
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(proc.stdout)
        print(f"selftest exited {proc.returncode} without a JSON track record", file=sys.stderr)
        return proc.returncode or 5
    from harness.selftest_catalogue import CATALOGUE, FAILPOINT_CONTROLS, Campaign
    from harness.selftest_cmd import Attempt, Row, markdown_table  # the same table squall prints

    campaigns = {c.describe(): c for c in [b.campaign for b in CATALOGUE] + list(FAILPOINT_CONTROLS)}
    rows = []
    for r in doc["rows"]:
        row = Row(
            r["name"],
            r["kind"],
            campaigns.get(r["campaign"], Campaign("?")),
            r["fault"],
            [Attempt(**a) for a in r["attempts"]],
            r["allowed"],
        )
        rows.append(row)
    real = [r for r in rows if r.fault is None]
    bugs = [r for r in rows if r.fault]
    print(
        f"Run {time.strftime('%Y-%m-%d')} at commit {commit}: `python bench/selftest.py --seed {args.seed}`; "
        f"{wall / 60:.1f} min wall; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"(2 cores, shared). Real node: {sum(r.ok for r in real)}/{len(real)} campaigns valid; bugs caught: "
        f"{sum(r.ok for r in bugs)}/{len(bugs)}; selftest exit code {proc.returncode}.\n"
    )
    print(markdown_table(rows))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
