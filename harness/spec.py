"""The test spec: everything a run is made of, as one frozen value.

A run is a spec turned into a history, a verdict and a report. The spec is
stored beside the history as ``test.json`` so that any run can be replayed
(``squall run --replay RUN_DIR``) or re-checked (``squall analyze RUN_DIR``)
from what it stored. Parsing helpers here are pure: they validate user input
and say what is allowed when it is wrong.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

SPEC_VERSION = 1
READS_MODES = ("local", "sync", "linearizable")
CLIENT_MODES = ("roaming", "pinned")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class SpecError(ValueError):
    """A spec value is malformed; the message says what is allowed."""


@dataclass(frozen=True)
class TestSpec:
    """One test: which cluster, which workload, which faults, for how long.

    ``nodes`` holds node names ("n1".."nN"); ``concurrency`` is the number of
    client worker threads; ``rate`` is the target total client ops per
    second; ``nemesis`` is a tuple of fault names (empty: no faults).
    ``options`` carries free, JSON-able extras (e.g. a test-only database
    fault); it is stored as sorted key/value pairs so the spec stays hashable.
    """

    __test__ = False  # not a pytest test class despite its name

    name: str
    nodes: tuple[str, ...] = ("n1", "n2", "n3")
    backend: str = "local"
    db: str = "squall"
    workload: str = "register"
    nemesis: tuple[str, ...] = ("partition", "kill")
    nemesis_interval_s: float = 5.0
    time_limit_s: float = 60.0
    concurrency: int = 6
    rate: float = 20.0
    seed: int = 0
    reads: str = "local"
    clients: str = "roaming"
    min_availability: float = 0.5
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise SpecError(f"test name {self.name!r} must be letters, digits and . _ + - (it names a folder)")
        if not self.nodes:
            raise SpecError("a test needs at least one node")
        if len(set(self.nodes)) != len(self.nodes):
            raise SpecError(f"node names must be distinct, got {list(self.nodes)}")
        if self.time_limit_s <= 0:
            raise SpecError(f"time limit must be > 0 seconds, got {self.time_limit_s}")
        if self.concurrency < 1:
            raise SpecError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate <= 0:
            raise SpecError(f"rate must be > 0 ops/s, got {self.rate}")
        if self.nemesis_interval_s <= 0:
            raise SpecError(f"nemesis interval must be > 0 seconds, got {self.nemesis_interval_s}")
        if self.reads not in READS_MODES:
            raise SpecError(f"reads mode {self.reads!r} is not one of {', '.join(READS_MODES)}")
        if self.clients not in CLIENT_MODES:
            raise SpecError(f"clients mode {self.clients!r} is not one of {', '.join(CLIENT_MODES)}")
        if not 0.0 <= self.min_availability <= 1.0:
            raise SpecError(f"min availability must be between 0 and 1 (a share of ops), got {self.min_availability}")

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def with_options(self, **extra: Any) -> TestSpec:
        merged = {**self.option_dict, **extra}
        return replace(self, options=tuple(sorted(merged.items())))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes"] = list(self.nodes)
        d["nemesis"] = list(self.nemesis)
        d["options"] = self.option_dict
        d["version"] = SPEC_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TestSpec:
        version = d.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"test.json version {version} is not supported (this squall reads version {SPEC_VERSION})")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known - {"version"})
        if unknown:
            raise SpecError(f"test.json has unknown fields {unknown}; allowed: {sorted(known)}")
        try:
            kwargs = dict(d)
            kwargs.pop("version", None)
            if "nodes" in kwargs:
                kwargs["nodes"] = normalize_nodes(kwargs["nodes"])
            if "nemesis" in kwargs:
                kwargs["nemesis"] = tuple(kwargs["nemesis"])
            kwargs["options"] = tuple(sorted(dict(kwargs.get("options") or {}).items()))
            return cls(**kwargs)
        except TypeError as exc:
            raise SpecError(f"test.json is malformed: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> TestSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"test.json is not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise SpecError("test.json must hold a JSON object")
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> TestSpec:
        """Load from a test.json file or a run directory holding one."""
        p = Path(path)
        if p.is_dir():
            p = p / "test.json"
        if not p.exists():
            raise SpecError(f"no test spec at {p} (pass a run directory or its test.json)")
        return cls.from_json(p.read_text(encoding="utf-8"))


def stream_rng(seed: int, stream: str) -> random.Random:
    """The random stream ``stream`` of a run with ``seed``: the nemesis,
    each client slot and the scheduler draw from their own, so one of them
    drawing more (or at another time) never shifts another's choices.
    Seeding with a string is stable across processes and Python runs (it is
    hashed with SHA-512, not with the salted ``hash()``)."""
    return random.Random(f"squall/{seed}/{stream}")


def normalize_nodes(nodes: int | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """An int N becomes ("n1".."nN"); a list of names is kept as given."""
    if isinstance(nodes, bool):
        raise SpecError("nodes must be a count or a list of names")
    if isinstance(nodes, int):
        if not 1 <= nodes <= 9:
            raise SpecError(f"--nodes must be between 1 and 9, got {nodes}")
        return tuple(f"n{i}" for i in range(1, nodes + 1))
    names = tuple(str(n) for n in nodes)
    if not names:
        raise SpecError("nodes must not be empty")
    return names


_CONCURRENCY_RE = re.compile(r"^\s*(\d+)\s*(n?)\s*$")


def parse_concurrency(text: str | int, node_count: int) -> int:
    """'5' -> 5 threads; '2n' -> 2 x node_count threads (as Jepsen's --concurrency)."""
    m = _CONCURRENCY_RE.match(str(text))
    if not m:
        raise SpecError(f"concurrency {text!r} must be a number N or Nn (N times the node count), e.g. 5 or 2n")
    n = int(m.group(1)) * (node_count if m.group(2) else 1)
    if n < 1:
        raise SpecError(f"concurrency must be at least 1, got {text!r}")
    if n > 256:
        raise SpecError(f"concurrency {n} is more than the 256 threads allowed")
    return n


def parse_nemesis(
    text: str,
    allowed: tuple[str, ...] | list[str],
    supported: tuple[str, ...] | list[str] | None = None,
    backend: str = "",
    sequences: Mapping[str, tuple[str, ...]] | None = None,
    *,
    everything: tuple[str, ...] | list[str] | None = None,
) -> tuple[str, ...]:
    """'partition,kill' -> ('partition', 'kill'); 'none' or '' -> ();
    'all' -> every fault of ``everything`` (default ``supported``: the
    backend's faults; default ``allowed``). A fault the backend cannot
    perform is refused, naming it. ``sequences``: targeted fault sequences
    that may be named too (name -> the faults they use; the backend must
    support those); "all" does not include them."""
    sequences = dict(sequences or {})
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or parts == ["none"]:
        return ()
    supported = tuple(allowed if supported is None else supported)
    bad = [p for p in parts if (p not in allowed and p not in sequences and p != "all") or p == "none"]
    if bad:
        seqs = f", a targeted sequence ({', '.join(sequences)})" if sequences else ""
        raise SpecError(
            f"unknown nemesis fault(s) {', '.join(bad)}; allowed: {', '.join(allowed)} "
            f"(comma-separated){seqs}, all, or none"
        )
    all_of = tuple(supported if everything is None else everything)
    seen: list[str] = []
    for p in parts:
        for f in all_of if p == "all" else (p,):
            if f not in seen:
                seen.append(f)
    unsupported = [f for f in seen if f not in supported and f not in sequences]
    unsupported += [
        f"{f} (it needs {', '.join(sequences[f])})"
        for f in seen
        if f in sequences and not set(sequences[f]) <= set(supported)
    ]
    if unsupported:
        raise SpecError(
            f"the {backend or 'chosen'} backend cannot perform the nemesis fault(s) "
            f"{', '.join(unsupported)}; it supports: {', '.join(supported)}"
        )
    return tuple(seen)


def default_name(db: str, workload: str, nemesis: tuple[str, ...]) -> str:
    return f"{db}-{workload}-{'+'.join(nemesis) if nemesis else 'none'}"
