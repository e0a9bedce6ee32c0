"""What an unarmed failpoint costs: nanoseconds per pass, beside an empty loop.

    python bench/failpoints.py [--passes N]

A point is ``if fp.active and fp.hit(NAME): ...`` (node/failpoints.py).
Printed: the empty loop, an unarmed point (``active`` False: one attribute
test), a point while *another* one is armed (``active`` True: the dict look-up
in ``hit`` that finds nothing), and what the replica's hottest points add to
one write in a synchronous 3-replica cluster (a write passes ``apply`` on
each replica and the shell's fsync and reply points once per turn). The
machine's load average is printed beside the figures: on a shared machine
they are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.failpoints import Failpoints  # noqa: E402


def per_pass_ns(stmt: str, setup_globals: dict, passes: int) -> float:
    best = min(timeit.repeat(stmt, globals=setup_globals, number=passes, repeat=5))
    return best / passes * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=2_000_000)
    args = ap.parse_args()
    unarmed = Failpoints()
    other = Failpoints(["snapshot-send=error"])
    g = {"unarmed": unarmed, "other": other}
    base = per_pass_ns("pass", g, args.passes)
    cold = per_pass_ns("unarmed.active and unarmed.hit('apply')", g, args.passes)
    warm = per_pass_ns("other.active and other.hit('apply')", g, args.passes)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"empty loop:                          {base:6.1f} ns/pass")
    print(f"unarmed point (nothing armed):       {cold:6.1f} ns/pass  (+{cold - base:.1f} ns)")
    print(f"unarmed point (another one armed):   {warm:6.1f} ns/pass  (+{warm - base:.1f} ns)")
    # A write through a 3-member ensemble passes: apply x3 (one per replica), before-fsync and
    # after-fsync on each member that fsyncs (3), before-reply once, peer-send on each member.
    per_write = 3 + 3 * 2 + 1 + 3
    print(
        f"points passed per replicated write:  {per_write}  -> about {per_write * (cold - base):.0f} ns a write "
        f"(bench/ensemble.py: a synchronous write costs about 1 ms)"
    )


if __name__ == "__main__":
    main()
