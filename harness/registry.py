"""The shape of the name -> factory tables the composition root hands down.

``harness/cli.py`` builds the one real ``Registry`` (the only place that names
concrete backends, databases, workloads and nemeses); the run commands receive
it through click's context object, and tests pass fakes. Nothing here names a
concrete part.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Factory = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Registry:
    """Factories by name. Each factory takes a dict of options.

    ``nemesis_package(faults, interval_s, rng)`` builds the nemesis package
    for a list of fault names (``nemesis.package``'s signature).
    ``default_nodes`` gives, per database, the node count used when
    ``--nodes`` is not given (e.g. 1 for the node until its ensemble exists).
    ``unsafe_db_faults`` are the test-only database faults ``--unsafe-db-fault``
    accepts (a deliberately broken database, to prove the gate fails).
    ``backend_faults`` names, per backend, the nemesis faults it can perform
    (``--nemesis all`` means these); a backend not listed supports them all.
    ``clock`` makes each run's clock (``harness.clock``); None, the default,
    is real time. Tests of the run commands pass ``VirtualClock``, so their
    fake runs take simulated time.
    """

    backends: Mapping[str, Factory]
    dbs: Mapping[str, Factory]
    workloads: Mapping[str, Factory]
    nemesis_faults: tuple[str, ...]
    nemesis_package: Callable[[list[str], float, random.Random], Any]
    default_nodes: Mapping[str, Callable[[], int]] = field(default_factory=dict)
    unsafe_db_faults: tuple[str, ...] = ()
    backend_faults: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # default: nemesis_faults
    clock: Callable[[], Any] | None = None

    def nodes_for(self, db: str) -> int:
        fn = self.default_nodes.get(db)
        return fn() if fn is not None else 3


class UnknownName(ValueError):
    pass


def lookup(table: Mapping[str, Factory], kind: str, name: str) -> Factory:
    """The factory for ``name``, or an error listing what is allowed."""
    try:
        return table[name]
    except KeyError:
        raise UnknownName(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(table))}") from None
