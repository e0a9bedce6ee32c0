"""`squall cluster up|down|status`: clusters in containers for manual work.

``up`` starts a labelled Docker cluster, waits until it serves, prints its
run id and connection string, and leaves it running after the command exits.
``status`` shows every squall cluster Docker knows about (manual ones and
what a crashed ``squall run`` left), each node's state, address, and what
its database says of it (role, term, applied position). ``down`` removes
clusters by label: all of them, or one ``--run``.
Concrete databases come from the registry (harness/cli.py) like for `run`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from harness import plugins
from harness.backends.base import SetupError
from harness.registry import Registry, UnknownName, lookup

EXIT_SETUP_FAILED = 4


def _registry(ctx: click.Context) -> Registry:
    reg = ctx.find_object(Registry)
    if reg is None:
        raise click.UsageError("internal: no registry in the click context (run through `squall`)")
    return reg


def _only_docker(backend: str) -> None:
    if backend != "docker":
        raise click.UsageError(
            f"`squall cluster` supports --backend docker only, got {backend!r}; "
            "for ssh hosts use `squall run --backend ssh`"
        )


_BACKEND = click.option("--backend", default="docker", show_default=True, help="Only docker is supported here.")


def _docker():
    from harness.backends import docker as docker_backend
    from harness.backends import images

    try:
        return docker_backend, images.docker_client()
    except SetupError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("cluster")
def cluster() -> None:
    """Start, inspect and remove clusters in containers (manual work)."""


@cluster.command("up")
@_BACKEND
@click.option(
    "--db",
    default=plugins.default("db", "zookeeper"),
    show_default=True,
    help=f"The database: {plugins.help_list('db')} (`squall list`).",
)
@click.option("--nodes", type=int, default=3, show_default=True, help="Node count.")
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
    show_default=True,
    help="Node directories (config, data, logs) go to RESULTS/clusters/<run id>/.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait until every node serves and a leader exists.",
)
@click.pass_context
def up(ctx: click.Context, backend: str, db: str, nodes: int, results_dir: str, timeout_s: float) -> None:
    """Start a cluster and leave it running; print how to reach it."""
    _only_docker(backend)
    if nodes < 1:
        raise click.UsageError(f"--nodes must be at least 1, got {nodes}")
    reg = _registry(ctx)
    try:
        database = lookup(reg.dbs, "db", db)({})
    except UnknownName as exc:
        raise click.UsageError(str(exc)) from exc
    counts = tuple(database.supported_node_counts()) if hasattr(database, "supported_node_counts") else ()
    if counts and nodes not in counts:
        raise click.UsageError(f"--db {db} cannot run {nodes} node(s); allowed: {', '.join(map(str, counts))}")
    docker_backend, client = _docker()
    run_id = docker_backend.new_run_id()
    run_dir = Path(results_dir).resolve() / "clusters" / run_id
    try:
        c = docker_backend.DockerBackend().create(nodes, database, run_dir, kind="manual", run_id=run_id)
    except SetupError as exc:
        click.echo(f"cluster up failed: {exc}", err=True)
        ctx.exit(EXIT_SETUP_FAILED)
    try:
        c.wait_ready(timeout_s)
    except SetupError as exc:
        click.echo(f"cluster up failed: {exc}", err=True)
        c.teardown()
        ctx.exit(EXIT_SETUP_FAILED)
    c.keep_on_exit = True  # the point of `up`: it outlives this command
    click.echo(f"run id:  {c.run_id}")
    click.echo(f"nodes:   {', '.join(c.nodes)} (leader: {c.leader()})")
    click.echo(f"files:   {run_dir}")
    click.echo(f"connect: {c.connect_string()}")
    click.echo(f"remove:  squall cluster down --run {c.run_id}")


def _published_port(container: Any, port: int) -> int | None:
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    binding = ports.get(f"{port}/tcp") or []
    return int(binding[0]["HostPort"]) if binding else None


def cluster_status(client: Any, reg: Registry) -> list[dict[str, Any]]:
    """One row per squall container: run, kind, node, db, state, address and
    the database's status of the node (role as ``mode``, term, applied)."""
    from harness.backends.docker import CLIENT_PORT, LABEL_DB, LABEL_KIND, LABEL_NODE, LABEL_RUN

    rows = []
    dbs: dict[str, Any] = {}
    for c in client.containers.list(all=True, filters={"label": LABEL_RUN}):
        port = _published_port(c, CLIENT_PORT)
        address = f"127.0.0.1:{port}" if port else ""
        db_name = c.labels.get(LABEL_DB, "")
        if db_name not in dbs:
            try:
                dbs[db_name] = lookup(reg.dbs, "db", db_name)({})
            except Exception:  # noqa: BLE001 - an unknown or broken database: no status, the row stays
                dbs[db_name] = None
        db = dbs[db_name]
        if address and c.status == "running" and db is not None:
            st = db.status(address, 0.5)
            status = {"mode": st.role, "term": st.term, "applied": st.applied}
        else:
            status = {"mode": "down" if db is not None else "unknown", "term": None, "applied": None}
        rows.append(
            {
                "run": c.labels.get(LABEL_RUN, "?"),
                "kind": c.labels.get(LABEL_KIND, "?"),
                "node": c.labels.get(LABEL_NODE, c.name),
                "db": db_name or "?",
                "state": c.status,
                "address": address,
                **status,
            }
        )
    return sorted(rows, key=lambda r: (r["run"], r["node"]))


@cluster.command("status")
@_BACKEND
@click.pass_context
def status(ctx: click.Context, backend: str) -> None:
    """Show every squall cluster's nodes: state, address, role and position."""
    _only_docker(backend)
    _, client = _docker()
    rows = cluster_status(client, _registry(ctx))
    if not rows:
        click.echo("no squall clusters")
        return
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_run[r["run"]].append(r)
    for run_id, nodes in by_run.items():
        click.echo(
            f"run {run_id} ({nodes[0]['kind']}, db {nodes[0]['db']}): "
            f"connect {','.join(r['address'] for r in nodes if r['address'])}"
        )
        for r in nodes:
            term = "-" if r["term"] is None else str(r["term"])
            applied = "-" if r["applied"] is None else hex(r["applied"])
            click.echo(
                f"  {r['node']:<4} {r['state']:<8} {r['address']:<16} {r['mode']:<12} term {term} applied {applied}"
            )


@cluster.command("down")
@click.option("--run", "run_id", default=None, help="Remove only this run's cluster [default: every squall cluster].")
@click.option(
    "--all",
    "dead",
    is_flag=True,
    help="Remove what every dead squall run left (runs whose harness is no longer running).",
)
@_BACKEND
def down(run_id: str | None, dead: bool, backend: str) -> None:
    """Remove squall containers and networks (what `up` or a crashed run left)."""
    _only_docker(backend)
    if dead and run_id:
        raise click.UsageError("--all and --run exclude each other: --all removes every dead run's cluster")
    docker_backend, client = _docker()
    run_ids: list[str | None] = sorted(docker_backend.dead_runs(client)) if dead else [run_id]
    if dead and not run_ids:
        click.echo("no leftovers of dead squall runs")
        return
    removed_c = removed_n = 0
    errors: list[str] = []
    left: dict[str, list[str]] = {"containers": [], "networks": []}
    for rid in run_ids:
        before = docker_backend.leftovers(client, rid)
        errors += docker_backend.remove_run(client, rid)
        after = docker_backend.leftovers(client, rid)
        removed_c += len(before["containers"]) - len(after["containers"])
        removed_n += len(before["networks"]) - len(after["networks"])
        for k in left:
            left[k] += after[k]
    runs = f" of {len(run_ids)} dead run(s)" if dead else ""
    click.echo(f"removed {removed_c} containers and {removed_n} networks{runs}")
    if errors or left["containers"] or left["networks"]:
        raise click.ClickException("could not remove everything: " + "; ".join(errors or [f"left: {left}"]))
