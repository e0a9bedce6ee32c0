"""The runner against in-process fakes of the cluster side.

Runs go by a ``VirtualClock`` (harness/clock.py): simulated time stands still
while a fake call runs and jumps ahead when nothing runs, so a run of a few
simulated seconds takes milliseconds and records the same schedule on a
fast or a loaded machine. A fake call that hangs on purpose waits inside
``clock.idle()``. Every assertion is about what was recorded, never about
how long something took.
"""

from __future__ import annotations

import itertools
import json

import pytest

from harness import store
from harness.clock import VirtualClock
from harness.runner import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_SETUP_FAILED,
    EXIT_UNKNOWN,
    EXIT_VALID,
    RunControl,
    run_test,
)
from harness.spec import TestSpec
from tests.harness.fakes import FakeBackend, FakePackage, FakeSetWorkload


def make_spec(**kw):
    base = dict(
        name="fake",
        nodes=("n1", "n2", "n3"),
        backend="local",
        db="squall",
        workload="set",
        nemesis=("partition",),
        nemesis_interval_s=0.3,
        time_limit_s=1.2,
        concurrency=3,
        rate=60.0,
        seed=5,
    )
    base.update(kw)
    return TestSpec(**base)


def run(tmp_path, backend=None, workload=None, package="default", control=None, clock=None, **kw):
    clock = clock or VirtualClock()
    backend = backend or FakeBackend()
    workload = workload or FakeSetWorkload(backend)
    spec = make_spec(**kw)
    if package == "default":
        package = FakePackage(spec.nemesis_interval_s)
    run_dir = store.new_run_dir(tmp_path / "results", spec.name)
    outcome = run_test(
        spec,
        backend,
        object(),
        workload,
        package,
        run_dir,
        control=control,
        results_root=tmp_path / "results",
        clock=clock,
    )
    assert clock.stalls == 0, "a fake call blocked without clock.idle()"
    return outcome, backend, workload, package


def test_a_valid_run_records_checks_and_stores_everything(tmp_path):
    outcome, backend, workload, package = run(tmp_path)
    assert outcome.exit_code == EXIT_VALID and outcome.valid is True
    d = outcome.run_dir
    for name in ("test.json", "history.jsonl", "results.json", "report.html", "junit.xml", "logs/n1.log"):
        assert (d / name).exists(), name
    assert (tmp_path / "results" / "latest").resolve() == d.resolve()
    assert TestSpec.load(d) == make_spec()
    assert json.loads((d / "results.json").read_text())["valid"] is True
    assert backend.clusters[0].torn_down >= 1
    assert workload.setup_hosts == backend.clusters[0].connect_string()


def test_history_is_well_formed_one_op_in_flight_per_process(tmp_path):
    outcome, *_ = run(tmp_path)
    history = store.read_history(outcome.run_dir)
    assert [op.index for op in history] == list(range(len(history)))
    assert all(a.time <= b.time for a, b in itertools.pairwise(history))
    open_ = {}
    for op in history:
        if op.type == "invoke":
            assert op.process not in open_, f"process {op.process} invoked twice without completing"
            open_[op.process] = op
        else:
            inv = open_.pop(op.process)
            assert inv.f == op.f
    assert not open_


def test_an_info_op_retires_its_process_for_a_fresh_one(tmp_path):
    outcome, _, workload, _ = run(tmp_path)
    history = store.read_history(outcome.run_dir)
    infos = [op for op in history if op.type == "info" and op.process != "nemesis"]
    assert infos, "the fake returns info for every 7th add"
    for op in infos:
        later = [o for o in history if o.index > op.index and o.process == op.process]
        assert later == [], f"retired process {op.process} was used again"
    procs = {op.process for op in history if op.process != "nemesis"}
    assert any(p >= 3 for p in procs)
    assert {p % 3 for p in procs} == {0, 1, 2}
    assert workload.opened == len(procs)  # a fresh client per process


def test_pinned_clients_are_spread_over_nodes_by_process(tmp_path):
    outcome, *_ = run(tmp_path, clients="pinned")
    for op in store.read_history(outcome.run_dir):
        if op.process != "nemesis":
            assert op.node == ("n1", "n2", "n3")[op.process % 3]


def test_roaming_clients_get_every_node_shuffled_per_process_and_record_their_server(tmp_path):
    from harness.runner import _ClientSlot
    from tests.harness.fakes import FakeCluster

    cluster = FakeCluster.__new__(FakeCluster)
    cluster.nodes = ["n1", "n2", "n3"]
    slot = _ClientSlot(None, cluster, cluster.nodes, 1.0, "roaming", seed=5)
    orders = {p: slot.hosts_for(p) for p in range(12)}
    assert all(sorted(h.split(",")) == sorted(cluster.connect_string().split(",")) for h in orders.values())
    assert len(set(orders.values())) > 1  # shuffled per process
    again = _ClientSlot(None, cluster, cluster.nodes, 1.0, "roaming", seed=5)
    assert orders == {p: again.hosts_for(p) for p in range(12)}  # seeded: the same run, the same order
    outcome, *_ = run(tmp_path, clients="roaming")
    history = store.read_history(outcome.run_dir)
    adds = [op for op in history if op.f == "add" and op.type == "ok"]
    assert adds and all(op.node in ("n1", "n2", "n3") for op in adds)
    assert all(op.node is None for op in history if op.type == "invoke" and op.process != "nemesis")


def test_the_nemesis_is_its_own_process_and_heals_at_the_end(tmp_path):
    outcome, backend, _, package = run(tmp_path)
    history = store.read_history(outcome.run_dir)
    nem = [op for op in history if op.process == "nemesis"]
    assert [op.type for op in nem[:2]] == ["invoke", "info"]
    assert nem[-1].f == "stop-partition" and nem[-1].type == "info"
    assert any(op.f == "start-partition" for op in nem)
    assert package.nemesis.setups == 1 and package.nemesis.teardowns == 1
    # the final read comes after the final heal
    read = [op for op in history if op.f == "read" and op.type == "ok"]
    assert read and read[0].index > nem[-1].index


def test_no_nemesis_means_no_nemesis_ops(tmp_path):
    outcome, *_ = run(tmp_path, package=None, nemesis=())
    assert outcome.exit_code == EXIT_VALID
    assert not [op for op in store.read_history(outcome.run_dir) if op.process == "nemesis"]


def test_lost_writes_make_the_run_invalid(tmp_path):
    outcome, *_ = run(tmp_path, backend=FakeBackend(lose_writes=True))
    assert outcome.exit_code == EXIT_INVALID and outcome.valid is False
    assert "lost" in (outcome.run_dir / "report.html").read_text()
    assert "<failure" in (outcome.run_dir / "junit.xml").read_text()


def test_a_crashing_checker_is_unknown_and_the_history_survives(tmp_path):
    backend = FakeBackend()
    outcome, *_ = run(tmp_path, backend=backend, workload=FakeSetWorkload(backend, check_raises=True))
    assert outcome.exit_code == EXIT_UNKNOWN
    assert store.read_history(outcome.run_dir)
    assert "checker bug" in (outcome.run_dir / "results.json").read_text()


def test_a_failed_setup_exits_4_names_the_log_and_tears_down(tmp_path):
    outcome, backend, *_ = run(tmp_path, backend=FakeBackend(fail_ready=True))
    assert outcome.exit_code == EXIT_SETUP_FAILED
    assert "node logs are under" in outcome.summary
    assert backend.clusters[0].torn_down >= 1
    assert json.loads((outcome.run_dir / "results.json").read_text())["status"] == "setup-failed"
    assert "<error" in (outcome.run_dir / "junit.xml").read_text()
    assert "node logs are under" in (outcome.run_dir / "report.html").read_text()


def test_a_failed_create_exits_4(tmp_path):
    outcome, *_ = run(tmp_path, backend=FakeBackend(fail_create=True))
    assert outcome.exit_code == EXIT_SETUP_FAILED and "its log is" in outcome.summary


def test_an_interrupt_stops_tears_down_and_keeps_the_history(tmp_path):
    control = RunControl()
    backend = FakeBackend()
    seen = []

    def on_invoke(op):
        seen.append(op)
        if len(seen) == 10:
            control.interrupt("SIGINT")

    outcome, *_ = run(
        tmp_path,
        backend=backend,
        workload=FakeSetWorkload(backend, on_invoke=on_invoke),
        control=control,
        time_limit_s=60,
    )
    assert outcome.exit_code == EXIT_INTERRUPTED and outcome.interrupted
    history = store.read_history(outcome.run_dir)
    assert len(history) >= 20
    assert backend.clusters[0].torn_down >= 1
    assert json.loads((outcome.run_dir / "results.json").read_text())["status"] == "interrupted"


def test_an_interrupt_during_setup_still_tears_down(tmp_path):
    control = RunControl()

    class InterruptingCluster(FakeBackend):
        def create(self, spec, db, run_dir):
            cluster = super().create(spec, db, run_dir)
            cluster.wait_ready = lambda timeout_s: control.interrupt("SIGTERM")
            return cluster

    backend = InterruptingCluster()
    outcome, *_ = run(tmp_path, backend=backend, control=control)
    assert outcome.exit_code == EXIT_INTERRUPTED
    assert backend.clusters[0].torn_down >= 1
    assert "SIGTERM" in outcome.summary


def test_a_crashing_client_op_is_recorded_as_info(tmp_path):
    backend = FakeBackend()

    def boom(op):
        if op.get("value") == 5:
            raise ConnectionError("socket closed")

    outcome, *_ = run(tmp_path, backend=backend, workload=FakeSetWorkload(backend, on_invoke=boom))
    history = store.read_history(outcome.run_dir)
    crashed = [op for op in history if op.type == "info" and op.value == 5 and op.f == "add"]
    assert crashed and "socket closed" in crashed[0].error


def test_a_nemesis_crash_is_recorded_and_the_run_goes_on(tmp_path):
    class BadPackage(FakePackage):
        def __init__(self, interval_s):
            super().__init__(interval_s)
            self.nemesis.invoke = lambda target, op: (_ for _ in ()).throw(OSError("proxy gone"))

    outcome, *_ = run(tmp_path, package=BadPackage(0.3))
    history = store.read_history(outcome.run_dir)
    assert any(op.process == "nemesis" and op.error and "proxy gone" in op.error for op in history)
    assert outcome.exit_code == EXIT_VALID


def _run_with_add_3_hanging(tmp_path, client_timeout_s):
    """A run whose client call adding 3 hangs (until the run is over); returns (outcome, history)."""
    import threading

    backend = FakeBackend()
    release = threading.Event()
    clock = VirtualClock()

    def hang(op):
        if op.get("value") == 3:
            with clock.idle():
                release.wait(30)

    try:
        outcome, *_ = run(
            tmp_path,
            backend=backend,
            workload=FakeSetWorkload(backend, on_invoke=hang),
            clock=clock,
            options=(("client_timeout_s", client_timeout_s),),
        )
    finally:
        release.set()
    return outcome, store.read_history(outcome.run_dir)


@pytest.mark.slow
def test_a_hung_client_call_is_closed_as_info_at_the_end_of_the_phase(tmp_path):
    outcome, history = _run_with_add_3_hanging(tmp_path, 0.2)
    hung = [op for op in history if op.f == "add" and op.value == 3 and op.type == "info"]
    assert hung and "hung" in hung[0].error
    assert outcome.exit_code == EXIT_VALID


@pytest.mark.slow
def test_the_heal_is_not_held_back_by_a_client_call_still_in_flight(tmp_path):
    """A call hung on a killed or cut-off majority must not delay the heal: the
    final heal is invoked while that call is still open (as in Jepsen)."""
    outcome, history = _run_with_add_3_hanging(tmp_path, 0.4)
    invoked = next(op.index for op in history if op.f == "add" and op.value == 3 and op.type == "invoke")
    closed = next(op.index for op in history if op.f == "add" and op.value == 3 and op.type != "invoke")
    heal = [op for op in history if op.process == "nemesis" and op.f == "stop-partition" and op.type == "invoke"]
    assert heal and invoked < heal[-1].index < closed
    assert outcome.exit_code == EXIT_VALID


def test_final_reads_are_retried_until_ok(tmp_path):
    backend = FakeBackend()
    workload = FakeSetWorkload(backend)
    workload.failing_reads = 2
    outcome, *_ = run(tmp_path, backend=backend, workload=workload)
    reads = [op for op in store.read_history(outcome.run_dir) if op.f == "read" and op.type != "invoke"]
    assert [op.type for op in reads] == ["fail", "fail", "ok"]
    assert outcome.exit_code == EXIT_VALID


@pytest.mark.slow
def test_when_every_client_hangs_fresh_processes_still_do_the_final_reads(tmp_path):
    """A node paused past every client's timeout must not leave the final phase with no client."""
    import threading

    backend = FakeBackend()
    release = threading.Event()
    clock = VirtualClock()

    def hang(op):
        if op.get("f") == "add":
            with clock.idle():
                release.wait(30)

    try:
        outcome, *_ = run(
            tmp_path,
            backend=backend,
            workload=FakeSetWorkload(backend, on_invoke=hang),
            clock=clock,
            concurrency=2,
            options=(("client_timeout_s", 0.2),),
        )
    finally:
        release.set()
    history = store.read_history(outcome.run_dir)
    hung = {op.process for op in history if op.f == "add" and op.type == "info"}
    assert hung == {0, 1}, "both client processes should hang on their first add"
    reads = [op for op in history if op.f == "read" and op.type == "ok"]
    assert reads, "no final read ran: hung threads were not replaced"
    assert all(op.process not in hung for op in reads)
    assert all(op.process % 2 in (0, 1) and op.process >= 2 for op in reads)
