"""`squall` with the fake cluster side, for subprocess tests (SIGINT cleanup).

Usage: python -m tests.harness.fake_squall run --time-limit 30 ...
Runs take real time here (a test signals the process while it runs).
The fake cluster spawns one listening child process per node and writes
their pids and ports to <run_dir>/fake-cluster.txt.
"""

from __future__ import annotations

import sys

from harness.cli import cli  # the console script's group, given fakes instead of the real registry
from tests.harness.fakes import fake_registry

if __name__ == "__main__":
    rc = cli.main(
        args=sys.argv[1:], prog_name="squall", obj=fake_registry(spawn=True, virtual_time=False), standalone_mode=False
    )
    sys.exit(rc if isinstance(rc, int) else 0)
