"""Fresh reads after sync (checkers.fresh_reads) and session order
(checkers.session_order): hand-built valid and invalid histories, and
property tests against a simulated correct ZooKeeper-like system
(``checkers._simulate.zk_history``)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import _simulate
from checkers.history import Op
from workloads.checks import fresh_after_sync, session_order

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def H(*rows: tuple) -> list[Op]:
    """rows: (type, process, f, value, zxid, node, session)."""
    out = []
    for i, (typ, p, f, v, *rest) in enumerate(rows):
        zxid, node, session = (list(rest) + [None, None, None])[:3]
        out.append(Op(i, i * 10, typ, p, f, v, node, None, zxid, session=session))
    return out


# -- fresh reads after sync ---------------------------------------------------


def test_read_after_sync_that_sees_the_acknowledged_write_is_valid():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], 5, "n1", "s0"),
        ("invoke", 1, "read", [1, None]),
        ("ok", 1, "read", [1, 10], 5, "n2", "s1"),
    )
    r = fresh_after_sync(h)
    assert r.valid is True and r.details["reads_checked"] == 1


def test_read_after_sync_that_misses_an_acknowledged_write_names_sync_read_and_write():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], 5, "n1", "s0"),
        ("invoke", 0, "write", [1, 11]),
        ("ok", 0, "write", [1, 11], 6, "n1", "s0"),
        ("invoke", 1, "read", [1, None]),
        ("ok", 1, "read", [1, 10], 5, "n3", "s1"),
    )
    r = fresh_after_sync(h)
    assert r.valid is False
    p = r.counterexample["stale_reads"][0]
    assert (p["read"], p["missed_write"], p["missed_value"], p["read_value"]) == (4, 2, 11, 10)
    assert "sync" in p["sync"] and p["read_node"] == "n3"
    assert r.details["known_limitation"]["issue"] == "ZOOKEEPER-1675"


def test_read_of_nothing_after_an_acknowledged_create_is_stale():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], 5),
        ("invoke", 1, "read", [1, None]),
        ("ok", 1, "read", [1, None], 4),
    )
    assert fresh_after_sync(h).valid is False


def test_a_write_concurrent_with_the_read_need_not_be_seen():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], 5),
        ("invoke", 1, "read", [1, None]),
        ("invoke", 0, "write", [1, 11]),
        ("ok", 0, "write", [1, 11], 6),
        ("ok", 1, "read", [1, 10], 5),
    )
    assert fresh_after_sync(h).valid is True


def test_without_zxids_real_time_order_decides():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10]),
        ("invoke", 0, "write", [1, 11]),
        ("ok", 0, "write", [1, 11]),
        ("invoke", 1, "read", [1, None]),
        ("ok", 1, "read", [1, 10]),
    )
    assert fresh_after_sync(h).valid is False


def test_a_value_from_a_crashed_write_is_not_judged_and_nothing_judged_is_unknown():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], 5),
        ("invoke", 2, "write", [1, 12]),
        ("info", 2, "write", [1, 12]),
        ("invoke", 1, "read", [1, None]),
        ("ok", 1, "read", [1, 12], 7),
    )
    assert fresh_after_sync(h).valid == "unknown"
    assert fresh_after_sync([]).valid == "unknown"


@SETTINGS
@given(seed=st.integers(0, 10_000), crash=st.sampled_from([0.0, 0.1]))
def test_a_correct_system_with_sync_reads_is_always_fresh(seed, crash):
    h = _simulate.zk_history(150, seed=seed, crash_rate=crash, sync_reads=True)
    r = fresh_after_sync(h)
    assert r.valid in (True, "unknown"), r.explanation
    assert r.valid is True or r.details["reads_checked"] == 0


def test_local_reads_of_lagging_servers_are_caught_on_some_seeds():
    verdicts = [fresh_after_sync(_simulate.zk_history(200, seed=s, sync_reads=False)).valid for s in range(20)]
    assert False in verdicts


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_a_stale_value_injected_into_a_fresh_history_is_caught(seed):
    h = _simulate.zk_history(150, seed=seed, sync_reads=True)
    by_key: dict = {}
    for i, op in enumerate(h):
        if op.type == "ok" and op.f == "write":
            by_key.setdefault(op.value[0], []).append((i, op))
    for i, op in enumerate(h):
        if op.type == "ok" and op.f == "read":
            k = op.value[0]
            inv = next(j for j in range(i - 1, -1, -1) if h[j].process == op.process)
            older = sorted((w for j, w in by_key.get(k, []) if j < inv), key=lambda w: w.zxid)
            if len(older) >= 2:  # overwritten before the read was invoked
                h[i].value = [k, older[-2].value[1]]
                r = fresh_after_sync(h)
                assert r.valid is False
                assert any(p["read"] == inv for p in r.counterexample["stale_reads"])
                return


# -- session order -------------------------------------------------------------


def test_a_session_that_moves_forward_across_servers_is_valid():
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], 5, "n1", "s0"),
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, 10], 7, "n2", "s0"),
    )
    r = session_order(h)
    assert r.valid is True and r.details["moves"] == 1


def test_a_zxid_that_goes_back_after_a_move_names_both_ops_and_nodes():
    h = H(
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, None], 9, "n1", "s0"),
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, None], 4, "n3", "s0"),
    )
    r = session_order(h)
    assert r.valid is False
    p = r.counterexample["problems"][0]
    assert p["kind"] == "zxid-went-back" and p["ops"] == [1, 3] and p["nodes"] == ["n1", "n3"]


def test_a_session_that_misses_its_own_write_is_invalid():
    h = H(
        ("invoke", 1, "write", [1, 10]),
        ("ok", 1, "write", [1, 10], 5, "n1", "s1"),
        ("invoke", 0, "write", [1, 11]),
        ("ok", 0, "write", [1, 11], 6, "n1", "s0"),
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, 10], 8, "n2", "s0"),
    )
    r = session_order(h)
    assert r.valid is False
    assert r.counterexample["problems"][0]["kind"] == "missed-own-write"


def test_a_read_of_nothing_after_an_own_write_without_a_zxid_is_invalid():
    # the write's completion carries no zxid (the explanation names none)
    h = H(
        ("invoke", 0, "write", [1, 10]),
        ("ok", 0, "write", [1, 10], None, "n1", "s0"),
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, None], 8, "n2", "s0"),
    )
    r = session_order(h)
    assert r.valid is False
    p = r.counterexample["problems"][0]
    assert p["kind"] == "missed-own-write" and p["ops"] == [0, 2]
    assert "(op 0) and then read None" in p["why"]


def test_a_new_session_is_judged_on_its_own():
    h = H(
        ("invoke", 0, "write", [1, 11]),
        ("ok", 0, "write", [1, 11], 6, "n1", "s0"),
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, 11], 6, "n1", "s0"),
        ("invoke", 0, "read", [1, None]),
        ("ok", 0, "read", [1, None], 2, "n2", "s9"),
    )
    assert session_order(h).valid is True


def test_no_two_ops_in_one_session_is_unknown():
    h = H(("invoke", 0, "read", [1, None]), ("ok", 0, "read", [1, None], 9, "n1", "s0"))
    assert session_order(h).valid == "unknown"


@SETTINGS
@given(
    seed=st.integers(0, 10_000), crash=st.sampled_from([0.0, 0.1]), sync=st.booleans(), roam=st.sampled_from([0.0, 0.3])
)
def test_a_correct_roaming_system_keeps_session_order(seed, crash, sync, roam):
    h = _simulate.zk_history(150, seed=seed, crash_rate=crash, sync_reads=sync, roam_rate=roam)
    r = session_order(h)
    assert r.valid is True, r.explanation


def test_roaming_to_any_server_breaks_session_order_on_some_seeds():
    """The same system, but a client may move to a server behind its last zxid."""
    bad = 0
    for s in range(20):
        h = _simulate.zk_history(200, seed=s, sync_reads=False, roam_rate=0.3)
        # move every completion of process 0 after its first to the laggiest view
        zs = [op for op in h if op.process == 0 and op.type == "ok"]
        if len(zs) >= 2 and zs[0].zxid and zs[0].zxid > 1:
            zs[-1].zxid = 1
            bad += session_order(h).valid is False
    assert bad > 0
