"""checkers.etcd_watch on hand-built histories: one valid beside each kind of
violation (ordered, unique, no gaps from the start revision, resumable,
atomic, revisions in real-time order)."""

from __future__ import annotations

from typing import Any

from checkers import etcd_watch
from checkers.history import Op


class H:
    """A tiny history builder: ``call`` then ``done`` per process."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, type_: str, process: Any, f: str, value: Any) -> H:
        self.ops.append(Op(len(self.ops), len(self.ops) * 1000, type_, process, f, value))
        return self

    def write(self, p: int, key: str, n: int, rev: int | None, type_: str = "ok") -> H:
        self._add("invoke", p, "write", [key, n])
        return self._add(type_, p, "write", [key, n, rev] if type_ == "ok" else [key, n])

    def call(self, p: int, f: str, value: Any) -> H:
        return self._add("invoke", p, f, value)

    def done(self, p: int, f: str, value: Any, type_: str = "ok") -> H:
        return self._add(type_, p, f, value)

    def watch(self, p: int, out: dict[str, Any], f: str = "watch", type_: str = "ok") -> H:
        return self.call(p, f, 0 if f == "watch" else None).done(p, f, out, type_)


def base() -> H:
    """Three writes at revisions 2, 3, 4, then two streams that saw them all."""
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, 2).write(0, "k1", 20, 3).write(0, "k0", 30, 4)
    h.watch(1, {"events": [[2, "k0", "10"], [3, "k1", "20"]]})
    h.watch(1, {"events": [[4, "k0", "30"]]})
    h.watch(2, {"start": 3, "events": [[3, "k1", "20"], [4, "k0", "30"]]})
    return h


def kinds(result: Any) -> set[str]:
    return {p["kind"] for p in result.counterexample["problems"]}


def test_valid_streams_are_valid_with_a_witness():
    r = etcd_watch.check(base().ops)
    assert r.valid is True, r.explanation
    assert r.witness["events"] == 5
    assert r.details["revisions_checked_for_gaps"] == 5


def test_a_missing_revision_in_the_middle_is_a_gap():
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, 2).write(0, "k1", 20, 3).write(0, "k0", 30, 4)
    h.watch(1, {"events": [[2, "k0", "10"], [4, "k0", "30"]]})
    r = etcd_watch.check(h.ops)
    assert r.valid is False and kinds(r) == {"gap"}
    assert r.counterexample["problems"][0]["revisions"] == [3]


def test_a_gap_is_found_from_another_streams_events_too():
    # revision 3's write came back indeterminate: only stream 2 proves it happened
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, 2).write(0, "k1", 20, None, type_="info").write(3, "k0", 30, 4)
    h.watch(1, {"events": [[2, "k0", "10"], [4, "k0", "30"]]})
    h.watch(2, {"start": 2, "events": [[2, "k0", "10"], [3, "k1", "20"], [4, "k0", "30"]]})
    r = etcd_watch.check(h.ops)
    assert r.valid is False and kinds(r) == {"gap"}


def test_an_indeterminate_write_seen_by_every_stream_is_fine():
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, 2).write(0, "k1", 20, None, type_="info").write(3, "k0", 30, 4)
    h.watch(1, {"events": [[2, "k0", "10"], [3, "k1", "20"], [4, "k0", "30"]]})
    assert etcd_watch.check(h.ops).valid is True


def test_out_of_order_and_duplicate_events():
    h = base()
    h.watch(3, {"start": 2, "events": [[2, "k0", "10"], [4, "k0", "30"], [3, "k1", "20"]]})
    assert "out-of-order" in kinds(etcd_watch.check(h.ops))
    h = base()
    h.watch(3, {"start": 2, "events": [[2, "k0", "10"], [3, "k1", "20"], [3, "k1", "20"], [4, "k0", "30"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"duplicate"}


def test_an_event_before_the_start_revision():
    h = base()
    h.watch(3, {"start": 3, "events": [[2, "k0", "10"], [3, "k1", "20"], [4, "k0", "30"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"before-start"}


def test_a_value_nobody_wrote_is_a_phantom():
    h = base()
    h.watch(3, {"start": 5, "events": [[5, "k2", "999"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"phantom"}


def test_a_failed_write_seen_by_a_stream_is_a_phantom():
    h = base()
    h.write(0, "k2", 50, None, type_="fail")
    h.watch(3, {"start": 5, "events": [[5, "k2", "50"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"phantom"}


def test_two_streams_disagreeing_on_a_revision():
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, None, type_="info").write(0, "k1", 20, None, type_="info")
    h.watch(1, {"events": [[2, "k0", "10"]]})
    h.watch(2, {"start": 2, "events": [[2, "k1", "20"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"disagree"}


def test_an_acknowledged_write_at_another_revision():
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, 2)
    h.watch(1, {"events": [[5, "k0", "10"]]})
    assert "wrong-revision" in kinds(etcd_watch.check(h.ops))


def test_revisions_must_follow_real_time():
    h = H()
    h.write(0, "k0", 10, 5).write(0, "k1", 20, 3)
    h.watch(1, {"start": 1, "events": [[3, "k1", "20"], [5, "k0", "10"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"revision-order"}


def test_concurrent_writes_may_take_revisions_in_either_order():
    h = H()
    h.call(0, "write", ["k0", 10]).call(1, "write", ["k1", 21])
    h.done(1, "write", ["k1", 21, 2]).done(0, "write", ["k0", 10, 3])
    h.watch(2, {"start": 1, "events": [[2, "k1", "21"], [3, "k0", "10"]]})
    assert etcd_watch.check(h.ops).valid is True


def test_a_resumed_stream_without_gaps_is_valid_and_counted():
    h = base()
    h.write(0, "k2", 40, 5).write(0, "k3", 50, 6)
    h.watch(1, {"events": [[5, "k2", "40"]], "breaks": ["connection reset"]})
    h.watch(1, {"resumed": [[6, "127.0.0.1:2"]], "events": [[6, "k3", "50"]]})
    r = etcd_watch.check(h.ops)
    assert r.valid is True and r.details["resumes"] == 1 and r.details["breaks"] == 1


def test_a_resume_that_skips_a_revision_is_a_gap():
    h = base()
    h.write(0, "k2", 40, 5).write(0, "k3", 50, 6).write(0, "k0", 60, 7)
    h.watch(1, {"events": [[5, "k2", "40"]], "breaks": ["connection reset"]})
    h.watch(1, {"resumed": [[7, "127.0.0.1:2"]], "events": [[7, "k0", "60"]]})
    r = etcd_watch.check(h.ops)
    assert r.valid is False and kinds(r) == {"gap"} and r.counterexample["problems"][0]["revisions"] == [6]


def test_a_confirmed_fence_covers_every_acknowledged_write():
    h = base()
    h.write(0, "k2", 40, 5)
    fence = ["fence-a-1", "fence-a-1", 6]
    # the stream skipped the acknowledged write at 5 but confirmed the fence at 6
    h.watch(1, {"events": [[6, "fence-a-1", "fence-a-1"]], "fence": fence}, f="final-watch")
    r = etcd_watch.check(h.ops)
    assert r.valid is False and kinds(r) == {"gap"}
    h = base()
    h.write(0, "k2", 40, 5)
    h.watch(1, {"events": [[5, "k2", "40"], [6, "fence-a-1", "fence-a-1"]], "fence": fence}, f="final-watch")
    r = etcd_watch.check(h.ops)
    assert r.valid is True and r.details["confirmed_fences"] == 1


def test_events_of_an_indeterminate_watch_op_are_judged_too():
    h = base()
    h.watch(
        3, {"start": 2, "events": [[2, "k0", "10"], [4, "k0", "30"]], "error": "timeout"}, f="final-watch", type_="info"
    )
    assert kinds(etcd_watch.check(h.ops)) == {"gap"}


def test_a_delete_event_is_reported():
    h = base()
    h.watch(3, {"start": 5, "events": [[5, "k0", "", "DELETE"]]})
    assert kinds(etcd_watch.check(h.ops)) == {"phantom"}


def test_no_delivered_event_is_unknown():
    h = H()
    h.watch(1, {"start": 2, "events": []})
    h.write(0, "k0", 10, 2)
    r = etcd_watch.check(h.ops)
    assert r.valid == "unknown"


def test_lock_fencing_tokens_must_not_go_back():
    """etcd's lock records the lock key's revision as a fencing token; a
    fenced write under an older token after one under a newer token is a
    fencing violation (workloads.checks.check_lock)."""
    from workloads.checks import check_lock

    def lock_history(tokens: list[int]) -> list[Op]:
        h = H()
        for i, token in enumerate(tokens):
            h.call(i, "fenced-write", None)
            h.done(
                i,
                "fenced-write",
                {"read": i, "wrote": i + 1, "lock": f"/l/{token}", "token": token, "write_zxid": 100 + i},
            )
        return h.ops

    assert check_lock(lock_history([5, 8, 12])).valid is True
    bad = check_lock(lock_history([5, 12, 8]))
    assert bad.valid is False and {p["kind"] for p in bad.counterexample["fenced"]} == {"token-regression"}
