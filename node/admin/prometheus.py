"""``/metrics``: Prometheus text format through ``prometheus_client``, from one admin view.

A registry per admin server (no global state); a scrape builds every family
from a fresh ``admin_view()`` snapshot and the node's own counters
(``node.metrics``, fed by the shell's hooks). Only numbers the node really
has are exported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, exposition, generate_latest
from prometheus_client.metrics_core import Metric

from node.admin import four_letter
from node.admin.peers import RoleTracker, ensemble_view
from node.metrics import NodeMetrics
from node.wire import protocol as P

# generate_latest writes the classic text format 0.0.4; newer prometheus_client versions call it by this name
METRICS_CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", CONTENT_TYPE_LATEST)


class PromWriter:
    """Accumulates metric families as ``prometheus_client`` metrics, built from one admin view."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[str, dict, float]]) -> None:
        # prometheus_client names a counter family without its _total (it adds it back when rendering)
        base = name.removesuffix("_total") if kind == "counter" else name
        metric = Metric(base, help_text, kind)
        for suffix, labels, value in samples:
            metric.add_sample(name + suffix, {k: str(v) for k, v in labels.items()}, float(value))
        self.metrics.append(metric)

    def gauge(self, name: str, help_text: str, value: float, labels: dict | None = None) -> None:
        self.family(name, "gauge", help_text, [("", labels or {}, value)])

    def counter(self, name: str, help_text: str, value: float, labels: dict | None = None) -> None:
        self.family(name, "counter", help_text, [("", labels or {}, value)])


class ViewCollector:
    """A ``prometheus_client`` collector that builds every family from a fresh admin view when scraped.

    Each admin server owns a :class:`CollectorRegistry` holding one of these
    (no process-global registry: two nodes in one process never mix).
    """

    def __init__(self, families: Callable[[], list[Metric]]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families()


def new_registry(families: Callable[[], list[Metric]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ViewCollector(families))
    return registry


def render_metrics(
    view: four_letter.AdminView,
    server: Any,
    inst: NodeMetrics | None,
    roles: RoleTracker,
    http_counts: dict[tuple[str, int], int],
) -> str:
    """Prometheus text (prometheus_client's exposition): only numbers the node has or that were measured here."""
    return generate_latest(new_registry(lambda: metric_families(view, server, inst, roles, http_counts))).decode()


def metric_families(
    view: four_letter.AdminView,
    server: Any,
    inst: NodeMetrics | None,
    roles: RoleTracker,
    http_counts: dict[tuple[str, int], int],
) -> list[Metric]:
    """Every metric family of ``/metrics``, from one admin view."""
    w = PromWriter()
    ens = ensemble_view(server, view)
    w.gauge(
        "squall_info",
        "Constant 1; labels carry the version and the current role.",
        1,
        {"version": four_letter.VERSION_LINE, "role": str(ens["mode"])},
    )
    w.gauge("squall_up_seconds", "Seconds since the node's server started.", round(view.uptime_s, 3))
    w.gauge("squall_znodes", "Znodes in the tree (ZooKeeper's zk_znode_count).", view.node_count)
    w.gauge("squall_sessions", "Live sessions (global).", len(view.session_timeouts))
    w.gauge("squall_connections", "Open client connections.", len(view.connections))
    w.gauge("squall_watches", "Registered watches (all kinds).", view.watch_count)
    w.gauge("squall_watched_paths", "Distinct watched paths.", view.watched_paths)
    w.gauge("squall_ephemerals", "Ephemeral znodes.", view.ephemerals_count)
    w.gauge("squall_outstanding_requests", "Requests waiting for their reply.", view.outstanding)
    w.gauge("squall_last_zxid", "Newest applied zxid.", view.zxid)
    w.gauge("squall_epoch", "Current epoch (high 32 bits of the zxid).", view.zxid >> 32)
    w.counter("squall_packets_sent_total", "Packets sent to clients since start.", view.sent)
    w.counter("squall_fsyncs_total", "Write-ahead log fsyncs since start.", view.fsyncs)
    if inst is not None:
        txn_names = sorted(inst.txns)
        w.family(
            "squall_txns_total",
            "counter",
            "Write transactions handed to the replica, by operation (failed ones such as a bad version included).",
            [("", {"op": n}, inst.txns[n]) for n in txn_names],
        )
        samples = []
        for n in sorted(inst.write_latency):
            samples += inst.write_latency[n].samples({"op": n})
        w.family(
            "squall_write_latency_seconds",
            "histogram",
            "Write request latency inside the node: arrival until the reply is released, after the fsync "
            "that made it durable.",
            samples,
        )
        w.family(
            "squall_fsync_latency_seconds",
            "histogram",
            "Duration of each write-ahead log write+fsync.",
            inst.fsync.samples({}),
        )
    stats = getattr(server, "request_stats", None)
    if stats:
        names = {op: P.OP_NAMES.get(op, str(op)) for op in list(stats)}
        ops = sorted(names, key=lambda op: names[op])
        w.family(
            "squall_requests_total",
            "counter",
            "Client requests received, by operation.",
            [("", {"op": names[op]}, stats[op][0]) for op in ops],
        )
        timed = [op for op in ops if stats[op][1] > 0]
        if timed:
            w.family(
                "squall_request_handling_seconds",
                "summary",
                "Time spent handling requests on the event loop, by operation (a read: until its "
                "reply is computed; a write: until it is handed to the replica).",
                [
                    sample
                    for op in timed
                    for sample in (
                        ("_sum", {"op": names[op]}, round(stats[op][1], 6)),
                        ("_count", {"op": names[op]}, stats[op][0]),
                    )
                ],
            )
    w.counter(
        "squall_role_changes_total",
        "Role/leader/epoch changes seen by the admin sampler since start.",
        roles.role_changes,
    )
    w.family(
        "squall_admin_http_requests_total",
        "counter",
        "Admin HTTP requests served, by route and status.",
        [("", {"route": r, "status": str(s)}, n) for (r, s), n in sorted(http_counts.items())],
    )
    return w.metrics


__all__ = ["METRICS_CONTENT_TYPE", "PromWriter", "ViewCollector", "metric_families", "new_registry", "render_metrics"]
