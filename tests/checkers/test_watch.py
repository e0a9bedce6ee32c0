"""The watch workload's checks: hand-built histories and histories of a
simulated correct ZooKeeper (one server order, one-shot and persistent
watches whose events precede the replies that follow them)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.history import Op
from checkers.watch import check_watch, fifo, one_shot, persistent, version_agreement, write_order

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def simulate(seed: int, n: int = 120, procs: int = 4) -> list[Op]:
    """A correct server: writes apply atomically in zxid order; each client's
    one-shot watch fires on the first change after it was set, its
    persistent watch on every change, always before the next reply."""
    rng = random.Random(seed)
    versions = {"w0": 0, "w1": 0, "p0": 0, "p1": 0}
    data = {k: "" for k in versions}
    armed: dict[tuple, Any] = {}  # (proc, key) -> version (or exists state) set at
    present: dict[str, str | None] = {"e0": None, "e1": None}  # e-key -> czxid while it exists
    fired: dict[tuple, bool] = {}
    pending_events: dict[tuple, int] = {}  # (proc, key) -> persistent events since last read
    prev: dict[tuple, int] = {}
    ops: list[Op] = []
    zxid = 100
    for i in range(n):
        p = rng.randrange(procs)
        f = rng.choice(["write", "write-burst", "watch-read", "pwatch-read", "toggle", "exists-read"])
        if f in ("toggle", "exists-read"):  # e-keys: a znode that writes create and delete
            k = rng.choice(["e0", "e1"])
            if f == "toggle":
                zxid += 1
                present[k] = None if present[k] else f"{zxid:#x}"
                for (q, key), _ in list(armed.items()):
                    if key == k:
                        fired[(q, key)] = True
                ops += [
                    Op(len(ops), len(ops), "invoke", p, "write", [k, i]),
                    Op(len(ops) + 1, len(ops) + 1, "ok", p, "write", [k, "+" if present[k] else "-", None], zxid=zxid),
                ]
                continue
            state = present[k] or "absent"
            v = {"key": k, "state": state, "client": 1}
            if (p, k) in armed:
                v["armed"], v["fired"] = armed[(p, k)], fired.get((p, k), False)
            armed[(p, k)], fired[(p, k)] = state, False
            ops += [
                Op(len(ops), len(ops), "invoke", p, f, [k, None]),
                Op(len(ops) + 1, len(ops) + 1, "ok", p, f, v, zxid=zxid),
            ]
            continue
        if f == "write-burst":  # pipelined writes, applied back to back in the order sent
            k = rng.choice(["w0", "p0"])
            pairs = []
            for j in range(3):
                versions[k] += 1
                data[k] = f"{i}.{j}"
                pairs.append([data[k], versions[k]])
                for (q, key), _ in list(armed.items()):
                    if key == k:
                        fired[(q, key)] = True
                for q in range(procs):
                    pending_events[(q, k)] = pending_events.get((q, k), 0) + 1
            zxid += 3
            ops += [
                Op(len(ops), len(ops), "invoke", p, f, [k, [i, i, i]]),
                Op(len(ops) + 1, len(ops) + 1, "ok", p, f, [k, pairs], zxid=zxid),
            ]
            continue
        if f == "write":
            k = rng.choice(sorted(versions))
            zxid += 1
            versions[k] += 1
            data[k] = str(i)
            for (q, key), _ in list(armed.items()):
                if key == k:
                    fired[(q, key)] = True
            for q in range(procs):
                pending_events[(q, k)] = pending_events.get((q, k), 0) + 1
            ops += [
                Op(len(ops), len(ops), "invoke", p, f, [k, i]),
                Op(len(ops) + 1, len(ops) + 1, "ok", p, f, [k, str(i), versions[k]], zxid=zxid),
            ]
            continue
        k = rng.choice(["w0", "w1"] if f == "watch-read" else ["p0", "p1"])
        v = {"key": k, "data": data[k], "version": versions[k], "client": 1}
        if f == "watch-read":
            if (p, k) in armed:
                v["armed"], v["fired"] = armed[(p, k)], fired.get((p, k), False)
            armed[(p, k)], fired[(p, k)] = versions[k], False
        else:
            if (p, k) in prev:
                v["prev_version"], v["events"] = prev[(p, k)], pending_events.get((p, k), 0)
            prev[(p, k)], pending_events[(p, k)] = versions[k], 0
        ops += [
            Op(len(ops), len(ops), "invoke", p, f, [k, None]),
            Op(len(ops) + 1, len(ops) + 1, "ok", p, f, v, zxid=zxid),
        ]
    return ops


@SETTINGS
@given(st.integers(0, 10**6))
def test_simulated_correct_server_is_valid(seed):
    r = check_watch(simulate(seed))
    assert r.valid is True, r.explanation


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(["fired", "events", "data", "zxid", "order"]))
def test_mutations_are_caught(seed, what):
    h = simulate(seed)
    if what == "order":
        bursts = [op for op in h if op.type == "ok" and op.f == "write-burst"]
        if bursts:
            pairs = bursts[0].value[1]
            pairs[0][1], pairs[1][1] = pairs[1][1], pairs[0][1]  # the second write applied first
            assert fifo(h).valid is False
        return
    if what == "fired":
        targets = [op for op in h if op.type == "ok" and op.f == "watch-read" and "armed" in op.value]
        op = targets[0]
        op.value = {**op.value, "fired": not op.value["fired"]}  # event lost, or spurious
        assert one_shot(h).valid is False
    elif what == "events":
        targets = [op for op in h if op.type == "ok" and op.f == "pwatch-read" and "events" in op.value]
        op = targets[0]
        op.value = {**op.value, "events": op.value["events"] + 1}
        assert persistent(h).valid is False
    elif what == "data":
        w = [op for op in h if op.type == "ok" and op.f == "write" and op.value[2] is not None][0]
        h.append(Op(len(h), len(h), "invoke", 9, "watch-read", [w.value[0], None]))
        h.append(
            Op(
                len(h),
                len(h),
                "ok",
                9,
                "watch-read",
                {"key": w.value[0], "data": "other", "version": w.value[2], "client": 1},
            )
        )
        assert version_agreement(h).valid is False
    else:
        ws = [op for op in h if op.type == "ok" and op.f == "write" and op.value[2] is not None]
        same = [(a, b) for a in ws for b in ws if a.value[0] == b.value[0] and a.zxid < b.zxid]
        if same:
            a, b = same[0]
            a.zxid, b.zxid = b.zxid, a.zxid
            assert write_order(h).valid is False
    assert check_watch(h).valid is False or what == "zxid"


def _read(i, p, f, v):
    return [Op(2 * i, 2 * i, "invoke", p, f, [v["key"], None]), Op(2 * i + 1, 2 * i + 1, "ok", p, f, v)]


def test_data_before_event_names_the_read():
    h = _read(0, 0, "watch-read", {"key": "w0", "data": "", "version": 0, "client": 1}) + _read(
        1, 0, "watch-read", {"key": "w0", "data": "5", "version": 1, "client": 1, "armed": 0, "fired": False}
    )
    r = one_shot(h)
    assert r.valid is False
    assert r.counterexample["violations"][0]["problem"] == "data-before-event"
    assert r.counterexample["violations"][0]["op"]["index"] == 3


def test_going_back_in_time_is_invalid_and_nothing_compared_is_unknown():
    h = _read(0, 0, "pwatch-read", {"key": "p0", "data": "5", "version": 3, "client": 1}) + _read(
        1, 0, "pwatch-read", {"key": "p0", "data": "4", "version": 2, "client": 1}
    )
    r = check_watch(h)
    assert r.valid is False and "watch-monotonic" in r.counterexample
    assert check_watch([]).is_unknown
    assert one_shot(h).is_unknown and persistent(h).is_unknown


def test_child_keys_writes_without_a_version_and_a_child_watch_that_missed_a_delete():
    """A child key's write reports no data version (the key's reads carry its cversion): the
    agreement and write-order checks leave it out; a child watch set at cversion 1 that did not
    fire before a read shows cversion 2 (a child deleted without NodeChildrenChanged) is caught."""
    h = _read(0, 0, "watch-read", {"key": "c0", "data": "n1", "version": 1, "client": 1})
    h += [
        Op(len(h), len(h), "invoke", 1, "write", ["c0", 3]),
        Op(len(h) + 1, len(h) + 1, "ok", 1, "write", ["c0", "-n1", None], zxid=7),
    ]
    h += [
        Op(len(h), len(h), "invoke", 1, "write", ["c0", 5]),
        Op(len(h) + 1, len(h) + 1, "ok", 1, "write", ["c0", "+n5", None], zxid=8),
    ]
    read = {"key": "c0", "data": "", "version": 2, "client": 1, "armed": 1, "fired": True}
    ok = h + _read(len(h), 0, "watch-read", read)
    assert version_agreement(ok).valid is True and write_order(ok).is_unknown
    assert one_shot(ok).valid is True
    missed = h + _read(len(h), 0, "watch-read", {**read, "fired": False})
    r = one_shot(missed)
    assert r.valid is False and r.counterexample["violations"][0]["problem"] == "data-before-event"


def test_an_unchanged_set_that_makes_no_new_version_is_caught():
    """Writes of the same data ("same") must still make versions: a server that skips them fires
    the watch (or counts an event) for a change the reads never show."""
    h = _read(0, 0, "watch-read", {"key": "w1", "data": "same", "version": 3, "client": 1})
    h += _read(1, 0, "watch-read", {"key": "w1", "data": "same", "version": 3, "client": 1, "armed": 3, "fired": True})
    r = one_shot(h)
    assert r.valid is False and r.counterexample["violations"][0]["problem"] == "fired-without-change"
    p = _read(0, 0, "pwatch-read", {"key": "p1", "data": "same", "version": 3, "client": 1})
    p += _read(
        1, 0, "pwatch-read", {"key": "p1", "data": "same", "version": 3, "client": 1, "prev_version": 3, "events": 2}
    )
    r = persistent(p)
    assert r.valid is False and r.counterexample["violations"][0]["problem"] == "extra-events"


def test_an_exists_watch_that_missed_a_change_is_caught():
    from checkers.watch import exists_watch

    def read(i, v):
        return [
            Op(2 * i, 2 * i, "invoke", 0, "exists-read", [v["key"], None]),
            Op(2 * i + 1, 2 * i + 1, "ok", 0, "exists-read", v),
        ]

    h = read(0, {"key": "e0", "state": "absent", "client": 1})
    assert exists_watch(h).is_unknown
    ok = h + read(1, {"key": "e0", "state": "0x105", "client": 1, "armed": "absent", "fired": True})
    assert exists_watch(ok).valid is True
    aba = h + read(1, {"key": "e0", "state": "absent", "client": 1, "armed": "absent", "fired": True})
    assert exists_watch(aba).valid is True  # created and deleted in between: a fired watch is no violation
    missed = ok + read(2, {"key": "e0", "state": "absent", "client": 1, "armed": "0x105", "fired": False})
    r = exists_watch(missed)
    assert r.valid is False and "e0 armed 0x105, read absent, no event (op 5)" in r.explanation


def test_a_burst_applied_out_of_the_order_sent_is_caught():
    def burst(i, versions):
        pairs = [[str(10 * i + j), v] for j, v in enumerate(versions)]
        return [
            Op(2 * i, 2 * i, "invoke", 0, "write-burst", ["w0", [10 * i + j for j in range(len(versions))]]),
            Op(2 * i + 1, 2 * i + 1, "ok", 0, "write-burst", ["w0", pairs]),
        ]

    assert fifo([]).is_unknown
    good = burst(0, [4, 5, 7])  # another client's write may land in between
    r = fifo(good)
    assert r.valid is True and "1 pipelined burst(s) applied in the order sent" in r.summary
    r = fifo(good + burst(1, [9, 8, 10]))
    assert r.valid is False and "sent ['10', '11', '12'], applied at versions [9, 8, 10] (op 3)" in r.explanation
    # the burst's versions count in the agreement check too: another value at version 5 disagrees
    clash = good + [Op(9, 9, "invoke", 1, "write", ["w0", 99]), Op(10, 10, "ok", 1, "write", ["w0", "99", 5])]
    assert version_agreement(clash).valid is False
