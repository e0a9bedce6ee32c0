"""Clock faults through libfaketime's file-based control.

A node started with ``env(node)`` has libfaketime preloaded and reads its
wall-clock offset from ``<dir>/<node>.rc`` (``FAKETIME_TIMESTAMP_FILE``),
re-read at most once a second (``FAKETIME_CACHE_DURATION=1``), so the offset
changes while the node runs. Only ``CLOCK_REALTIME`` (and ``time()``,
``gettimeofday``) is faked: ``FAKETIME_DONT_FAKE_MONOTONIC=1`` keeps
``CLOCK_MONOTONIC`` real. The JVM hangs without it (libfaketime's README),
and a wrong wall clock on a real machine leaves the monotonic clock alone as
well. A known libfaketime 0.9.10 limitation with that setting: Python's
``time.sleep`` (``clock_nanosleep`` on the monotonic clock with an absolute
deadline) fails with EINVAL in a faked process; asyncio's timers and
``threading`` waits are unaffected, and the node uses those.

``strobe`` flips a node's offset between +0 and a delta from a daemon thread
until ``reset``. ``close`` stops every strobe and removes the control files.
libfaketime creates a POSIX shared-memory segment and a semaphore named after
the pid of the process that loaded it (``/dev/shm/faketime_shm_<pid>``,
``sem.faketime_sem_<pid>``) and removes them only on a clean exit, so a
killed node leaves them; ``remove_shm(pid)`` deletes them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

LIBFAKETIME = Path(os.environ.get("SQUALL_LIBFAKETIME", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"))
SHM_DIR = Path("/dev/shm")
MIN_STROBE_PERIOD_MS = 1000  # the library re-reads the control file once a second


def check_available() -> None:
    """Raise an error naming what is missing when libfaketime cannot be preloaded."""
    from harness.backends.base import SetupError

    if not LIBFAKETIME.exists():
        raise SetupError(
            f"the clock fault needs libfaketime at {LIBFAKETIME} (Debian package libfaketime; "
            "or set SQUALL_LIBFAKETIME to the library's path)"
        )


def offset_text(offset_ms: int) -> str:
    """libfaketime's relative-offset syntax: "+1.500" seconds, "-60.000"."""
    return f"{offset_ms / 1000:+.3f}"


def remove_shm(pid: int) -> list[Path]:
    """Remove libfaketime's shared memory and semaphore of ``pid``; returns what went."""
    gone = []
    for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
        path = SHM_DIR / name
        try:
            path.unlink()
            gone.append(path)
        except FileNotFoundError:
            pass
        except OSError:
            pass
    return gone


def leftover_shm(pids: list[int]) -> list[Path]:
    """libfaketime segments of these pids that still exist (for leak checks)."""
    return [
        p for pid in pids for p in (SHM_DIR / f"faketime_shm_{pid}", SHM_DIR / f"sem.faketime_sem_{pid}") if p.exists()
    ]


class Clocks:
    """Per-node clock control files and strobe threads."""

    def __init__(self, directory: Path, nodes: list[str]) -> None:
        check_available()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes = list(nodes)
        self._lock = threading.Lock()
        self._strobes: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._offsets: dict[str, int] = {}
        for node in self.nodes:
            self._write(node, 0)

    def path(self, node: str) -> Path:
        return self.dir / f"{node}.rc"

    def env(self, node: str, ld_preload: str = "") -> dict[str, str]:
        """The environment that makes ``node``'s processes follow its control file."""
        preload = f"{LIBFAKETIME}:{ld_preload}" if ld_preload else str(LIBFAKETIME)
        return {
            "LD_PRELOAD": preload,
            "FAKETIME_TIMESTAMP_FILE": str(self.path(node)),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def offset_ms(self, node: str) -> int:
        with self._lock:
            return self._offsets.get(node, 0)

    def _write(self, node: str, offset_ms: int) -> None:
        # Atomic replace: the library never reads a half-written file.
        tmp = self.path(node).with_suffix(".tmp")
        tmp.write_text(offset_text(offset_ms) + "\n", encoding="ascii")
        os.replace(tmp, self.path(node))
        with self._lock:
            self._offsets[node] = offset_ms

    def bump(self, node: str, offset_ms: int) -> None:
        self._stop_strobe(node)
        self._write(node, int(offset_ms))

    def strobe(self, node: str, delta_ms: int, period_ms: int) -> None:
        if period_ms < MIN_STROBE_PERIOD_MS:
            raise ValueError(
                f"strobe period must be >= {MIN_STROBE_PERIOD_MS} ms (libfaketime re-reads "
                f"its control file once a second), got {period_ms}"
            )
        self._stop_strobe(node)
        stop = threading.Event()

        def flip() -> None:
            high = True
            while not stop.is_set():
                self._write(node, int(delta_ms) if high else 0)
                high = not high
                stop.wait(period_ms / 1000)

        thread = threading.Thread(target=flip, name=f"clock-strobe-{node}", daemon=True)
        with self._lock:
            self._strobes[node] = (thread, stop)
        thread.start()

    def _stop_strobe(self, node: str) -> None:
        with self._lock:
            entry = self._strobes.pop(node, None)
        if entry is not None:
            entry[1].set()
            entry[0].join(timeout=5)

    def reset(self) -> None:
        for node in self.nodes:
            self._stop_strobe(node)
            self._write(node, 0)

    def close(self) -> None:
        """Stop every strobe and remove the control files. Idempotent."""
        for node in self.nodes:
            self._stop_strobe(node)
            for p in (self.path(node), self.path(node).with_suffix(".tmp")):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        try:
            self.dir.rmdir()
        except OSError:
            pass
