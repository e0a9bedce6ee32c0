"""Composed nemeses: partition, pause, kill, packet, clock and disk faults.

``package(["partition", "kill"], interval_s=10, rng=...)`` gives a
``NemesisPackage`` whose op source is the overlapping schedule of
``nemesis.schedule`` (a new fault may start while another is active, plus
targeted sequences such as "kill the leader while a follower lags"):

    {"f": "start-partition", "value": "majorities-ring"} / {"f": "stop-partition"}
    {"f": "pause", "value": "one"}                       / {"f": "resume", "value": "all"}
    {"f": "kill", "value": "leader"}                     / {"f": "start", "value": "all"}
    {"f": "start-packet", "value": {"target": "one", "delay_ms": 200, "jitter_ms": 50}}
                                                         / {"f": "stop-packet"}
    {"f": "start-clock", "value": {"target": "one", "bump_ms": 60000}}
                                                         / {"f": "stop-clock"}
    {"f": "lose-unsynced", "value": "all"}               / {"f": "start", "value": "all"}  (disk)

A targeted sequence of ``nemesis.schedule`` may be named like a fault
(``package(["lagging-follower"], ...)``): the schedule then plays it over
and over (see ``schedule.sequence_loop``), with the faults it needs.

The runner spaces them by ``interval_s`` and records each as an invoke and
the info completion ``invoke`` returns. ``final_ops`` heal, reset clocks,
resume and start everything. Randomness: the op source uses the rng the
runner passes to ``ops(rng)``; the nemesis's own choices (which node, which
shape) use an rng derived from the one given to ``package``, so a seed
replays the schedule.
"""

from __future__ import annotations

import random
from typing import Any

from nemesis import disk, process, schedule
from nemesis import partition as part
from nemesis.base import FaultTarget, NemesisPackage

FAULTS = ("partition", "pause", "kill", "packet", "clock", "disk", "none")
# One line per fault, for `squall list` (harness/plugins.py reads it).
FAULT_ABOUT = {
    "partition": "Network partitions: halves, majority rings, bridges, an isolated node or leader.",
    "pause": "SIGSTOP and SIGCONT of one node, a minority, a majority, all, the leader or a follower.",
    "kill": "SIGKILL and restart on the same data of one node, a minority, a majority, all or the leader.",
    "packet": "Delay, jitter, loss or a bandwidth limit on links (what the backend can do).",
    "clock": "Wall-clock bumps and strobes of one node (libfaketime; local backend).",
    "disk": "Kill nodes and lose every write they never fsynced (lazyfs; local and Docker).",
}
SEQUENCES = schedule.SEQUENCES  # targeted sequences, named like faults (not part of "all")
ALL = "all"

# What a target must offer for each fault beyond the core protocol.
REQUIRES = {
    "packet": ("shape", "unshape"),
    "clock": ("clock_bump", "clock_strobe", "clock_reset"),
    "disk": ("lose_unsynced",),
}


def supported_faults(target: Any, faults: tuple[str, ...] = FAULTS) -> tuple[str, ...]:
    """The faults of ``faults`` that ``target`` (or its class) can perform."""
    return tuple(
        f for f in faults if f != "none" and all(callable(getattr(target, m, None)) for m in REQUIRES.get(f, ()))
    )


class FaultNemesis:
    """Performs partition/pause/kill/packet/clock ops on a FaultTarget; never raises.

    An op's value is a shape or target name (``"leader"``), or a dict with a
    ``"target"`` (the shape, for partitions) and the fault's parameters, plus,
    in a targeted sequence, ``"sequence"`` and ``"why"``, copied into the
    completion so the history says in words what happened and why."""

    def __init__(self, rng: random.Random, faults: tuple[str, ...] = (), sequences: tuple[str, ...] = ()) -> None:
        # Each fault op draws from its own stream (the base seed and the op's
        # number), so a choice that depends on the cluster's state (no leader
        # known: a random node instead) never shifts later ops' targets.
        self._base = rng.getrandbits(64)
        self._invoked = 0
        self.rng = random.Random(f"{self._base}/setup")
        self.sequences = tuple(sequences)
        # the faults this nemesis may inject: the named ones and those the named sequences use
        self.faults = tuple(dict.fromkeys([*faults, *(f for s in self.sequences for f in schedule.SEQUENCE_FAULTS[s])]))
        self.packet_kinds: tuple[str, ...] = schedule.PACKET_KINDS

    def setup(self, target: FaultTarget) -> None:
        if "disk" in self.faults:
            disk.require(target)  # names what the disk fault needs
        missing = [f for f in self.faults if f not in supported_faults(target, (f,))]
        if missing:
            raise ValueError(
                f"this backend cannot perform the nemesis fault(s) {missing}; "
                f"it supports: {', '.join(supported_faults(target)) or 'none'}"
            )
        if "packet" in self.faults:
            kinds = tuple(getattr(target, "packet_kinds", schedule.PACKET_KINDS))
            if not kinds:
                raise ValueError("this backend supports no packet fault (delay, loss or bandwidth)")
            self.packet_kinds = kinds
        for name in self.sequences:
            schedule.check_sequence(name, self.packet_kinds)  # e.g. lagging-follower needs a packet delay
        target.heal()

    def teardown(self, target: FaultTarget) -> None:
        for fault in schedule.HEAL_ORDER:
            if fault in ("partition", "pause", "kill") or fault in supported_faults(target, (fault,)):
                self.invoke(target, schedule.STOP[fault])

    def invoke(self, target: FaultTarget, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        self.rng = random.Random(f"{self._base}/{self._invoked}")
        self._invoked += 1
        spec, extra = _split(value)
        try:
            if f == "start-partition":
                return _info(self._partition(target, spec or "random-halves"), extra)
            if f == "stop-partition":
                target.heal()
                return _info("healed", extra)
            if f in ("pause", "kill", "resume", "start"):
                return _info(self._process(target, f, spec or "all"), extra)
            if f == disk.START:
                return _info(disk.lose_unsynced(target, spec or "one", self.rng), extra)
            if f == "start-packet":
                return _info(self._packet(target, value if isinstance(value, dict) else {}), extra)
            if f == "stop-packet":
                target.unshape()  # type: ignore[attr-defined]
                return _info("links restored (packet faults cleared)", extra)
            if f == "start-clock":
                return _info(self._clock(target, value if isinstance(value, dict) else {}), extra)
            if f == "stop-clock":
                target.clock_reset()  # type: ignore[attr-defined]
                return _info("clocks reset to the real time", extra)
        except Exception as exc:  # noqa: BLE001 - a fault that failed is recorded, not raised
            return {"type": "info", "value": value, "error": f"{type(exc).__name__}: {exc}"}
        return {
            "type": "info",
            "value": value,
            "error": f"unknown nemesis op {f!r}; known: start-partition, stop-partition, "
            f"pause, resume, kill, start, start-packet, stop-packet, start-clock, stop-clock, {disk.START}",
        }

    def _partition(self, target: FaultTarget, shape: str) -> dict[str, Any]:
        grudge, note = part.shape(shape, target.nodes, self.rng, target.leader)
        target.heal()  # shapes replace each other; they do not pile up
        for src, dst in part.links(grudge):
            target.drop(src, dst)
        out: dict[str, Any] = {"partition": shape, "cut": part.describe(grudge)}
        if note:
            out["note"] = note
        return out

    def _process(self, target: FaultTarget, f: str, spec: str) -> dict[str, Any]:
        if f in ("resume", "start") and spec == "all":
            nodes, note = list(target.nodes), ""
        else:
            nodes, note = process.select(spec, target.nodes, self.rng, target.leader)
        action = getattr(target, f)
        for node in nodes:
            action(node)
        past = {"pause": "paused", "kill": "killed", "resume": "resumed", "start": "started"}[f]
        out: dict[str, Any] = {past: nodes}
        if note:
            out["note"] = note
        return out

    def _packet(self, target: Any, value: dict[str, Any]) -> dict[str, Any]:
        params = packet_params(value)
        spec = value.get("target", "one")
        if spec == "all":
            nodes, note = list(target.nodes), ""
        else:
            nodes, note = process.select(spec, target.nodes, self.rng, target.leader)
        links = sorted({(a, b) for n in nodes for o in target.nodes if o != n for a, b in ((n, o), (o, n))})
        target.unshape()  # packet faults replace each other, as partitions do
        for src, dst in links:
            target.shape(src, dst, **params)
        out: dict[str, Any] = {
            "packet": describe_packet(params),
            "nodes": nodes,
            "links": [f"{a}->{b}" for a, b in links],
        }
        if note:
            out["note"] = note
        return out

    def _clock(self, target: Any, value: dict[str, Any]) -> dict[str, Any]:
        nodes, note = process.select(value.get("target", "one"), target.nodes, self.rng, target.leader)
        node = nodes[0]
        if "strobe_ms" in value:
            delta, period = int(value["strobe_ms"]), int(value.get("period_ms", 1000))
            target.clock_strobe(node, delta, period)
            out: dict[str, Any] = {
                "clock": f"strobing {node}'s clock between +0 and {delta:+d} ms every {period} ms",
                "node": node,
            }
        else:
            bump = int(value.get("bump_ms", 0))
            target.clock_bump(node, bump)
            out = {"clock": f"bumped {node}'s clock by {bump:+d} ms", "node": node}
        if note:
            out["note"] = note
        return out


def packet_params(value: dict[str, Any]) -> dict[str, Any]:
    """delay_ms, jitter_ms, loss, rate_kbps from an op value, validated."""
    delay_ms = float(value.get("delay_ms", 0))
    jitter_ms = float(value.get("jitter_ms", 0))
    loss = float(value.get("loss", 0.0))
    rate_kbps = None if value.get("rate_kbps") is None else float(value["rate_kbps"])
    if delay_ms < 0 or jitter_ms < 0 or jitter_ms > delay_ms > 0:
        raise ValueError(f"packet delay/jitter must be >= 0 with jitter <= delay, got {value}")
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f"packet loss must be a probability in [0, 1], got {loss}")
    if rate_kbps is not None and rate_kbps <= 0:
        raise ValueError(f"packet rate_kbps must be > 0, got {rate_kbps}")
    return {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss": loss, "rate_kbps": rate_kbps}


def describe_packet(params: dict[str, Any]) -> str:
    words = []
    if params.get("delay_ms"):
        words.append(f"delay {params['delay_ms']:g} ms ± {params.get('jitter_ms', 0):g} ms")
    if params.get("loss"):
        words.append(f"loss {params['loss']:.0%}")
    if params.get("rate_kbps"):
        words.append(f"bandwidth {params['rate_kbps']:g} kbit/s")
    return ", ".join(words) or "no packet fault"


def _split(value: Any) -> tuple[Any, dict[str, Any]]:
    """(shape or target name, the words to copy into the completion)."""
    if isinstance(value, dict):
        extra = {k: value[k] for k in ("sequence", "why") if k in value}
        return value.get("target"), extra
    return value, {}


def _info(value: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    if extra:
        value = {**value, **extra} if isinstance(value, dict) else {"done": value, **extra}
    return {"type": "info", "value": value}


def parse_faults(
    faults: list[str] | tuple[str, ...] | str, supported: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """ "partition,kill" or ["partition", "kill"] -> ("partition", "kill");
    "none" alone -> (); "all" -> every fault in ``supported`` (default: every
    fault this package knows). Raises ValueError naming what is allowed."""
    if isinstance(faults, str):
        faults = [f for f in faults.split(",")]
    names = [f.strip() for f in faults if f.strip()]
    known = tuple(f for f in FAULTS if f != "none")
    supported = known if supported is None else tuple(supported)
    bad = [f for f in names if f not in FAULTS and f not in SEQUENCES and f != ALL]
    if bad:
        raise ValueError(
            f"unknown nemesis fault(s) {bad}; allowed: {', '.join(FAULTS)}, {ALL}, or a "
            f"targeted sequence ({', '.join(SEQUENCES)}) (comma-separated, e.g. partition,pause,kill)"
        )
    if "none" in names and len(names) > 1:
        raise ValueError("nemesis 'none' cannot be combined with other faults")
    out: list[str] = []
    for f in names:
        out.extend(supported if f == ALL else [] if f == "none" else [f])
    return tuple(dict.fromkeys(out))


DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {
    "partition": part.SHAPES,
    "pause": process.TARGETS,
    "kill": process.TARGETS,
    "disk": disk.TARGETS,
}


def package(
    faults: list[str] | tuple[str, ...] | str,
    interval_s: float,
    rng: random.Random,
    variants: dict[str, tuple[str, ...]] | None = None,
    *,
    max_active: int = 2,
) -> NemesisPackage:
    """Compose the named faults into an overlapping schedule (see
    ``nemesis.schedule``). ``variants`` narrows the shapes/targets per
    fault, e.g. {"kill": ("leader",)}; ``max_active`` bounds how many random
    faults are active at once (1: one fault at a time, start then stop)."""
    names = parse_faults(faults)
    if interval_s <= 0:
        raise ValueError(f"nemesis interval must be > 0 seconds, got {interval_s}")
    for fault, allowed in (variants or {}).items():
        known = DEFAULT_VARIANTS.get(fault)
        if known is None or not allowed or set(allowed) - set(known):
            raise ValueError(f"bad variants for {fault!r}: {allowed}; allowed: {known}")
    chosen = {**DEFAULT_VARIANTS, **(variants or {})}
    plain = tuple(f for f in names if f not in SEQUENCES)
    sequences = tuple(f for f in names if f in SEQUENCES)
    nemesis = FaultNemesis(random.Random(rng.random()), plain, sequences)
    # packet_kinds is read when the runner asks for the ops, after setup has
    # narrowed it to what the backend can do (e.g. no delay in Docker).
    return NemesisPackage(
        nemesis=nemesis,
        faults=names,
        interval_s=interval_s,
        op_source=lambda r: schedule.composed_ops(
            plain, r, chosen, max_active=max_active, packet_kinds=nemesis.packet_kinds, sequences=sequences
        ),
        final=schedule.final_ops(plain, sequences),
    )
