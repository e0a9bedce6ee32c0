"""`squall list`: every registered database, workload, nemesis fault and
checker, the package (and version) it came from, and a line about it.

Each plugin is imported to describe it; one that fails to import is listed
under "problems" with its name, package and error, and the command exits 3
(the others are still listed). ``--json`` prints the same as one object:
``{"plugins": [...], "backends": [...], "problems": [...]}``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from harness.plugins import Discovery, Plugin, PluginError, describe_object, fault_about
from harness.registry import Registry

EXIT_BAD_INPUT = 3
KIND_TITLES = {
    "db": "databases (--db)",
    "workload": "workloads (--workload)",
    "nemesis": "nemesis faults (--nemesis)",
    "checker": "checkers (squall check --consistency)",
}


def describe(plugin: Plugin) -> dict[str, Any]:
    """One plugin as a row; ``error`` set when it cannot be loaded."""
    row: dict[str, Any] = {
        "kind": plugin.kind,
        "name": plugin.name,
        "package": plugin.dist,
        "version": plugin.version,
        "target": plugin.target,
        "source": plugin.source,
    }
    try:
        obj = plugin.load()
        row["about"] = fault_about(plugin, obj) if plugin.kind == "nemesis" else describe_object(obj)
        if plugin.kind == "db":
            db = obj({})
            row["interfaces"] = list(db.interfaces)
            row["about"] = row["about"] or describe_object(db)
        elif plugin.kind == "workload":
            w = obj({})
            row["interface"] = getattr(w, "interface", None)  # None: a workload with clients of its own
    except PluginError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a factory that fails on empty options is the plugin's problem
        row["error"] = f"{plugin.describe()} failed to build: {type(exc).__name__}: {exc}"
    return row


def listing(
    discovery: Discovery, backends: list[str], sequences: dict[str, tuple[str, ...]] | None = None
) -> dict[str, Any]:
    rows = [describe(p) for kind in KIND_TITLES for p in discovery.of(kind)]
    problems = list(discovery.problems) + [r["error"] for r in rows if "error" in r]
    return {
        "plugins": rows,
        "backends": backends,
        "problems": problems,
        "sequences": [{"name": n, "uses": list(f)} for n, f in (sequences or {}).items()],
    }


def _text(doc: dict[str, Any]) -> str:
    lines = []
    for kind, title in KIND_TITLES.items():
        rows = [r for r in doc["plugins"] if r["kind"] == kind]
        lines.append(f"{title}:")
        if not rows:
            lines.append("  (none registered)")
        width = max([len(r["name"]) for r in rows] + [4])
        for r in rows:
            extra = ""
            if "interfaces" in r:
                extra = f" [interfaces: {', '.join(r['interfaces']) or 'none'}]"
            elif r.get("interface"):
                extra = f" [interface: {r['interface']}]"
            what = "FAILED TO LOAD" if "error" in r else (r.get("about") or "")
            lines.append(f"  {r['name']:<{width}}  {r['package']} {r['version']}  {what}{extra}")
        lines.append("")
    if doc.get("sequences"):
        lines.append("targeted fault sequences (--nemesis NAME plays one over and over):")
        lines += [f"  {q['name']}  uses {', '.join(q['uses'])}" for q in doc["sequences"]]
        lines.append("")
    lines.append(f"backends (--backend): {', '.join(doc['backends'])}")
    if doc["problems"]:
        lines.append("")
        lines.append("problems:")
        lines += [f"  {p}" for p in doc["problems"]]
    return "\n".join(lines)


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show every registered database, workload, nemesis fault and checker,
    and the package it came from (docs/extending.md: adding your own)."""
    reg = ctx.find_object(Registry)
    if reg is None or reg.discovery is None:
        from harness.plugins import discover

        discovery = discover()
        backends = sorted(reg.backends) if reg is not None else []
    else:
        discovery, backends = reg.discovery, sorted(reg.backends)
    doc = listing(discovery, backends, dict(reg.nemesis_sequences) if reg is not None else None)
    click.echo(json.dumps(doc, indent=1) if as_json else _text(doc))
    failed = any("error" in r for r in doc["plugins"])
    ctx.exit(EXIT_BAD_INPUT if failed else 0)
