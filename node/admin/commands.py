"""The AdminServer's commands as JSON, named and keyed as ZooKeeper 3.8's ``/commands/<name>``.

Each command has ZooKeeper's primary name and its aliases (``/commands/mntr``
answers as ``monitor``, with ``"command": "monitor"``, as ZooKeeper does).
Every answer is built from the server's :class:`~node.admin.four_letter.AdminView`
snapshot (the one the four-letter words render) and carries ``command`` and
``error``. Keys are ZooKeeper's; a key ZooKeeper has but this node cannot fill
truthfully (TLS counters, response-buffer sizes, ``interest_ops``, ...) is left
out rather than faked: ``docs/webui.md`` lists them. ``ensemble`` is squall's
own (the ensemble page's data). ZooKeeper's state-changing GETs
(``stat_reset``, ``connection_stat_reset``, ``set_trace_mask``) are not
offered over HTTP: the four-letter words ``srst``/``crst`` do it.

The 4lw whitelist does not apply here, as in ZooKeeper: the AdminServer has its
own switch (``--admin-port``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node.admin import four_letter
from node.admin.four_letter import AdminView

# primary name -> aliases, as ZooKeeper 3.8's org.apache.zookeeper.server.admin.Commands
COMMANDS: dict[str, tuple[str, ...]] = {
    "configuration": ("conf", "config"),
    "connections": ("cons",),
    "dirs": (),
    "dump": (),
    "environment": ("env", "envi"),
    "is_read_only": ("isro",),
    "leader": ("lead",),
    "monitor": ("mntr",),
    "ruok": (),
    "server_stats": ("srvr",),
    "stats": ("stat",),
    "watch_summary": ("wchs",),
    "watches": ("wchc",),
    "watches_by_path": ("wchp",),
    "ensemble": (),  # squall's own
}
ALIASES = {alias: name for name, aliases in COMMANDS.items() for alias in (name, *aliases)}


def resolve(name: str) -> str | None:
    """The primary name for a command name or alias; None when unknown."""
    return ALIASES.get(name)


def _number(value: str) -> Any:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def monitor(view: AdminView) -> dict:
    """mntr's keys without the ``zk_`` prefix, numbers as numbers (ZooKeeper's ``monitor``)."""
    out = {}
    for line in four_letter.answer("mntr", view).splitlines():
        key, _, value = line.partition("\t")
        out[key.removeprefix("zk_")] = _number(value)
    return out


def _server_stats(view: AdminView) -> dict:
    return {
        "version": four_letter.VERSION_LINE,
        "read_only": False,
        "server_stats": {
            "packets_sent": view.sent,
            "packets_received": view.received,
            "data_dir_size": view.data_dir_size,
            "log_dir_size": view.log_dir_size,
            "server_state": view.mode,
            "last_processed_zxid": view.zxid,
            "outstanding_requests": view.outstanding,
            "avg_latency": round(view.latency_avg_ms, 4),
            "max_latency": round(view.latency_max_ms),
            "min_latency": round(view.latency_min_ms),
            "num_alive_client_connections": len(view.connections),
            "uptime": int(view.uptime_s * 1000),
        },
        "node_count": view.node_count,
    }


def _connection(c: four_letter.ConnectionInfo, full: bool) -> dict:
    out: dict[str, Any] = {
        "remote_socket_address": c.address,
        "outstanding_requests": c.queued,
        "packets_received": c.received,
        "packets_sent": c.sent,
    }
    if full:
        out.update({"session_id": c.session_id, "session_timeout": c.timeout_ms, "last_zxid": c.last_zxid})
    return out


def _configuration(server: Any) -> dict:
    cfg = server.cfg
    data = str(cfg.data_dir)
    return {
        "client_port": cfg.port,
        "data_dir": data,
        "data_log_dir": data,
        "tick_time": cfg.tick_ms,
        "max_client_cnxns": cfg.max_client_cnxns,
        "min_session_timeout": cfg.min_timeout_ms,
        "max_session_timeout": cfg.max_timeout_ms,
        "server_id": cfg.server_id,
    }


def _leader(server: Any, view: AdminView, ensemble: Callable[[], dict]) -> dict:
    if view.mode == "standalone":
        return {"error": "server is not initialized"}  # ZooKeeper's answer on a standalone server
    ens = ensemble()
    leader = ens.get("leader")
    if not leader:
        return {"error": "no leader is known (an election is under way)"}
    address = next((p.get("address", "") for p in ens.get("peers", []) if p.get("id") == leader), "")
    return {"is_leader": leader == ens.get("server_id"), "leader_id": leader, "leader_ip": address.rpartition(":")[0]}


def command_json(name: str, view: AdminView, server: Any, ensemble: Callable[[], dict]) -> dict:
    """One command (a primary name; see :func:`resolve`) as ZooKeeper's JSON object."""
    out: dict[str, Any]
    if name == "ruok":
        out = {}
    elif name == "is_read_only":
        out = {"read_only": False}
    elif name == "server_stats":
        out = _server_stats(view)
    elif name == "stats":
        out = {
            **_server_stats(view),
            "connections": [_connection(c, False) for c in view.connections],
            "secure_connections": [],
        }  # no TLS port here
    elif name == "connections":
        out = {"connections": [_connection(c, True) for c in view.connections], "secure_connections": []}
    elif name == "monitor":
        out = monitor(view)
    elif name == "configuration":
        out = _configuration(server)
    elif name == "dirs":
        out = {"datadir_size": view.data_dir_size, "logdir_size": view.log_dir_size}
    elif name == "dump":
        out = {
            "session_id_to_ephemeral_paths": {str(s): sorted(p) for s, p in view.ephemerals.items()},
            "session_timeouts": {str(s): t for s, t in view.session_timeouts.items()},
        }  # squall's
    elif name == "environment":
        out = dict(line.partition("=")[::2] for line in four_letter.answer("envi", view).splitlines()[1:])
    elif name == "watch_summary":
        out = {
            "num_connections": len(view.connections),
            "num_paths": view.watched_paths,
            "num_total_watches": view.watch_count,
        }
    elif name == "watches":
        out = {"session_id_to_watched_paths": {str(s): sorted(p) for s, p in view.watches_by_session.items()}}
    elif name == "watches_by_path":
        out = {"path_to_session_ids": {p: sorted(ss) for p, ss in view.watches_by_path.items()}}
    elif name == "leader":
        out = _leader(server, view, ensemble)
    elif name == "ensemble":
        out = ensemble()
    else:
        raise KeyError(name)
    return {**out, "command": name, "error": out.pop("error", None)}
