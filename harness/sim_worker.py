"""A `squall sim --workers N` worker: ``python -m harness.sim_worker``.

A fresh interpreter (see ``harness.sim_cmd``: never a fork of the parent).
It reads tasks from stdin, one JSON object a line::

    {"command": [...the simulator command...], "seeds": 25, "budget": 30.0}

runs that simulator command, judges each seed's history as it arrives
(``sim_cmd.assess``) and writes one line per seed, ``{"outcome": {...}}``,
then ``{"done": true}`` at the end of the task, or ``{"error": "..."}`` if the
simulator failed (the worker then exits). It exits when its stdin closes.

SIGTERM, or the death of its parent, makes it kill its simulator first.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from harness.sim_cmd import SimulatorError, assess, stream_command


def _on_term(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(1)  # unwinds the task: stream_command's finally kills the simulator


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _send(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def run_task(task: dict[str, Any]) -> bool:
    """One chunk; False if the simulator failed (reported as an error)."""
    runs = stream_command(list(task["command"]), int(task["seeds"]))
    try:
        for run in runs:
            _send({"outcome": assess(run, float(task["budget"])).to_json()})
    except SimulatorError as exc:
        _send({"error": exc.message})
        return False
    finally:
        runs.close()
    _send({"done": True})
    return True


def main() -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    _die_with_parent()
    for line in sys.stdin:
        if line.strip() and not run_task(json.loads(line)):
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the parent went away mid-write
        sys.exit(1)
