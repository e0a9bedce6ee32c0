"""Suite-wide settings for running the tests in parallel (pytest-xdist).

CI and the README run ``pytest -n 6 --dist loadgroup`` (CONTRIBUTING.md has
the rules a test must follow to be safe in parallel). Here:

* **Ports.** Each xdist worker gets a range of ports of its own below the
  kernel's ephemeral range, through ``$SQUALL_PORT_RANGE`` (``harness.ports``),
  which every ``free_port`` helper and the local backend (in-process and in
  the ``squall`` processes a test starts) draw from: two workers never pick
  the same port, and no client connection or bind to port 0 can take a port
  between its pick and its bind.
* **Groups.** Tests that share an expensive fixture run on one worker
  (``--dist loadgroup``): a test that uses a module- or package-scoped fixture
  joins the group of that fixture's module or package; every ``docker`` test
  joins the group "docker" (those tests count containers on the one Docker
  engine, so they must not run beside each other). A test's own
  ``xdist_group`` mark wins. pytest-xdist 3.8 passes a test's group to the
  controller inside its node id, which pytest 9.2 no longer lets a plugin
  change (pytest-xdist issue 1386: the groups are silently ignored); so each
  worker writes its groups to a file the controller's scheduler
  (``_GroupScheduling``) reads.
* **Order.** Under xdist, the longest units (a group, or a test) are handed
  out first, by a guess of their length: a slow test counts its own
  ``timeout`` mark or a minute, any other test a second, and a group the sum
  of its tests. The longest ones then do not start at the end and leave one
  worker running alone.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from harness import ports

# Worker ranges are carved out of [_PORTS_LOW, ephemeral low): _BLOCK ports each.
_PORTS_LOW = 10000
_BLOCK = 1000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_number() -> int | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None


_GROUPS_DIR = "SQUALL_XDIST_GROUPS_DIR"  # where workers write {node id: group} for the controller


def pytest_configure(config: pytest.Config) -> None:
    if _worker_number() is None and _is_distributed(config):
        groups_dir = tempfile.mkdtemp(prefix="squall-xdist-groups-")
        os.environ[_GROUPS_DIR] = groups_dir  # the workers, started after this, inherit it
        config.add_cleanup(lambda: shutil.rmtree(groups_dir, ignore_errors=True))
    if os.environ.get(ports.ENV):
        return  # set by hand (or by an outer session): respected
    if _worker_number() is None and not _is_distributed(config):
        return  # a plain serial run: the kernel's ports are fine
    blocks = max(1, (_ephemeral_low() - _PORTS_LOW) // _BLOCK)
    if _worker_number() is None:
        # The controller: pick where this session's blocks start (random, so two
        # sessions on one machine are unlikely to share), for its workers to inherit.
        os.environ["SQUALL_TEST_PORT_BLOCK0"] = os.environ.get("SQUALL_TEST_PORT_BLOCK0") or str(
            random.randrange(blocks)
        )
        return
    first = int(os.environ.get("SQUALL_TEST_PORT_BLOCK0", "0"))
    block = (first + (_worker_number() or 0)) % blocks
    low = _PORTS_LOW + block * _BLOCK
    os.environ[ports.ENV] = f"{low}-{low + _BLOCK - 1}"


def _is_distributed(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and getattr(config.option, "dist", "no") != "no"


def _group_of(item: pytest.Item) -> str | None:
    own = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    if own:
        return "_".join(own)  # the test chose its group
    if item.get_closest_marker("docker") is not None:
        return "docker"
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in sorted(info.names_closure):
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if fixturedef.scope in ("module", "package"):
                return f"{fixturedef.scope}:{fixturedef.baseid or name}"
    return None


# How long a slow test is guessed to take when it declares no timeout of its own (for the order only).
_SLOW_WEIGHT_S = 60.0


def _weight(item: pytest.Item) -> float:
    """A guess of a test's length, for the order: a slow test's own timeout (the
    10,000-seed simulation and the kazoo suites declare long ones) or
    ``_SLOW_WEIGHT_S``; 1 for any other test."""
    if item.get_closest_marker("slow") is None:
        return 1.0
    mark = item.get_closest_marker("timeout")
    return float(mark.args[0]) if mark is not None and mark.args else _SLOW_WEIGHT_S


def _sort_longest_first(items: list[pytest.Item]) -> None:
    """Units (a group's tests together, or one test) by their summed weight, heaviest
    first; the collection order otherwise (the sort is stable)."""
    units: dict[str, float] = {}
    for item in items:
        unit = _group_of(item) or item.nodeid
        units[unit] = units.get(unit, 0.0) + _weight(item)
    items.sort(key=lambda item: -units[_group_of(item) or item.nodeid])


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = _group_of(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    if _worker_number() is not None:
        _sort_longest_first(items)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook tells the controller the collection is done
def pytest_collection_finish(session: pytest.Session) -> None:
    groups_dir, worker = os.environ.get(_GROUPS_DIR), os.environ.get("PYTEST_XDIST_WORKER")
    if not groups_dir or not worker:
        return
    groups = {item.nodeid: g for item in session.items if (g := _group_of(item)) is not None}
    slow = [item.nodeid for item in session.items if item.get_closest_marker("slow") is not None]
    tmp = Path(groups_dir) / f".{worker}.json"
    tmp.write_text(json.dumps({"groups": groups, "slow": slow}), encoding="utf-8")
    tmp.replace(Path(groups_dir) / f"{worker}.json")


try:
    from xdist.scheduler import LoadGroupScheduling
except ImportError:  # pytest-xdist not installed: the suite runs serially
    LoadGroupScheduling = None


if LoadGroupScheduling is not None:

    class _GroupScheduling(LoadGroupScheduling):  # type: ignore[misc, valid-type]
        """``--dist loadgroup`` with the groups the workers wrote (see the module docstring).

        Units (a group, or a test) go out in the workers' collection order, which
        ``_sort_longest_first`` sorts by their guessed length, not xdist's default of
        the group with most tests first: the longest single test must not wait behind
        the groups. A worker always
        holds one unit beyond the one it runs (xdist needs the next test to run
        one); while it runs a slow test, that extra unit is the last, quickest one
        in the queue, so no slow test waits behind another on one worker while
        other workers are free."""

        _groups: dict[str, str] | None = None
        _slow: set[str] = set()

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False

        def _load(self) -> dict[str, str]:
            if self._groups is None:
                self._groups = {}
                groups_dir = os.environ.get(_GROUPS_DIR)
                files = sorted(Path(groups_dir).glob("gw*.json")) if groups_dir else []
                if files:
                    found = json.loads(files[0].read_text(encoding="utf-8"))
                    self._groups, self._slow = found["groups"], set(found["slow"])
            return self._groups

        def _split_scope(self, nodeid: str) -> str:
            group = self._load().get(nodeid)
            return group if group is not None else super()._split_scope(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            held = [nid for unit in self.assigned_work.get(node, {}).values() for nid, done in unit.items() if not done]
            if len(self.workqueue) > 1 and any(nid in self._slow for nid in held):
                self.workqueue.move_to_end(next(reversed(self.workqueue)), last=False)
            super()._assign_work_unit(node)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") == "loadgroup":
            return _GroupScheduling(config, log)
        return None
