"""The bundled node (``python -m node``) as a harness database.

Standalone: ``python -m node --data-dir D --host 127.0.0.1 --port P``.
The node speaks ZooKeeper's client protocol, so status (``srvr``), the
workload clients (kazoo) and the converge phase's snapshots are the ones it
shares with Apache ZooKeeper (``harness/dbs/zk/``).
Ensemble (once the node's CLI accepts ``--peers``): every node also gets
``--id i`` (or ``--server-id i`` if that is the node's spelling) and
``--peers 1=host:client:peer,2=...``, where the entry for
each OTHER node names the proxy dedicated to the link (this -> other), so
the harness's partitions cut it; the node's own entry has its real ports.

Until the node supports ``--peers``, asking for more than one node fails
setup with a message saying so (rather than silently running one).

TEST ONLY: ``--unsafe-db-fault NAME`` (the option ``unsafe_db_fault``) starts
every node with ``--unsafe-test-fault NAME``: a deliberately broken database
(see ``node/faults.py``) for proving the checkers catch it.

TEST ONLY: ``--failpoint NAME=ACTION`` (the option ``failpoints``,
comma-separated; ``node/failpoints.py``): ``prepare`` starts every node with
``--failpoint-http 127.0.0.1:PORT`` (its election port, which the squall node
does not otherwise use), and :meth:`SquallDB.arm_failpoints` arms the points
in every node through that API once the cluster is ready, when the main phase
begins, and disarms them when it ends (the heal: recovery and the final
reads see a healthy cluster, as after every other fault). Armed at process
start instead, a point that crashes members (panic, an fsync error) would
fail the setup; and a member restarted during the run
(kill, disk, or after its own panic) comes back unarmed, a new process as
under gofail's HTTP arming, so a `1*panic` costs each member one crash rather
than a crash at every restart.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness.dbs.base import DBBase, HostNeeds, NodeContext, NodeLaunch, SetupError
from harness.dbs.zk import SNAP_COUNT, ZooKeeperProtocol


@functools.lru_cache(maxsize=1)
def node_help(python: str = sys.executable) -> str:
    """``python -m node --help`` (cached: the CLI does not change mid-run)."""
    try:
        out = subprocess.run([python, "-m", "node", "--help"], capture_output=True, text=True, timeout=30)
        return out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"


def supports_ensemble(help_text: str) -> bool:
    return "--peers" in help_text


def peers_arg(node: NodeContext) -> str:
    """``1=host:client:peer,...``: the node's own entry names its host and real
    ports; other nodes' peer ports are what it must dial (on the local
    backend, the link's proxy), their client ports the real ones (clients are
    not proxied)."""
    parts = []
    ports = node.ports
    for i, other in enumerate(node.nodes, start=1):
        if other == node.name:
            parts.append(f"{i}={node.host}:{ports.client}:{ports.peer}")
        else:
            host, peer, _ = ports.peer_addresses[other]
            client = ports.client_ports.get(other, 0)
            parts.append(f"{i}={host}:{client}:{peer}")
    return ",".join(parts)


HARNESS_WORDS = "ruok,srvr,mntr"

# The node's test-only deliberate bugs (node/faults.py), for --unsafe-db-fault.
UNSAFE_FAULTS = (
    "lose-writes",
    "stale-reads",
    "sync-no-wait",
    "stale-reconnect",
    "drop-watch-events",
    "multi-partial",
    "diverge",
    "skip-fsync",
    "idempotent-delete",
    "local-version-check",
    "stale-read-cache",
    "throttle-leak",
    # the selftest catalogue's (harness/selftest_catalogue.py)
    "commit-without-quorum",
    "vote-ignores-log",
    "heartbeat-commit-beyond-match",
    "read-index-no-quorum",
    "recovery-truncates-last-entry",
    "late-watch-events",
    "setwatches-ignored",
    "multi-version-off-by-one",
    "disconnect-drops-ephemerals",
    "sequence-from-child-count",
    "forwards-reversed",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SquallDB(ZooKeeperProtocol, DBBase):
    name = "squall"
    peer_kinds = ("peer",)
    unsafe_faults = UNSAFE_FAULTS

    def __init__(
        self,
        python: str | None = None,
        extra_args: list[str] | None = None,
        unsafe_fault: str | None = None,
        failpoints: tuple[str, ...] = (),
    ) -> None:
        self.python = python or sys.executable
        self.extra_args = list(extra_args or [])
        if unsafe_fault and unsafe_fault not in UNSAFE_FAULTS:
            raise SetupError(f"unknown squall test fault {unsafe_fault!r}; allowed: {', '.join(UNSAFE_FAULTS)}")
        self.unsafe_fault = unsafe_fault or None
        self.failpoints = tuple(failpoints)
        self._failpoint_ports: dict[str, int] = {}  # node -> its failpoint API port

    def host_needs(self) -> HostNeeds:
        return HostNeeds(project=True)  # python -m node, from the squall distribution

    def prepare(self, node: NodeContext) -> NodeLaunch:
        help_text = node_help(self.python)
        if "--data-dir" not in help_text:
            raise SetupError(
                "the squall node cannot be started: `python -m node --help` does not offer "
                f"--data-dir (is node/cli.py there yet?). It said: {help_text[:300]!r}"
            )
        ports = node.ports
        argv = [
            node.python if not node.local else self.python,
            "-m",
            "node",
            "--data-dir",
            node.path("data"),
            "--host",
            node.listen_host,
            "--port",
            str(ports.client),
        ]
        # Same tuning as the ZooKeeper db: 1 s ticks (session timeouts 2-20 s,
        # fitting the workloads' 3-5 s kazoo timeouts), and no per-address
        # connection cap (every harness client comes from 127.0.0.1).
        if "--tick-ms" in help_text:
            argv += ["--tick-ms", "1000"]
        if "--max-client-cnxns" in help_text:
            argv += ["--max-client-cnxns", "0"]
        # The words the harness asks (srvr: roles and readiness) and the ones the node's
        # own ensemble view asks its peers (mntr); ZooKeeper 3.8's default would answer srvr only.
        if "--4lw-whitelist" in help_text:
            argv += ["--4lw-whitelist", HARNESS_WORDS]
        # Snapshots within a campaign (harness.dbs.zk.SNAP_COUNT).
        if "--snapshot-every" in help_text:
            argv += ["--snapshot-every", str(SNAP_COUNT)]
        if len(node.nodes) > 1:
            if not supports_ensemble(help_text):
                raise SetupError(
                    f"the squall node's ensemble is not available yet (`python -m node` has no "
                    f"--peers option), so --nodes {len(node.nodes)} cannot run; use --nodes 1 "
                    "or --db zookeeper"
                )
            # The agreed flag is --id; the node may spell it --server-id.
            id_flag = "--id" if re.search(r"--id\b", help_text) else "--server-id"
            argv += [id_flag, str(node.index), "--peers", peers_arg(node)]
        if self.unsafe_fault:
            argv += ["--unsafe-test-fault", self.unsafe_fault]
        if self.failpoints:
            argv += ["--failpoint-http", f"127.0.0.1:{ports.election}"]
            self._failpoint_ports[node.name] = ports.election
        argv += self.extra_args
        env = {"PYTHONUNBUFFERED": "1"}
        if node.local:
            # -m node must resolve to this checkout's node package.
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return NodeLaunch(argv=argv, env=env, dirs=("data",), log=f"{node.name}.log")

    def arm_failpoints(self, cluster: Any) -> list[str]:
        """Arm ``self.failpoints`` in every node through its failpoint API; the lines armed.

        Raises SetupError naming the node and the node's answer when one refuses."""
        done = []
        for node in cluster.nodes:
            port = self._failpoint_ports.get(node)
            if port is None:
                raise SetupError(
                    f"node {node} was started without its failpoint API; cannot arm {', '.join(self.failpoints)}"
                )
            for spec in self.failpoints:
                name, _, action = spec.partition("=")
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/{name.strip()}", data=action.strip().encode(), method="PUT"
                )
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        resp.read()
                except urllib.error.HTTPError as exc:
                    body = exc.read().decode("utf-8", "replace").strip()
                    raise SetupError(f"node {node} refused failpoint {spec}: {body or exc}") from None
                except OSError as exc:
                    raise SetupError(f"cannot arm failpoint {spec} in node {node} (127.0.0.1:{port}): {exc}") from None
                done.append(f"{node}: {spec}")
        return done

    def disarm_failpoints(self, cluster: Any) -> list[str]:
        """Disarm every failpoint in every node that answers; the nodes disarmed.

        A node that is down (killed, or dead of its own panic) has none armed: it is skipped."""
        done = []
        for node in cluster.nodes:
            port = self._failpoint_ports.get(node)
            if port is None:
                continue
            ok = True
            for spec in self.failpoints:
                name = spec.partition("=")[0].strip()
                req = urllib.request.Request(f"http://127.0.0.1:{port}/{name}", method="DELETE")
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        resp.read()
                except OSError:
                    ok = False  # down, or paused past the timeout: a restart comes back unarmed anyway
            if ok:
                done.append(node)
        return done

    def supported_node_counts(self) -> tuple[int, ...]:
        # The node's peer list accepts 1, 3 or 5 members (node/peer.py): an
        # even ensemble tolerates no more failures than the odd one below it.
        return (1, 3, 5)

    def default_node_count(self) -> int:
        """3 once the node's ensemble exists (it offers --peers), else 1."""
        return 3 if supports_ensemble(node_help(self.python)) else 1


def make(options: dict[str, Any] | None = None) -> SquallDB:
    options = options or {}
    fault = options.get("unsafe_db_fault")
    fps = tuple(f for f in str(options.get("failpoints") or "").split(",") if f)
    return SquallDB(unsafe_fault=str(fault) if fault else None, failpoints=fps)
