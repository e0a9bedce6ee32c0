"""Generators in simulated time: no sleeps, no threads, no clock."""

from __future__ import annotations

import itertools
import random

import pytest

from harness import generator as g
from harness.generator import PENDING, Context, Pending, simulate


def ctx(time=0.0, threads=(0, 1), free=None, seed=0):
    threads = frozenset(threads)
    return Context(
        time, threads, threads if free is None else frozenset(free), {t: t for t in threads}, random.Random(seed)
    )


def fs(ops):
    return [o.op["f"] for o in ops]


def test_once_emits_one_op_on_a_free_thread_then_is_exhausted():
    op, nxt = g.Once({"f": "read"}).op(ctx(time=3.0, free=[1]))
    assert op == {"f": "read", "process": 1, "time": 3.0}
    assert nxt is None


def test_once_is_pending_when_no_thread_is_free():
    op, nxt = g.Once({"f": "read"}).op(ctx(free=[]))
    assert op is PENDING and nxt is not None


def test_lists_run_in_order_and_dicts_once():
    out = simulate([{"f": "a"}, {"f": "b"}, [{"f": "c"}]], threads=[0])
    assert fs(out) == ["a", "b", "c"]


def test_source_wraps_an_endless_iterator_and_is_a_value():
    src = g.source({"f": "w", "value": i} for i in itertools.count())
    c = ctx()
    first = src.op(c)
    again = src.op(c)  # asking the same value twice gives the same op
    assert first[0]["value"] == again[0]["value"] == 0
    assert first[1].op(c)[0]["value"] == 1


def test_source_from_a_callable():
    counter = itertools.count()
    out = simulate(g.Limit(3, g.source(lambda: {"f": "w", "value": next(counter)})), threads=[0])
    assert [o.op["value"] for o in out] == [0, 1, 2]


def test_limit_counts_ops_not_pendings():
    out = simulate(g.Limit(5, g.source(lambda: {"f": "r"})), threads=[0, 1])
    assert len(out) == 5


def test_once_of_a_stream():
    assert len(simulate(g.once(g.source(lambda: {"f": "r"})), threads=[0])) == 1


def test_time_limit_stops_at_the_cutoff_in_simulated_time():
    out = simulate(g.TimeLimit(10, g.Delay(1.0, g.source(lambda: {"f": "r"}))), threads=[0, 1])
    times = [o.time for o in out]
    assert times == [float(i) for i in range(10)]


def test_delay_spaces_ops_exactly():
    out = simulate(g.Limit(4, g.Delay(0.5, g.source(lambda: {"f": "r"}))), threads=[0])
    assert [o.time for o in out] == [0.0, 0.5, 1.0, 1.5]


def test_stagger_averages_to_the_rate():
    out = simulate(g.TimeLimit(100, g.rate_limit(20, lambda: {"f": "r"})), threads=range(4), latency=0.001)
    assert 1800 <= len(out) <= 2200
    gaps = [b.time - a.time for a, b in itertools.pairwise(out)]
    assert max(gaps) < 0.1 + 1e-9 and min(gaps) >= 0


def test_stagger_is_deterministic_for_a_seed():
    def mk():
        return g.TimeLimit(5, g.rate_limit(10, lambda: {"f": "r"}))

    a = [o.time for o in simulate(mk(), threads=[0, 1], seed=7)]
    b = [o.time for o in simulate(mk(), threads=[0, 1], seed=7)]
    c = [o.time for o in simulate(mk(), threads=[0, 1], seed=8)]
    assert a == b and a != c


def test_mix_draws_from_every_generator():
    out = simulate(
        g.Limit(300, g.mix(lambda: {"f": "read"}, lambda: {"f": "write"}, lambda: {"f": "cas"})), threads=[0, 1]
    )
    counts = {f: fs(out).count(f) for f in ("read", "write", "cas")}
    assert all(60 < c < 140 for c in counts.values()), counts


def test_mix_drops_exhausted_generators():
    out = simulate(g.mix([{"f": "a"}], [{"f": "b"}, {"f": "b"}]), threads=[0])
    assert sorted(fs(out)) == ["a", "b", "b"]


def test_sleep_delays_what_follows():
    out = simulate([{"f": "a"}, g.Sleep(5), {"f": "b"}], threads=[0])
    assert [(o.op["f"], o.time) for o in out] == [("a", 0.0), ("b", 5.0)]


def test_phases_wait_for_every_thread_to_finish():
    def slow(op):
        return 3.0 if op["f"] == "slow" else 0.1

    out = simulate(g.phases(g.each_thread({"f": "slow"}), {"f": "after"}), threads=[0, 1], latency=slow)
    assert fs(out) == ["slow", "slow", "after"]
    assert out[-1].time == pytest.approx(3.0)


def test_without_phases_the_next_generator_starts_at_once():
    def slow(op):
        return 3.0 if op["f"] == "slow" else 0.1

    out = simulate([{"f": "slow"}, {"f": "after"}], threads=[0, 1], latency=slow)
    assert out[-1].time == 0.0


def test_each_thread_gives_every_thread_its_own_copy():
    out = simulate(g.each_thread([{"f": "a"}, {"f": "b"}]), threads=[0, 1, 2])
    per_thread = {t: [o.op["f"] for o in out if o.thread == t] for t in (0, 1, 2)}
    assert per_thread == {0: ["a", "b"], 1: ["a", "b"], 2: ["a", "b"]}


def test_routing_sends_client_ops_to_clients_and_faults_to_the_nemesis():
    gen = g.any_(
        g.clients(g.Limit(20, g.source(lambda: {"f": "read"}))),
        g.nemesis([{"f": "start-partition"}, {"f": "stop-partition"}]),
    )
    out = simulate(gen, threads=[0, 1, "nemesis"])
    for o in out:
        assert (o.thread == "nemesis") == o.op["f"].endswith("partition")
    assert fs(out).count("read") == 20


def test_nemesis_routing_without_a_nemesis_thread_is_exhausted():
    assert simulate(g.nemesis({"f": "kill"}), threads=[0, 1]) == []


def test_any_takes_the_soonest_op_and_does_not_starve_clients():
    # a nemesis op 10 s away must not hold back clients in the meantime
    gen = g.any_(
        g.clients(g.TimeLimit(20, g.Delay(1.0, g.source(lambda: {"f": "read"})))),
        g.nemesis([g.Sleep(10), {"f": "kill"}]),
    )
    out = simulate(gen, threads=[0, "nemesis"])
    kill = [o for o in out if o.op["f"] == "kill"]
    assert len(kill) == 1 and kill[0].time == 10.0
    assert len([o for o in out if o.op["f"] == "read"]) == 20


def test_cycle_repeats_from_the_start():
    out = simulate(g.Cycle(g.lift([{"f": "start"}, {"f": "stop"}]), times=3), threads=["nemesis"])
    assert fs(out) == ["start", "stop"] * 3


def test_cycle_forever_is_bounded_by_a_limit():
    out = simulate(g.Limit(5, g.Cycle(g.lift([{"f": "x"}, {"f": "y"}]))), threads=[0])
    assert fs(out) == ["x", "y", "x", "y", "x"]


def test_cycle_of_an_empty_generator_ends():
    assert simulate(g.Cycle(g.lift([])), threads=[0]) == []


def test_a_nemesis_schedule_alternates_at_its_interval():
    faults = itertools.cycle([{"f": "start-partition", "value": "halves"}, {"f": "stop-partition"}])
    gen = g.TimeLimit(30, g.nemesis([g.Sleep(5), g.Delay(5, g.source(faults))]))
    out = simulate(gen, threads=[0, "nemesis"])
    assert [(o.op["f"], o.time) for o in out] == [
        ("start-partition", 5.0),
        ("stop-partition", 10.0),
        ("start-partition", 15.0),
        ("stop-partition", 20.0),
        ("start-partition", 25.0),
    ]


def test_busy_threads_are_never_given_ops():
    # simulate raises if a generator emits for a busy thread; a long run proves none does
    gen = g.TimeLimit(
        50,
        g.any_(
            g.clients(g.rate_limit(200, g.mix(lambda: {"f": "r"}, lambda: {"f": "w"}))),
            g.nemesis(g.Delay(3, g.source(lambda: {"f": "kill"}))),
        ),
    )
    out = simulate(gen, threads=[0, 1, 2, "nemesis"], latency=lambda op: 0.05)
    assert len(out) > 1000


def test_pending_with_nothing_to_wait_for_is_reported():
    with pytest.raises(RuntimeError, match="wait forever"):
        simulate(_AlwaysPending(), threads=[0])


class _AlwaysPending:
    def op(self, ctx):
        return Pending(None), self


def test_source_rejects_non_dict_items_with_a_clear_message():
    with pytest.raises(TypeError, match="ops are dicts"):
        g.source(iter(["read"])).op(ctx())


def test_a_time_limit_is_not_ended_early_by_a_far_off_op_while_clients_are_busy():
    # Both clients are busy for 3 s; meanwhile the only op on offer is a
    # fault beyond the cutoff. The limit must wait for the clients, not end.
    def slow(op):
        return 3.0 if op["f"] == "read" else 0.01

    gen = g.TimeLimit(
        10,
        g.any_(
            g.clients(g.source(lambda: {"f": "read"})),
            g.nemesis([g.Sleep(4), g.Delay(8, g.source(lambda: {"f": "kill"}))]),
        ),
    )
    out = simulate(gen, threads=[0, 1, "nemesis"], latency=slow)
    reads = [o.time for o in out if o.op["f"] == "read"]
    assert reads == [0.0, 0.0, 3.0, 3.0, 6.0, 6.0, 9.0, 9.0]
    assert [o.time for o in out if o.op["f"] == "kill"] == [4.0]
