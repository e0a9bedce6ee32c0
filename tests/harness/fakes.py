"""In-process fakes of the cluster side (backend, cluster, db, workload,
nemesis) so the runtime can be tested without real nodes.

The fake workload is a grow-only set: ``add`` unique ints, a final ``read``;
its checker says invalid when an acknowledged add is missing from the final
read. ``lose_writes=True`` makes the fake database acknowledge adds every
third of which it then forgets: the gate must turn that into exit 1.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from checkers.result import Result
from harness.backends.base import SetupError
from harness.clock import VirtualClock
from harness.dbs.base import DBBase, NodeStatus
from harness.registry import Registry


class FakeDB(DBBase):
    """The database the fake backend pretends to run: no process of its own
    (FakeBackend makes the cluster) and no clients (the fake workload brings
    its own), but the test-only fault the fake honours."""

    peer_kinds = ("peer",)
    unsafe_faults = ("lose-writes",)

    def __init__(self, name: str) -> None:
        self.name = name


class FakeCluster:
    def __init__(
        self, nodes: list[str], run_dir: Path, spawn: bool = False, lose_writes: bool = False, fail_ready: bool = False
    ) -> None:
        self.nodes = list(nodes)
        self.run_dir = Path(run_dir)
        self.lock = threading.Lock()
        self.data: set[int] = set()
        self.lose_writes = lose_writes
        self.fail_ready = fail_ready
        self.faults: list[str] = []
        self.torn_down = 0
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []
        if spawn:
            self._spawn()

    def _spawn(self) -> None:
        """One child process per node, each listening on a port, like real nodes."""
        code = (
            "import socket,sys,time\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True)\n"
            "time.sleep(600)\n"
        )
        for _ in self.nodes:
            p = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
            )
            self.procs.append(p)
            self.ports.append(int(p.stdout.readline()))
        (self.run_dir / "fake-cluster.txt").write_text(
            " ".join(str(p.pid) for p in self.procs) + "\n" + " ".join(map(str, self.ports)) + "\n"
        )

    # Cluster protocol
    def client_address(self, node: str) -> str:
        return f"127.0.0.1:{10000 + self.nodes.index(node)}"

    def connect_string(self, nodes=None) -> str:
        return ",".join(self.client_address(n) for n in (nodes or self.nodes))

    def wait_ready(self, timeout_s: float) -> None:
        if self.fail_ready:
            raise SetupError(f"cluster not ready: fake refuses; node logs are under {self.run_dir / 'nodes'}")

    def node_status(self, node: str) -> NodeStatus:
        return NodeStatus("standalone", True)

    def collect_logs(self, dest_dir: Path) -> list[Path]:
        dest_dir.mkdir(parents=True, exist_ok=True)
        out = []
        for n in self.nodes:
            p = dest_dir / f"{n}.log"
            p.write_text(f"fake log of {n}\n")
            out.append(p)
        return out

    def teardown(self) -> None:
        self.torn_down += 1
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            if p.stdout:
                p.stdout.close()

    # FaultTarget
    def drop(self, src, dst):
        self.faults.append(f"drop {src}->{dst}")

    def heal(self):
        self.faults.append("heal")

    def pause(self, node):
        self.faults.append(f"pause {node}")

    def resume(self, node):
        self.faults.append(f"resume {node}")

    def kill(self, node):
        self.faults.append(f"kill {node}")

    def start(self, node):
        self.faults.append(f"start {node}")

    def leader(self):
        return self.nodes[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()


class FakeBackend:
    name = "fake"

    def __init__(
        self, spawn: bool = False, lose_writes: bool = False, fail_ready: bool = False, fail_create: bool = False
    ) -> None:
        self.kw = dict(spawn=spawn, lose_writes=lose_writes, fail_ready=fail_ready)
        self.fail_create = fail_create
        self.clusters: list[FakeCluster] = []

    def create(self, spec, db, run_dir) -> FakeCluster:
        if self.fail_create:
            raise SetupError(f"node n1 is not running (exit code 1); its log is {run_dir}/nodes/n1/n1.log")
        kw = dict(self.kw)
        if spec.option_dict.get("unsafe_db_fault") == "lose-writes":
            kw["lose_writes"] = True
        c = FakeCluster(list(spec.nodes), run_dir, **kw)
        self.clusters.append(c)
        return c


class FakeClient:
    def __init__(self, workload: FakeSetWorkload) -> None:
        self.w = workload
        self.cluster: FakeCluster | None = None
        self.node = None
        self.closed = False

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.node = node
        self.hosts = hosts
        self.cluster = self.w.backend.clusters[-1]
        with self.w.lock:
            self.w.opened += 1

    def invoke(self, op: dict) -> dict:
        w = self.w
        c = self.cluster
        if w.on_invoke is not None:
            w.on_invoke(op)
        if op["f"] == "add":
            v = op["value"]
            with c.lock:
                if not (c.lose_writes and v % 3 == 0):
                    c.data.add(v)
            if v % 7 == 0:  # an indeterminate op: the runner must retire the process
                return {"type": "info", "value": v, "error": "connection loss (fake)", "zxid": None}
            # the server a roaming client is on: the first of its hosts
            return {"type": "ok", "value": v, "error": None, "zxid": v, "server": self.hosts.split(",")[0]}
        if op["f"] == "read":
            if w.failing_reads > 0:
                w.failing_reads -= 1
                return {"type": "fail", "value": None, "error": "not-connected (fake)", "zxid": None}
            with c.lock:
                return {"type": "ok", "value": sorted(c.data), "error": None, "zxid": None}
        return {"type": "fail", "value": op.get("value"), "error": f"unknown f {op['f']}", "zxid": None}

    def close(self) -> None:
        self.closed = True


class FakeSetWorkload:
    name = "set"
    final_each_thread = False

    def __init__(self, backend: FakeBackend, check_raises: bool = False, on_invoke=None) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.opened = 0
        self.check_raises = check_raises
        self.on_invoke = on_invoke
        self.setup_hosts = None
        self.failing_reads = 0

    def setup(self, hosts: str) -> None:
        self.setup_hosts = hosts

    def client(self) -> FakeClient:
        return FakeClient(self)

    def ops(self, rng, thread=0, threads=1):
        # this slot's adds: thread + 1, thread + 1 + threads, ... (unique across slots)
        return ({"f": "add", "value": i} for i in itertools.count(thread + 1, threads))

    def final_ops(self):
        return [{"f": "read", "value": None}]

    def check(self, history) -> Result:
        if self.check_raises:
            raise RuntimeError("checker bug (fake)")
        ok_adds = {op.value for op in history if op.f == "add" and op.type == "ok"}
        reads = [op.value for op in history if op.f == "read" and op.type == "ok"]
        if not reads:
            return Result.unknown("fake-set", "no final read")
        final = set(reads[-1])
        lost = sorted(ok_adds - final)
        if lost:
            return Result.illegal(
                "fake-set",
                f"{len(lost)} acknowledged adds lost",
                f"lost acknowledged adds: {lost[:20]}",
                {"lost": lost},
            )
        return Result.ok("fake-set", f"all {len(ok_adds)} acknowledged adds present", {"final": sorted(final)})


class FakeNemesis:
    def __init__(self) -> None:
        self.invoked: list[dict] = []
        self.setups = 0
        self.teardowns = 0

    def setup(self, target) -> None:
        self.setups += 1

    def invoke(self, target, op: dict) -> dict:
        self.invoked.append(op)
        if op["f"] == "start-partition":
            target.drop("n1", "n2")
            return {"type": "info", "value": "isolated n1"}
        target.heal()
        return {"type": "info", "value": "healed"}

    def teardown(self, target) -> None:
        self.teardowns += 1


class FakePackage:
    def __init__(self, interval_s: float) -> None:
        self.nemesis = FakeNemesis()
        self.interval_s = interval_s

    def ops(self, rng):
        return itertools.cycle([{"f": "start-partition", "value": "n1|n2,n3"}, {"f": "stop-partition", "value": None}])

    def final_ops(self):
        return [{"f": "stop-partition", "value": None}]


def fake_registry(spawn: bool = False, virtual_time: bool = True, **backend_kw: Any) -> Registry:
    """A registry of fakes; ``--unsafe-db-fault lose-writes`` makes the fake lose adds.

    Runs go by a ``VirtualClock`` (a run of fakes takes no real time) unless
    ``virtual_time=False``: a test that signals a running ``squall`` needs
    the run to last in real time."""
    backend = FakeBackend(spawn=spawn, **backend_kw)
    return Registry(
        backends={"local": lambda o: backend},
        dbs={"squall": lambda o: FakeDB("squall"), "zookeeper": lambda o: FakeDB("zookeeper")},
        workloads={"set": lambda o: FakeSetWorkload(backend), "register": lambda o: FakeSetWorkload(backend)},
        nemesis_faults=("partition", "pause", "kill"),
        nemesis_package=lambda faults, interval, rng: FakePackage(interval),
        default_nodes={"squall": lambda: 3},
        unsafe_db_faults=("lose-writes",),
        clock=VirtualClock if virtual_time else None,
    )
