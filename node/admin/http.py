"""The node's admin HTTP server: a JSON admin API, Prometheus metrics and the web UI.

``start_admin(server, host, port, token)`` serves, on the node's own event
loop (aiohttp):

* ``/commands`` and ``/commands/<name>``: ZooKeeper's AdminServer commands,
  with its names, aliases and JSON keys (:mod:`node.admin.commands`), plus
  squall's ``ensemble``. Every answer is built from the server's
  ``admin_view()`` snapshot, the same one the four-letter words render, so
  asking never touches sessions or the tree.
* ``/metrics``: Prometheus text format through ``prometheus_client`` (a
  registry per admin server, no global state; only numbers the node really
  has: the shell's own counters and the hooks of ``node.metrics``).
* ``/api/tree``, ``/api/search`` and ``POST /api/tree/{create,set,delete}``:
  the tree browser's back end. **Every tree access is an ordinary ZooKeeper
  client request**: the admin server keeps a kazoo client connected to the
  node's own client port per credential set (anonymous, or each
  ``user:password`` digest a UI user supplies), so ACLs, versions, watches,
  durability and ordering are exactly those of any other client; nothing
  bypasses the request path.
* ``/ui/tree``, ``/ui/ensemble``, ``/ui/status``: the pages (templates and
  assets ship with the package; no CDN).

Security: bound to loopback, the API is open (like ZooKeeper's AdminServer on
localhost). Bound anywhere else, :func:`start_admin` refuses to start without
a token; with a token every request must carry it (``Authorization: Bearer``,
``X-Squall-Token``, or the cookie set by visiting ``/?token=...`` once).
Every state-changing request (POST) must carry the per-process CSRF token in
an ``X-Squall-CSRF`` header (pages get it from a ``<meta>`` tag) and, when the
browser sends an ``Origin``, it must be this server's own: a cross-site page
can neither read the token nor set the header.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import generate_latest

from node.admin import commands, four_letter
from node.admin.peers import RoleTracker, ensemble_view
from node.admin.prometheus import METRICS_CONTENT_TYPE, metric_families, new_registry
from node.admin.security import AdminConfigError, check_admin_options, host_is_loopback
from node.admin.tree_api import (
    ClientPool,
    TreeError,
    create_znode,
    delete_znode,
    normalize_path,
    read_znode,
    search_paths,
    set_znode,
)
from node.metrics import NodeMetrics

log = logging.getLogger("squall.admin")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

COMMANDS = tuple(commands.COMMANDS)  # ZooKeeper's primary names (node.admin.commands); aliases resolve too
TOKEN_COOKIE = "squall_admin_token"
CSRF_HEADER = "X-Squall-CSRF"
DIGEST_HEADER = "X-Squall-Digest"
SAMPLE_INTERVAL_S = 1.0
MAX_BODY_BYTES = 2 * 1024 * 1024


# ---------------------------------------------------------------- the aiohttp application


@dataclass
class AdminRunner:
    """A started admin server: ``url``, ``host``, ``port``; ``await close()`` stops it."""

    host: str
    port: int
    runner: web.AppRunner
    app: web.Application

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


class AdminApp:
    """Request handlers; one per admin server."""

    def __init__(self, server: Any, client_hosts: str, token: str | None) -> None:
        self.server = server
        self.token = token
        self.csrf = secrets.token_urlsafe(24)
        self.pool = ClientPool(client_hosts)
        self.node_metrics: NodeMetrics | None = getattr(server, "metrics", None)  # the node's own hooks
        self.roles = RoleTracker()
        self.http_counts: dict[tuple[str, int], int] = collections.Counter()
        # this admin server's own registry: scraping builds the families from a fresh admin view
        self.registry = new_registry(
            lambda: metric_families(
                self.server.admin_view(), self.server, self.node_metrics, self.roles, self.http_counts
            )
        )
        self.env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
        self._sampler: asyncio.Task | None = None

    # -- lifecycle

    async def on_startup(self, app: web.Application) -> None:
        self._sample()
        self._sampler = asyncio.create_task(self._sample_forever())

    async def on_cleanup(self, app: web.Application) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close)

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            try:
                self._sample()
            except Exception:  # noqa: BLE001 - a sampling hiccup must not stop the admin server
                log.exception("admin role sampler failed; continuing")

    def _sample(self) -> None:
        ens = ensemble_view(self.server, self.server.admin_view())
        self.roles.observe(int(time.time() * 1000), str(ens["mode"]), ens["leader"], ens["epoch"] or 0)

    # -- middleware: token, CSRF, counting, errors

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        status = 500
        try:
            if self.token is not None:
                login = request.query.get("token")
                if login is not None and request.method == "GET":
                    if not hmac.compare_digest(login.encode(), self.token.encode()):
                        raise _json_error(401, "wrong admin token", "bad-token")
                    resp = web.HTTPFound(str(request.rel_url.without_query_params("token")))
                    resp.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
                    raise resp
                if not self._token_ok(request):
                    raise _json_error(
                        401,
                        "this admin server requires its token: send 'Authorization: Bearer "
                        "TOKEN' or open /?token=TOKEN once in the browser",
                        "token-required",
                    )
            elif not host_is_loopback(request.host):
                # Without a token the server is bound to loopback; a non-loopback Host header then means a
                # page on another site reached us through DNS rebinding.
                raise _json_error(
                    403,
                    f"Host {request.host!r} refused: without an admin token only loopback "
                    f"names (localhost, 127.0.0.1, [::1]) are served",
                    "bad-host",
                )
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                self._check_csrf(request)
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception:
            log.exception("admin request %s %s failed", request.method, request.path)
            status = 500
            return web.json_response(
                {"error": "internal error in the admin server (see the node's log)", "code": "internal"}, status=500
            )
        finally:
            self.http_counts[(route, status)] += 1

    def _token_ok(self, request: web.Request) -> bool:
        assert self.token is not None
        offered = request.headers.get("X-Squall-Token") or request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered = auth[7:]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _check_csrf(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin and origin != "null":
            expected = f"{request.scheme}://{request.host}"
            if origin != expected:
                raise _json_error(403, f"cross-site request refused: Origin {origin} is not {expected}", "csrf-origin")
        offered = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(offered.encode(), self.csrf.encode()):
            raise _json_error(
                403,
                f"missing or wrong {CSRF_HEADER} header: state-changing requests must carry "
                f"the CSRF token (GET /api/csrf or the page's meta tag)",
                "csrf-token",
            )

    # -- JSON API

    async def commands(self, request: web.Request) -> web.Response:
        base = str(request.url.with_path("/commands").with_query(None))
        return web.json_response(
            {
                "commands": [{"name": c, "url": f"{base}/{c}"} for c in COMMANDS],
                "metrics": str(request.url.with_path("/metrics").with_query(None)),
                "error": None,
            }
        )

    async def command(self, request: web.Request) -> web.Response:
        asked = request.match_info["name"]
        name = commands.resolve(asked)
        if name is None:  # ZooKeeper's error text, plus what is allowed
            return web.json_response(
                {
                    "command": asked,
                    "error": f"Unknown command: {asked}; known: {', '.join(COMMANDS)} (and their aliases)",
                },
                status=404,
            )
        view = self.server.admin_view()
        body = commands.command_json(name, view, self.server, lambda: ensemble_view(self.server, view))
        if name == "ensemble":
            body["leader_changes"] = list(self.roles.changes)
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": METRICS_CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
        )

    async def csrf_token(self, request: web.Request) -> web.Response:
        return web.json_response({"csrf": self.csrf, "header": CSRF_HEADER})

    def _digests(self, request: web.Request, body: dict | None = None) -> tuple[str, ...]:
        raw = request.headers.get(DIGEST_HEADER, "") or (body or {}).get("auth", "") or ""
        digests = tuple(sorted({d.strip() for d in raw.split(",") if d.strip()}))
        for d in digests:
            if ":" not in d:
                raise _json_error(400, f"credentials {d.split(':')[0]!r}...: expected user:password", "bad-auth")
        return digests

    async def _in_thread(self, request: web.Request, digests: tuple[str, ...], fn: Callable[[Any], Any]) -> Any:
        def work() -> Any:
            client = self.pool.get(digests)
            return fn(client)

        try:
            return await asyncio.get_running_loop().run_in_executor(None, work)
        except TreeError as exc:
            raise _json_error(exc.status, str(exc), exc.code) from None

    async def tree_get(self, request: web.Request) -> web.Response:
        path = normalize_path(request.query.get("path"))
        result = await self._in_thread(request, self._digests(request), lambda c: read_znode(c, path))
        return web.json_response(result)

    async def tree_search(self, request: web.Request) -> web.Response:
        needle = request.query.get("q", "").strip()
        if not needle:
            raise _json_error(400, "search needs ?q=TEXT (a part of a path)", "bad-request")
        result = await self._in_thread(request, self._digests(request), lambda c: search_paths(c, needle))
        return web.json_response(result)

    async def _body(self, request: web.Request) -> dict:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise _json_error(413, f"request body over {MAX_BODY_BYTES} bytes", "too-large")
        try:
            body = await request.json()
        except ValueError:
            raise _json_error(400, "the body must be a JSON object", "bad-request") from None
        if not isinstance(body, dict):
            raise _json_error(400, "the body must be a JSON object", "bad-request")
        return body

    @staticmethod
    def _data(body: dict) -> bytes:
        data = body.get("data", "")
        if not isinstance(data, str):
            raise _json_error(400, "data must be a string", "bad-request")
        if body.get("encoding", "text") == "hex":
            try:
                return bytes.fromhex("".join(data.split()))
            except ValueError:
                raise _json_error(400, "data is not valid hex (pairs of 0-9a-f)", "bad-request") from None
        return data.encode("utf-8")

    @staticmethod
    def _version(body: dict, default: int | None = None) -> int:
        v = body.get("version", default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _json_error(
                400, "version must be an integer: the version you loaded (-1 = any version)", "bad-request"
            )
        return v

    async def tree_create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = normalize_path(body.get("path"))
        data = self._data(body)
        acl = body.get("acl", "") or ""
        eph, seq = bool(body.get("ephemeral")), bool(body.get("sequential"))
        result = await self._in_thread(
            request, self._digests(request, body), lambda c: create_znode(c, path, data, acl, eph, seq)
        )
        return web.json_response(result, status=201)

    async def tree_set(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = normalize_path(body.get("path"))
        data = self._data(body)
        version = self._version(body)
        result = await self._in_thread(
            request, self._digests(request, body), lambda c: set_znode(c, path, data, version)
        )
        return web.json_response(result)

    async def tree_delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = normalize_path(body.get("path"))
        version = self._version(body, -1)
        recursive = bool(body.get("recursive"))
        result = await self._in_thread(
            request, self._digests(request, body), lambda c: delete_znode(c, path, version, recursive)
        )
        return web.json_response(result)

    # -- pages

    def _page(self, template: str, **ctx: Any) -> web.Response:
        html = self.env.get_template(template).render(csrf=self.csrf, version=four_letter.VERSION_LINE, **ctx)
        return web.Response(
            text=html,
            content_type="text/html",
            charset="utf-8",
            headers={
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            },
        )

    async def index(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/tree")

    async def ui_tree(self, request: web.Request) -> web.Response:
        return self._page("tree.html", page="tree")

    async def ui_ensemble(self, request: web.Request) -> web.Response:
        return self._page("ensemble.html", page="ensemble")

    async def ui_status(self, request: web.Request) -> web.Response:
        return self._page("status.html", page="status", commands=COMMANDS)


def _json_error(status: int, message: str, code: str) -> web.HTTPException:
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        413: web.HTTPRequestEntityTooLarge,
        502: web.HTTPBadGateway,
        503: web.HTTPServiceUnavailable,
    }.get(status, web.HTTPInternalServerError)
    return cls(text=json.dumps({"error": message, "code": code}), content_type="application/json")


ADMIN_KEY = web.AppKey("admin", AdminApp)


def build_app(server: Any, client_hosts: str, token: str | None = None) -> web.Application:
    admin = AdminApp(server, client_hosts, token)
    app = web.Application(middlewares=[admin.middleware], client_max_size=MAX_BODY_BYTES)
    app[ADMIN_KEY] = admin
    r = app.router
    r.add_get("/", admin.index)
    r.add_get("/commands", admin.commands)
    r.add_get("/commands/{name}", admin.command)
    r.add_get("/metrics", admin.metrics)
    r.add_get("/api/csrf", admin.csrf_token)
    r.add_get("/api/tree", admin.tree_get)
    r.add_get("/api/search", admin.tree_search)
    r.add_post("/api/tree/create", admin.tree_create)
    r.add_post("/api/tree/set", admin.tree_set)
    r.add_post("/api/tree/delete", admin.tree_delete)
    r.add_get("/ui/tree", admin.ui_tree)
    r.add_get("/ui/ensemble", admin.ui_ensemble)
    r.add_get("/ui/status", admin.ui_status)
    r.add_static("/static/", str(STATIC), follow_symlinks=False)
    app.on_startup.append(admin.on_startup)
    app.on_cleanup.append(admin.on_cleanup)
    return app


def _client_hosts(server: Any) -> str:
    """Where the admin's own kazoo clients connect: the node's bound client port (loopback for 0.0.0.0)."""
    host, port = None, None
    srv = getattr(server, "_server", None)
    sockets = getattr(srv, "sockets", None) or []
    if sockets:
        host, port = sockets[0].getsockname()[:2]
    cfg = getattr(server, "cfg", None)
    host = str(host or getattr(cfg, "host", "127.0.0.1"))
    port = port or getattr(cfg, "port", 2181)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


async def start_admin(
    server: Any, host: str = "127.0.0.1", port: int = 0, token: str | None = None, client_hosts: str | None = None
) -> AdminRunner:
    """Serve the admin API and web UI for ``server`` (a started ``node.server.MemberServer``) on host:port.

    ``port`` 0 takes any free port.

    Call it on the node's event loop after ``server.start()``. Raises
    :class:`AdminConfigError` for a non-loopback ``host`` without ``token``
    (before binding anything) and ``OSError`` when the port is taken.
    """
    check_admin_options(host, port, token)
    app = build_app(server, client_hosts or _client_hosts(server), token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    socks = getattr(site._server, "sockets", None)
    bound = socks[0].getsockname() if socks else (host, port)
    admin = AdminRunner(bound[0], bound[1], runner, app)
    log.info("admin HTTP serving on %s (token %s)", admin.url, "required" if token else "not required: loopback")
    return admin


__all__ = [
    "ADMIN_KEY",
    "AdminApp",
    "AdminConfigError",
    "AdminRunner",
    "COMMANDS",
    "build_app",
    "check_admin_options",
    "start_admin",
]
