"""Store layout, report statistics, report.html, junit.xml and the progress line."""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from checkers.history import Op
from harness import store
from harness.progress import Counts, Progress, render
from harness.report import html, junit, stats
from harness.spec import TestSpec


def H(*rows):
    """rows: (time_s, type, process, f, value[, error])"""
    return [Op(i, int(t * 1e9), ty, p, f, v, None, *(e or ())) for i, (t, ty, p, f, v, *e) in enumerate(rows)]


HISTORY = H(
    (0.0, "invoke", 0, "write", 1),
    (0.1, "invoke", "nemesis", "start-partition", "halves"),
    (0.2, "ok", 0, "write", 1),
    (0.2, "info", "nemesis", "start-partition", "cut n1 n2 | n3"),
    (0.3, "invoke", 1, "read", None),
    (0.5, "info", 1, "read", None),
    (1.0, "invoke", "nemesis", "stop-partition", None),
    (1.1, "info", "nemesis", "stop-partition", "healed"),
    (1.2, "invoke", 0, "write", 2),
    (1.4, "fail", 0, "write", 2),
    (1.5, "invoke", "nemesis", "kill", "leader"),
    (1.6, "info", "nemesis", "kill", "killed n1"),
    (2.0, "invoke", 3, "read", None),
)


def test_run_dirs_are_fresh_and_latest_follows(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    a = store.new_run_dir(tmp_path, "t", now)
    b = store.new_run_dir(tmp_path, "t", now)
    assert a.name == "20260102T030405.678" and b.name == "20260102T030405.678-1"
    store.update_latest(tmp_path, a)
    store.update_latest(tmp_path, b)
    link = tmp_path / "latest"
    assert link.is_symlink() and link.resolve() == b.resolve()
    assert not link.readlink().is_absolute()


def test_history_round_trip_and_bad_lines(tmp_path):
    store.write_history(tmp_path, HISTORY)
    assert store.read_history(tmp_path) == HISTORY
    (tmp_path / "history.jsonl").write_text('{"index": 0, "time": 0, "type": "maybe", "process": 0, "f": "r"}\n')
    with pytest.raises(store.StoreError, match="history.jsonl:1: not a history op"):
        store.read_history(tmp_path)


def test_pairs_match_invocations_with_completions():
    ps = stats.pairs(HISTORY)
    assert [(p.invoke.f, p.type) for p in ps] == [
        ("write", "ok"),
        ("read", "info"),
        ("write", "fail"),
        ("read", "info"),
    ]
    assert ps[0].latency_s == pytest.approx(0.2)
    assert ps[-1].completion is None


def test_quantiles_are_nearest_rank():
    vals = sorted(float(i) for i in range(1, 101))
    assert stats.quantile(vals, 0.5) == 50 and stats.quantile(vals, 0.99) == 99 and stats.quantile(vals, 1.0) == 100
    assert math.isnan(stats.quantile([], 0.5))
    q = stats.latency_quantiles(stats.pairs(HISTORY))
    assert q["ok"]["count"] == 1 and q["ok"]["p50"] == pytest.approx(0.2)


def test_throughput_buckets_completions_per_second():
    series = stats.throughput(stats.pairs(HISTORY), bucket_s=1.0)
    assert series["ok"] == [(0.0, 1.0), (1.0, 0.0)]
    assert series["fail"] == [(0.0, 0.0), (1.0, 1.0)]


def test_fault_intervals_pair_starts_with_stops():
    faults = stats.fault_intervals(HISTORY, end_s=3.0)
    assert [(f.kind, round(f.start_s, 1), round(f.end_s, 1)) for f in faults] == [
        ("partition", 0.2, 1.1),
        ("kill", 1.6, 3.0),
    ]
    assert faults[0].label.startswith("start-partition")


def test_fault_edges():
    assert stats.fault_edge("start-partition") == ("begin", "partition")
    assert stats.fault_edge("start") == ("end", "kill")
    assert stats.fault_edge("resume") == ("end", "pause")
    assert stats.fault_edge("read") is None


def results(valid, summary="s", explanation="why"):
    return {"valid": valid, "summary": summary, "status": "checked", "result": {"explanation": explanation}}


def test_report_is_self_contained_and_explains_the_verdict():
    spec = TestSpec(name="t", seed=1).to_dict()
    r = results(False, "1 acknowledged write lost", "write 7 <was> acknowledged but is missing")
    r["result"]["counterexample"] = {"lost": [7]}
    page = html.render_report(spec, HISTORY, r)
    assert "invalid" in page and "1 acknowledged write lost" in page
    assert "write 7 &lt;was&gt; acknowledged" in page  # escaped
    assert page.count("<svg") == 3
    for fetch in ("<script", "<link", 'src="http', "src='http", 'href="http', "@import"):
        assert fetch not in page, f"report.html must not load anything ({fetch})"
    assert "start-partition" in page and "kill" in page


def test_report_of_an_empty_history_still_renders():
    page = html.render_report(TestSpec(name="t").to_dict(), [], {"valid": None, "summary": "setup failed"})
    assert "no verdict" in page


@pytest.mark.parametrize("valid, tag", [(False, "failure"), ("unknown", "error"), (None, "error"), (True, None)])
def test_junit_marks_the_verdict(valid, tag):
    root = ET.fromstring(junit.junit_xml("t", results(valid), 1.5))
    case = root.find("testcase")
    assert case.get("name") == "t"
    if tag is None:
        assert list(case) == []
    else:
        assert case.find(tag) is not None


def test_progress_line_shows_time_counts_and_fault():
    line = render("main", 12.0, 30.0, Counts(ok=5, fail=1, info=2), "start-partition halves")
    assert "12.0s elapsed" in line and "18.0s left" in line
    assert "ok 5 fail 1 info 2" in line and "fault: start-partition halves" in line


def test_progress_refreshes_in_place_on_a_tty_and_prints_lines_otherwise():
    tty = io.StringIO()
    p = Progress(10, stream=tty, tty=True, tty_every_s=0.0)
    p.tick(1.0)
    p.tick(2.0)
    p.close()
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("\n")
    plain = io.StringIO()
    p = Progress(100, stream=plain, tty=False, plain_every_s=10.0)
    for t in range(0, 35):
        p.tick(float(t))
    assert "\r" not in plain.getvalue() and len(plain.getvalue().splitlines()) == 4


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    p = Progress(10, stream=out, enabled=False)
    p.tick(1.0, force=True)
    p.message("x")
    assert out.getvalue() == ""


def test_time_left_counts_from_the_start_of_the_main_phase():
    out = io.StringIO()
    p = Progress(20, stream=out, tty=False)
    p.set_phase("setup", 0.0)
    p.set_phase("main", 3.0)
    p.tick(8.0, force=True)
    last = out.getvalue().splitlines()[-1]
    assert "8.0s elapsed" in last and "15.0s left" in last


def test_progress_shows_the_faults_in_effect():
    p = Progress(10, stream=io.StringIO(), enabled=False)
    p.nemesis_done("start-partition", "start-partition halves")
    p.nemesis_done("kill", "kill n1")
    assert p.fault == "start-partition halves; kill n1"
    p.nemesis_done("stop-partition", "stop-partition healed")
    assert p.fault == "kill n1"
    p.nemesis_done("start", "start all")
    assert p.fault is None
