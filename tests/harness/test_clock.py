"""The runner's clock seam (harness/clock.py): VirtualClock's simulated time,
and that a run of fakes in simulated time records the same schedule twice."""

from __future__ import annotations

import queue
import threading

import pytest

from harness import store
from harness.clock import MonotonicClock, VirtualClock
from harness.runner import run_test
from harness.spec import TestSpec
from tests.harness.fakes import FakeBackend, FakePackage, FakeSetWorkload

S = 1_000_000_000


def _call(clock: VirtualClock, q: queue.Queue, body) -> threading.Thread:
    """A worker call as the runner makes one: started, body, completion put, ended."""
    clock.call_started()

    def run() -> None:
        try:
            q.put(body())
        finally:
            clock.call_ended()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_nothing_running_means_a_wait_takes_its_whole_timeout_at_once():
    clock, q = VirtualClock(), queue.Queue()
    with pytest.raises(queue.Empty):
        clock.get(q, 2.5)
    assert clock.now_ns() == int(2.5 * S)
    # a remainder of a fraction of a nanosecond still moves the time (no endless wait)
    with pytest.raises(queue.Empty):
        clock.get(q, 1e-12)
    assert clock.now_ns() == int(2.5 * S) + 1


def test_time_stands_still_while_a_call_runs():
    clock, q = VirtualClock(), queue.Queue()
    release = threading.Event()
    t = _call(clock, q, lambda: release.wait(5) and "done")
    threading.Timer(0.05, release.set).start()
    assert clock.get(q, 10.0) == "done"  # waited (in real time) for the call, not 10 simulated seconds
    assert clock.now_ns() == 0
    t.join()


def test_a_call_sleeping_in_simulated_time_completes_when_that_time_comes():
    clock, q = VirtualClock(), queue.Queue()
    _call(clock, q, lambda: (clock.sleep(0.3), clock.now_ns())[1])
    _call(clock, q, lambda: (clock.sleep(0.1), clock.now_ns())[1])
    assert clock.get(q, 1.0) == int(0.1 * S)
    assert clock.now_ns() == int(0.1 * S)
    with pytest.raises(queue.Empty):
        clock.get(q, 0.1)  # the other call is still asleep until 0.3
    assert clock.now_ns() == int(0.2 * S)
    assert clock.get(q, 1.0) == int(0.3 * S)
    assert clock.now_ns() == int(0.3 * S)


def test_an_idle_call_lets_time_move_on_and_a_pause_moves_it_at_once():
    clock, q = VirtualClock(), queue.Queue()
    release = threading.Event()

    def hang():
        with clock.idle():
            release.wait(5)
        return "late"

    t = _call(clock, q, hang)
    with pytest.raises(queue.Empty):
        clock.get(q, 4.0)
    assert clock.now_ns() == 4 * S
    stop = threading.Event()
    assert clock.pause(1.0, stop) is False and clock.now_ns() == 5 * S
    stop.set()
    assert clock.pause(1.0, stop) is True and clock.now_ns() == 5 * S
    release.set()
    t.join()  # (a call leaving idle() counts as running again only once its thread resumes)
    assert clock.get(q, 1.0) == "late"
    assert clock.stalls == 0


def test_a_call_that_blocks_without_saying_so_is_given_up_on_not_waited_for_forever():
    clock, q = VirtualClock(stall_s=0.2), queue.Queue()
    release = threading.Event()
    t = _call(clock, q, lambda: release.wait(5) and "x")
    with pytest.raises(queue.Empty):
        clock.get(q, 1.0)
    assert clock.stalls == 1 and clock.now_ns() == 1 * S
    release.set()
    t.join()


def test_the_real_clock_waits_in_real_time():
    clock, q = MonotonicClock(), queue.Queue()
    q.put(1)
    assert clock.get(q, 0.0) == 1
    with pytest.raises(queue.Empty):
        clock.get(q, 0.01)
    assert clock.pause(0.0, threading.Event()) is False
    assert clock.now_ns() <= MonotonicClock().now_ns()


def _invocations(tmp_path, name):
    backend = FakeBackend()
    spec = TestSpec(
        name=name,
        nodes=("n1", "n2", "n3"),
        backend="local",
        db="squall",
        workload="set",
        nemesis=("partition",),
        nemesis_interval_s=0.3,
        time_limit_s=2.0,
        concurrency=3,
        rate=60.0,
        seed=5,
    )
    clock = VirtualClock()
    outcome = run_test(
        spec,
        backend,
        object(),
        FakeSetWorkload(backend),
        FakePackage(0.3),
        store.new_run_dir(tmp_path, name),
        clock=clock,
    )
    assert outcome.valid is True and clock.stalls == 0
    return [(op.time, op.process, op.f, op.value) for op in store.read_history(outcome.run_dir) if op.type == "invoke"]


def test_a_run_in_simulated_time_invokes_the_same_ops_at_the_same_times_twice(tmp_path):
    one = _invocations(tmp_path, "a")
    assert len(one) > 100  # 2 simulated seconds at 60 ops/s, plus faults and the final read
    assert one == _invocations(tmp_path, "b")
    assert max(t for t, *_ in one) >= 2 * S  # the final phase comes after the 2 s time limit
