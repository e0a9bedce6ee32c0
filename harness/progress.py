"""The live progress line on stderr: elapsed/remaining, op counts, current fault.

``render`` is pure (tested without a terminal). ``Progress`` decides when to
print: on a TTY one line refreshed in place a few times a second; otherwise
(CI logs, pipes) a plain line every ``plain_every_s`` seconds, so logs stay
readable.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Counts:
    ok: int = 0
    fail: int = 0
    info: int = 0

    def add(self, type_: str) -> None:
        if type_ in ("ok", "fail", "info"):
            setattr(self, type_, getattr(self, type_) + 1)


def render(
    phase: str,
    elapsed_s: float,
    limit_s: float,
    counts: Counts,
    fault: str | None,
    width: int = 140,
    main_elapsed_s: float | None = None,
) -> str:
    """``elapsed_s`` counts from the run's start (setup included); the time
    left is the time limit minus ``main_elapsed_s``, the main phase's age."""
    in_main = elapsed_s if main_elapsed_s is None else main_elapsed_s
    if phase == "setup":
        remaining, frac = limit_s, 0.0
    elif phase == "main":
        remaining = max(0.0, limit_s - in_main)
        frac = min(1.0, in_main / limit_s) if limit_s > 0 else 1.0
    else:
        remaining, frac = 0.0, 1.0
    bar_w = 20
    filled = int(round(frac * bar_w))
    bar = "#" * filled + "-" * (bar_w - filled)
    line = (
        f"[{bar}] {phase:<7} {elapsed_s:6.1f}s elapsed, {remaining:5.1f}s left | "
        f"ok {counts.ok} fail {counts.fail} info {counts.info} | fault: {fault or 'none'}"
    )
    return line[:width]


@dataclass
class Progress:
    """Collects counts from the runner and prints the progress line."""

    limit_s: float
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool | None = None
    tty_every_s: float = 0.25
    plain_every_s: float = 10.0
    enabled: bool = True
    counts: Counts = field(default_factory=Counts)
    fault: str | None = None
    phase: str = "setup"
    main_start_s: float | None = None
    _active: dict = field(default_factory=dict)
    _last_print: float = -1e9
    _dirty_line: bool = False

    def __post_init__(self) -> None:
        if self.tty is None:
            isatty = getattr(self.stream, "isatty", None)
            self.tty = bool(isatty and isatty())

    def completed(self, type_: str) -> None:
        self.counts.add(type_)

    def set_fault(self, description: str | None) -> None:
        self.fault = description

    def nemesis_done(self, f: str, description: str) -> None:
        """Track the faults in effect: a start adds one, its stop removes it."""
        from harness.report.stats import ended_kinds, fault_edge

        edge = fault_edge(f)
        if edge is None:
            return
        what, kind = edge
        if what == "begin":
            self._active[kind] = description
        elif kind == "*":
            self._active.clear()
        else:
            for k in ended_kinds(kind):
                self._active.pop(k, None)
        self.fault = "; ".join(self._active.values()) or None

    def set_phase(self, phase: str, elapsed_s: float) -> None:
        self.phase = phase
        if phase == "main":
            self.main_start_s = elapsed_s
        self.tick(elapsed_s, force=True)

    def tick(self, elapsed_s: float, force: bool = False) -> None:
        if not self.enabled:
            return
        every = self.tty_every_s if self.tty else self.plain_every_s
        if not force and elapsed_s - self._last_print < every:
            return
        self._last_print = elapsed_s
        main = None if self.main_start_s is None else elapsed_s - self.main_start_s
        line = render(self.phase, elapsed_s, self.limit_s, self.counts, self.fault, main_elapsed_s=main)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._dirty_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the refreshing line so later messages start on their own line."""
        if self.enabled and self.tty and self._dirty_line:
            self.stream.write("\n")
            self.stream.flush()
            self._dirty_line = False

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()
