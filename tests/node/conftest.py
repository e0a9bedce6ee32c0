"""Fixtures that run real servers: the squall node and Apache ZooKeeper 3.8.

- ``squall_server``: a started squall node on a free port with a temp data
  dir (a ``ServerProcess``: ``.address``, ``.host``, ``.port``, ``.kill()``,
  ``.restart()``, ``.log_text()``).
- ``squall_factory``: ``make(data_dir=None, extra_args=None, start=True)``
  for tests that need several nodes or to restart one on the same data dir.
- ``zkcli``: the path of Debian's ``zkCli.sh``, with the same skip rule.
- ``zookeeper_server`` / ``zookeeper_factory``: ``make(start=True,
  extra_config=None)`` (extra ``zoo.cfg`` lines), the same for Apache ZooKeeper
  standalone; skipped when Debian's zookeeper package is missing, unless
  ``CI=true``, where a missing reference is a failure.

Every process a fixture starts is killed with its whole process group in the
fixture's teardown, whatever the test did; the last lines of each server's
log are printed there, so a failing test shows them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.node.servers import (
    REPO_ROOT,
    ZKCLI,
    ZOOKEEPER_JAR,
    ServerProcess,
    squall_node,
    zookeeper_installed,
    zookeeper_standalone,
)

NODE_CLI = REPO_ROOT / "node" / "cli.py"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_zookeeper() -> None:
    """Skip (fail in CI) when Debian's zookeeper package is not installed."""
    if zookeeper_installed():
        return
    message = f"{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package (apt-get install zookeeper)"
    if in_ci():
        pytest.fail(message + "; CI=true, so a missing reference server is an error")
    pytest.skip(message)


def require_zkcli() -> Path:
    """Debian's zkCli.sh, or skip (fail in CI) like the rest of the zookeeper package."""
    require_zookeeper()
    if not ZKCLI.exists():
        message = f"{ZKCLI} is missing: install Debian's zookeeper package (apt-get install zookeeper)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return ZKCLI


def require_squall_node() -> None:
    """Skip (fail in CI) while the node's CLI does not exist yet."""
    if NODE_CLI.exists():
        return
    message = f"{NODE_CLI.relative_to(REPO_ROOT)} does not exist yet: the squall node cannot be started"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


class _Servers:
    """Tracks every server a test made, so teardown can stop them all."""

    def __init__(self) -> None:
        self.all: list[ServerProcess] = []

    def add(self, server: ServerProcess) -> ServerProcess:
        self.all.append(server)
        return server

    def teardown(self) -> None:
        errors = []
        for server in self.all:
            try:
                server.kill()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{server.kind} {server.address}: {exc!r}")
            print(f"--- {server.kind} {server.address} log tail ({server.log_path}) ---")
            print(server.log_tail(30))
        assert not errors, "could not stop: " + "; ".join(errors)


@pytest.fixture
def squall_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    require_squall_node()
    servers = _Servers()
    counter = iter(range(1_000_000))

    def make(data_dir: Path | None = None, extra_args: list[str] | None = None, start: bool = True) -> ServerProcess:
        n = next(counter)
        data_dir = data_dir or tmp_path / f"squall{n}" / "data"
        server = servers.add(squall_node(data_dir, extra_args=extra_args, log_path=tmp_path / f"squall{n}.out"))
        return server.start() if start else server

    try:
        yield make
    finally:
        servers.teardown()


@pytest.fixture
def squall_server(squall_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return squall_factory()


@pytest.fixture
def zkcli() -> Path:
    """The path of Debian's ``zkCli.sh`` (the test is skipped when it is missing)."""
    return require_zkcli()


@pytest.fixture
def zookeeper_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    require_zookeeper()
    servers = _Servers()
    counter = iter(range(1_000_000))

    def make(start: bool = True, extra_config: dict[str, str] | None = None) -> ServerProcess:
        base = tmp_path / f"zookeeper{next(counter)}"
        server = servers.add(zookeeper_standalone(base, extra_config=extra_config))
        return server.start() if start else server

    try:
        yield make
    finally:
        servers.teardown()


@pytest.fixture
def zookeeper_server(zookeeper_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return zookeeper_factory()
