"""`squall check`: exit codes, output shapes, directories, bad input, and
every corpus history through the command line with its expected verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.checkers.conftest import corpora_dir, read_tsv, require_corpora

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def squall(capsys: pytest.CaptureFixture[str]):
    """Run `squall check ...` in-process: (exit code, stdout, stderr)."""

    def _run(*args: Any) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(["check", *map(str, args)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 3)
        else:  # main always exits
            code = -1
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def op(i: int, typ: str, proc: int, f: str, value: Any, **extra: Any) -> str:
    return json.dumps({"index": i, "time": i, "type": typ, "process": proc, "f": f, "value": value, **extra})


def write_history(path: Path, events: list[tuple]) -> Path:
    path.write_text("".join(op(i, *ev) + "\n" for i, ev in enumerate(events)))
    return path


VALID = [("invoke", 1, "write", 1), ("ok", 1, "write", 1), ("invoke", 2, "read", None), ("ok", 2, "read", 1)]
STALE = [("invoke", 1, "write", 1), ("ok", 1, "write", 1), ("invoke", 2, "read", None), ("ok", 2, "read", None)]
NEVER_WRITTEN = [("invoke", 1, "write", 1), ("ok", 1, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 42)]


def test_valid_history_exits_0(squall, tmp_path: Path) -> None:
    code, out, _ = squall(write_history(tmp_path / "h.jsonl", VALID))
    assert code == 0
    assert "valid" in out


def test_invalid_history_exits_1_and_explains(squall, tmp_path: Path) -> None:
    code, out, _ = squall(write_history(tmp_path / "h.jsonl", NEVER_WRITTEN))
    assert code == 1
    assert "INVALID" in out
    assert "read -> 42" in out  # the op that cannot be linearized
    assert "longest partial linearization" in out  # and the order found


def test_stale_read_separates_the_consistency_models(squall, tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.jsonl", STALE)
    assert squall(path)[0] == 1
    code, out, _ = squall(path, "--consistency", "sequential")
    assert code == 0, out


def test_budget_exhausted_exits_2(squall, tmp_path: Path) -> None:
    events = []
    for v in range(600):
        events += [("invoke", 1, "write", v), ("ok", 1, "write", v), ("invoke", 2, "read", None), ("ok", 2, "read", v)]
    path = write_history(tmp_path / "long.jsonl", events)
    code, out, _ = squall(path, "--consistency", "sequential", "--budget", "1e-9")
    assert code == 2, out
    assert "unknown" in out


def test_an_empty_history_is_unknown_unless_allowed(squall, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    code, out, _ = squall(path)
    assert code == 2 and "unknown" in out and "--allow-empty" in out
    assert squall(path, "--consistency", "sequential")[0] == 2
    assert squall(path, "--allow-empty")[0] == 0
    assert squall(path, "--allow-empty", "--consistency", "sequential")[0] == 0


def test_json_output_shape(squall, tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.jsonl", NEVER_WRITTEN)
    code, out, _ = squall(path, "--json", "--initial", "0")
    assert code == 1
    doc = json.loads(out)
    assert list(doc) == ["results"]
    (r,) = doc["results"]
    assert r["file"] == str(path)
    assert r["valid"] is False
    assert r["model"] == "cas-register" and r["initial"] == 0
    assert r["counterexample"]["op"]["index"] == 2
    code, out, _ = squall(write_history(tmp_path / "ok.jsonl", VALID), "--json")
    assert json.loads(out)["results"][0]["valid"] is True


def test_directory_prints_a_table_and_exits_with_the_worst(squall, tmp_path: Path) -> None:
    d = tmp_path / "runs"
    (d / "sub").mkdir(parents=True)
    write_history(d / "a.jsonl", VALID)
    write_history(d / "sub" / "b.jsonl", NEVER_WRITTEN)
    (d / "notes.md").write_text("not a history")
    code, out, err = squall(d)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["verdict", "ops", "secs"]
    assert any(line.startswith("valid") and "a.jsonl" in line for line in lines)
    assert any(line.startswith("INVALID") and "sub/b.jsonl" in line for line in lines)
    assert "2 files" in lines[-1]
    assert "[2/2]" in err  # progress on stderr
    code, out, _ = squall(d, "--json")
    assert sorted(Path(r["file"]).name for r in json.loads(out)["results"]) == ["a.jsonl", "b.jsonl"]


def test_directory_with_a_bad_file_exits_3_but_checks_the_rest(squall, tmp_path: Path) -> None:
    write_history(tmp_path / "a.jsonl", VALID)
    (tmp_path / "bad.jsonl").write_text(op(0, "invoke", 1, "write", 1) + '\n{"index": 1, "ty')
    code, out, err = squall(tmp_path, "--json")
    assert code == 3
    results = {Path(r["file"]).name: r for r in json.loads(out)["results"]}
    assert results["a.jsonl"]["valid"] is True
    assert results["bad.jsonl"]["valid"] is None
    assert f"{tmp_path / 'bad.jsonl'}:2" in results["bad.jsonl"]["error"]


def test_truncated_jsonl_names_file_and_line(squall, tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    text = "".join(op(i, *ev) + "\n" for i, ev in enumerate(VALID))
    path.write_text(text[: len(text) - 25])  # cut inside the last line
    code, out, err = squall(path)
    assert code == 3
    assert f"{path}:4" in err
    assert "JSON" in err


def test_truncated_edn_names_file_and_line(squall, tmp_path: Path) -> None:
    path = tmp_path / "cut.edn"
    path.write_text(
        "[{:process 0, :type :invoke, :f :write, :value 1}\n"
        " {:process 0, :type :ok, :f :write, :value 1}\n"
        " {:process 1, :type :invoke, :f :read, :val"
    )
    code, _, err = squall(path)
    assert code == 3
    assert f"{path}:3" in err


def test_unknown_operation_for_the_model_is_bad_input(squall, tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.jsonl", [("invoke", 1, "enqueue", 1), ("ok", 1, "enqueue", 1)])
    code, _, err = squall(path, "--model", "register")
    assert code == 3
    assert "enqueue" in err and "allowed" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "nonsense"],
        ["--initial", "{:x"],
        ["--budget", "-1"],
        ["--format", "xml"],
    ],
)
def test_usage_errors_exit_3(squall, tmp_path: Path, args: list[str]) -> None:
    path = write_history(tmp_path / "h.jsonl", VALID)
    code, _, err = squall(path, *args)
    assert code == 3, err
    assert err.strip()


def test_missing_path_exits_3(squall, tmp_path: Path) -> None:
    code, _, err = squall(tmp_path / "nope.jsonl")
    assert code == 3
    assert "nope.jsonl" in err


def test_initial_takes_edn_and_json_literals(squall, tmp_path: Path) -> None:
    path = write_history(
        tmp_path / "h.jsonl", [("invoke", 1, "txn", [["read", "x", None]]), ("ok", 1, "txn", [["read", "x", 5]])]
    )
    assert squall(path, "--model", "multi-register", "--initial", "{:x 5 :y 0}")[0] == 0
    assert squall(path, "--model", "multi-register", "--initial", '{"x": 5}')[0] == 0
    assert squall(path, "--model", "multi-register", "--initial", "{:x 0 :y 0}")[0] == 1
    reg = write_history(tmp_path / "r.jsonl", [("invoke", 1, "read", None), ("ok", 1, "read", None)])
    assert squall(reg, "--initial", "nil")[0] == 0
    assert squall(reg, "--initial", "0")[0] == 1


def test_html_page_shows_the_failing_op(squall, tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.jsonl", NEVER_WRITTEN)
    page = tmp_path / "out.html"
    code, _, _ = squall(path, "--html", page)
    assert code == 1
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "read -\\u003e 42" in html or "read -&gt; 42" in html
    assert '"failing": 2' in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_module_entry_point_exit_codes(tmp_path: Path) -> None:
    """The real process: `python -m harness.cli check`."""
    good = write_history(tmp_path / "good.jsonl", VALID)
    bad = write_history(tmp_path / "bad.jsonl", NEVER_WRITTEN)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for path, want in ((good, 0), (bad, 1)):
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "check", str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == want, proc.stdout + proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "check", str(good), "--model", "bogus"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert "bogus" in proc.stderr


# -- the corpora through the command line ------------------------------------


def _corpus_rows() -> list:
    base = corpora_dir()
    if base is None:
        return [pytest.param(None, None, None, id="corpora-absent")]
    rows = [
        pytest.param("porcupine", r["file"], r["expected"], id=f"porcupine/{r['file']}")
        for r in read_tsv(base / "porcupine" / "EXPECTED.tsv")
    ]
    rows += [
        pytest.param("knossos", r["file"], r["expected"], id=f"knossos/{r['file']}")
        for r in read_tsv(base / "knossos" / "EXPECTED.tsv")
    ]
    return rows


def _knossos_args(base: Path, name: str) -> list[str]:
    spec = {r["file"]: r for r in read_tsv(base / "knossos" / "MODELS.tsv")}[name]
    args = ["--model", spec["model"]]
    if not spec["initial_state"].startswith("free"):  # mutex: "free (unlocked)"
        args += ["--initial", spec["initial_state"]]
    return args


@pytest.mark.parametrize("folder, name, expected", _corpus_rows())
def test_corpus_history_through_the_cli(squall, folder: str | None, name: str | None, expected: str | None) -> None:
    base = require_corpora()
    args = [] if folder == "porcupine" else _knossos_args(base, name)
    code, out, err = squall(base / folder / name, *args, "--budget", "120")
    want = {"ok": 0, "illegal": 1}[expected]
    assert code == want, f"{folder}/{name}: expected {expected}\n{out}{err}"


def test_html_for_a_directory_explains_the_first_invalid_file(squall, tmp_path: Path) -> None:
    d = tmp_path / "runs"
    d.mkdir()
    write_history(d / "a.jsonl", VALID)
    write_history(d / "b.jsonl", NEVER_WRITTEN)
    page = tmp_path / "page.html"
    code, _, err = squall(d, "--html", page)
    assert code == 1
    assert "b.jsonl" in err  # says which file the page explains
    html = page.read_text()
    assert "b.jsonl" in html and '"verdict": "invalid"' in html


def test_help_lists_the_options(squall) -> None:
    code, out, _ = squall("--help")
    assert code == 0
    for option in ("--model", "--initial", "--format", "--consistency", "--budget", "--json", "--html"):
        assert option in out


def test_directory_without_histories_is_bad_input(squall, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing to check")
    code, _, err = squall(tmp_path)
    assert code == 3
    assert "no history files" in err
