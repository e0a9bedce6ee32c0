"""One nemesis package made of several, for faults that come from different
plugins (``squall.nemeses`` entry points with different factories).

The combined op source takes one op from each package's source in turn;
every op is performed by the package whose source (or final ops) emitted its
``f``, so two packages must not emit the same ``f`` (the second one is
refused with an ``info`` saying so). Setup and teardown run every package's,
teardown in reverse order. A single package is used as it is, so squall's
own faults keep their one overlapping schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nemesis.base import FaultTarget, NemesisPackage


class CombinedNemesis:
    def __init__(self, packages: list[NemesisPackage]) -> None:
        self.packages = list(packages)
        self.owner: dict[str, int] = {}
        self.conflicts: dict[str, tuple[int, int]] = {}

    def claim(self, index: int, op: dict[str, Any]) -> dict[str, Any]:
        """Note that package ``index`` emitted ``op``."""
        f = str(op.get("f"))
        first = self.owner.setdefault(f, index)
        if first != index:
            self.conflicts[f] = (first, index)
        return op

    def setup(self, target: FaultTarget) -> None:
        for p in self.packages:
            p.nemesis.setup(target)

    def invoke(self, target: FaultTarget, op: dict[str, Any]) -> dict[str, Any]:
        f = str(op.get("f"))
        index = self.owner.get(f)
        if f in self.conflicts:
            a, b = (self.packages[i].faults for i in self.conflicts[f])
            return {
                "type": "info",
                "value": op.get("value"),
                "error": f"two nemeses emit {f!r} (faults {', '.join(a)} and {', '.join(b)}); not performed",
            }
        if index is None:
            return {"type": "info", "value": op.get("value"), "error": f"no nemesis of this run performs {f!r}"}
        return self.packages[index].nemesis.invoke(target, op)

    def teardown(self, target: FaultTarget) -> None:
        errors = []
        for p in reversed(self.packages):
            try:
                p.nemesis.teardown(target)
            except Exception as exc:  # noqa: BLE001 - every package still gets its teardown
                errors.append(f"{type(exc).__name__}: {exc}")
        if errors:
            raise RuntimeError("nemesis teardown failed: " + "; ".join(errors))


def combine(packages: list[NemesisPackage]) -> NemesisPackage:
    """``packages`` as one (the first's interval paces the whole schedule)."""
    if not packages:
        raise ValueError("combine needs at least one nemesis package")
    if len(packages) == 1:
        return packages[0]
    nemesis = CombinedNemesis(packages)
    faults = tuple(f for p in packages for f in p.faults)

    def op_source(rng: Any) -> Iterator[dict[str, Any]]:
        streams = [(i, p.ops(rng)) for i, p in enumerate(packages)]
        while streams:
            for entry in list(streams):
                index, stream = entry
                try:
                    op = next(stream)
                except StopIteration:
                    streams.remove(entry)
                    continue
                yield nemesis.claim(index, op)

    final = [nemesis.claim(i, dict(op)) for i, p in enumerate(packages) for op in p.final_ops()]
    return NemesisPackage(
        nemesis=nemesis, faults=faults, interval_s=packages[0].interval_s, op_source=op_source, final=final
    )
