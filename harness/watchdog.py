"""The watchdog: kills registered process groups once the process that registered them is gone.

A small process of its own (its own session, so a terminal's Ctrl-C does not
reach it). Its owner tells it each process group it starts ("+PGID") and
reaps ("-PGID") through a pipe only the owner holds, so the pipe's end of
file means the owner is gone, however it died (SIGKILL, an OOM kill) and
whichever of its threads started the group (PR_SET_PDEATHSIG would fire when
the *thread* that forked exits); the watchdog then SIGKILLs every group still
registered. The local backend (``harness.backends.local``) gives every
cluster one; the tests' and benches' servers (``tests/node/servers.py``)
share one per process. This module imports nothing of the project.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

_log = logging.getLogger(__name__)

# The watchdog's whole program: "+PGID" registers a node's process group,
# "-PGID" forgets it; end of file (the harness is gone, or closed the pipe
# after its teardown) kills what is still registered. It ignores SIGINT,
# SIGTERM and SIGHUP so that signals meant for the harness's terminal or
# process group never stop it before it has done its job.
WATCHDOG_CODE = """
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


class Watchdog:
    """Kills the registered process groups once the harness is gone (see the
    module doc). ``close()`` after a normal teardown ends it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )

    def _send(self, line: str) -> None:
        with self._lock:
            if self.proc.stdin is None or self.proc.stdin.closed:
                return
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:  # the watchdog is gone: say so, go on
                _log.warning("the node watchdog is gone (%s): a killed owner would leave its processes running", exc)

    def register(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        with self._lock:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


__all__ = ["WATCHDOG_CODE", "Watchdog"]
