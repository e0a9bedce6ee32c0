"""The composed fault schedule (nemesis.schedule), in simulated time, and the
packet and clock ops of the fault nemesis against a model cluster."""

from __future__ import annotations

import itertools
import random

import pytest

import nemesis
from harness import generator as g
from harness.generator import NEMESIS_THREAD, simulate
from nemesis import schedule

NODES3 = ["n1", "n2", "n3"]
ALL = ("partition", "pause", "kill", "packet", "clock")
KIND_OF = {
    "start-partition": "partition",
    "pause": "pause",
    "kill": "kill",
    "start-packet": "packet",
    "start-clock": "clock",
}
STOP_OF = {
    "stop-partition": "partition",
    "resume": "pause",
    "start": "kill",
    "stop-packet": "packet",
    "stop-clock": "clock",
}


def _ops(faults=ALL, seed=1, n=400, **kw):
    pkg = nemesis.package(list(faults), 5.0, random.Random(seed), **kw)
    return list(itertools.islice(pkg.ops(random.Random(seed)), n)), pkg


def _active_counts(ops):
    """How many fault kinds are active after each op (random and sequence ops alike)."""
    active: set[str] = set()
    counts = []
    for op in ops:
        if op["f"] in KIND_OF:
            active.add(KIND_OF[op["f"]])
        elif op["f"] in STOP_OF:
            active.discard(STOP_OF[op["f"]])
        counts.append(len(active))
    return counts


def test_the_schedule_replays_from_its_seed_and_differs_across_seeds():
    a, _ = _ops(seed=3)
    b, _ = _ops(seed=3)
    c, _ = _ops(seed=4)
    assert a == b and a != c


def test_faults_overlap_but_never_more_than_max_active_random_ones():
    ops, _ = _ops(n=600)
    random_ops = [o for o in ops if not (isinstance(o.get("value"), dict) and "sequence" in o["value"])]
    counts = _active_counts(random_ops)
    assert max(counts) == 2, "some fault must start while another is active"
    # with one active fault at a time, nothing overlaps
    one, _ = _ops(n=600, max_active=1)
    assert max(_active_counts([o for o in one if "sequence" not in str(o.get("value"))])) == 1


def test_every_fault_kind_and_every_targeted_sequence_is_drawn():
    ops, _ = _ops(n=800)
    assert {KIND_OF[o["f"]] for o in ops if o["f"] in KIND_OF} == set(ALL)
    seqs = {o["value"]["sequence"] for o in ops if isinstance(o.get("value"), dict) and "sequence" in o["value"]}
    assert seqs == set(schedule.SEQUENCES)


@pytest.mark.parametrize("seed", range(6))
def test_targeted_sequences_do_what_they_say_in_order(seed):
    for fn in ("lagging-follower", "kill-leader-in-partition", "pause-majority"):
        ops = schedule.sequence_ops(fn, ALL, random.Random(seed))
        assert ops and all(o["value"]["sequence"] == fn and o["value"]["why"] for o in ops)
        fs = [o["f"] for o in ops]
        targets = [o["value"].get("target") for o in ops]
        if fn == "lagging-follower":
            assert targets[0] in ("isolate-follower", "follower")  # the follower lags first
            assert (fs[1], targets[1]) in (("kill", "leader"), ("start-partition", "isolate-leader"))
        elif fn == "kill-leader-in-partition":
            assert fs == ["start-partition", "kill", "stop-partition", "start"] and targets[1] == "leader"
        else:
            assert fs == ["pause", "resume"] and targets == ["majority", "all"]
        assert _active_counts(ops)[-1] == 0, f"{fn} must undo what it started: {ops}"


def test_sequences_need_their_faults():
    assert schedule.sequence_ops("kill-leader-in-partition", ("kill",), random.Random(1)) == []
    assert schedule.sequence_ops("pause-majority", ("kill", "partition"), random.Random(1)) == []
    # a backend without delay cannot slow the follower: it is isolated instead
    for seed in range(10):
        ops = schedule.sequence_ops(
            "lagging-follower", ("packet", "partition", "kill"), random.Random(seed), packet_kinds=("loss", "bandwidth")
        )
        assert ops[0]["f"] == "start-partition"
    assert schedule.sequence_ops("lagging-follower", ("packet", "kill"), random.Random(1), packet_kinds=("loss",)) == []
    with pytest.raises(ValueError, match="unknown sequence"):
        schedule.sequence_ops("chaos", ALL, random.Random(1))


def test_packet_kinds_narrow_what_is_drawn():
    ops = list(itertools.islice(schedule.composed_ops(("packet",), random.Random(2), {}, packet_kinds=("loss",)), 100))
    starts = [o["value"] for o in ops if o["f"] == "start-packet"]
    assert starts and all(set(v) == {"target", "loss"} for v in starts)


def test_in_simulated_time_faults_are_spaced_by_the_interval_and_overlap():
    pkg = nemesis.package(list(ALL), 10.0, random.Random(7))
    gen = g.TimeLimit(600, g.nemesis([g.Sleep(10), g.Delay(10, g.source(pkg.ops(random.Random(7))))]))
    out = simulate(gen, threads=[NEMESIS_THREAD], latency=0.5)
    times = [o.time for o in out]
    assert len(out) >= 50
    assert all(b - a >= 10 - 1e-9 for a, b in itertools.pairwise(times)), "one op per interval"
    assert max(_active_counts([o.op for o in out])) >= 2


class ModelCluster:
    """A FaultTarget that keeps the state faults leave behind."""

    packet_kinds = ("delay", "loss", "bandwidth")

    def __init__(self, nodes=NODES3, leader="n1"):
        self.nodes = list(nodes)
        self._leader = leader
        self.dropped: set = set()
        self.shapes: dict = {}
        self.offsets: dict = {}
        self.strobing: set = set()
        self.paused: set = set()
        self.killed: set = set()

    def drop(self, src, dst):
        self.dropped.add((src, dst))

    def heal(self):
        self.dropped.clear()

    def pause(self, node):
        self.paused.add(node)

    def resume(self, node):
        self.paused.discard(node)

    def kill(self, node):
        self.killed.add(node)
        self.paused.discard(node)

    def start(self, node):
        self.killed.discard(node)
        self.paused.discard(node)

    def leader(self):
        return None if self._leader in self.killed else self._leader

    def shape(self, src, dst, delay_ms=0, jitter_ms=0, loss=0.0, rate_kbps=None):
        self.shapes[(src, dst)] = (delay_ms, jitter_ms, loss, rate_kbps)

    def unshape(self):
        self.shapes.clear()

    def clock_bump(self, node, offset_ms):
        self.strobing.discard(node)
        self.offsets[node] = offset_ms

    def clock_strobe(self, node, delta_ms, period_ms):
        self.strobing.add(node)

    def clock_reset(self):
        self.offsets.clear()
        self.strobing.clear()

    def healthy(self):
        return not (
            self.dropped or self.shapes or any(self.offsets.values()) or self.strobing or self.paused or self.killed
        )


@pytest.mark.parametrize("seed", range(5))
def test_the_final_heal_undoes_everything_wherever_the_schedule_stops(seed):
    ops, pkg = _ops(seed=seed, n=300)
    nem = pkg.nemesis
    cluster = ModelCluster()
    nem.setup(cluster)
    unhealthy_seen = 0
    for i, op in enumerate(ops):
        out = nem.invoke(cluster, op)
        assert "error" not in out, (op, out)
        unhealthy_seen += not cluster.healthy()
        if i % 37 == 36:  # stop the main phase here: the heal must undo it all
            probe = ModelCluster()
            for o in ops[: i + 1]:
                nem.invoke(probe, o)
            for o in pkg.final_ops():
                nem.invoke(probe, o)
            assert probe.healthy(), (ops[: i + 1], vars(probe))
    assert unhealthy_seen > 100
    nem.teardown(cluster)
    assert cluster.healthy()


def test_packet_op_shapes_both_directions_of_the_followers_links_and_says_so_in_words():
    cluster = ModelCluster(leader="n2")
    nem = nemesis.FaultNemesis(random.Random(1), ("packet",))
    nem.setup(cluster)
    out = nem.invoke(
        cluster,
        {
            "f": "start-packet",
            "value": {
                "target": "follower",
                "delay_ms": 200,
                "jitter_ms": 50,
                "sequence": "lagging-follower",
                "why": "slow one follower",
            },
        },
    )
    v = out["value"]
    (slow,) = v["nodes"]
    assert slow != "n2"
    others = [n for n in NODES3 if n != slow]
    assert set(cluster.shapes) == {(slow, o) for o in others} | {(o, slow) for o in others}
    assert v["packet"] == "delay 200 ms ± 50 ms" and v["sequence"] == "lagging-follower"
    assert v["why"] == "slow one follower"
    out = nem.invoke(cluster, {"f": "start-packet", "value": {"target": "all", "loss": 0.2}})
    assert out["value"]["packet"] == "loss 20%" and len(cluster.shapes) == 6  # replaced, all links
    assert nem.invoke(cluster, {"f": "stop-packet"})["value"].startswith("links restored")
    assert cluster.shapes == {}
    bad = nem.invoke(cluster, {"f": "start-packet", "value": {"target": "one", "loss": 2}})
    assert "probability" in bad["error"]


def test_clock_ops_bump_and_strobe_one_node_and_reset_all():
    cluster = ModelCluster(leader="n3")
    nem = nemesis.FaultNemesis(random.Random(1), ("clock",))
    out = nem.invoke(cluster, {"f": "start-clock", "value": {"target": "leader", "bump_ms": -60000}})
    assert cluster.offsets == {"n3": -60000} and out["value"]["clock"] == "bumped n3's clock by -60000 ms"
    out = nem.invoke(cluster, {"f": "start-clock", "value": {"target": "leader", "strobe_ms": 5000, "period_ms": 1000}})
    assert cluster.strobing == {"n3"} and "strobing n3's clock" in out["value"]["clock"]
    nem.invoke(cluster, {"f": "stop-clock"})
    assert cluster.healthy()


def test_setup_refuses_faults_the_backend_cannot_perform():
    class Plain:
        nodes = NODES3

        def drop(self, s, d):
            pass

        def heal(self):
            pass

        def leader(self):
            return None

    nem = nemesis.FaultNemesis(random.Random(1), ("partition", "clock"))
    with pytest.raises(ValueError, match=r"cannot perform the nemesis fault\(s\) \['clock'\]"):
        nem.setup(Plain())

    class NoKinds(ModelCluster):
        packet_kinds = ()

    with pytest.raises(ValueError, match="no packet fault"):
        nemesis.FaultNemesis(random.Random(1), ("packet",)).setup(NoKinds())
    narrow = type("Narrow", (ModelCluster,), {"packet_kinds": ("loss",)})()
    pkg = nemesis.package("packet", 1.0, random.Random(1))
    pkg.nemesis.setup(narrow)
    starts = [o for o in itertools.islice(pkg.ops(random.Random(1)), 50) if o["f"] == "start-packet"]
    assert starts and all("loss" in o["value"] for o in starts)


# -- the command line: --nemesis all / packet / clock, --latency ---------------
def _spec(nemesis_text, backend="local", latency_ms=0.0):
    from harness.cli import _registry
    from harness.run_cmd import _Common, build_spec

    c = _Common(
        backend=backend,
        db="zookeeper",
        nemesis_interval=3.0,
        nodes="3",
        time_limit=10.0,
        concurrency="2n",
        rate=10.0,
        seed=1,
        results_dir="results",
        reads="local",
        progress=False,
        unsafe_db_fault=None,
        latency_ms=latency_ms,
    )
    return build_spec(_registry(), c, "register", nemesis_text, None)


def test_cli_all_means_every_fault_the_backend_supports():
    from harness.spec import SpecError

    assert _spec("all").nemesis == (*ALL, "disk")
    assert _spec("all", backend="docker").nemesis == ("partition", "pause", "kill", "packet", "disk")
    assert _spec("kill,all", backend="ssh").nemesis == ("kill", "partition", "pause")
    with pytest.raises(
        SpecError,
        match="docker backend cannot perform the nemesis fault\\(s\\) clock; "
        "it supports: partition, pause, kill, packet, disk",
    ):
        _spec("partition,clock", backend="docker")
    with pytest.raises(SpecError, match="allowed: partition, pause, kill, packet, clock"):
        _spec("partition,flood")


def test_cli_latency_is_a_spec_option_for_the_local_backend_only():
    from harness.spec import SpecError

    spec = _spec("packet", latency_ms=25)
    assert spec.option_dict["latency_ms"] == 25
    assert "latency_ms" not in _spec("packet").option_dict
    with pytest.raises(SpecError, match="--latency needs the local backend"):
        _spec("packet", backend="docker", latency_ms=25)
    with pytest.raises(SpecError, match="--latency must be >= 0"):
        _spec("packet", latency_ms=-1)


# -- targeted sequences asked for by name (--nemesis lagging-follower) ----------
def test_a_named_sequence_is_played_over_and_over_with_its_own_faults():
    pkg = nemesis.package(["lagging-follower"], 1.0, random.Random(3))
    cluster = ModelCluster()
    pkg.nemesis.setup(cluster)
    ops = list(itertools.islice(pkg.ops(random.Random(3)), 40))
    assert {o["value"]["sequence"] for o in ops} == {"lagging-follower"}
    lag = ops[0]["value"]
    assert (lag["target"], lag["delay_ms"], lag["jitter_ms"]) == ("follower", *schedule.LAG_DELAY_MS)
    assert [o["f"] for o in ops] == ["start-packet", "kill", "start", "stop-packet"] * 10
    # performed on a cluster: a follower's links slowed, then the leader killed, then all undone
    out = pkg.nemesis.invoke(cluster, ops[0])
    assert out["value"]["nodes"] != ["n1"] and cluster.shapes and out["value"]["sequence"] == "lagging-follower"
    pkg.nemesis.invoke(cluster, ops[1])
    assert cluster.killed == {"n1"}
    for op in ops[2:4]:
        pkg.nemesis.invoke(cluster, op)
    assert cluster.healthy()
    # the heal stops the faults the sequence uses
    assert pkg.final_ops() == [{"f": "stop-packet"}, {"f": "start", "value": "all"}]


def test_a_named_sequence_beside_faults_is_the_only_sequence_played():
    def seqs_of(ops):
        return {o["value"]["sequence"] for o in ops if isinstance(o.get("value"), dict) and "sequence" in o["value"]}

    ops, _ = _ops(("partition", "pause"), n=400)
    assert seqs_of(ops) == {"pause-majority", "lagging-follower"}  # without a name: what partition+pause allow
    ops, _ = _ops(("partition", "pause", "pause-majority"), n=400)
    assert seqs_of(ops) == {"pause-majority"}
    pkg = nemesis.package(["partition", "lagging-follower"], 5.0, random.Random(2))
    ops = list(itertools.islice(pkg.ops(random.Random(2)), 400))
    assert seqs_of(ops) == {"lagging-follower"}
    assert {o["f"] for o in ops} >= {"start-partition", "start-packet", "kill"}
    assert sum(o["f"] == "start-packet" for o in ops) >= 20  # played often, not now and then


def test_a_named_sequence_the_backend_cannot_play_is_refused_at_setup():
    no_delay = type("NoDelay", (ModelCluster,), {"packet_kinds": ("loss", "bandwidth")})()
    pkg = nemesis.package(["lagging-follower"], 1.0, random.Random(1))
    with pytest.raises(ValueError, match="lagging-follower sequence needs packet, kill faults with a packet delay"):
        pkg.nemesis.setup(no_delay)
    with pytest.raises(ValueError, match="unknown sequence"):
        list(itertools.islice(schedule.sequence_loop(("no-such",), random.Random(1)), 1))


def test_cli_names_a_sequence_and_all_does_not_include_one():
    from harness.spec import SpecError

    assert _spec("lagging-follower").nemesis == ("lagging-follower",)
    assert _spec("pause-majority,kill", backend="ssh").nemesis == ("pause-majority", "kill")
    assert "lagging-follower" not in _spec("all").nemesis
    with pytest.raises(
        SpecError,
        match=r"ssh backend cannot perform the nemesis fault\(s\) lagging-follower "
        r"\(it needs packet, kill\)",
    ):
        _spec("lagging-follower", backend="ssh")
    with pytest.raises(SpecError, match="a targeted sequence \\(lagging-follower, kill-leader-in-partition"):
        _spec("lagging-folower")


def test_the_registry_builds_a_named_sequence_with_the_nemesis_of_its_faults():
    from harness.cli import _registry

    for names in (["lagging-follower"], ["partition", "pause-majority"]):
        pkg = _registry().nemesis_package(names, 1.0, random.Random(4))
        pkg.nemesis.setup(ModelCluster())
        ops = list(itertools.islice(pkg.ops(random.Random(4)), 60))
        seqs = {o["value"]["sequence"] for o in ops if isinstance(o.get("value"), dict) and "sequence" in o["value"]}
        assert seqs == {names[-1]}, (names, ops[:6])


def test_cli_a_lagging_follower_needs_three_nodes():
    from harness.cli import _registry
    from harness.run_cmd import _check_cluster_size
    from harness.spec import SpecError

    with pytest.raises(SpecError, match="lagging-follower needs at least 3 nodes"):
        _check_cluster_size(_registry(), "zookeeper", {}, 1, ("lagging-follower",))
    _check_cluster_size(_registry(), "zookeeper", {}, 3, ("lagging-follower",))
