"""Composed nemeses: partition, pause, kill and disk on a schedule.

``package(["partition", "kill"], interval_s=10, rng=...)`` gives a
``NemesisPackage`` whose op source alternates a start op of a randomly
chosen fault with its stop op, forever:

    {"f": "start-partition", "value": "majorities-ring"} / {"f": "stop-partition"}
    {"f": "pause", "value": "one"}                       / {"f": "resume", "value": "all"}
    {"f": "kill", "value": "leader"}                     / {"f": "start", "value": "all"}
    {"f": "lose-unsynced", "value": "all"}               / {"f": "start", "value": "all"}  (disk)

The runner spaces them by ``interval_s`` and records each as an invoke and
the info completion ``invoke`` returns. ``final_ops`` heal, resume and start
everything. Randomness: the op source uses the rng the runner passes to
``ops(rng)``; the nemesis's own choices (which node, which shape) use an rng
derived from the one given to ``package``, so a seed replays the schedule.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from nemesis.base import FaultTarget, NemesisPackage
from nemesis import disk
from nemesis import partition as part
from nemesis import process

FAULTS = ("partition", "pause", "kill", "disk", "none")

_START_STOP = {
    "partition": ("start-partition", "stop-partition"),
    "pause": ("pause", "resume"),
    "kill": ("kill", "start"),
    "disk": (disk.START, disk.STOP),
}


class FaultNemesis:
    """Performs partition/pause/kill/disk ops on a FaultTarget; never raises
    (but ``setup`` refuses a target that lacks an ability the faults need)."""

    def __init__(self, rng: random.Random, faults: tuple[str, ...] = ()) -> None:
        # Each fault op draws from its own stream (the base seed and the op's
        # number), so a choice that depends on the cluster's state (no leader
        # known: a random node instead) never shifts later ops' targets.
        self._base = rng.getrandbits(64)
        self._invoked = 0
        self.rng = random.Random(f"{self._base}/setup")
        self.faults = tuple(faults)

    def setup(self, target: FaultTarget) -> None:
        if "disk" in self.faults:
            disk.require(target)
        target.heal()

    def teardown(self, target: FaultTarget) -> None:
        for op in ({"f": "stop-partition"}, {"f": "resume", "value": "all"},
                   {"f": "start", "value": "all"}):
            self.invoke(target, op)

    def invoke(self, target: FaultTarget, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        self.rng = random.Random(f"{self._base}/{self._invoked}")
        self._invoked += 1
        try:
            if f == "start-partition":
                return _info(self._partition(target, value or "random-halves"))
            if f == "stop-partition":
                target.heal()
                return _info("healed")
            if f in ("pause", "kill", "resume", "start"):
                return _info(self._process(target, f, value or "all"))
            if f == disk.START:
                return _info(disk.lose_unsynced(target, value or "one", self.rng))
        except Exception as exc:  # noqa: BLE001 - a fault that failed is recorded, not raised
            return {"type": "info", "value": value, "error": f"{type(exc).__name__}: {exc}"}
        return {"type": "info", "value": value,
                "error": f"unknown nemesis op {f!r}; known: start-partition, stop-partition, "
                         f"pause, resume, kill, start, {disk.START}"}

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


def _info(value: Any) -> dict[str, Any]:
    return {"type": "info", "value": value}


def parse_faults(faults: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """"partition,kill" or ["partition", "kill"] -> ("partition", "kill");
    "none" alone -> (). Raises ValueError naming what is allowed."""
    if isinstance(faults, str):
        faults = [f for f in faults.split(",")]
    names = [f.strip() for f in faults if f.strip()]
    bad = [f for f in names if f not in FAULTS]
    if bad:
        raise ValueError(f"unknown nemesis fault(s) {bad}; allowed: {', '.join(FAULTS)} "
                         "(comma-separated, e.g. partition,pause,kill)")
    if "none" in names and len(names) > 1:
        raise ValueError("nemesis 'none' cannot be combined with other faults")
    return tuple(dict.fromkeys(f for f in names if f != "none"))


DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {
    "partition": part.SHAPES,
    "pause": process.TARGETS,
    "kill": process.TARGETS,
    "disk": disk.TARGETS,
}


def fault_ops(faults: tuple[str, ...], rng: random.Random,
              variants: dict[str, tuple[str, ...]] | None = None) -> Iterator[dict[str, Any]]:
    """Endless: start op of a random fault, then its stop op, and again."""
    variants = {**DEFAULT_VARIANTS, **(variants or {})}
    if not faults:
        return
    while True:
        fault = rng.choice(faults)
        start, stop = _START_STOP[fault]
        yield {"f": start, "value": rng.choice(variants[fault])}
        yield {"f": stop} if fault == "partition" else {"f": stop, "value": "all"}


def final_ops(faults: tuple[str, ...]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    if "partition" in faults:
        ops.append({"f": "stop-partition"})
    if "pause" in faults:
        ops.append({"f": "resume", "value": "all"})
    if "kill" in faults or "disk" in faults:
        ops.append({"f": "start", "value": "all"})
    return ops


def package(faults: list[str] | tuple[str, ...] | str, interval_s: float, rng: random.Random,
            variants: dict[str, tuple[str, ...]] | None = None) -> NemesisPackage:
    """Compose the named faults (see module docstring). ``variants`` narrows
    the shapes/targets per fault, e.g. {"kill": ("leader",)}."""
    names = parse_faults(faults)
    if interval_s <= 0:
        raise ValueError(f"nemesis interval must be > 0 seconds, got {interval_s}")
    for fault, allowed in (variants or {}).items():
        known = DEFAULT_VARIANTS.get(fault)
        if known is None or not allowed or set(allowed) - set(known):
            raise ValueError(f"bad variants for {fault!r}: {allowed}; allowed: {known}")
    nemesis = FaultNemesis(random.Random(rng.random()), names)
    return NemesisPackage(
        nemesis=nemesis, faults=names, interval_s=interval_s,
        op_source=lambda r: fault_ops(names, r, variants),
        final=final_ops(names))
