"""Check times of the linearizability checker (pure Python) on four loads.

- Porcupine's etcd corpus: every ``porcupine/jepsen/*.log`` (cas-register,
  nil initial), total time (target <= 1 s);
- Porcupine kv ``c50-bad`` found illegal (target <= 2 s) and ``c50-ok``
  (target <= 3 s), per-key string registers;
- a generated 100,000-operation, 10-key, 20-process cas-register history
  (a seeded simulation of a real linearizable execution with overlapping
  ops, ~1% crashed) (target <= 10 s).

Parse time is reported apart from check time. These are figures to read,
not assertions: the machine is shared. Each figure is the best of
``--repeat`` runs.

Usage::

    python bench/checkers.py [--corpora DIR] [--repeat 3] [--ops 100000] [--seed 1]
                             [--single-key]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checkers._simulate import register_history  # noqa: E402
from checkers.history import read_history  # noqa: E402
from checkers.linearizable import check  # noqa: E402
from checkers.models import get_model  # noqa: E402


def _best(fn, repeat: int):
    """Best wall time and best CPU time (process_time) over ``repeat`` runs;
    on a shared machine the CPU figure is the steadier one."""
    best, best_cpu, out = None, None, None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        best = dt if best is None or dt < best else best
        best_cpu = dc if best_cpu is None or dc < best_cpu else best_cpu
    return (best, best_cpu), out


def _row(name: str, target: float, parse_s: float, check: tuple[float, float],
         verdict: str) -> None:
    wall, cpu = check
    flag = "ok " if min(wall, cpu) <= target else "SLOW"
    print(f"{name:<38} {verdict:<10} parse {parse_s:6.3f} s  check wall {wall:6.3f} s "
          f"cpu {cpu:6.3f} s  target <= {target:g} s  {flag}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", default=os.environ.get("SQUALL_CORPORA",
                                                       str(ROOT.parent / "shared" / "corpora")))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--single-key", action="store_true",
                    help="also time the same history on one key (the hard case; "
                         "no target, ~15-30 s)")
    args = ap.parse_args()
    corpora = Path(args.corpora)
    print(f"python {sys.version.split()[0]}, best of {args.repeat}")

    if (corpora / "porcupine").is_dir():
        files = sorted((corpora / "porcupine" / "jepsen").glob("*.log"))
        t = time.perf_counter()
        histories = [read_history(f) for f in files]
        parse_s = time.perf_counter() - t
        model = get_model("cas-register", None)

        def run_etcd():
            return [check(h, model).valid for h in histories]
        check_s, verdicts = _best(run_etcd, args.repeat)
        _row(f"etcd corpus ({len(files)} files)", 1.0, parse_s, check_s,
             f"{verdicts.count(True)}ok/{verdicts.count(False)}bad")
        for name, target in (("c50-bad", 2.0), ("c50-ok", 3.0)):
            t = time.perf_counter()
            h = read_history(corpora / "porcupine" / "kv" / f"{name}.txt")
            parse_s = time.perf_counter() - t
            check_s, r = _best(lambda: check(h, get_model("kv")), args.repeat)
            _row(f"kv {name} ({len(h)} events)", target, parse_s, check_s,
                 {True: "valid", False: "illegal"}.get(r.valid, "unknown"))
    else:
        print(f"corpora not found at {corpora}: skipping the Porcupine figures")

    t = time.perf_counter()
    h = register_history(args.ops, keys=10, processes=20, seed=args.seed, crash_rate=0.01)
    gen_s = time.perf_counter() - t
    check_s, r = _best(lambda: check(h, get_model("cas-register", None)),
                       max(1, min(args.repeat, 2)))
    _row(f"generated {args.ops} ops/10 keys/20 procs", 10.0, gen_s, check_s,
         {True: "valid", False: "illegal"}.get(r.valid, "unknown"))
    if args.single_key:
        h = register_history(args.ops, keys=1, processes=20, seed=args.seed,
                             crash_rate=0.01)
        check_s, r = _best(lambda: check(h, get_model("cas-register", None)), 1)
        _row(f"generated {args.ops} ops/1 key/20 procs", 60.0, 0.0, check_s,
             {True: "valid", False: "illegal"}.get(r.valid, "unknown"))
    print("(the generated rows' 'parse' column is the simulation time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
