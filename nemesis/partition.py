"""Partition shapes as pure functions: nodes -> grudge.

A grudge maps each node to the set of nodes it no longer hears from
(``dst -> frozenset(src)``). Every shape here is symmetric (if a drops b, b
drops a): the backend cuts TCP links, which carry both directions, so a
one-way shape could not be honoured faithfully anyway. Randomness comes in as
an explicit ``random.Random``; nothing here touches a cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from nemesis.base import Grudge


def majority(n: int) -> int:
    return n // 2 + 1


def complete_grudge(components: Sequence[Sequence[str]]) -> Grudge:
    """Every node drops every node outside its own component."""
    everyone = {n for comp in components for n in comp}
    grudge: Grudge = {}
    for comp in components:
        inside = set(comp)
        for node in comp:
            grudge[node] = frozenset(everyone - inside)
    return grudge


def halves(nodes: Sequence[str]) -> Grudge:
    """First half (the smaller one for odd n) against the rest, in order."""
    nodes = list(nodes)
    cut = len(nodes) // 2
    return complete_grudge([nodes[:cut], nodes[cut:]])


def random_halves(nodes: Sequence[str], rng: random.Random) -> Grudge:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    return halves(shuffled)


def isolate(nodes: Sequence[str], node: str) -> Grudge:
    """``node`` alone against everyone else."""
    if node not in nodes:
        raise ValueError(f"cannot isolate {node!r}: not one of {list(nodes)}")
    return complete_grudge([[node], [n for n in nodes if n != node]])


def isolate_one(nodes: Sequence[str], rng: random.Random) -> Grudge:
    return isolate(nodes, rng.choice(list(nodes)))


def bridge(nodes: Sequence[str]) -> Grudge:
    """Two halves that cannot talk, and one node in the middle that talks to
    both (it is the only node that sees a majority in a symmetric cut)."""
    nodes = list(nodes)
    if len(nodes) < 3:
        return halves(nodes)
    mid = len(nodes) // 2
    left, bridge_node, right = nodes[:mid], nodes[mid], nodes[mid + 1 :]
    grudge: Grudge = {bridge_node: frozenset()}
    for n in left:
        grudge[n] = frozenset(right)
    for n in right:
        grudge[n] = frozenset(left)
    return grudge


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Nodes on a (shuffled) ring; each hears only its neighbours within
    distance d = majority // 2, so every node sees a majority (itself
    included) but no two nodes see the same majority.

    With 3 nodes every window covers the whole ring, so the symmetric ring is
    no partition at all; the closest shape that keeps every node in some
    majority is the bridge (a and b cut, c hearing both), used instead."""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    d = majority(n) // 2
    if 2 * d + 1 >= n:
        return bridge(ring)
    grudge: Grudge = {}
    for i, node in enumerate(ring):
        near = {ring[(i + k) % n] for k in range(-d, d + 1)}
        grudge[node] = frozenset(set(ring) - near)
    return grudge


def is_symmetric(grudge: Grudge) -> bool:
    return all(dst in grudge.get(src, frozenset()) for dst, srcs in grudge.items() for src in srcs)


def links(grudge: Grudge) -> list[tuple[str, str]]:
    """The directed links (src, dst) to cut, sorted (deterministic)."""
    return sorted((src, dst) for dst, srcs in grudge.items() for src in srcs)


def describe(grudge: Grudge) -> dict[str, list[str]]:
    """JSON-friendly form: node -> sorted list of the nodes it cannot hear."""
    return {dst: sorted(srcs) for dst, srcs in sorted(grudge.items()) if srcs}


SHAPES = ("halves", "random-halves", "majorities-ring", "bridge", "isolate-one", "isolate-leader", "isolate-follower")


def shape(
    name: str, nodes: Sequence[str], rng: random.Random, leader: Callable[[], str | None] = lambda: None
) -> tuple[Grudge, str]:
    """The grudge of the named shape and a note (e.g. when the leader is unknown)."""
    nodes = list(nodes)
    if name == "halves":
        return halves(nodes), ""
    if name == "random-halves":
        return random_halves(nodes, rng), ""
    if name == "majorities-ring":
        return majorities_ring(nodes, rng), ""
    if name == "bridge":
        shuffled = list(nodes)
        rng.shuffle(shuffled)
        return bridge(shuffled), ""
    if name == "isolate-one":
        return isolate_one(nodes, rng), ""
    if name == "isolate-leader":
        who = leader()
        if who is None or who not in nodes:
            return isolate_one(nodes, rng), "no leader known; isolated a random node instead"
        return isolate(nodes, who), ""
    if name == "isolate-follower":
        who = leader()
        others = [n for n in nodes if n != who]
        if who is None or who not in nodes or not others:
            return isolate_one(nodes, rng), "no leader known; isolated a random node instead"
        return isolate(nodes, rng.choice(others)), ""
    raise ValueError(f"unknown partition shape {name!r}; known shapes: {', '.join(SHAPES)}")
