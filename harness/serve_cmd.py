"""`squall serve`: a web page over a results folder (Jepsen's `serve`).

A table of runs (name, time, database, workload, nemesis, verdict, op counts)
read from each run's ``test.json``, ``results.json`` and ``history.jsonl``
(the layout of :mod:`harness.store`); filters by verdict, workload and
database; each run's report, history, results, junit and logs; a run as a zip.

It only reads. Every path taken from a request is resolved and must stay
inside the results folder (symlinks included): anything else is a 404, the
same answer as for a file that does not exist, so probing learns nothing.
Bound beyond loopback the server refuses to start without ``--token`` (run
reports hold node logs and configurations); with a token every request needs
it (``Authorization: Bearer``, or ``/?token=...`` once, which sets a cookie).
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

HERE = Path(__file__).resolve().parent
WEB = HERE / "web"
TOKEN_COOKIE = "squall_serve_token"
SEGMENT_RE = re.compile(r"^[A-Za-z0-9._+\-]+$")
HISTORY_PAGE = 500
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S"  # harness.store's run folder names (+ ".mmm" and maybe "-n")
CONTENT_TYPES = {".html": "text/html", ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png"}
RUN_FILES = ("report.html", "results.json", "history.jsonl", "test.json", "junit.xml")


class ServeConfigError(ValueError):
    """The server cannot start with these settings; the message says what is allowed."""


# ---------------------------------------------------------------- pure: reading runs


@dataclass
class RunSummary:
    name: str
    stamp: str
    time: str  # ISO-8601 UTC, from the folder name (or test.json's mtime)
    db: str
    workload: str
    nemesis: str
    nodes: int
    verdict: str  # valid, invalid, unknown, crashed, interrupted, setup-failed, incomplete
    summary: str
    ops: dict[str, int] = field(default_factory=dict)  # harness.report.stats.OpCounter's counts
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return f"{self.name}/{self.stamp}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["id"] = self.run_id
        return d


def verdict_of(results: dict | None) -> str:
    if results is None:
        return "incomplete"  # still running, or killed before results.json
    valid = results.get("valid")
    if valid is True:
        return "valid"
    if valid is False:
        return "invalid"
    if valid == "unknown":
        return "unknown"
    return str(results.get("status") or "error")


def stamp_time(stamp: str, fallback: Path) -> str:
    try:
        base = stamp.split(".")[0]
        ms = int(stamp.split(".")[1][:3]) if "." in stamp else 0
        t = datetime.strptime(base, TIMESTAMP_FORMAT).replace(tzinfo=UTC, microsecond=ms * 1000)
    except (ValueError, IndexError):
        try:
            t = datetime.fromtimestamp(fallback.stat().st_mtime, tz=UTC)
        except OSError:
            return ""
    return t.isoformat(timespec="seconds")


def count_ops(history: Path) -> tuple[dict[str, int], list[str]]:
    """The report's counts (operations = client invocations, ok/fail/info,
    nemesis operations, lines; see ``harness.report.stats.OpCounter``);
    bad lines are reported, not fatal."""
    from harness.report.stats import OpCounter

    counter = OpCounter()
    problems: list[str] = []
    try:
        with history.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    op = json.loads(line)
                    counter.add(op.get("process"), op["type"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    if len(problems) < 3:
                        problems.append(f"history.jsonl:{lineno}: not a history op")
                    continue
    except FileNotFoundError:
        problems.append("no history.jsonl")
    except OSError as exc:
        problems.append(f"history.jsonl unreadable: {exc}")
    return counter.result(), problems


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: {exc}")
        return None


_SUMMARY_CACHE: dict[tuple, RunSummary] = {}


def summarize_run(run_dir: Path) -> RunSummary:
    """One run folder -> a RunSummary (cached on the files' sizes and mtimes)."""
    key_parts: list[Any] = [str(run_dir)]
    for name in ("test.json", "results.json", "history.jsonl"):
        try:
            st = (run_dir / name).stat()
            key_parts += [st.st_mtime_ns, st.st_size]
        except OSError:
            key_parts += [None, None]
    key = tuple(key_parts)
    cached = _SUMMARY_CACHE.get(key)
    if cached is not None:
        return cached
    problems: list[str] = []
    spec = _read_json(run_dir / "test.json", problems) or {}
    if not isinstance(spec, dict):
        problems.append("test.json is not an object")
        spec = {}
    results = _read_json(run_dir / "results.json", problems)
    if results is not None and not isinstance(results, dict):
        problems.append("results.json is not an object")
        results = None
    ops, op_problems = count_ops(run_dir / "history.jsonl")
    nemesis = spec.get("nemesis", [])
    summary = RunSummary(
        name=run_dir.parent.name,
        stamp=run_dir.name,
        time=stamp_time(run_dir.name, run_dir / "test.json"),
        db=str(spec.get("db", "?")),
        workload=str(spec.get("workload", "?")),
        nemesis=",".join(nemesis) if isinstance(nemesis, list) and nemesis else (str(nemesis) if nemesis else "none"),
        nodes=len(spec.get("nodes", []) or []),
        verdict=verdict_of(results),
        summary=str((results or {}).get("summary", "")),
        ops=ops,
        files=sorted(n for n in RUN_FILES if (run_dir / n).is_file()),
        problems=problems + op_problems,
    )
    if len(_SUMMARY_CACHE) > 5000:
        _SUMMARY_CACHE.clear()
    _SUMMARY_CACHE[key] = summary
    return summary


def find_runs(root: Path) -> list[Path]:
    """``<root>/<name>/<stamp>/`` folders holding a test.json; ``latest`` and dot-folders skipped."""
    runs: list[Path] = []
    if not root.is_dir():
        return runs
    for test_dir in sorted(root.iterdir()):
        if test_dir.name.startswith(".") or test_dir.name == "latest" or test_dir.is_symlink() or not test_dir.is_dir():
            continue
        for run_dir in sorted(test_dir.iterdir()):
            if run_dir.is_dir() and not run_dir.is_symlink() and (run_dir / "test.json").is_file():
                runs.append(run_dir)
    return runs


def list_runs(root: Path, verdict: str = "", workload: str = "", db: str = "") -> list[RunSummary]:
    """Every run, newest first, filtered (empty filter = any)."""
    runs = [summarize_run(d) for d in find_runs(root)]
    runs = [
        r
        for r in runs
        if (not verdict or r.verdict == verdict) and (not workload or r.workload == workload) and (not db or r.db == db)
    ]
    runs.sort(key=lambda r: (r.time, r.stamp, r.name), reverse=True)
    return runs


def safe_path(root: Path, *parts: str) -> Path | None:
    """``root/parts...`` when it exists inside root after resolving symlinks, else None (-> 404)."""
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for part in parts for p in part.split("/")):
        return None
    root_resolved = root.resolve()
    try:
        target = root_resolved.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if target != root_resolved and not target.is_relative_to(root_resolved):
        return None
    return target


def run_dir_of(root: Path, name: str, stamp: str) -> Path | None:
    if not (SEGMENT_RE.match(name) and SEGMENT_RE.match(stamp)) or name == "latest":
        return None
    d = safe_path(root, name, stamp)
    return d if d is not None and d.is_dir() and (d / "test.json").is_file() else None


def zip_run(run_dir: Path, root: Path) -> bytes:
    """The run folder as a zip (members under ``<name>/<stamp>/``); files escaping root are left out."""
    buf = io.BytesIO()
    prefix = f"{run_dir.parent.name}/{run_dir.name}"
    root_resolved = root.resolve()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(run_dir, followlinks=False):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                try:
                    real = p.resolve(strict=True)
                except OSError:
                    continue
                if not real.is_relative_to(root_resolved) or not real.is_file():
                    continue
                zf.write(real, f"{prefix}/{p.relative_to(run_dir).as_posix()}")
    return buf.getvalue()


def read_history_page(path: Path, offset: int, limit: int) -> tuple[list[dict], int]:
    """Ops ``offset..offset+limit`` of a history.jsonl and the total line count."""
    rows: list[dict] = []
    total = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            if offset <= total < offset + limit:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    rows.append({"type": "?", "error": "unparseable line", "value": line[:200]})
            total += 1
    return rows, total


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_is_loopback(host_header: str | None) -> bool:
    if not host_header:
        return False
    name = host_header
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    return is_loopback(name)


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ServeConfigError(
            f"refusing to serve results on {host} without a token: run reports hold node logs "
            f"and configuration. Pass --token TOKEN (or SQUALL_SERVE_TOKEN) or bind 127.0.0.1."
        )


# ---------------------------------------------------------------- the aiohttp application


def build_app(root: Path, token: str | None = None) -> Any:
    from aiohttp import web
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    root = Path(root)
    env = Environment(loader=FileSystemLoader(str(WEB / "templates")), autoescape=select_autoescape(["html", "j2"]))

    def page(template: str, **ctx: Any) -> web.Response:
        html = env.get_template(template).render(root=str(root), **ctx)
        return web.Response(
            text=html, content_type="text/html", charset="utf-8", headers={"X-Frame-Options": "SAMEORIGIN"}
        )

    def not_found() -> web.HTTPNotFound:
        return web.HTTPNotFound(text="404: no such run or file in this results folder\n")

    @web.middleware
    async def guard(request: web.Request, handler: Callable) -> web.StreamResponse:
        if token is not None:
            login = request.query.get("token")
            if login is not None:
                if not hmac.compare_digest(login.encode(), token.encode()):
                    raise web.HTTPUnauthorized(text="wrong token\n")
                resp = web.HTTPFound(str(request.rel_url.without_query_params("token")))
                resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
                raise resp
            offered = request.cookies.get(TOKEN_COOKIE, "")
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                offered = auth[7:]
            if not hmac.compare_digest(offered.encode(), token.encode()):
                raise web.HTTPUnauthorized(
                    text="this results server needs its token: open /?token=TOKEN once, "
                    "or send 'Authorization: Bearer TOKEN'\n"
                )
        elif not _host_is_loopback(request.host):
            # bound to loopback without a token: a foreign Host header means DNS rebinding by another site
            raise web.HTTPForbidden(
                text=f"Host {request.host!r} refused: without --token only loopback names "
                f"(localhost, 127.0.0.1, [::1]) are served\n"
            )
        return await handler(request)

    def filters(request: web.Request) -> dict[str, str]:
        return {k: request.query.get(k, "").strip() for k in ("verdict", "workload", "db")}

    async def index(request: web.Request) -> web.Response:
        f = filters(request)
        every = list_runs(root)
        runs = list_runs(root, **f)
        choices = {
            "verdict": sorted({r.verdict for r in every}),
            "workload": sorted({r.workload for r in every}),
            "db": sorted({r.db for r in every}),
        }
        return page("index.html", runs=runs, filters=f, choices=choices, total=len(every))

    async def api_runs(request: web.Request) -> web.Response:
        return web.json_response({"runs": [r.to_dict() for r in list_runs(root, **filters(request))]})

    def the_run(request: web.Request) -> Path:
        d = run_dir_of(root, request.match_info["name"], request.match_info["stamp"])
        if d is None:
            raise not_found()
        return d

    async def run_page(request: web.Request) -> web.Response:
        d = the_run(request)
        summary = summarize_run(d)
        logs = []
        logs_dir = safe_path(root, d.parent.name, d.name, "logs")
        if logs_dir is not None and logs_dir.is_dir():
            for p in sorted(logs_dir.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    logs.append({"path": p.relative_to(d).as_posix(), "size": p.stat().st_size})
        results_text = ""
        if (d / "results.json").is_file():
            results_text = (d / "results.json").read_text(encoding="utf-8", errors="replace")[:200_000]
        spec_text = (d / "test.json").read_text(encoding="utf-8", errors="replace")[:50_000]
        return page("run.html", run=summary, logs=logs, results_text=results_text, spec_text=spec_text)

    async def history_page(request: web.Request) -> web.Response:
        d = the_run(request)
        path = d / "history.jsonl"
        if not path.is_file():
            raise not_found()
        try:
            offset = max(0, int(request.query.get("offset", "0")))
        except ValueError:
            offset = 0
        rows, total = read_history_page(path, offset, HISTORY_PAGE)
        return page("history.html", run=summarize_run(d), rows=rows, total=total, offset=offset, limit=HISTORY_PAGE)

    async def run_file(request: web.Request) -> web.StreamResponse:
        d = the_run(request)
        rel = request.match_info["path"]
        target = safe_path(root, d.parent.name, d.name, *rel.split("/"))
        if target is None or not target.is_file():
            raise not_found()
        ctype = CONTENT_TYPES.get(target.suffix, "text/plain")
        return web.FileResponse(
            target,
            headers={
                "Content-Type": f"{ctype}; charset=utf-8"
                if ctype.startswith("text") or ctype.endswith("json")
                else ctype,
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def run_zip(request: web.Request) -> web.Response:
        d = the_run(request)
        import asyncio

        data = await asyncio.get_running_loop().run_in_executor(None, zip_run, d, root)
        filename = f"{d.parent.name}-{d.name}.zip"
        return web.Response(
            body=data,
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    app = web.Application(middlewares=[guard])
    r = app.router
    r.add_get("/", index)
    r.add_get("/api/runs", api_runs)
    r.add_get("/runs/{name}/{stamp}/", run_page)
    r.add_get("/runs/{name}/{stamp}/history", history_page)
    r.add_get("/runs/{name}/{stamp}/files/{path:.+}", run_file)
    r.add_get("/runs/{name}/{stamp}.zip", run_zip)
    r.add_static("/static/", str(WEB / "static"), follow_symlinks=False)
    return app


async def start_serve(root: Path, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> Any:
    """Start serving on the running loop; returns (AppRunner, bound port). Used by the command and tests."""
    from aiohttp import web

    check_bind(host, token)
    runner = web.AppRunner(build_app(Path(root), token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses  # the sockets' names: (host, port, ...)
    bound = addresses[0][1] if addresses else port
    return runner, bound


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
    show_default=True,
    help="The results folder to browse.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but loopback needs --token."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0 = any free port).",
)
@click.option(
    "--token",
    envvar="SQUALL_SERVE_TOKEN",
    default=None,
    help="Require this token (Bearer header, or /?token=... once in a browser). Env: SQUALL_SERVE_TOKEN.",
)
def serve(results_dir: str, host: str, port: int, token: str | None) -> int:
    """Browse the runs in a results folder: verdicts, reports, histories, logs, zips."""
    import asyncio
    import signal

    root = Path(results_dir)
    if not root.is_dir():
        raise click.UsageError(
            f"results folder {root} does not exist; pass --results DIR (a folder `squall run` wrote into)"
        )
    try:
        check_bind(host, token)
    except ServeConfigError as exc:
        raise click.UsageError(str(exc)) from None

    async def main() -> None:
        try:
            runner, bound = await start_serve(root, host, port, token)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        shown = f"[{host}]" if ":" in host else host
        click.echo(
            f"squall serve: {len(find_runs(root))} runs in {root} at http://{shown}:{bound}/ (Ctrl-C stops)", err=True
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return 0
