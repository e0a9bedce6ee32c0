"""Partition shapes, target selection and the nemesis package, without a cluster."""

from __future__ import annotations

import itertools
import random

import pytest

import nemesis
from nemesis import partition as part
from nemesis import process

NODES3 = ["n1", "n2", "n3"]
NODES5 = ["n1", "n2", "n3", "n4", "n5"]


def hears(grudge, node, nodes):
    """The nodes ``node`` can hear (itself included)."""
    return set(nodes) - set(grudge.get(node, frozenset()))


def test_halves_cuts_first_half_from_rest():
    g = part.halves(NODES5)
    assert g["n1"] == {"n3", "n4", "n5"} and g["n2"] == {"n3", "n4", "n5"}
    assert g["n3"] == {"n1", "n2"} and g["n5"] == {"n1", "n2"}
    assert part.is_symmetric(g)


def test_random_halves_is_seeded_and_a_two_way_split():
    a = part.random_halves(NODES5, random.Random(7))
    b = part.random_halves(NODES5, random.Random(7))
    assert a == b
    sizes = sorted(len(hears(a, n, NODES5)) for n in NODES5)
    assert sizes == [2, 2, 3, 3, 3]
    assert part.is_symmetric(a)


def test_isolate_cuts_one_node_from_all():
    g = part.isolate(NODES5, "n4")
    assert g["n4"] == {"n1", "n2", "n3", "n5"}
    assert all(g[n] == {"n4"} for n in NODES5 if n != "n4")
    with pytest.raises(ValueError, match="not one of"):
        part.isolate(NODES5, "n9")


def test_bridge_middle_node_hears_everyone_and_halves_do_not_meet():
    g = part.bridge(NODES5)
    assert g["n3"] == frozenset()
    assert g["n1"] == {"n4", "n5"} and g["n4"] == {"n1", "n2"}
    assert part.is_symmetric(g)
    # every node is in some majority
    assert all(len(hears(g, n, NODES5)) >= 3 for n in NODES5)


@pytest.mark.parametrize("n", [4, 5, 6, 7, 9])
@pytest.mark.parametrize("seed", range(5))
def test_majorities_ring_every_node_sees_a_majority_none_sees_all(n, seed):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    g = part.majorities_ring(nodes, random.Random(seed))
    assert part.is_symmetric(g)
    views = [frozenset(hears(g, x, nodes)) for x in nodes]
    assert all(len(v) >= part.majority(n) for v in views)
    assert all(len(v) < n for v in views), "a ring with a node seeing everyone is no partition"


def test_majorities_ring_with_three_nodes_falls_back_to_bridge():
    g = part.majorities_ring(NODES3, random.Random(1))
    cut = part.links(g)
    assert len(cut) == 2  # one pair cut, both directions
    assert all(len(hears(g, x, NODES3)) >= 2 for x in NODES3)


def test_links_are_sorted_and_cover_the_grudge():
    g = part.halves(NODES3)
    assert part.links(g) == [("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n3", "n1")]


def test_isolate_leader_uses_leader_or_says_why_not():
    g, note = part.shape("isolate-leader", NODES5, random.Random(1), lambda: "n2")
    assert g["n2"] == {"n1", "n3", "n4", "n5"} and note == ""
    g, note = part.shape("isolate-leader", NODES5, random.Random(1), lambda: None)
    assert "no leader" in note and sum(len(v) == 4 for v in g.values()) == 1
    with pytest.raises(ValueError, match="known shapes"):
        part.shape("triangle", NODES5, random.Random(1))


@pytest.mark.parametrize("spec,size", [("one", 1), ("minority", 2), ("majority", 3), ("all", 5)])
def test_process_targets_sizes(spec, size):
    nodes, note = process.select(spec, NODES5, random.Random(3))
    assert len(nodes) == size and len(set(nodes)) == size and set(nodes) <= set(NODES5)
    assert note == ""


def test_process_leader_target():
    assert process.select("leader", NODES5, random.Random(3), lambda: "n5") == (["n5"], "")
    nodes, note = process.select("leader", NODES5, random.Random(3), lambda: None)
    assert len(nodes) == 1 and "no leader" in note
    with pytest.raises(ValueError, match="known"):
        process.select("half", NODES5, random.Random(3))


def test_parse_faults():
    assert nemesis.parse_faults("partition,kill") == ("partition", "kill")
    assert nemesis.parse_faults(["none"]) == ()
    assert nemesis.parse_faults("all") == ("partition", "pause", "kill", "packet", "clock", "disk")
    assert nemesis.parse_faults("kill,all", supported=("partition", "kill")) == ("kill", "partition")
    with pytest.raises(ValueError, match="allowed: partition, pause, kill, packet, clock, disk, none, all"):
        nemesis.parse_faults("partition,flood")
    with pytest.raises(ValueError, match="cannot be combined"):
        nemesis.parse_faults("none,kill")


def test_package_with_one_active_fault_alternates_start_and_stop_and_replays_from_seed():
    pkg = nemesis.package(["partition", "pause", "kill"], 5.0, random.Random(1), max_active=1)
    ops = [o for o in itertools.islice(pkg.ops(random.Random(9)), 200) if "sequence" not in str(o)]
    again = [o for o in itertools.islice(pkg.ops(random.Random(9)), 200) if "sequence" not in str(o)]
    assert ops == again
    pairs = {"start-partition": "stop-partition", "pause": "resume", "kill": "start"}
    for start, stop in zip(ops[::2], ops[1::2], strict=False):  # the last start may have no stop among the 200
        assert pairs[start["f"]] == stop["f"]
    assert {o["f"] for o in ops[::2]} == set(pairs)
    assert pkg.interval_s == 5.0
    assert pkg.final_ops() == [{"f": "stop-partition"}, {"f": "resume", "value": "all"}, {"f": "start", "value": "all"}]


def test_package_none_has_no_ops_and_bad_interval_is_refused():
    pkg = nemesis.package("none", 1.0, random.Random(1))
    assert list(pkg.ops(random.Random(1))) == [] and pkg.final_ops() == []
    with pytest.raises(ValueError, match="interval"):
        nemesis.package("kill", 0, random.Random(1))
    with pytest.raises(ValueError, match="bad variants"):
        nemesis.package("kill", 1, random.Random(1), variants={"kill": ("everyone",)})


class FakeTarget:
    """Records fault calls; a stand-in for a cluster."""

    def __init__(self, nodes, leader="n1", fail_on=None):
        self.nodes = list(nodes)
        self._leader = leader
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def _rec(self, *call):
        if self.fail_on and call[0] == self.fail_on:
            raise RuntimeError(f"{call[0]} broke")
        self.calls.append(call)

    def drop(self, src, dst):
        self._rec("drop", src, dst)

    def heal(self):
        self._rec("heal")

    def pause(self, node):
        self._rec("pause", node)

    def resume(self, node):
        self._rec("resume", node)

    def kill(self, node):
        self._rec("kill", node)

    def start(self, node):
        self._rec("start", node)

    def leader(self):
        return self._leader


def test_fault_nemesis_partition_isolate_leader_drops_both_directions():
    t = FakeTarget(NODES3, leader="n2")
    assert isinstance(t, nemesis.FaultTarget)
    nem = nemesis.FaultNemesis(random.Random(1))
    out = nem.invoke(t, {"f": "start-partition", "value": "isolate-leader"})
    assert out["type"] == "info" and out["value"]["partition"] == "isolate-leader"
    drops = {c[1:] for c in t.calls if c[0] == "drop"}
    assert drops == {("n1", "n2"), ("n3", "n2"), ("n2", "n1"), ("n2", "n3")}
    assert t.calls[0] == ("heal",)  # shapes replace, not pile up
    assert nem.invoke(t, {"f": "stop-partition"}) == {"type": "info", "value": "healed"}


def test_fault_nemesis_kill_leader_then_start_all():
    t = FakeTarget(NODES3, leader="n3")
    nem = nemesis.FaultNemesis(random.Random(1))
    assert nem.invoke(t, {"f": "kill", "value": "leader"})["value"] == {"killed": ["n3"]}
    assert nem.invoke(t, {"f": "start", "value": "all"})["value"] == {"started": NODES3}
    assert t.calls == [("kill", "n3")] + [("start", n) for n in NODES3]


def test_fault_nemesis_never_raises():
    t = FakeTarget(NODES3, fail_on="pause")
    nem = nemesis.FaultNemesis(random.Random(1))
    out = nem.invoke(t, {"f": "pause", "value": "one"})
    assert out["type"] == "info" and "RuntimeError: pause broke" in out["error"]
    out = nem.invoke(t, {"f": "explode"})
    assert out["type"] == "info" and "unknown nemesis op" in out["error"]
    nem.teardown(FakeTarget(NODES3))  # heal + resume + start, no error
