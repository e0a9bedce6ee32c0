"""A node with its admin HTTP server, in a background thread, built the way ``node.server.serve`` builds one.

Tests need a node whose ``MemberServer`` object they can reach: this launcher
opens the data dir, builds the ``MemberServer`` of a standalone node exactly as
``serve()`` does, starts the client port and then the admin server on the same
event loop.
``stop()`` tears both down whatever happened (used from fixture teardowns).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from harness import ports


def _free_port() -> int:
    return ports.free_port()  # this worker's range under pytest-xdist (harness/ports.py)


class AdminNode:
    def __init__(
        self, data_dir: Path, admin_host: str = "127.0.0.1", token: str | None = None, tick_ms: int = 200
    ) -> None:
        self.data_dir = Path(data_dir)
        self.admin_host = admin_host
        self.token = token
        self.tick_ms = tick_ms
        self.client_port = 0
        self.admin_url = ""
        self.server: Any = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admin-node", daemon=True)

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout_s: float = 30.0) -> AdminNode:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"node + admin did not start within {timeout_s} s")
        if self.error is not None:
            self.stop()
            raise self.error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from node.admin.http import start_admin
        from node.config import NodeConfig
        from node.server import MemberServer
        from node.storage import open_member_store

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        store = lock_fd = server = admin = None
        try:
            cfg = NodeConfig(
                data_dir=self.data_dir, host="127.0.0.1", port=_free_port(), tick_ms=self.tick_ms
            ).validate()
            store, lock_fd = open_member_store(cfg.data_dir)
            server = MemberServer(cfg, {}, store)
            self.server = server
            _, self.client_port = await server.start()
            admin = await start_admin(server, self.admin_host, 0, token=self.token)
            self.admin_url = admin.url
        except BaseException as exc:  # reported to the starting thread
            self.error = exc
        finally:
            self._ready.set()
        try:
            if self.error is None:
                await self._stop.wait()
        finally:
            if admin is not None:
                await admin.close()
            if server is not None:
                await server.stop()
            if store is not None:
                store.close()
            if lock_fd is not None:
                os.close(lock_fd)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class ServeThread:
    """`squall serve`'s app on a free loopback port in a background thread (stopped by ``stop()``)."""

    def __init__(self, root: Path, token: str | None = None, host: str = "127.0.0.1") -> None:
        self.root = Path(root)
        self.token = token
        self.host = host
        self.port = 0
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ServeThread:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"squall serve did not start within {timeout_s} s")
        if self.error is not None:
            self.stop()
            raise self.error
        return self

    async def _main(self) -> None:
        from harness.serve_cmd import start_serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = None
        try:
            runner, self.port = await start_serve(self.root, self.host, 0, self.token)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
        try:
            if runner is not None:
                await self._stop.wait()
        finally:
            if runner is not None:
                await runner.cleanup()

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class AdminOnly:
    """``start_admin`` for any server-like object (e.g. a fake ensemble member) on a background loop."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.admin_url = ""
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="admin-only", daemon=True)

    def start(self, timeout_s: float = 30.0) -> AdminOnly:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"admin server did not start within {timeout_s} s")
        if self.error is not None:
            self.stop()
            raise self.error
        return self

    async def _main(self) -> None:
        from node.admin.http import start_admin

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        admin = None
        try:
            admin = await start_admin(self.server, "127.0.0.1", 0)
            self.admin_url = admin.url
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
        try:
            if admin is not None:
                await self._stop.wait()
        finally:
            if admin is not None:
                await admin.close()

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class AdminEnsemble:
    """A real 3-member squall ensemble as subprocesses (``squall node --id N --peers ... --admin-port P``).

    ``start()`` waits until every member answers ``ruok``; ``kill_all()`` SIGKILLs every process it
    started (call it from a ``finally``/fixture teardown: it never raises over one that is already gone).
    """

    def __init__(self, base: Path, size: int = 3) -> None:
        from tests.node.servers import free_port, squall_node

        self.base = Path(base)
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}" for i, (c, p, _) in enumerate(ports))
        self.admin_ports = {i + 1: a for i, (_, _, a) in enumerate(ports)}
        self.members = {
            i + 1: squall_node(
                self.base / f"n{i + 1}" / "data",
                port=c,
                extra_args=["--id", str(i + 1), "--peers", peers, "--tick-ms", "1000", "--admin-port", str(a)],
                log_path=self.base / f"n{i + 1}.out",
            )
            for i, (c, _, a) in enumerate(ports)
        }

    @property
    def hosts(self) -> str:
        return ",".join(m.address for m in self.members.values())

    def admin_url(self, member_id: int) -> str:
        return f"http://127.0.0.1:{self.admin_ports[member_id]}"

    def start(self) -> AdminEnsemble:
        try:
            for m in self.members.values():
                m.start()
        except BaseException:
            self.kill_all()
            raise
        return self

    def ensemble(self, member_id: int, timeout_s: float = 5.0) -> dict | None:
        """``/commands/ensemble`` of one member, or None when its admin port does not answer (yet)."""
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.admin_url(member_id) + "/commands/ensemble", timeout=timeout_s) as r:
                return json.loads(r.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_settled(self, member_id: int, alive: set[int], deadline_s: float = 30.0) -> dict:
        """Poll member's ensemble view until it shows one leader among ``alive`` that every live member follows."""
        import time

        deadline = time.monotonic() + deadline_s
        last: dict | None = None
        while time.monotonic() < deadline:
            last = self.ensemble(member_id)
            if last is not None and _settled(last, alive):
                return last
            time.sleep(0.2)
        raise AssertionError(
            f"member {member_id}'s ensemble view did not settle on a leader among {sorted(alive)}"
            f" within {deadline_s} s; last view: {last}"
        )

    def kill(self, member_id: int) -> None:
        self.members[member_id].kill()

    def kill_all(self) -> None:
        for m in self.members.values():
            try:
                m.kill()
            except Exception:  # noqa: BLE001 - keep killing the others
                pass


def _settled(view: dict, alive: set[int]) -> bool:
    peers = {p["id"]: p for p in view.get("peers", [])}
    leader = view.get("leader")
    if leader not in alive or not alive <= set(peers):
        return False
    for pid in alive:
        p = peers.get(pid, {})
        want = "leader" if pid == leader else "follower"
        if p.get("state") != "serving" or p.get("role") != want:
            return False
    return True
