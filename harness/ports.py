"""Free TCP ports for nodes, proxies and test servers.

By default a port comes from the kernel (a bind to port 0): right for one run
on a machine. A port picked that way is free only until it is closed again,
and a node binds it a moment (a JVM: seconds) later; meanwhile any other
process's bind to port 0, or a client's ``connect``, may be handed the same
port. Where many runs share a machine -- the test suite's parallel workers --
set ``SQUALL_PORT_RANGE=LOW-HIGH``: ports then come from that range only. A
range below the kernel's ephemeral range (``/proc/sys/net/ipv4/
ip_local_port_range``, 32768-60999 by default) is never handed out by the
kernel on its own, so nothing else can take a port between the pick and the
bind; ``tests/conftest.py`` gives each pytest-xdist worker a range of its
own, so workers never pick the same port either.

This module imports nothing else of the project (the tests' server helpers
use it too).
"""

from __future__ import annotations

import os
import random
import socket
import threading

ENV = "SQUALL_PORT_RANGE"

_lock = threading.Lock()
_cursor: int | None = None  # next offset into the range: successive picks walk the range, no early reuse


def port_range() -> tuple[int, int] | None:
    """``(low, high)`` from ``$SQUALL_PORT_RANGE`` (inclusive), or None when it is unset."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    low_s, sep, high_s = text.partition("-")
    try:
        low, high = int(low_s), int(high_s)
    except ValueError:
        low = high = -1
    if not sep or not 1024 <= low <= high <= 65535:
        raise ValueError(
            f"{ENV}={text!r} is not a port range; expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535, e.g. 20000-20999"
        )
    return low, high


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago.

    Every socket is held open until all are picked, so the list has no
    duplicates. Without ``$SQUALL_PORT_RANGE`` another process may still take
    one before the caller binds it (see the module docstring).
    """
    global _cursor
    bounds = port_range()
    socks: list[socket.socket] = []
    try:
        if bounds is None:
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, 0))
            return [s.getsockname()[1] for s in socks]
        low, high = bounds
        size = high - low + 1
        with _lock:
            if _cursor is None:
                _cursor = random.randrange(size)
            tried = 0
            while len(socks) < count and tried < size:
                port = low + (_cursor + tried) % size
                tried += 1
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
                except OSError:
                    s.close()
                    continue
                socks.append(s)
            _cursor = (_cursor + tried) % size
        if len(socks) < count:
            raise OSError(f"only {len(socks)} of {count} ports are free in {ENV}={low}-{high}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One port that was free on ``host`` a moment ago (see ``free_ports``)."""
    return free_ports(1, host)[0]
