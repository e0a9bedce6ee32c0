"""The HTML explanation (checkers/render.py): one self-contained page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from checkers import linearizable, sequential
from checkers.history import History, Op
from checkers.models import get_model
from checkers.render import page_data, render_html, stored_diagrams


def h(*events: tuple) -> History:
    return History([Op(i, i, *ev) for i, ev in enumerate(events)])


BAD = h(
    ("invoke", 1, "write", 1),
    ("ok", 1, "write", 1),
    ("invoke", 2, "write", 2),
    ("invoke", 3, "read", None),
    ("ok", 3, "read", 7),
    ("info", 2, "write", 2),
)


def _data(page: str) -> dict:
    m = re.search(r'<script id="check-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "the page embeds its data"
    return json.loads(m.group(1))


def test_invalid_page_marks_the_failing_op_and_the_order() -> None:
    model = get_model("register", 0)
    result = linearizable.check(BAD, model)
    assert result.valid is False
    page = render_html(result, BAD, model, title="bad.jsonl")
    assert page.startswith("<!DOCTYPE html>")
    data = _data(page)
    assert data["verdict"] == "invalid"
    assert data["failing"] == 3
    bars = {b["index"]: b for b in data["bars"]}
    assert set(bars) == {0, 2, 3}
    assert bars[3]["failing"] and not bars[0]["failing"]
    assert bars[2]["open"]  # crashed: open-ended bar
    assert bars[0]["step"] == 0  # first in the partial linearization
    assert bars[0]["before"] == "0" and bars[0]["after"] == "1"
    assert len(data["processes"]) == 3
    assert "bad.jsonl" in page


def test_page_is_self_contained() -> None:
    model = get_model("register", 0)
    page = render_html(linearizable.check(BAD, model), BAD, model)
    assert "<style>" in page and "<script>" in page
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "http://" not in page and "https://" not in page


def test_sequential_result_renders_with_states() -> None:
    model = get_model("register", 0)
    own = h(("invoke", 1, "write", 1), ("ok", 1, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    result = sequential.check(own, model)
    assert result.valid is False
    data = _data(render_html(result, own, model))
    assert data["checker"] == "sequential"
    assert data["failing"] == 2
    assert [b["step"] for b in data["bars"]] == [0, None]


def test_valid_page_numbers_the_witness() -> None:
    model = get_model("register", 0)
    stale = h(("invoke", 1, "write", 1), ("ok", 1, "write", 1), ("invoke", 2, "read", None), ("ok", 2, "read", 0))
    data = page_data(sequential.check(stale, model), stale, model)
    assert data["verdict"] == "valid"
    steps = {b["index"]: b["step"] for b in data["bars"]}
    assert steps == {0: 1, 2: 0}  # the stale read goes first
    assert data["failing"] is None


def test_hostile_values_cannot_break_out_of_the_page() -> None:
    model = get_model("register", 0)
    evil = "</script><script>alert(1)</script>"
    hist = h(("invoke", 1, "write", evil), ("ok", 1, "write", evil), ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    page = render_html(linearizable.check(hist, model), hist, model, title=evil)
    assert "<script>alert(1)" not in page
    assert _data(page)["bars"][0]["description"].endswith("alert(1)</script>'")


def test_script_runs_without_errors_in_node(tmp_path: Path) -> None:
    """Smoke-test the page's script under node with a minimal DOM stub (the
    page has no dependencies; this catches syntax and type errors)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed; the page script is not executed")
    model = get_model("register", 0)
    page = tmp_path / "p.html"
    result = linearizable.check(BAD, model)
    page.write_text(render_html(result, BAD, model))
    placed = sum(b["step"] is not None for b in page_data(result, BAD, model)["bars"])
    assert placed >= 1
    stub = tmp_path / "stub.js"
    stub.write_text(r"""
const fs = require('fs');
const html = fs.readFileSync(process.argv[2], 'utf8');
const data = /<script id="check-data" type="application\/json">([\s\S]*?)<\/script>/.exec(html)[1];
const js = /<script>([\s\S]*?)<\/script>/.exec(html)[1];
function el(id) { return { id, style: {}, dataset: {}, children: [],
  textContent: id === 'check-data' ? data : '',
  appendChild(c) { this.children.push(c); }, addEventListener() {}, scrollIntoView() {} }; }
const els = {};
global.document = { getElementById(id) { return els[id] || (els[id] = el(id)); },
                    createElement() { return el(null); } };
eval(js);
const bars = els['canvas'].children.filter(c => (c.className || '').includes('bar'));
console.log(JSON.stringify({bars: bars.length,
  failing: bars.filter(c => c.className.includes('failing')).length,
  linearized: bars.filter(c => c.className.includes('linearized')).length}));
""")
    proc = subprocess.run([node, str(stub), str(page)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert counts == {"bars": 3, "failing": 1, "linearized": placed}


def test_stored_diagrams_skip_what_is_not_a_checker_result() -> None:
    # a results.json as a person or another tool may have edited it: no diagram, no crash
    odd = {"valid": False, "details": {"results": ["not a result", None, {"valid": False, "counterexample": "x"}]}}
    assert stored_diagrams(odd) == []
