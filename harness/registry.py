"""The name -> factory tables the run commands work from.

``harness/cli.py`` (the composition root) builds the real ``Registry`` with
``from_plugins``: databases, workloads, nemeses and checkers come from entry
points (``harness.plugins``, squall's own included); backends are squall's
own and named by the composition root. The commands receive the registry
through click's context object, and tests pass fakes. Nothing here names a
concrete part.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.plugins import Discovery, Plugin, PluginError

Factory = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Registry:
    """Factories by name. Each factory takes a dict of options.

    ``nemesis_package(faults, interval_s, rng)`` builds the nemesis package
    for a list of fault names (``nemesis.package``'s signature).
    ``default_nodes`` gives, per database, the node count used when
    ``--nodes`` is not given (e.g. 1 for the node until its ensemble exists).
    ``unsafe_db_faults``: the test-only faults ``--unsafe-db-fault`` accepts
    for a database that does not declare its own (``harness.dbs.base.UnsafeFaults``).
    ``backend_faults`` names, per backend, the nemesis faults it can perform
    (``--nemesis all`` means these); a backend not listed supports them all.
    ``extra_faults`` are faults every backend may be asked for by name (plugin
    faults: their nemesis checks the cluster's abilities at setup) and that
    ``all`` leaves out. ``checkers`` are the consistency checkers ``squall
    check --consistency`` accepts; ``discovery`` is what the plugins' entry
    points gave (for ``squall list``).
    ``nemesis_sequences`` are targeted fault sequences ``--nemesis`` may
    name besides the faults (name -> the faults each uses); ``all`` does not
    include them.
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
    extra_faults: tuple[str, ...] = ()
    checkers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    discovery: Discovery | None = None
    nemesis_sequences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # ``--failpoint NAME=ACTION``: the databases that take failpoints, and a check of one
    # spec (raises ValueError naming what is allowed); test-only, like unsafe_db_faults
    failpoint_dbs: tuple[str, ...] = ()
    check_failpoint: Callable[[str], Any] = lambda spec: None
    clock: Callable[[], Any] | None = None

    def nodes_for(self, db: str) -> int:
        fn = self.default_nodes.get(db)
        return fn() if fn is not None else 3

    def faults_for(self, backend: str) -> tuple[str, ...]:
        """The faults ``--nemesis`` may name on ``backend``."""
        listed = self.backend_faults.get(backend)
        own = self.nemesis_faults if listed is None else listed
        return tuple(dict.fromkeys((*own, *self.extra_faults)))

    def all_faults_for(self, backend: str) -> tuple[str, ...]:
        """What ``--nemesis all`` means on ``backend``."""
        listed = self.backend_faults.get(backend)
        return tuple(f for f in (self.nemesis_faults if listed is None else listed) if f not in self.extra_faults)


class UnknownName(ValueError):
    pass


def lookup(table: Mapping[str, Factory], kind: str, name: str) -> Factory:
    """The factory for ``name``, or an error listing what is allowed."""
    try:
        return table[name]
    except KeyError:
        raise UnknownName(
            f"unknown {kind} {name!r}; allowed: {', '.join(sorted(table)) or 'none registered'}"
        ) from None


# ------------------------------------------------------------ from plugins


def _factory(plugin: Plugin) -> Factory:
    def make(options: dict[str, Any]) -> Any:
        return plugin.load()(options)  # PluginError names the plugin when it cannot be imported

    make.__doc__ = f"{plugin.describe()}"
    return make


def _db_default_nodes(plugin: Plugin) -> Callable[[], int]:
    def nodes() -> int:
        return int(plugin.load()({}).default_node_count())

    return nodes


def nemesis_composer(
    plugins: list[Plugin], sequences: Mapping[str, tuple[str, ...]] | None = None
) -> Callable[[list[str], float, random.Random], Any]:
    """``package(faults, interval_s, rng)`` over the nemesis plugins: faults
    whose entry points load the same factory are built by one call (squall's
    own faults share one overlapping schedule, seeded by ``rng`` as before);
    faults from different factories are combined (``nemesis.combined``). A
    targeted sequence (``sequences``: name -> the faults it uses) is built by
    the factory of the faults it uses."""
    by_name = {p.name: p for p in plugins}
    sequences = dict(sequences or {})

    def package(faults: list[str], interval_s: float, rng: random.Random) -> Any:
        groups: dict[str, list[str]] = {}
        owners: dict[str, Plugin] = {}
        for f in faults:
            p = by_name.get(f)
            if p is None and sequences.get(f):
                p = by_name.get(sequences[f][0])
            if p is None:
                raise PluginError(f"unknown nemesis fault {f!r}; allowed: {', '.join(by_name) or 'none registered'}")
            groups.setdefault(p.target, []).append(f)
            owners.setdefault(p.target, p)
        if len(groups) == 1:
            target, names = next(iter(groups.items()))
            return owners[target].load()(names, interval_s, rng)
        from nemesis.combined import combine

        return combine(
            [owners[t].load()(names, interval_s, random.Random(rng.random())) for t, names in groups.items()]
        )

    return package


def from_plugins(
    discovery: Discovery,
    backends: Mapping[str, Factory],
    backend_faults: Mapping[str, tuple[str, ...]],
    builtin_faults: tuple[str, ...],
    **extra: Any,
) -> Registry:
    """The registry of every registered plugin, with the composition root's
    backends. ``builtin_faults`` are the faults the backends' table knows
    (squall's own); other registered faults are ``extra_faults``. ``extra``
    sets the composition root's other fields (nemesis sequences, failpoints)."""
    dbs = {p.name: _factory(p) for p in discovery.of("db")}
    checkers: dict[str, Callable[..., Any]] = {}
    for p in discovery.of("checker"):

        def check(*args: Any, _p: Plugin = p, **kwargs: Any) -> Any:
            return _p.load()(*args, **kwargs)

        checkers[p.name] = check
    faults = discovery.names("nemesis")
    return Registry(
        backends=backends,
        dbs=dbs,
        workloads={p.name: _factory(p) for p in discovery.of("workload")},
        nemesis_faults=tuple(f for f in faults if f in builtin_faults)
        + tuple(f for f in faults if f not in builtin_faults),
        nemesis_package=nemesis_composer(discovery.of("nemesis"), extra.get("nemesis_sequences")),
        default_nodes={p.name: _db_default_nodes(p) for p in discovery.of("db")},
        backend_faults=backend_faults,
        extra_faults=tuple(f for f in faults if f not in builtin_faults),
        checkers=checkers,
        discovery=discovery,
        **extra,
    )
