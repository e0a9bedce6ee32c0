"""Seeds replay (issue 11, item 3): the nemesis and every client slot draw
from their own random streams, so two runs with the same seed invoke the same
faults (with the same targets) and, slot by slot, the same client ops,
however the threads' timing interleaves. The in-memory runs go by a
``VirtualClock``: each call takes a random (unseeded) latency of simulated
time, so the interleaving differs from run to run at no cost in real time."""

from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest

from checkers.history import INVOKE, NEMESIS
from harness import generator as gen
from harness import store
from harness.clock import VirtualClock
from harness.runner import run_test
from harness.spec import TestSpec, stream_rng
from nemesis.package import package
from tests.harness.fakes import FakeBackend
from workloads.register import RegisterWorkload

_jitter = random.Random()  # deliberately unseeded: each run's timing differs


class _MemClient:
    def __init__(self, store_: _MemRegister) -> None:
        self.s = store_

    def open(self, hosts, node, timeout_s):
        pass

    def close(self):
        pass

    def invoke(self, op):
        self.s.clock.sleep(_jitter.uniform(0, 0.01))
        f, (k, arg) = op["f"], op["value"]
        with self.s.lock:
            cur = self.s.data.get(k)
            if f == "read":
                return {"type": "ok", "value": [k, cur]}
            if f == "write":
                self.s.data[k] = arg
                # some writes come back indeterminate: the process retires, the slot goes on
                return {"type": "info" if arg % 11 == 0 else "ok", "value": [k, arg]}
            old, new = arg
            if cur != old:
                return {"type": "fail", "value": [k, arg], "error": "cas-mismatch"}
            self.s.data[k] = new
            return {"type": "ok", "value": [k, arg]}


class _MemRegister(RegisterWorkload):
    """The register workload's real op source over an in-memory register."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(keys=2, ops_per_key=20)
        self.clock = clock
        self.converge_paths = ()  # one in-memory register: no nodes to compare at the end
        self.data: dict = {}
        self.lock = threading.Lock()

    def setup(self, hosts):
        pass

    def client(self):
        return _MemClient(self)


def _run(tmp_path, seed: int):
    spec = TestSpec(
        name=f"seed-{seed}",
        nodes=("n1", "n2", "n3"),
        workload="register",
        nemesis=("partition", "kill"),
        nemesis_interval_s=0.25,
        time_limit_s=1.5,
        concurrency=4,
        rate=80.0,
        seed=seed,
    )
    backend = FakeBackend()
    pkg = package(list(spec.nemesis), spec.nemesis_interval_s, stream_rng(seed, "nemesis"))
    run_dir = store.new_run_dir(tmp_path, spec.name)
    clock = VirtualClock()
    outcome = run_test(spec, backend, object(), _MemRegister(clock), pkg, run_dir, clock=clock)
    assert clock.stalls == 0
    assert outcome.valid is True, outcome.summary
    history = store.read_history(run_dir)
    per_slot: dict[int, list] = defaultdict(list)
    for op in history:
        if op.type == INVOKE and op.process != NEMESIS:
            per_slot[op.process % spec.concurrency].append((op.f, op.value))
    faults = [(op.type, op.f, op.value) for op in history if op.process == NEMESIS]
    infos = sum(1 for op in history if op.type == "info" and op.process != NEMESIS)
    return per_slot, faults, backend.clusters[0].faults, infos


def _common_prefix_equal(a: list, b: list) -> int:
    n = min(len(a), len(b))
    assert a[:n] == b[:n]
    return n


def test_two_runs_with_the_same_seed_replay_op_by_op(tmp_path):
    slots1, faults1, applied1, infos1 = _run(tmp_path / "a", 7)
    slots2, faults2, applied2, infos2 = _run(tmp_path / "b", 7)
    assert sorted(slots1) == sorted(slots2) == [0, 1, 2, 3]
    for s in slots1:
        assert _common_prefix_equal(slots1[s], slots2[s]) >= 5, f"slot {s} ran too few ops to compare"
    assert infos1 + infos2 > 0  # processes were retired on the way, and their slots went on the same
    # the fault schedule: the same ops, the same shapes and targets, applied to the same links and nodes
    assert _common_prefix_equal(faults1, faults2) >= 4
    _common_prefix_equal(applied1, applied2)
    # and the comparison can fail: another seed gives other ops
    slots3, faults3, _, _ = _run(tmp_path / "c", 8)
    assert any(slots3[s][:5] != slots1[s][:5] for s in slots1)


def test_each_slot_gives_every_slot_its_own_sequence_whatever_the_latencies():
    def make(slot):
        rng = random.Random(f"slot-{slot}")
        return gen.source({"f": "op", "value": (slot, rng.randrange(1000))} for _ in iter(int, 1))

    def sequences(latency):
        ops = gen.simulate(gen.clients(gen.Limit(60, gen.each_slot(3, make))), [0, 1, 2], latency=latency, seed=1)
        out = defaultdict(list)
        for o in ops:
            assert o.op["value"][0] == o.thread  # a thread draws from its own slot
            out[o.thread].append(o.op["value"])
        return out

    fast = sequences(0.01)
    skewed = sequences(lambda op: 0.001 if op["value"][0] == 0 else 0.05)
    for s in range(3):
        _common_prefix_equal(fast[s], skewed[s])
    assert len(skewed[0]) > len(fast[0])  # the timing did differ


def test_replay_refuses_the_flags_it_would_ignore(tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli
    from tests.harness.fakes import fake_registry

    results = str(tmp_path / "results")
    fast = ["--time-limit", "1", "--rate", "40", "--nemesis-interval", "0.3", "--concurrency", "3", "--seed", "9"]
    r = CliRunner().invoke(
        cli, ["run", "--workload", "set", "--results", results, "--no-progress"] + fast, obj=fake_registry()
    )
    assert r.exit_code == 0, r.output
    first = (tmp_path / "results" / "latest").resolve()
    for extra, named in ((["--seed", "3"], "--seed"), (["--nodes", "5", "--workload", "lock"], "--workload, --nodes")):
        r = CliRunner().invoke(cli, ["run", "--replay", str(first), "--results", results] + extra, obj=fake_registry())
        assert r.exit_code != 0 and f"{named} would be ignored" in r.output, r.output
    r = CliRunner().invoke(
        cli,
        ["run", "--replay", str(first), "--results", results, "--no-progress", "--test-count", "1"],
        obj=fake_registry(),
    )
    assert r.exit_code == 0, r.output
    second = (tmp_path / "results" / "latest").resolve()
    assert second != first and (second / "test.json").read_text() == (first / "test.json").read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_two_real_runs_against_the_node_with_the_same_seed_replay(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}

    def one(name: str):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "run",
                "--db",
                "squall",
                "--nodes",
                "3",
                "--workload",
                "register",
                "--nemesis",
                "partition,kill",
                "--nemesis-interval",
                "1.5",
                "--time-limit",
                "6",
                "--seed",
                "21",
                "--name",
                name,
                "--no-progress",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        run_dir = (tmp_path / "results" / "latest").resolve()
        assert r.returncode in (0, 2), f"exit {r.returncode}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
        spec = json.loads((run_dir / "test.json").read_text())
        per_slot: dict[int, list] = defaultdict(list)
        faults = []
        for op in store.read_history(run_dir):
            if op.type != INVOKE:
                continue
            if op.process == NEMESIS:
                faults.append((op.f, op.value))
            elif isinstance(op.process, int):  # a client (not the harness's end-of-run converge reads)
                per_slot[op.process % spec["concurrency"]].append((op.f, op.value))
        return per_slot, faults

    slots1, faults1 = one("seed-a")
    slots2, faults2 = one("seed-b")
    assert sorted(slots1) == sorted(slots2)
    # Every slot's ops agree as far as both runs got; a slot whose client sat on a
    # killed node for a while (more likely on a loaded machine) may have run only a
    # few, so the evidence is counted over all slots.
    compared = {s: _common_prefix_equal(slots1[s], slots2[s]) for s in slots1}
    assert all(n >= 1 for n in compared.values()) and sum(compared.values()) >= 5 * len(compared), (
        f"too few ops to compare per slot: {compared}"
    )
    assert _common_prefix_equal(faults1, faults2) >= 2


def test_each_slot_ends_when_every_slot_is_exhausted_and_slots_follow_retired_processes():
    g = gen.each_slot(2, lambda s: [{"f": "op", "value": (s, i)} for i in range(3 if s == 0 else 1)])
    ops = gen.simulate(gen.clients(g), [0, 1], latency=0.01, seed=2)
    assert sorted(o.op["value"] for o in ops) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    # a thread whose process was retired (p + concurrency) still draws from its slot
    ctx = gen.Context(0.0, frozenset({0, 1}), frozenset({0}), {0: 2, 1: 1}, random.Random(0))
    op, _ = gen.each_slot(2, lambda s: [{"f": "op", "value": s}]).op(ctx)
    assert op["process"] == 2 and op["value"] == 0
