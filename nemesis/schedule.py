"""The composed fault schedule: a pure, seeded stream of fault ops.

``composed_ops(faults, rng)`` is an endless iterator of nemesis ops in which
faults overlap: at each step it either starts a fault that is not active yet
(while fewer than ``max_active`` are) or stops one that is, so a kill can
begin while a partition or a slow link is still in place. Now and then, when
nothing is active, it plays one of the *targeted sequences* instead, faults
that find bugs only together:

- ``lagging-follower``: isolate (or slow) one follower so it falls behind,
  kill (or isolate) the leader, heal the follower, start everything again;
- ``kill-leader-in-partition``: partition the cluster, kill the leader while
  the partition is up, heal, restart;
- ``pause-majority``: pause a majority of the nodes, then resume them.

Each sequence can also be asked for by name (``--nemesis lagging-follower``):
``sequence_loop`` then plays only the named sequences, one after another,
each with the faults of :data:`SEQUENCE_FAULTS` (the lagging follower's links
slowed by a packet delay, then its leader killed), so a campaign reliably
spends most of its time in the situation the sequence builds -- e.g. a
follower seconds behind the log while clients keep reading through it and
clients of the killed leader move onto it. Named with other faults
(``--nemesis lagging-follower,partition``), the named sequences are the only
ones the composed schedule plays, and it plays them more often.

Every op is a plain dict ``{"f": ..., "value": ...}``; ops of a targeted
sequence carry the sequence's name and a sentence saying what the step is
for (``value["sequence"]``, ``value["why"]``), so the history says in words
why a fault happened. Nothing here touches a cluster, a clock or a thread:
which node "follower" or "leader" is gets decided by the nemesis when it
performs the op; the runner spaces the ops by the nemesis interval.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

# Which op starts and which stops each fault.
START = {
    "partition": "start-partition",
    "pause": "pause",
    "kill": "kill",
    "packet": "start-packet",
    "clock": "start-clock",
    "disk": "lose-unsynced",
}
STOP: dict[str, dict[str, Any]] = {
    "partition": {"f": "stop-partition"},
    "pause": {"f": "resume", "value": "all"},
    "kill": {"f": "start", "value": "all"},
    "packet": {"f": "stop-packet"},
    "clock": {"f": "stop-clock"},
    "disk": {"f": "start", "value": "all"},  # restart the nodes on what their disks kept
}
# Order of the final heal: links first, then clocks, then processes.
HEAL_ORDER = ("partition", "packet", "clock", "pause", "kill", "disk")

# Packet faults: what a "slow", "lossy" or "throttled" link means here.
PACKET_KINDS = ("delay", "loss", "bandwidth")
PACKET_TARGETS = ("one", "follower", "leader", "all")
DELAYS_MS = ((50, 10), (200, 50), (500, 100))  # (delay, jitter)
# The lagging follower's delay: long enough that it stays a second or more
# behind the log (reads through it, and clients moving onto it, see that),
# short of the 5 s after which ZooKeeper (syncLimit 5 x 1 s ticks) drops it.
LAG_DELAY_MS = (1000, 200)
LOSSES = (0.05, 0.2, 0.5)
RATES_KBPS = (64, 256, 1024)

# Clock faults on one node: bump by an offset, or strobe between offsets.
CLOCK_TARGETS = ("one", "leader", "follower")
BUMPS_MS = (-3_600_000, -60_000, -5_000, -500, 500, 5_000, 60_000, 3_600_000)
STROBE = ((5_000, 1_000), (60_000, 2_000))  # (delta, period)

SEQUENCES = ("lagging-follower", "kill-leader-in-partition", "pause-majority")
# The faults a sequence asked for by name uses (what the backend must offer).
SEQUENCE_FAULTS: dict[str, tuple[str, ...]] = {
    "lagging-follower": ("packet", "kill"),  # a follower slowed by a delay, then the leader killed
    "kill-leader-in-partition": ("partition", "kill"),
    "pause-majority": ("pause",),
}


def packet_value(
    rng: random.Random, kinds: tuple[str, ...] = PACKET_KINDS, targets: tuple[str, ...] = PACKET_TARGETS
) -> dict[str, Any]:
    """One packet fault: which node's links, and delay/jitter, loss or bandwidth."""
    kind = rng.choice(kinds)
    value: dict[str, Any] = {"target": rng.choice(targets)}
    if kind == "delay":
        value["delay_ms"], value["jitter_ms"] = rng.choice(DELAYS_MS)
    elif kind == "loss":
        value["loss"] = rng.choice(LOSSES)
    else:
        value["rate_kbps"] = rng.choice(RATES_KBPS)
    return value


def clock_value(rng: random.Random) -> dict[str, Any]:
    """One clock fault: bump a node's clock, or strobe it."""
    target = rng.choice(CLOCK_TARGETS)
    if rng.random() < 0.7:
        return {"target": target, "bump_ms": rng.choice(BUMPS_MS)}
    delta, period = rng.choice(STROBE)
    return {"target": target, "strobe_ms": delta, "period_ms": period}


def start_op(
    fault: str, rng: random.Random, variants: dict[str, tuple[str, ...]], packet_kinds: tuple[str, ...] = PACKET_KINDS
) -> dict[str, Any]:
    if fault == "packet":
        return {"f": START[fault], "value": packet_value(rng, packet_kinds)}
    if fault == "clock":
        return {"f": START[fault], "value": clock_value(rng)}
    return {"f": START[fault], "value": rng.choice(variants[fault])}


def _step(op: dict[str, Any], sequence: str, why: str, **value: Any) -> dict[str, Any]:
    base = op.get("value")
    merged = dict(base) if isinstance(base, dict) else ({"target": base} if base is not None else {})
    merged.update(value)
    merged.update(sequence=sequence, why=why)
    return {"f": op["f"], "value": merged}


def sequence_ops(
    name: str, faults: tuple[str, ...], rng: random.Random, packet_kinds: tuple[str, ...] = PACKET_KINDS
) -> list[dict[str, Any]]:
    """The ops of one targeted sequence (empty if ``faults`` lack what it needs)."""
    have = set(faults)
    if name == "lagging-follower":
        lag_by = [f for f in ("partition", "packet") if f in have and (f != "packet" or "delay" in packet_kinds)]
        hit_by = [f for f in ("kill", "partition") if f in have]
        if not lag_by or not hit_by:
            return []
        lag, hit = rng.choice(lag_by), rng.choice(hit_by)
        if lag == "partition":
            lag_op = _step(
                {"f": "start-partition", "value": "isolate-follower"},
                name,
                "cut one follower off so it falls behind the log",
            )
        else:
            delay, jitter = LAG_DELAY_MS
            lag_op = _step(
                {"f": "start-packet"},
                name,
                "slow one follower's links so it falls behind the log",
                target="follower",
                delay_ms=delay,
                jitter_ms=jitter,
            )
        if hit == "kill":
            hit_ops = [_step({"f": "kill", "value": "leader"}, name, "kill the leader while a follower lags behind")]
            if lag == "partition":
                hit_ops.append(
                    _step(STOP["partition"], name, "reconnect the lagging follower while the leader is down")
                )
            hit_ops.append(_step(STOP["kill"], name, "restart the old leader"))
        else:
            # isolate the leader: with the follower still cut off (partition)
            # this replaces it; with a slow follower both faults stand.
            hit_ops = [
                _step(
                    {"f": "start-partition", "value": "isolate-leader"},
                    name,
                    "cut the leader off while a follower lags behind",
                )
            ]
            hit_ops.append(_step(STOP["partition"], name, "heal the leader's links"))
        end = [] if lag == "partition" else [_step(STOP["packet"], name, "restore the follower's links")]
        return [lag_op, *hit_ops, *end]
    if name == "kill-leader-in-partition":
        if not {"partition", "kill"} <= have:
            return []
        shape = rng.choice(("random-halves", "isolate-one", "majorities-ring"))
        return [
            _step({"f": "start-partition", "value": shape}, name, "partition the cluster"),
            _step({"f": "kill", "value": "leader"}, name, "kill the leader during the partition"),
            _step(STOP["partition"], name, "heal the partition while the leader is down"),
            _step(STOP["kill"], name, "restart the killed leader"),
        ]
    if name == "pause-majority":
        if "pause" not in have:
            return []
        return [
            _step({"f": "pause", "value": "majority"}, name, "pause a majority of the nodes"),
            _step(STOP["pause"], name, "resume the paused majority"),
        ]
    raise ValueError(f"unknown sequence {name!r}; known: {', '.join(SEQUENCES)}")


def sequence_loop(
    names: tuple[str, ...], rng: random.Random, packet_kinds: tuple[str, ...] = PACKET_KINDS
) -> Iterator[dict[str, Any]]:
    """Endless ops of the named targeted sequences, one after another, each
    with its own faults (:data:`SEQUENCE_FAULTS`). Raises ValueError naming
    a sequence that cannot be played (unknown, or a fault the backend lacks,
    e.g. lagging-follower without packet delays)."""
    names = tuple(names)
    if not names:
        raise ValueError(f"no sequence named; known: {', '.join(SEQUENCES)}")
    for name in names:
        check_sequence(name, packet_kinds)
    while True:
        name = rng.choice(names)
        yield from sequence_ops(name, SEQUENCE_FAULTS[name], rng, packet_kinds)


def check_sequence(name: str, packet_kinds: tuple[str, ...] = PACKET_KINDS) -> None:
    """Raise ValueError unless ``name`` can be played on its own with ``packet_kinds``."""
    if name not in SEQUENCE_FAULTS:
        raise ValueError(f"unknown sequence {name!r}; known: {', '.join(SEQUENCES)}")
    if not sequence_ops(name, SEQUENCE_FAULTS[name], random.Random(0), packet_kinds):
        raise ValueError(
            f"the {name} sequence needs {', '.join(SEQUENCE_FAULTS[name])} faults with a packet "
            f"delay; this backend's packet faults are: {', '.join(packet_kinds) or 'none'}"
        )


def composed_ops(
    faults: tuple[str, ...],
    rng: random.Random,
    variants: dict[str, tuple[str, ...]],
    *,
    max_active: int = 2,
    sequence_chance: float = 0.25,
    packet_kinds: tuple[str, ...] = PACKET_KINDS,
    sequences: tuple[str, ...] = (),
) -> Iterator[dict[str, Any]]:
    """Endless overlapping fault ops (see the module docstring).

    ``sequences``: targeted sequences asked for by name. With no ``faults``
    only they are played (``sequence_loop``); with faults, they replace the
    random choice of sequence, each played with its own faults, and at
    least every other idle moment."""
    faults = tuple(faults)
    sequences = tuple(sequences)
    if not faults and sequences:
        yield from sequence_loop(sequences, rng, packet_kinds)
        return
    if not faults:
        return
    unknown = [f for f in faults if f not in START]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(START)}")
    if max_active < 1:
        raise ValueError(f"max_active must be >= 1, got {max_active}")
    for name in sequences:
        check_sequence(name, packet_kinds)
    chance = max(sequence_chance, 0.5) if sequences else sequence_chance
    active: list[str] = []
    while True:
        if not active and rng.random() < chance:
            if sequences:
                name = rng.choice(sequences)
                ops = sequence_ops(name, SEQUENCE_FAULTS[name], rng, packet_kinds)
            else:
                ops = sequence_ops(rng.choice(SEQUENCES), faults, rng, packet_kinds)
            if ops:
                yield from ops
                continue
        idle = [f for f in faults if f not in active]
        if active and (len(active) >= max_active or not idle or rng.random() < 0.5):
            fault = active.pop(rng.randrange(len(active)))
            yield dict(STOP[fault])
        else:
            fault = rng.choice(idle)
            active.append(fault)
            yield start_op(fault, rng, variants, packet_kinds)


def final_ops(faults: tuple[str, ...], sequences: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The heal: stop every fault the schedule may have started (the named
    sequences' faults included)."""
    faults = tuple(dict.fromkeys([*faults, *(f for s in sequences for f in SEQUENCE_FAULTS[s])]))
    ops: list[dict[str, Any]] = []
    for f in HEAL_ORDER:
        if f in faults and STOP[f] not in ops:  # kill and disk share "start all"
            ops.append(dict(STOP[f]))
    return ops
