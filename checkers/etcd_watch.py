"""etcd's watch guarantees, checked on a history of the ``watch-stream``
workload (``workloads/watch_stream.py``): a pure function of the history.

etcd documents (API guarantees, "Watch"): events are *ordered* by revision;
a watch never delivers the same event twice (*unique*); it is *reliable* --
a sequence of events is never dropped, a watch from revision r delivers
every event from r on with no gap; and it is *resumable* -- a client that
reconnects from the revision after the last one it saw misses nothing. Every
event is also *atomic*: it carries the revision its write created, so all
watchers agree on what happened at each revision.

Ops (values as the etcd watch client records them):

- ``write`` ``[key, n]`` -> ok ``[key, n, revision]``;
- ``watch`` / ``final-watch`` -> (any completion type: the events are what
  the client received) ``{"events": [[revision, key, value], ...], "start":
  S (the op that opened the stream), "resumed": [[from, endpoint], ...],
  "breaks": [...], "fence": [key, value, revision] (final-watch)}``. One
  process has one stream (its client's), resumed across breaks.

Checks, every one a counterexample when it fails:

- ``out-of-order`` / ``duplicate``: a stream's revisions strictly increase;
- ``before-start``: no event older than the stream's start revision;
- ``phantom``: every event is a put of a value some write (acknowledged or
  indeterminate) or fence wrote;
- ``disagree``: one revision, one (key, value), across every stream and
  every acknowledgement;
- ``wrong-revision``: an acknowledged write shows up at the revision it was
  acknowledged with;
- ``gap``: a stream from S that delivered revision L delivered every known
  revision of the prefix between S and L (known: acknowledged, or seen by any
  stream); a final fence makes L at least every acknowledged write's revision
  -- so no acknowledged write is missing from a stream that confirmed its fence;
- ``revision-order``: a write acknowledged before another was invoked has
  the lower revision (revisions respect real time).

Valid only with a witness: streams that delivered events. A history without
any delivered event is "unknown" (nothing was tested).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from checkers.history import OK, Op, Operation, pair
from checkers.result import Result

NAME = "etcd-watch"
WATCH_FS = ("watch", "final-watch")


@dataclass
class Stream:
    process: Any
    start: int | None = None
    events: list[tuple[int, str, str, int]] = field(default_factory=list)  # (rev, key, value, op index)
    resumes: int = 0
    breaks: int = 0
    fences: list[int] = field(default_factory=list)  # confirmed fence revisions (ok final-watch)


def _event(raw: Any) -> tuple[int, str, str, str] | None:
    if not isinstance(raw, (list, tuple)) or len(raw) < 3:
        return None
    try:
        rev = int(raw[0])
    except (TypeError, ValueError):
        return None
    kind = str(raw[3]) if len(raw) > 3 else "PUT"
    return rev, str(raw[1]), "" if raw[2] is None else str(raw[2]), kind


def streams_of(ops: list[Operation]) -> tuple[dict[Any, Stream], list[dict[str, Any]]]:
    """Each process's stream from its watch ops (in the process's order), and
    malformed entries (reported as problems)."""
    streams: dict[Any, Stream] = {}
    bad: list[dict[str, Any]] = []
    for o in ops:
        if o.f not in WATCH_FS or o.completion is None or not isinstance(o.completion.value, dict):
            continue
        value = o.completion.value
        s = streams.setdefault(o.process, Stream(o.process))
        if value.get("start") is not None and s.start is None:
            s.start = int(value["start"])
        s.resumes += len(value.get("resumed") or ())
        s.breaks += len(value.get("breaks") or ())
        for raw in value.get("events") or ():
            ev = _event(raw)
            if ev is None:
                bad.append(
                    {
                        "kind": "malformed",
                        "op": o.completion.index,
                        "event": raw,
                        "why": f"op {o.completion.index} recorded a malformed event {raw!r}",
                    }
                )
                continue
            rev, key, val, kind = ev
            if kind != "PUT":
                bad.append(
                    {
                        "kind": "phantom",
                        "op": o.completion.index,
                        "revision": rev,
                        "why": f"op {o.completion.index}: a {kind} event for {key!r} at revision {rev}, "
                        "but the workload never deletes",
                    }
                )
                continue
            s.events.append((rev, key, val, o.completion.index))
        fence = value.get("fence")
        if o.status == OK and isinstance(fence, (list, tuple)) and len(fence) == 3:
            s.fences.append(int(fence[2]))
    return streams, bad


def check(history: Iterable[Op]) -> Result:
    ops = pair(list(history))
    writes = [o for o in ops if o.f == "write"]
    acked: dict[tuple[str, str], tuple[int, Operation]] = {}  # (key, value) -> (revision, op)
    possible: set[tuple[str, str]] = set()
    problems: list[dict[str, Any]] = []
    for w in writes:
        inp = w.input
        if not isinstance(inp, (list, tuple)) or len(inp) != 2:
            continue
        kv = (str(inp[0]), str(inp[1]))
        if w.status == OK:
            out = w.output
            if isinstance(out, (list, tuple)) and len(out) == 3 and out[2] is not None:
                acked[kv] = (int(out[2]), w)
            possible.add(kv)
        elif w.status != "fail":
            possible.add(kv)
    # fences are writes too (acknowledged whenever recorded)
    fence_acks: dict[tuple[str, str], int] = {}
    for o in ops:
        if o.f == "final-watch" and o.completion is not None and isinstance(o.completion.value, dict):
            fence = o.completion.value.get("fence")
            if isinstance(fence, (list, tuple)) and len(fence) == 3 and fence[2] is not None:
                fence_acks[(str(fence[0]), str(fence[1]))] = int(fence[2])
                possible.add((str(fence[0]), str(fence[1])))

    streams, bad = streams_of(ops)
    problems += bad

    # one (key, value) per revision, from acknowledgements first, then events
    at: dict[int, tuple[str, str, str]] = {}  # rev -> (key, value, who said so)
    for (k, v), (rev, w) in acked.items():
        _claim(at, rev, (k, v), f"write op {w.index}", problems)
    for (k, v), rev in fence_acks.items():
        _claim(at, rev, (k, v), f"fence {k}", problems)
    for s in streams.values():
        for rev, k, v, idx in s.events:
            _claim(at, rev, (k, v), f"process {s.process}'s stream (op {idx})", problems)
            if (k, v) not in possible:
                problems.append(
                    {
                        "kind": "phantom",
                        "process": s.process,
                        "op": idx,
                        "revision": rev,
                        "why": f"process {s.process}'s stream delivered {k}={v!r} at revision {rev}, "
                        "a value no write ever wrote",
                    }
                )
            elif (k, v) in acked and acked[(k, v)][0] != rev:
                problems.append(
                    {
                        "kind": "wrong-revision",
                        "process": s.process,
                        "op": idx,
                        "revision": rev,
                        "why": f"process {s.process}'s stream delivered {k}={v!r} at revision {rev}, "
                        f"but its write was acknowledged at revision {acked[(k, v)][0]}",
                    }
                )

    known = sorted(at)
    covered = 0
    for s in streams.values():
        revs = [e[0] for e in s.events]
        for (r0, _, _, i0), (r1, k1, _, i1) in zip(s.events, s.events[1:], strict=False):
            if r1 == r0:
                problems.append(
                    {
                        "kind": "duplicate",
                        "process": s.process,
                        "ops": [i0, i1],
                        "revision": r1,
                        "why": f"process {s.process}'s stream delivered revision {r1} twice (ops {i0} and {i1})",
                    }
                )
            elif r1 < r0:
                problems.append(
                    {
                        "kind": "out-of-order",
                        "process": s.process,
                        "ops": [i0, i1],
                        "revision": r1,
                        "why": f"process {s.process}'s stream delivered revision {r1} ({k1}) after "
                        f"revision {r0} (ops {i0} and {i1})",
                    }
                )
        if not revs:
            continue
        start = s.start if s.start is not None else revs[0]
        if s.start is not None and revs[0] < s.start:
            problems.append(
                {
                    "kind": "before-start",
                    "process": s.process,
                    "revision": revs[0],
                    "why": f"process {s.process}'s stream started at revision {s.start} but "
                    f"delivered revision {revs[0]}",
                }
            )
        last = max(revs)
        have = set(revs)
        missing = [r for r in _between(known, start, last) if r not in have]
        covered += len(_between(known, start, last)) - len(missing)
        if missing:
            k, v, who = at[missing[0]]
            problems.append(
                {
                    "kind": "gap",
                    "process": s.process,
                    "revisions": missing[:20],
                    "stream": [start, last],
                    "why": f"process {s.process}'s stream from revision {start} delivered up to "
                    f"{last} but not {len(missing)} revision(s) in between: {missing[:10]} "
                    f"(revision {missing[0]} is {k}={v!r}, seen by {who})",
                }
            )

    problems += _revision_order(list(acked.values()))

    n_events = sum(len(s.events) for s in streams.values())
    details = {
        "streams": len(streams),
        "streams_with_events": sum(1 for s in streams.values() if s.events),
        "events": n_events,
        "known_revisions": len(known),
        "acknowledged_writes": len(acked),
        "revisions_checked_for_gaps": covered,
        "resumes": sum(s.resumes for s in streams.values()),
        "breaks": sum(s.breaks for s in streams.values()),
        "confirmed_fences": sum(len(s.fences) for s in streams.values()),
    }
    if problems:
        kinds = sorted({p["kind"] for p in problems})
        return Result.illegal(
            NAME,
            f"{len(problems)} watch violation(s): {', '.join(kinds)}",
            "\n".join(p["why"] for p in problems[:20]),
            {"problems": problems[:50]},
            details,
        )
    if n_events == 0:
        return Result.unknown(
            NAME,
            "no watch stream delivered an event",
            "Without delivered events nothing about the watch guarantees was tested.",
            details,
        )
    return Result.ok(
        NAME,
        f"{details['streams_with_events']} stream(s) delivered {n_events} events in order, "
        f"without gaps ({covered} revisions checked, {details['resumes']} resumes, "
        f"{details['confirmed_fences']} fences confirmed)",
        {"streams": details["streams_with_events"], "events": n_events, "revisions_checked_for_gaps": covered},
        details=details,
    )


def _claim(
    at: dict[int, tuple[str, str, str]], rev: int, kv: tuple[str, str], who: str, problems: list[dict[str, Any]]
) -> None:
    prev = at.get(rev)
    if prev is None:
        at[rev] = (kv[0], kv[1], who)
    elif (prev[0], prev[1]) != kv:
        problems.append(
            {
                "kind": "disagree",
                "revision": rev,
                "why": f"revision {rev} is {prev[0]}={prev[1]!r} according to {prev[2]} but "
                f"{kv[0]}={kv[1]!r} according to {who}",
            }
        )


def _between(sorted_revs: list[int], lo: int, hi: int) -> list[int]:
    from bisect import bisect_left, bisect_right

    return sorted_revs[bisect_left(sorted_revs, lo) : bisect_right(sorted_revs, hi)]


def _revision_order(acked: list[tuple[int, Operation]]) -> list[dict[str, Any]]:
    """A write acknowledged before another was invoked has the lower revision."""
    marks: list[tuple[int, int, int, Operation]] = []  # (history position, 0 call / 1 return, rev, op)
    for rev, w in acked:
        marks.append((w.call_index, 0, rev, w))
        if w.return_index is not None:
            marks.append((w.return_index, 1, rev, w))
    marks.sort(key=lambda m: (m[0], m[1]))
    problems: list[dict[str, Any]] = []
    top: tuple[int, Operation] | None = None  # highest revision among completed writes
    for _, kind, rev, w in marks:
        if kind == 1:
            if top is None or rev > top[0]:
                top = (rev, w)
        elif top is not None and rev <= top[0]:
            problems.append(
                {
                    "kind": "revision-order",
                    "ops": [top[1].index, w.index],
                    "why": f"write op {w.index} got revision {rev}, but write op "
                    f"{top[1].index} was acknowledged with revision {top[0]} "
                    "before it was invoked",
                }
            )
    return problems
