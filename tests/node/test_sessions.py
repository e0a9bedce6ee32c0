"""The session tracker: tick-rounded deadlines, touch, expiry, ids, passwords."""

from __future__ import annotations

import random

import pytest

from node.sessions import SessionTracker, generate_password, negotiate_timeout, new_session_id, session_id_base


def test_negotiate_timeout_clamps_to_2_and_20_ticks() -> None:
    assert negotiate_timeout(1000, 2000) == 4000
    assert negotiate_timeout(10_000, 2000) == 10_000
    assert negotiate_timeout(60_000, 2000) == 40_000
    assert negotiate_timeout(0, 100) == 200


def test_expiry_is_rounded_up_to_the_tick() -> None:
    t = SessionTracker(tick_ms=1000)
    t.add(1, 3000, now_ms=500)  # due at 3500 -> bucket 4000
    assert t.expired(3999) == []
    assert t.expired(4000) == [1]
    assert t.expired(5000) == []  # reported once; it is now closing
    assert not t.touch(1, 4001)
    assert 1 in t and not t.is_live(1)
    t.remove(1)
    assert 1 not in t and len(t) == 0


def test_touch_extends_live_sessions_only() -> None:
    t = SessionTracker(tick_ms=100)
    t.add(7, 1000, now_ms=0)
    assert t.touch(7, 900)
    assert t.expired(1000) == []  # deadline moved to 1900
    assert t.next_expiry_ms() == 1900
    assert t.expired(1900) == [7]
    assert not t.touch(99, 0)  # unknown
    t.add(8, 1000, now_ms=0)
    assert not t.touch(8, 1000)  # already past due: too late to save it
    t.add(9, 1000, 0)
    t.set_closing(9)
    assert not t.touch(9, 10)
    assert t.expired(10**9) == [8]


def test_expired_is_sorted_and_timeouts_reported() -> None:
    t = SessionTracker(tick_ms=10)
    for sid in (30, 10, 20):
        t.add(sid, 100, 0)
    assert t.sessions() == {30: 100, 10: 100, 20: 100}
    assert t.timeout_of(10) == 100 and t.timeout_of(11) is None
    assert t.expired(100) == [10, 20, 30]


def test_session_ids_carry_the_server_id_and_do_not_repeat() -> None:
    base = session_id_base(3, 1_700_000_000_000)
    assert base >> 56 == 3
    t = SessionTracker(tick_ms=2000, server_id=3, start_ms=1_700_000_000_000)
    ids = [t.new_session_id() for _ in range(100)]
    assert len(set(ids)) == 100 and all(i >> 56 == 3 for i in ids)
    assert ids[0] == base
    t2 = SessionTracker(tick_ms=2000, server_id=3, start_ms=1_700_000_000_000)
    t2.add(base, 1000, 0)
    assert t2.new_session_id() == base + 1  # skips a tracked id
    assert new_session_id(2, 5) == (2 << 56) | 5
    with pytest.raises(ValueError):
        new_session_id(255, 1)
    with pytest.raises(ValueError):
        SessionTracker(tick_ms=0)


def test_passwords_come_from_the_injected_rng() -> None:
    a = generate_password(random.Random(42))
    assert len(a) == 16 and a == generate_password(random.Random(42))
    assert a != generate_password(random.Random(43))
