"""report.html shows the anomaly: the counterexample drawn inline (the
diagram of `squall check --html`), the failing operations outlined on the
timeline with links both ways, faults in words, and one set of counts in the
report, results.json and the results browser. Hand-built histories."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from checkers.history import Op
from harness import store
from harness.report import html, stats
from harness.runner import analyze
from harness.serve_cmd import summarize_run
from harness.spec import TestSpec
from workloads import register

MS = 1_000_000


def history(events):
    """events: (type, process, f, value) at 10 ms steps."""
    return [Op(i, (i + 1) * 10 * MS, *ev) for i, ev in enumerate(events)]


# two cas from 1 both succeed: neither linearizable nor sequentially consistent
DOUBLE_CAS = history(
    [
        ("invoke", 0, "write", [0, 1]),
        ("ok", 0, "write", [0, 1]),
        ("invoke", "nemesis", "start-partition", "halves"),
        (
            "info",
            "nemesis",
            "start-partition",
            {"partition": "halves", "cut": {"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}},
        ),
        ("invoke", 1, "cas", [0, [1, 2]]),
        ("ok", 1, "cas", [0, [1, 2]]),
        ("invoke", 0, "cas", [0, [1, 3]]),
        ("ok", 0, "cas", [0, [1, 3]]),
        ("invoke", "nemesis", "kill", "leader"),
        ("info", "nemesis", "kill", {"killed": ["n3"]}),
        ("invoke", 2, "read", [0, None]),
        ("ok", 2, "read", [0, 3]),
        ("invoke", 2, "read", [0, None]),  # never completes: counts as info
        ("invoke", "nemesis", "stop-partition", None),
        ("info", "nemesis", "stop-partition", "healed"),
    ]
)


def run_dir_with(tmp_path, ops, name="reg"):
    spec = TestSpec(name=name, nodes=("n1", "n2", "n3"), workload="register", nemesis=("partition", "kill"))
    run_dir = store.new_run_dir(tmp_path / "results", name)
    store.write_spec(run_dir, spec)
    store.write_history(run_dir, ops)
    outcome = analyze(spec, register.make({}), ops, run_dir)
    return run_dir, outcome


@pytest.fixture()
def invalid_run(tmp_path):
    run_dir, outcome = run_dir_with(tmp_path, DOUBLE_CAS)
    assert outcome.valid is False
    return run_dir, (run_dir / "report.html").read_text(encoding="utf-8")


def test_the_counterexample_is_drawn_inline_for_both_checkers(invalid_run):
    _, page = invalid_run
    for checker in ("linearizable", "sequential"):
        assert f'<h3 id="cx-{checker}-section">Counterexample: {checker}</h3>' in page
        m = re.search(rf'<script id="cx-{checker}-check-data" type="application/json">(.*?)</script>', page, re.S)
        data = json.loads(m.group(1))
        failing = [b for b in data["bars"] if b["failing"]]
        assert len(failing) == 1 and failing[0]["index"] == data["failing"] in (4, 6)
        assert any(b["step"] is not None for b in data["bars"])  # the order found is numbered
        assert all("description" in b and "[" not in b["description"] for b in data["bars"])
    assert "Counterexample as data" in page  # the raw JSON stays, folded


def test_failing_operations_are_marked_on_the_timeline_with_links_both_ways(invalid_run):
    _, page = invalid_run
    rows = re.findall(r'<tr id="failing-op-(\d+)">', page)
    assert rows and set(rows) <= {"4", "6"}
    for i in rows:
        # table -> timeline, timeline (an SVG group with that id, wrapped in a link) -> diagram
        assert f'href="#timeline-op-{i}"' in page
        m = re.search(rf'<g id="timeline-op-{i}">\s*<a xlink:href="(#[^"]+)">', page)
        assert m, f"op {i} is not marked on the timeline"
        target = m.group(1)
        assert target.endswith("failing-op") and f'id="{target[1 : -len("failing-op")]}diagram"' in page
        assert 'target="_blank"' not in page.split(f'<g id="timeline-op-{i}">')[1][:200]
        # diagram -> timeline
        checker_prefix = target[1 : -len("failing-op")]
        script = page.split(f'id="{checker_prefix}diagram"')[1].split("</script>\n</div>")[0]
        assert f'"#timeline-op-{i}"' in script


def test_faults_are_labelled_in_words(invalid_run):
    _, page = invalid_run
    table = page.split("<th>fault</th>")[1].split("</table>")[0]
    labels = re.findall(r"<tr><td>(.*?)</td>", table)
    assert labels == ["partition (halves): n1 cannot hear n2, n3; n2 cannot hear n1; n3 cannot hear n1", "kill n3"]
    for bad in ("{", "}", "[", "&#39;", "frozenset"):
        assert bad not in table


def test_a_fault_that_cannot_bite_is_drawn_as_no_effect():
    assert (
        stats.describe_fault("start-partition", {"partition": "isolate-one", "cut": {}})
        == "partition (isolate-one): no effect, no link to cut"
    )
    assert stats.describe_fault("kill", {"killed": []}) == "kill: no effect, no node"
    assert stats.describe_fault("pause", {"paused": ["n1"]}) == "pause n1"
    assert stats.describe_fault("stop-partition", "healed") == "network healed"
    assert stats.describe_fault("clock-skew", {"nodes": ["n2", "n1"], "by_s": 3}) == "clock-skew nodes n1, n2; by_s 3"
    ops = history(
        [
            ("invoke", "nemesis", "start-partition", "isolate-one"),
            ("info", "nemesis", "start-partition", {"partition": "isolate-one", "cut": {}}),
            ("invoke", 0, "write", [0, 1]),
            ("ok", 0, "write", [0, 1]),
        ]
    )
    (interval,) = stats.fault_intervals(ops)
    assert "no effect" in interval.label
    page = html.render_report(TestSpec(name="one").to_dict(), ops, {"valid": True, "summary": "ok"})
    assert "partition (no effect)" in page and "partition (isolate-one): no effect" in page


def test_one_set_of_counts_in_the_report_results_json_and_the_browser(invalid_run):
    run_dir, page = invalid_run
    counts = json.loads((run_dir / "results.json").read_text())["counts"]
    assert counts == {"operations": 5, "ok": 4, "fail": 0, "info": 1, "nemesis": 3, "lines": 15}
    assert counts == stats.counts(DOUBLE_CAS) == summarize_run(run_dir).ops
    assert "5 operations: 4 ok, 0 fail, 1 info (indeterminate); 3 nemesis operations; 15 history lines" in page


def test_failing_indices_name_the_failing_ops_not_their_context():
    cx = {
        "op": {"index": 6, "call_index": 6},
        "operations": [{"index": 0}, {"index": 4}],
        "partial_linearizations": [[{"index": 0}, {"index": 4}]],
        "candidates": [{"op": {"index": 10}}],
        "problems": [{"ops": [0, 4], "read": 3}],
        "value": 10,
    }
    assert stats.failing_indices(cx, DOUBLE_CAS) == [0, 4, 6]
    assert stats.failing_indices({"lost": [1, 2, 3]}, DOUBLE_CAS) == []  # values, not indices


def test_a_valid_run_has_no_anomaly_section(tmp_path):
    ops = history(
        [
            ("invoke", 0, "write", [0, 1]),
            ("ok", 0, "write", [0, 1]),
            ("invoke", 1, "read", [0, None]),
            ("ok", 1, "read", [0, 1]),
        ]
    )
    run_dir, outcome = run_dir_with(tmp_path, ops)
    page = (run_dir / "report.html").read_text()
    assert outcome.valid is True and "Failing operations" not in page and "check-data" not in page


def test_the_reports_diagram_script_runs(invalid_run, tmp_path):
    """The diagram's script under node with a minimal DOM stub (ids carry the prefix)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed; the diagram script is not executed")
    run_dir, _ = invalid_run
    stub = tmp_path / "stub.js"
    stub.write_text(r"""
const fs = require('fs');
const html = fs.readFileSync(process.argv[2], 'utf8');
const els = {};
function el(id) { return { id, style: {}, dataset: {}, children: [], textContent: '',
  appendChild(c) { this.children.push(c); }, addEventListener() {}, scrollIntoView() {} }; }
const re = /<script id="([^"]+)" type="application\/json">([\s\S]*?)<\/script>\s*<script>([\s\S]*?)<\/script>/g;
const out = {};
let m;
global.document = {
  getElementById(id) { return els[id] || (els[id] = el(id)); }, createElement() { return el(null); } };
global.window = { location: {} };
while ((m = re.exec(html)) !== null) {
  const prefix = m[1].replace('check-data', '');
  document.getElementById(m[1]).textContent = m[2];
  eval(m[3]);
  const bars = els[prefix + 'canvas'].children.filter(c => (c.className || '').includes('bar'));
  out[prefix] = bars.filter(c => c.className.includes('failing')).map(c => c.id);
}
console.log(JSON.stringify(out));
""")
    proc = subprocess.run([node, str(stub), str(run_dir / "report.html")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "cx-linearizable-": ["cx-linearizable-failing-op"],
        "cx-sequential-": ["cx-sequential-failing-op"],
    }
