"""A partition cuts exactly the links it names, on a real cluster.

On the local backend every ordered pair of nodes has its own link proxy, and
each node is told to reach each peer through the proxy of its own link. A
node that dialled its peers through addresses learnt from someone else (the
squall node once took every member's address from the replicated
configuration, i.e. from the leader's own --peers, whose ports are the
*leader's* proxies) would route its links through other nodes' proxies: a
partition of one node then cut links between the others too, and the
majority side could not elect a leader for the whole partition (campaigns
missed a leader that keeps answering sync without a quorum because of it).
"""

from __future__ import annotations

import time

import pytest

from harness.backends.local import LocalBackend
from tests.harness.test_local_backend import _group_members, _wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _links(cluster) -> dict[tuple[str, str], int]:
    """Connections through each link's proxy (the mesh counts both sockets of each)."""
    return {(a, b): cluster.mesh.connection_count(a, b) // 2 for a in cluster.nodes for b in cluster.nodes if a != b}


def test_each_squall_member_dials_its_peers_through_its_own_link_proxies(tmp_path):
    from harness.dbs.squall import SquallDB

    cluster = LocalBackend().create(3, SquallDB(), tmp_path)
    pids = [p for p in cluster.pids().values() if p]
    try:
        cluster.wait_ready(60)
        # The squall node keeps one outgoing link per peer: every ordered pair is used once
        # the configuration is applied (a misrouted member puts two on one proxy, none on another).
        _wait_for(lambda: all(n == 1 for n in _links(cluster).values()), 30, f"one link per pair: {_links(cluster)}")
        time.sleep(1.5)  # past the point where the replicated configuration was applied
        assert all(n == 1 for n in _links(cluster).values()), _links(cluster)

        # Isolate one follower: the links between the two others carry on.
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n != leader)
        rest = [n for n in cluster.nodes if n != follower]
        for other in rest:
            cluster.drop(follower, other)
            cluster.drop(other, follower)
        time.sleep(1.0)
        counts = _links(cluster)
        assert counts[(rest[0], rest[1])] == 1 and counts[(rest[1], rest[0])] == 1, counts
        assert all(counts[(follower, o)] == 0 and counts[(o, follower)] == 0 for o in rest), counts
        assert cluster.leader() == leader, "isolating a follower must not disturb the majority"

        # Isolate the leader: the two others elect one of themselves.
        cluster.heal()
        cluster.wait_ready(60)
        leader = cluster.leader()
        rest = [n for n in cluster.nodes if n != leader]
        for other in rest:
            cluster.drop(leader, other)
            cluster.drop(other, leader)
        _wait_for(
            lambda: any(cluster.node_status(n).role == "leader" for n in rest), 30, "a leader on the majority side"
        )
        cluster.heal()
    finally:
        cluster.teardown()
    assert not any(_group_members(p) for p in pids)
