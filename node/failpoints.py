"""TEST-ONLY failpoints: named places in the node's code that a test can make fail.

As etcd's gofail: a run arms a point with ``squall node --failpoint
NAME=ACTION`` (``squall run --failpoint NAME=ACTION`` passes it to every
member through the database's ``prepare``); a point that is not armed does
nothing and costs one attribute test (``if fp.active``, measured by
``bench/failpoints.py``). The code around a point is the production code:
arming changes what happens *at* the point, never which path leads to it.

ACTION is ``[P%][N*]KIND``, KIND one of

- ``off``: disarmed (the default);
- ``panic``: the process dies on the spot (exit code :data:`PANIC_EXIT`, after
  one log line), as a crash at that instruction would: nothing the member
  did not yet persist or send survives;
- ``sleep(MS)``: the member stalls there for MS milliseconds (the event loop
  is blocked, as by a slow disk or a long GC pause: every other input waits);
- ``error``: the operation at the point fails; what that means is the
  point's own (``Point.on_error``), and points where no failure makes sense
  do not accept it.

``P%`` fires with probability P per pass (0 < P <= 100), from an injected
random stream; ``N*`` fires at most N times, after which the point is off.
The list of points is :data:`POINTS` (``squall node --list-failpoints``,
docs/failpoints.md). Never arm one outside a test.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("squall.node.failpoints")

PANIC_EXIT = 70  # EX_SOFTWARE: the exit code of a member killed by a `panic` failpoint
KINDS = ("off", "panic", "sleep", "error")
MAX_SLEEP_MS = 600_000


@dataclass(frozen=True)
class Point:
    """One named failpoint: where it is and what `error` does there (None: not allowed)."""

    name: str
    where: str
    on_error: str | None


_POINTS = (
    Point(
        "before-fsync",
        "the raft store, before the fsync of a batch of log entries, snapshots or votes",
        "the fsync fails with EIO: nothing of the batch is acknowledged, voted or answered, and the "
        "member stops (exits non-zero), as ZooKeeper does when it cannot write its log: a disk that failed "
        "an fsync cannot be trusted",
    ),
    Point(
        "after-fsync",
        "the raft store, after a successful fsync, before anything that depends on it leaves",
        "the fsync reports EIO after the fact: the member stops (exits non-zero) without acknowledging, as for "
        "before-fsync (the data may be durable; nothing said so)",
    ),
    Point(
        "before-reply",
        "the client path, before the reply to a write, sync, session create/close or "
        "reconnect (what the replica answers) is handed to its connection",
        "the reply is dropped and the connection closed: the client sees a connection loss and the "
        "operation is indeterminate (a write may have been applied)",
    ),
    Point(
        "peer-send",
        "the peer transport, before a turn's messages to the other members are sent",
        "the messages are dropped, as lost on the wire (Raft retries them)",
    ),
    Point(
        "apply",
        "the replica, before it applies one committed log entry to its tree",
        "the member stops (exits non-zero): a replica that cannot apply a committed entry must not skip it "
        "(it would diverge from the others)",
    ),
    Point(
        "campaign",
        "Raft, when a member's election timer fires and it starts a (pre-)campaign",
        "the member gives up this campaign and stays a follower until its next election timeout",
    ),
    Point(
        "become-leader",
        "Raft, when a member has won an election, before it acts as leader",
        "the member declines: it stays a follower in that term (no other leader can win its vote "
        "there), and a new election follows",
    ),
    Point("step-down", "Raft, when a leader steps down (a higher term, or check-quorum lost its quorum)", None),
    Point(
        "snapshot-send",
        "Raft, when the leader sends its snapshot to a follower that lacks its log",
        "the snapshot is not sent (as if lost): the leader tries again after an election timeout",
    ),
    Point(
        "snapshot-install",
        "Raft, when a follower is about to replace its log with a leader's snapshot",
        "the follower refuses it without an answer; the leader sends it again after an election timeout",
    ),
    Point(
        "snapshot-save",
        "the replica, before it takes a snapshot of its own applied state (snapCount)",
        "this snapshot is not taken; the replica tries again after the next applied entry",
    ),
    Point(
        "session-expire",
        "the leader, before it proposes closing a session whose timeout passed",
        "the expiry is not proposed this tick; the session stays closing-eligible and is retried at the next tick",
    ),
)
POINTS: dict[str, Point] = {p.name: p for p in _POINTS}


class FailpointSpecError(ValueError):
    """A ``NAME=ACTION`` that does not parse or names no point; the message says what is allowed."""


class FailpointError(RuntimeError):
    """Raised by a point armed with ``error`` whose failure stops the member (see ``Point.on_error``)."""


class FailpointPanic(BaseException):
    """What an injected panic handler may raise instead of exiting (tests, the simulator)."""


@dataclass(frozen=True)
class Action:
    """A parsed ACTION: KIND, its argument, and the P% / N* modifiers."""

    kind: str
    ms: int = 0
    percent: float = 100.0
    count: int | None = None  # None: unlimited

    def __str__(self) -> str:
        pre = f"{self.percent:g}%" if self.percent < 100 else ""
        pre += f"{self.count}*" if self.count is not None else ""
        return pre + (f"sleep({self.ms})" if self.kind == "sleep" else self.kind)


_ACTION = re.compile(r"^(?:(?P<pct>\d+(?:\.\d+)?)%)?(?:(?P<count>\d+)\*)?(?P<kind>[a-z]+)(?:\((?P<arg>[^)]*)\))?$")
_SYNTAX = "[P%][N*]KIND with KIND one of off, panic, sleep(MS), error (e.g. panic, sleep(200), 10%error, 3*panic)"


def parse_action(text: str) -> Action:
    """``[P%][N*]KIND`` -> Action; raises FailpointSpecError naming the allowed syntax."""
    m = _ACTION.match(text.strip())
    if m is None:
        raise FailpointSpecError(f"failpoint action {text!r} does not parse; allowed: {_SYNTAX}")
    kind, arg = m["kind"], m["arg"]
    if kind not in KINDS:
        raise FailpointSpecError(f"failpoint action kind {kind!r} is unknown; allowed: {_SYNTAX}")
    ms = 0
    if kind == "sleep":
        if arg is None or not arg.strip().isdigit() or not 0 < int(arg) <= MAX_SLEEP_MS:
            raise FailpointSpecError(
                f"failpoint action {text!r}: sleep needs milliseconds, sleep(MS) with 1 <= MS <= {MAX_SLEEP_MS}"
            )
        ms = int(arg)
    elif arg is not None:
        raise FailpointSpecError(f"failpoint action {text!r}: {kind} takes no argument; allowed: {_SYNTAX}")
    percent = 100.0
    if m["pct"] is not None:
        percent = float(m["pct"])
        if not 0 < percent <= 100:
            raise FailpointSpecError(f"failpoint action {text!r}: the probability must be in (0, 100]%")
    count = None
    if m["count"] is not None:
        count = int(m["count"])
        if count < 1:
            raise FailpointSpecError(f"failpoint action {text!r}: the count N in N* must be at least 1")
    if kind == "off" and (m["pct"] is not None or count is not None):
        raise FailpointSpecError(f"failpoint action {text!r}: off takes no P% or N*")
    return Action(kind, ms, percent, count)


def parse_spec(spec: str) -> tuple[str, Action]:
    """``NAME=ACTION`` -> (name, action), checked against :data:`POINTS`."""
    name, sep, action_text = spec.partition("=")
    name = name.strip()
    if not sep or not name:
        raise FailpointSpecError(f"failpoint {spec!r}: expected NAME=ACTION, e.g. before-fsync=panic")
    point = POINTS.get(name)
    if point is None:
        raise FailpointSpecError(
            f"unknown failpoint {name!r}; allowed: {', '.join(POINTS)} (squall node --list-failpoints describes them)"
        )
    action = parse_action(action_text)
    if action.kind == "error" and point.on_error is None:
        raise FailpointSpecError(
            f"failpoint {name!r} does not take error (no failure makes sense there); allowed: off, panic, sleep(MS)"
        )
    return name, action


def describe() -> str:
    """The list printed by ``squall node --list-failpoints``."""
    lines = ["TEST-ONLY failpoints (squall node --failpoint NAME=ACTION; ACTION: " + _SYNTAX + "):", ""]
    for p in _POINTS:
        lines.append(f"{p.name}")
        lines.append(f"    where: {p.where}")
        lines.append(f"    error: {p.on_error}" if p.on_error else "    error: not allowed (panic, sleep, off only)")
    lines += ["", f"panic exits the process with code {PANIC_EXIT}; sleep blocks the member's event loop."]
    return "\n".join(lines)


def _exit_on_panic(name: str) -> None:
    msg = f"failpoint {name}: panic (test-only): the process exits now with code {PANIC_EXIT}"
    log.critical("%s", msg)
    for h in logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    os._exit(PANIC_EXIT)


class Failpoints:
    """The armed failpoints of one member (nothing armed by default).

    Call sites test ``fp.active`` first (one attribute load when nothing is
    armed), then ``fp.hit(NAME)``, which carries out an armed panic or sleep
    itself and returns True only when ``error`` fires (the caller then takes
    the point's error path). ``on_panic`` and ``sleep`` are injected so the
    pure core stays testable (the defaults exit the process and block the
    thread); ``rng`` draws the P% coins.
    """

    __slots__ = ("active", "_armed", "_rng", "_on_panic", "_sleep", "fired")

    def __init__(
        self,
        specs: Iterable[str] = (),
        *,
        rng: random.Random | None = None,
        on_panic: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._armed: dict[str, Action] = {}
        self._rng = rng or random.Random(0)
        self._on_panic = on_panic or _exit_on_panic
        self._sleep = sleep or time.sleep
        self.fired: dict[str, int] = {}  # name -> times its action fired
        self.active = False
        for spec in specs:
            self.arm_spec(spec)

    def arm_spec(self, spec: str) -> None:
        name, action = parse_spec(spec)
        self.arm(name, action)

    def arm(self, name: str, action: Action | str) -> None:
        if name not in POINTS:
            raise FailpointSpecError(f"unknown failpoint {name!r}; allowed: {', '.join(POINTS)}")
        if isinstance(action, str):
            name, action = parse_spec(f"{name}={action}")
        if action.kind == "off":
            self._armed.pop(name, None)
        else:
            self._armed[name] = action
            log.warning("failpoint %s armed: %s (TEST ONLY)", name, action)
        self.active = bool(self._armed)

    def disarm(self, name: str) -> None:
        self._armed.pop(name, None)
        self.active = bool(self._armed)

    def armed(self) -> dict[str, str]:
        """name -> action text of every armed point."""
        return {n: str(a) for n, a in self._armed.items()}

    def hit(self, name: str) -> bool:
        """Pass point ``name``: carry out its action; True when ``error`` fired."""
        action = self._armed.get(name)
        if action is None:
            return False
        if action.percent < 100 and self._rng.random() * 100 >= action.percent:
            return False
        if action.count is not None:
            left = action.count - 1
            if left <= 0:
                self._armed.pop(name, None)
                self.active = bool(self._armed)
            else:
                self._armed[name] = Action(action.kind, action.ms, action.percent, left)
        n = self.fired.get(name, 0) + 1
        self.fired[name] = n
        if action.kind == "panic":
            self._on_panic(name)
            return False  # an injected handler that returned: go on as if unarmed
        if n <= 3 or n % 1000 == 0:
            log.warning("failpoint %s fired (%s), %d time(s) so far", name, action.kind, n)
        if action.kind == "sleep":
            self._sleep(action.ms / 1000.0)
            return False
        return action.kind == "error"


def check_http_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` for ``--failpoint-http``; only loopback hosts (the API is unauthenticated)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise FailpointSpecError(f"--failpoint-http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:22381")
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise FailpointSpecError(
            f"--failpoint-http {text!r}: the failpoint API has no authentication, so it "
            "binds loopback only; allowed hosts: 127.0.0.0/8, localhost, ::1"
        )
    return host, int(port)


async def serve_http(fp: Failpoints, host: str, port: int):  # -> aiohttp.web.AppRunner
    """Serve gofail's HTTP API for ``fp`` on HOST:PORT (TEST ONLY; loopback): arm and disarm at run time.

    ``GET /`` lists every point as ``name=action`` lines (``off`` when not
    armed); ``GET /NAME`` gives one; ``PUT /NAME`` with the ACTION as its body
    arms it (``off`` disarms; 400 with the reason for a bad one); ``DELETE
    /NAME`` disarms. Handlers run on the member's event loop, the thread that
    passes the points, so arming needs no lock. Returns the runner to close.
    """
    from aiohttp import web  # the admin server's library; imported only when this API is asked for

    def listing() -> str:
        armed = fp.armed()
        return "".join(f"{name}={armed.get(name, 'off')}\n" for name in POINTS)

    def point(request: web.Request) -> str:
        name = request.match_info["name"]
        if name not in POINTS:
            raise web.HTTPNotFound(text=f"unknown failpoint {name!r}; allowed: {', '.join(POINTS)}\n")
        return name

    async def get_all(request: web.Request) -> web.Response:
        return web.Response(text=listing())

    async def get_one(request: web.Request) -> web.Response:
        return web.Response(text=fp.armed().get(point(request), "off") + "\n")

    async def put_one(request: web.Request) -> web.Response:
        name = point(request)
        body = (await request.text()).strip()
        try:
            fp.arm(name, body)
        except FailpointSpecError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.Response(status=204)

    async def delete_one(request: web.Request) -> web.Response:
        fp.disarm(point(request))
        log.warning("failpoint %s disarmed over HTTP", request.match_info["name"])
        return web.Response(status=204)

    app = web.Application(client_max_size=4096)
    app.router.add_get("/", get_all)
    app.router.add_get("/{name}", get_one)
    app.router.add_put("/{name}", put_one)
    app.router.add_delete("/{name}", delete_one)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.warning("failpoint HTTP API (TEST ONLY) on http://%s:%d/", host, port)
    return runner


__all__ = [
    "KINDS",
    "PANIC_EXIT",
    "POINTS",
    "Action",
    "FailpointError",
    "FailpointPanic",
    "FailpointSpecError",
    "Failpoints",
    "Point",
    "check_http_address",
    "describe",
    "parse_action",
    "parse_spec",
    "serve_http",
]
