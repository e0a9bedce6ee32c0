"""Check times of squall's checkers (pure Python) beside Porcupine's.

Porcupine cannot be built on the developers' machines, so its figures are
the ones recorded on this machine (issue 15), printed beside squall's:

- Porcupine's etcd corpus: every ``porcupine/jepsen/*.log`` (cas-register,
  nil initial, failed ops happened) -- Porcupine 0.56-0.58 s for all;
- Porcupine's 50-client kv pair ``c50-ok`` + ``c50-bad`` (per-key string
  registers) -- Porcupine 0.28-0.30 s; ``c50-ok`` alone 0.17 s;
- the sequential checker on ``c50-bad`` (no zxids): must be decided;
- a generated 1,000,000-operation, 10-key, 20-process cas-register history
  (a seeded simulation of a real linearizable execution with overlapping
  ops, ~1% crashed): target under 30 s and under 2 GB peak RSS. It runs in
  a child process so that its peak RSS (history included) is its own.

Each figure is CPU time (``time.process_time``), best of ``--repeat`` runs,
with the wall time beside it; parse time is apart. The machine's load
average is printed before and after: the machine is shared, so these are
figures to read, not assertions.

Usage::

    python bench/checkers.py [--corpora DIR] [--repeat 3] [--ops 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checkers import sequential  # noqa: E402
from checkers._simulate import register_history  # noqa: E402
from checkers.history import read_history  # noqa: E402
from checkers.linearizable import check  # noqa: E402
from checkers.models import get_model  # noqa: E402

# Porcupine's times on this machine (issue 15), seconds
PORCUPINE = {"etcd": "0.56-0.58", "kv pair": "0.28-0.30", "c50-ok": "0.17"}


def _best(fn, repeat: int):
    """(best CPU time, best wall time) over ``repeat`` runs, and the last result."""
    best_cpu = best_wall = None
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        best_cpu = dc if best_cpu is None else min(best_cpu, dc)
        best_wall = dt if best_wall is None else min(best_wall, dt)
    return (best_cpu, best_wall), out


def _verdict(valid) -> str:
    return {True: "valid", False: "invalid"}.get(valid, "unknown")


def _row(name: str, verdict: str, times: tuple[float, float], porcupine: str, parse_s: float | None = None) -> None:
    cpu, wall = times
    parse = f"parse {parse_s:6.3f} s  " if parse_s is not None else " " * 16
    print(f"{name:<34} {verdict:<14} {parse}cpu {cpu:7.3f} s  wall {wall:7.3f} s  Porcupine {porcupine}")


def _load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def _generated_child(n_ops: int, seed: int) -> None:
    """In the child: generate, check once, print JSON figures."""
    t = time.perf_counter()
    h = register_history(n_ops, keys=10, processes=20, seed=seed, crash_rate=0.01)
    gen_s = time.perf_counter() - t
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, c = time.perf_counter(), time.process_time()
    r = check(h, get_model("cas-register", None))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "gen_s": gen_s,
                "cpu": cpu,
                "wall": wall,
                "valid": r.valid,
                "rss_after_gen_mb": rss_before / 1024,
                "peak_rss_mb": peak / 1024,
                "states": r.details.get("states"),
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", default=os.environ.get("SQUALL_CORPORA", str(ROOT.parent / "shared" / "corpora")))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child-generated", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeat < 1 or args.ops < 1:
        ap.error("--repeat and --ops must be at least 1")
    if args.child_generated:
        _generated_child(args.ops, args.seed)
        return 0
    corpora = Path(args.corpora)
    print(f"python {sys.version.split()[0]}, CPU time best of {args.repeat}; {_load()}")

    if (corpora / "porcupine").is_dir():
        files = sorted((corpora / "porcupine" / "jepsen").glob("*.log"))
        t = time.perf_counter()
        histories = [read_history(f) for f in files]
        parse_s = time.perf_counter() - t
        model = get_model("cas-register", None)
        times, verdicts = _best(lambda: [check(h, model).valid for h in histories], args.repeat)
        _row(
            f"etcd corpus ({len(files)} files)",
            f"{verdicts.count(True)}ok/{verdicts.count(False)}bad",
            times,
            PORCUPINE["etcd"],
            parse_s,
        )
        kv = {}
        for name in ("c50-ok", "c50-bad"):
            t = time.perf_counter()
            kv[name] = read_history(corpora / "porcupine" / "kv" / f"{name}.txt")
            kv[name + " parse"] = time.perf_counter() - t
        kvm = get_model("kv")
        times, rs = _best(lambda: [check(kv[n], kvm) for n in ("c50-ok", "c50-bad")], args.repeat)
        _row(
            "kv c50-ok + c50-bad",
            "/".join(_verdict(r.valid) for r in rs),
            times,
            PORCUPINE["kv pair"],
            kv["c50-ok parse"] + kv["c50-bad parse"],
        )
        times, r = _best(lambda: check(kv["c50-ok"], kvm), args.repeat)
        _row("kv c50-ok", _verdict(r.valid), times, PORCUPINE["c50-ok"], kv["c50-ok parse"])
        times, r = _best(lambda: check(kv["c50-bad"], kvm), args.repeat)
        _row("kv c50-bad", _verdict(r.valid), times, "-", kv["c50-bad parse"])
        times, r = _best(lambda: sequential.check(kv["c50-bad"], kvm), args.repeat)
        _row("sequential kv c50-bad", _verdict(r.valid), times, "- (must be decided)")
    else:
        print(f"corpora not found at {corpora}: skipping the Porcupine rows (set SQUALL_CORPORA)")

    runs = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--child-generated", "--ops", str(args.ops), "--seed", str(args.seed)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda x: x["cpu"])
    _row(
        f"generated {args.ops:,} ops/10 keys",
        _verdict(best["valid"]),
        (best["cpu"], min(x["wall"] for x in runs)),
        "- (target < 30 s)",
    )
    print(
        f"{'':<34} peak RSS {max(x['peak_rss_mb'] for x in runs):.0f} MB "
        f"(of which {best['rss_after_gen_mb']:.0f} MB after generating the history; "
        f"target < 2048 MB), {best['states']} states, generation {best['gen_s']:.1f} s"
    )
    print(_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
