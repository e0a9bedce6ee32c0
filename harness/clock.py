"""The runner's clock: the one seam through which ``harness.runner`` reads time and waits.

The interpreter (``harness.runner.Interpreter``) never calls ``time`` or
``sleep`` itself. It asks its :class:`Clock` for the time, waits for
completions and pauses through it, and tells it when a call starts and
ends. Generators are pure and see only the time the interpreter passes in
(``harness.generator``), so a clock decides the whole run's notion of time.

* :class:`MonotonicClock` -- real time (``time.monotonic_ns``); what every
  real run uses. Its call bookkeeping does nothing.
* :class:`VirtualClock` -- simulated time, for tests of the runner (like
  trio's ``MockClock`` with autojump): time stands still while any call is
  running, and when the interpreter waits and no call is running, time jumps
  straight to the end of the wait. A run of 60 simulated seconds against
  in-process fakes takes milliseconds, and with no call running in real time
  while simulated time moves, what a run records does not depend on the
  machine's speed. A fake call that blocks on purpose (a hung client) says
  so with :meth:`VirtualClock.idle`, so simulated time can move on while it
  waits; a fake call that should take time (a latency) calls
  :meth:`VirtualClock.sleep`, which takes simulated time only.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_NOTHING = object()


def _ns(seconds: float) -> int:
    """Rounded up: a wait until a deadline must reach it (a float remainder of
    a fraction of a nanosecond would otherwise never move the time)."""
    return max(0, math.ceil(seconds * 1e9))


class Clock(Protocol):
    def now_ns(self) -> int:
        """Nanoseconds on a monotonic scale (only differences mean anything)."""
        ...

    def get(self, q: queue.Queue[T], timeout_s: float) -> T:
        """The next item of ``q``, waiting at most ``timeout_s``; ``queue.Empty`` if none came."""
        ...

    def pause(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds`` or until ``stop`` is set; True if it was."""
        ...

    def call_started(self) -> None:
        """A call was handed to a worker thread (its completion will come through a queue)."""
        ...

    def call_ended(self) -> None:
        """That call's completion is in its queue (called by the worker, after the put)."""
        ...


class MonotonicClock:
    """Real time: what a real run uses."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def get(self, q: queue.Queue[T], timeout_s: float) -> T:
        return q.get(timeout=max(0.0, timeout_s))

    def pause(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(seconds)

    def call_started(self) -> None:
        pass

    def call_ended(self) -> None:
        pass


class VirtualClock:
    """Simulated time for the runner's tests (test-only; see the module docstring).

    ``get`` first lets every running call finish (all at the same simulated
    instant), then returns a completion if there is one; otherwise it moves
    time forward -- to the first call sleeping in simulated time
    (:meth:`sleep`) that wakes within ``timeout_s``, which then runs, or else
    by ``timeout_s`` -- and raises ``queue.Empty`` once ``timeout_s`` has
    passed with no completion. ``pause`` moves time forward the same way. A
    call that neither ends nor sleeps nor declares itself idle for
    ``stall_s`` real seconds is logged and treated as idle, so a forgotten
    ``idle()`` makes a test slow, never stuck.
    """

    def __init__(self, start_ns: int = 0, stall_s: float = 10.0) -> None:
        self._now = start_ns
        self._running = 0
        self._sleepers: list[tuple[int, int]] = []  # (wake time, ticket), a heap
        self._tickets = 0
        self._cond = threading.Condition()
        self.stall_s = stall_s
        self.stalls = 0  # how often a running call was given up on (a test may assert 0)

    def now_ns(self) -> int:
        with self._cond:
            return self._now

    def call_started(self) -> None:
        with self._cond:
            self._running += 1

    def call_ended(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """Inside a call: the calling worker waits on something outside the run (a hang
        the test releases later), so simulated time may move on meanwhile. The call
        counts as running again once its thread leaves the block."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._running += 1

    def sleep(self, seconds: float) -> None:
        """Inside a call: take ``seconds`` of simulated time (a fake's latency)."""
        with self._cond:
            wake = self._now + _ns(seconds)
            self._tickets += 1
            ticket = self._tickets
            heapq.heappush(self._sleepers, (wake, ticket))
            self._running -= 1
            self._cond.notify_all()
            # Whoever moves the time past ``wake`` counts this call as running
            # again before it lets go of the lock (so nobody sees it idle).
            while (wake, ticket) in self._sleepers:
                self._cond.wait()

    def _quiesce(self) -> None:
        """Wait (in real time) until no call is running; the caller holds the lock."""
        deadline = time.monotonic() + self.stall_s
        while self._running > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stalls += 1
                log.warning(
                    "virtual clock: %d call(s) still running after %.0f s of real time; moving on "
                    "(a fake that blocks should wait inside VirtualClock.idle())",
                    self._running,
                    self.stall_s,
                )
                return
            self._cond.wait(left)

    def _wake_next(self, until: int) -> bool:
        """Move time to the first sleeper due by ``until`` and wake every sleeper due
        then; False if none is. The caller holds the lock."""
        if not self._sleepers or self._sleepers[0][0] > until:
            return False
        self._now = max(self._now, self._sleepers[0][0])
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)
            self._running += 1
        self._cond.notify_all()
        return True

    def _advance_to(self, target: int, q: queue.Queue[T] | None = None) -> T | object:
        """Run time forward to ``target`` (sleepers waking on the way); stop early with
        the first item of ``q`` (a completion); ``_NOTHING`` if none came. The caller
        holds the lock."""
        while True:
            self._quiesce()
            if q is not None:
                try:
                    return q.get_nowait()
                except queue.Empty:
                    pass
            if not self._wake_next(target):
                self._now = max(self._now, target)
                return _NOTHING

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (calls sleeping meanwhile wake and run)."""
        if seconds < 0:
            raise ValueError(f"time cannot go back ({seconds} s)")
        with self._cond:
            self._advance_to(self._now + _ns(seconds))

    def get(self, q: queue.Queue[T], timeout_s: float) -> T:
        with self._cond:
            item = self._advance_to(self._now + _ns(timeout_s), q)
            if item is _NOTHING:
                raise queue.Empty
            return item  # type: ignore[return-value]

    def pause(self, seconds: float, stop: threading.Event) -> bool:
        if not stop.is_set():
            self.advance(max(0.0, seconds))
        return stop.is_set()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now / 1e9:.3f}s, running={self._running}, sleeping={len(self._sleepers)})"


__all__ = ["Clock", "MonotonicClock", "VirtualClock"]
