"""Which nodes a process fault (pause, kill) hits: pure target selection."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from nemesis.partition import majority

TARGETS = ("one", "minority", "majority", "all", "leader", "follower")


def select(
    spec: str, nodes: Sequence[str], rng: random.Random, leader: Callable[[], str | None] = lambda: None
) -> tuple[list[str], str]:
    """The nodes ``spec`` names (sorted) and a note.

    one: a random node; minority: (n-1)//2 random nodes (at least one);
    majority: n//2+1 random nodes; all; leader: the current leader (a random
    node, with a note, if none is known); follower: a random node that is not
    the leader (any node, with a note, if no leader is known)."""
    nodes = list(nodes)
    n = len(nodes)
    if spec == "one":
        return [rng.choice(nodes)], ""
    if spec == "minority":
        return sorted(rng.sample(nodes, max(1, (n - 1) // 2))), ""
    if spec == "majority":
        return sorted(rng.sample(nodes, majority(n))), ""
    if spec == "all":
        return sorted(nodes), ""
    if spec == "leader":
        who = leader()
        if who is None or who not in nodes:
            return [rng.choice(nodes)], "no leader known; chose a random node instead"
        return [who], ""
    if spec == "follower":
        who = leader()
        others = [x for x in nodes if x != who]
        if who is None or who not in nodes or not others:
            return [rng.choice(nodes)], "no leader known; chose a random node as the follower"
        return [rng.choice(others)], ""
    raise ValueError(f"unknown process-fault target {spec!r}; known: {', '.join(TARGETS)}")
