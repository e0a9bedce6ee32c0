"""Availability (checkers.availability): hand-built histories with fault
windows, and the simulated correct system (always answers)."""

from __future__ import annotations

from checkers import _simulate, availability
from checkers.history import Op

S = 1_000_000_000
KINDS = {"read": "read", "write": "write", "cas": "write", "final-read": "read"}


def h(events):
    """events: (t_s, type, process, f, value, error, node)."""
    return [Op(i, int(t * S), typ, p, f, v, node, err) for i, (t, typ, p, f, v, err, node) in enumerate(events)]


def ops(t0, t1, n, ok_every=1, proc0=0, node="n1", f="write"):
    out, step = [], (t1 - t0) / n
    for i in range(n):
        t = t0 + i * step
        ok = i % ok_every == 0
        p = proc0 + i
        out.append((t, "invoke", p, f, [0, i], None, None))
        out.append((t + step / 2, "ok" if ok else "info", p, f, [0, i], None if ok else "timeout", node))
    return out


def fault(t0, t1):
    return [
        (t0, "invoke", "nemesis", "start-partition", None, None, None),
        (t0, "info", "nemesis", "start-partition", "halves", None, None),
        (t1, "invoke", "nemesis", "stop-partition", None, None, None),
        (t1, "info", "nemesis", "stop-partition", None, None, None),
    ]


def test_answering_outside_faults_is_valid_even_if_nothing_answers_during_a_fault():
    ev = sorted(
        ops(0, 3, 30) + fault(3, 6) + ops(3, 6, 30, ok_every=1000, proc0=100) + ops(6, 9, 30, proc0=200),
        key=lambda e: e[0],
    )
    r = availability.check(h(ev), KINDS, 0.5)
    assert r.valid is True
    rows = r.details["windows"]
    assert [w["window"] for w in rows] == ["fault-free", "fault", "fault-free"]
    assert rows[1]["write"]["ok"] == 1 and rows[1]["write"]["total"] == 30
    assert rows[0]["nodes"]["n1"]["write"]["share"] == 1.0


def test_a_fault_free_stretch_below_the_minimum_is_unavailable():
    ev = sorted(ops(0, 3, 30) + fault(3, 6) + ops(6, 9, 30, ok_every=4, proc0=200), key=lambda e: e[0])
    r = availability.check(h(ev), KINDS, 0.5)
    assert r.valid is False and r.summary.startswith("unavailable")
    assert r.counterexample["windows"][0]["start_s"] == 6.0
    assert availability.check(h(ev), KINDS, 0.2).valid is True  # the floor is the caller's


def test_a_cas_the_server_refused_counts_as_an_answer():
    ev = [
        (0.1 * i, t, i // 2, "cas", [0, [1, 2]], ("BadVersion" if t == "fail" else None), "n1")
        for i, t in enumerate(["invoke", "fail"] * 12)
    ]
    assert availability.check(h(ev), KINDS, 0.5).valid is False
    assert availability.check(h(ev), KINDS, 0.5, answered=("BadVersion",)).valid is True


def test_a_final_phase_that_never_completes_is_unavailable():
    ev = ops(0, 3, 30) + [
        (4, "invoke", 99, "final-read", None, None, None),
        (9, "info", 99, "final-read", None, "timeout", None),
    ]
    r = availability.check(h(ev), KINDS, 0.5, final_fs=("final-read",))
    assert r.valid is False and "final phase" in r.explanation
    ev[-1] = (5, "ok", 99, "final-read", [], None, "n2")
    assert availability.check(h(ev), KINDS, 0.5, final_fs=("final-read",)).valid is True


def test_nothing_to_judge_is_unknown():
    assert availability.check([], KINDS).valid == "unknown"
    assert availability.check(h(ops(0, 1, 3)), KINDS).valid == "unknown"  # too few ops


def test_the_grace_after_a_fault_is_not_held_to_the_minimum():
    ev = sorted(
        ops(0, 3, 30) + fault(3, 6) + ops(6, 8, 20, ok_every=1000, proc0=100) + ops(8, 10, 10, proc0=200),
        key=lambda e: e[0],
    )
    assert availability.check(h(ev), KINDS, 0.5).valid is False
    assert availability.check(h(ev), KINDS, 0.5, grace_s=2.0).valid is True


def test_a_simulated_correct_system_is_available():
    for seed in range(10):
        hist = _simulate.zk_history(200, seed=seed, crash_rate=0.05)
        for o in hist:
            o.time *= 10_000  # spread the simulated ops over seconds
        r = availability.check(hist, KINDS, 0.5)
        assert r.valid is True, r.explanation
