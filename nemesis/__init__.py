"""Fault strategies: which faults, on which nodes, when.

Nemeses are written against a small fault protocol (``drop``, ``heal``,
``pause``, ``resume``, ``kill``, ``start``) that every backend implements;
this package declares that protocol and imports nothing else of the project.
Optional abilities are protocols of their own (``LosesUnsynced``: the disk
fault, ``nemesis/disk.py``).

``nemesis.package(faults, interval_s, rng)`` composes partition, pause,
kill and disk faults into a ``NemesisPackage`` (see ``nemesis/package.py``).
"""

from nemesis.base import FaultTarget, LosesUnsynced, Nemesis, NemesisPackage
from nemesis.package import FAULTS, FaultNemesis, package, parse_faults

__all__ = [
    "FAULTS",
    "FaultNemesis",
    "FaultTarget",
    "LosesUnsynced",
    "Nemesis",
    "NemesisPackage",
    "package",
    "parse_faults",
]
