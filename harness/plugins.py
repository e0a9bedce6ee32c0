"""Plugins: databases, workloads, nemeses and checkers registered through
entry points, squall's own included.

Four entry-point groups (``docs/extending.md``):

==================  ==========================================================
group               the entry point loads
==================  ==========================================================
``squall.dbs``      ``make(options) -> DB`` (``harness.dbs.base``)
``squall.workloads`` ``make(options) -> Workload`` (``workloads.base``)
``squall.nemeses``  ``make(faults, interval_s, rng) -> NemesisPackage``; the
                    entry's name is a fault ``--nemesis`` accepts, and faults
                    whose entries load the same factory are built together
                    (squall's own share one overlapping schedule)
``squall.checkers`` ``check(history, model, budget_s=None) -> Result``, a
                    consistency model ``squall check --consistency`` accepts
==================  ==========================================================

squall registers its own parts in its ``pyproject.toml`` the same way. When
squall runs from a source checkout, its own entries are read from that
``pyproject.toml`` (an editable install made before an entry was added
would otherwise miss it); every other distribution's come from its
installed metadata (``importlib.metadata``).

Discovery reads names and targets only, so ``squall --help`` never imports
a plugin; a plugin is imported when it is used, and one that fails to import
is reported by name, package and error (``PluginError``), never as a
traceback. Two distributions registering the same name is a problem
``squall list`` shows; the first found wins (squall's own first).
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

KINDS = {"db": "squall.dbs", "workload": "squall.workloads", "nemesis": "squall.nemeses", "checker": "squall.checkers"}
SELF = "squall"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class PluginError(Exception):
    """A registered plugin could not be loaded; the message names it."""


@dataclass(frozen=True)
class Plugin:
    """One entry point: ``kind`` (db, workload, nemesis, checker), ``name``
    (what the command line takes), ``target`` ("module:attr") and the
    distribution that registered it."""

    kind: str
    name: str
    target: str
    dist: str
    version: str
    source: str = "installed"  # or "checkout" (squall's own pyproject.toml)

    @property
    def origin(self) -> str:
        return f"{self.dist} {self.version}"

    def load(self) -> Any:
        """The entry point's object; PluginError naming the plugin if it cannot be imported."""
        return _load(self.target, self.describe())

    def describe(self) -> str:
        return f"the {self.kind} plugin {self.name!r} ({self.target}, from {self.origin})"


@functools.cache
def _load(target: str, what: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the plugin's, named
        raise PluginError(f"{what} failed to load: {type(exc).__name__}: {exc}") from exc
    return obj


@dataclass
class Discovery:
    """Every plugin found, by kind, and the problems met on the way."""

    plugins: dict[str, list[Plugin]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[Plugin]:
        return list(self.plugins.get(kind, []))

    def names(self, kind: str) -> tuple[str, ...]:
        return tuple(p.name for p in self.of(kind))

    def get(self, kind: str, name: str) -> Plugin | None:
        return next((p for p in self.of(kind) if p.name == name), None)


def _checkout_entries() -> dict[str, dict[str, str]] | None:
    """squall's own entry points from the checkout's pyproject.toml, when this
    code runs from a checkout (None otherwise)."""
    path = PROJECT_ROOT / "pyproject.toml"
    if not path.is_file():
        return None
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    project = data.get("project") or {}
    if project.get("name") != SELF:
        return None
    eps = project.get("entry-points") or {}
    return {group: dict(eps.get(group) or {}) for group in KINDS.values()}


def _self_version() -> str:
    try:
        return metadata.version(SELF)
    except metadata.PackageNotFoundError:
        return "(not installed)"


@functools.lru_cache(maxsize=1)
def discover() -> Discovery:
    """Every registered plugin (cached for the process)."""
    found = Discovery()
    checkout = _checkout_entries()
    version = _self_version()
    for kind, group in KINDS.items():
        items: list[Plugin] = []
        if checkout is not None:
            items += [
                Plugin(kind, name, target, SELF, version, "checkout")
                for name, target in checkout.get(group, {}).items()
            ]
        try:
            eps = list(metadata.entry_points(group=group))
        except Exception as exc:  # noqa: BLE001 - a broken installation must not kill the CLI
            found.problems.append(f"reading the {group} entry points failed: {type(exc).__name__}: {exc}")
            eps = []
        for ep in eps:
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            if checkout is not None and _same_dist(dist, SELF):
                continue  # the checkout's pyproject.toml is squall's own truth
            dist_version = getattr(getattr(ep, "dist", None), "version", None) or "?"
            items.append(Plugin(kind, ep.name, ep.value, dist, dist_version))
        chosen: list[Plugin] = []
        # squall's own first, in its pyproject.toml's order (the order help texts
        # and `--nemesis all` list them in); then every other distribution's
        for p in sorted(items, key=lambda p: (not _same_dist(p.dist, SELF), p.dist)):
            first = next((c for c in chosen if c.name == p.name), None)
            if first is None:
                chosen.append(p)
            elif first.target != p.target or first.dist != p.dist:
                found.problems.append(
                    f"{kind} {p.name!r} is registered twice: by {first.origin} ({first.target}) "
                    f"and by {p.origin} ({p.target}); using {first.origin}'s"
                )
        found.plugins[kind] = chosen
    return found


def _same_dist(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return s.lower().replace("_", "-").replace(".", "-")

    return norm(a) == norm(b)


def names(kind: str) -> tuple[str, ...]:
    """The registered names of a kind, without importing anything."""
    return discover().names(kind)


def default(kind: str, preferred: str) -> str:
    """``preferred`` if registered, else the first registered name (for a
    command line's default), else ``preferred`` (which then fails validation
    with the list of what is allowed)."""
    known = names(kind)
    return preferred if preferred in known or not known else known[0]


def help_list(kind: str, empty: str = "none registered") -> str:
    """ "a, b or c" for help texts."""
    known = list(names(kind))
    if not known:
        return empty
    return known[0] if len(known) == 1 else ", ".join(known[:-1]) + " or " + known[-1]


def describe_object(obj: Any, limit: int = 100) -> str:
    """The first sentence of a plugin object's docstring, else its module's
    (reST quoting dropped, cut to ``limit`` characters)."""
    for thing in (obj, sys.modules.get(getattr(obj, "__module__", "") or "")):
        doc = getattr(thing, "__doc__", None)
        if doc and doc.strip():
            return first_sentence(doc, limit)
    return ""


def first_sentence(doc: str, limit: int = 100) -> str:
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split()).replace("``", "`")
    if ". " in paragraph:
        paragraph = paragraph.split(". ", 1)[0] + "."
    return paragraph if len(paragraph) <= limit else paragraph[: limit - 1].rstrip() + "…"


def fault_about(plugin: Plugin, obj: Any) -> str:
    """A nemesis fault's line: the factory module's ``FAULT_ABOUT[name]`` when
    it has one (one factory serves several faults), else its docstring's."""
    about = getattr(sys.modules.get(getattr(obj, "__module__", "") or ""), "FAULT_ABOUT", None)
    if isinstance(about, dict) and isinstance(about.get(plugin.name), str):
        return first_sentence(about[plugin.name])
    return describe_object(obj)
