"""The example plugin package (examples/squall-plugin-example/): installed with
pip from outside squall's tree, found through its entry points, and run.

The package is installed with ``pip install --target`` into a temporary
directory that only the commands below see (``PYTHONPATH``), so nothing of
it stays in the environment: other tests never see ``--db memkv``. It proves
that a new database needs no file of the harness: nothing under squall's
packages names it, yet ``squall list`` shows it, ``squall run --db memkv`` is
valid under kills and pauses, its test-only bug fails the gate (exit 1), a
workload it cannot serve is refused (exit 3), and its own workload runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "squall-plugin-example"
PACKAGES = ("node", "harness", "nemesis", "checkers", "workloads")
SHORT = [
    "--nodes",
    "1",
    "--time-limit",
    "4",
    "--rate",
    "40",
    "--concurrency",
    "3",
    "--nemesis-interval",
    "1",
    "--seed",
    "5",
    "--no-progress",
]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    build = tmp_path_factory.mktemp("plugin-src")
    src = build / "squall-plugin-example"
    # build from a copy: setuptools writes build/ and *.egg-info into the source tree
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"pip could not install the example plugin:\n{proc.stdout}\n{proc.stderr}"
    assert list(target.glob("squall_plugin_example-*.dist-info")), sorted(p.name for p in target.iterdir())
    return target


def squall(args: list[str], cwd: Path, plugin: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (plugin, ROOT) if p)}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_no_file_of_squall_names_the_plugin() -> None:
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".toml", ".html", ".j2", ".js"):
                assert "memkv" not in path.read_text(encoding="utf-8", errors="replace"), path
    assert "memkv" not in (ROOT / "pyproject.toml").read_text()


def test_squall_list_shows_the_plugin_and_where_it_came_from(plugin_path, tmp_path) -> None:
    r = squall(["list", "--json"], tmp_path, plugin_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    mine = {(p["kind"], p["name"]): p for p in doc["plugins"] if p["package"] == "squall-plugin-example"}
    assert set(mine) == {("db", "memkv"), ("workload", "memkv-counter")}
    memkv = mine[("db", "memkv")]
    assert memkv["version"] == "0.1.0" and memkv["target"] == "squall_memkv.db:make"
    assert memkv["interfaces"] == ["register", "memkv-incr"] and "one-process" in memkv["about"]
    assert doc["problems"] == []
    text = squall(["list"], tmp_path, plugin_path).stdout
    assert "memkv" in text and "squall-plugin-example 0.1.0" in text
    # the help texts are built from the registry
    assert "memkv" in squall(["run", "--help"], tmp_path, plugin_path).stdout
    assert "memkv" not in squall(["run", "--help"], tmp_path, None).stdout


@pytest.mark.integration
@pytest.mark.slow
def test_the_plugin_database_is_valid_under_kills_and_pauses(plugin_path, tmp_path) -> None:
    r = squall(
        ["run", "--db", "memkv", "--workload", "register", "--nemesis", "kill,pause", *SHORT], tmp_path, plugin_path
    )
    run_dir = (tmp_path / "results" / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-2000:]}"
    assert results["valid"] is True
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    ok = {f: sum(1 for op in history if op["type"] == "ok" and op["f"] == f) for f in ("read", "write", "cas")}
    assert ok["read"] > 5 and ok["write"] > 5 and ok["cas"] > 0, ok  # every op of the interface worked
    assert any(op["process"] == "nemesis" and op["f"] == "kill" for op in history)
    assert (run_dir / "logs" / "n1.log").read_text().count("memkv serving") >= 1


@pytest.mark.integration
@pytest.mark.slow
def test_the_plugins_test_only_bug_fails_the_gate(plugin_path, tmp_path) -> None:
    r = squall(
        [
            "run",
            "--db",
            "memkv",
            "--workload",
            "register",
            "--nemesis",
            "none",
            "--unsafe-db-fault",
            "stale-reads",
            *SHORT,
        ],
        tmp_path,
        plugin_path,
    )
    run_dir = (tmp_path / "results" / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 1, f"the broken database passed (exit {r.returncode}): {results.get('summary')}"
    assert results["valid"] is False


@pytest.mark.integration
@pytest.mark.slow
def test_the_plugins_own_workload_runs(plugin_path, tmp_path) -> None:
    r = squall(
        ["run", "--db", "memkv", "--workload", "memkv-counter", "--nemesis", "kill", *SHORT], tmp_path, plugin_path
    )
    results = json.loads(((tmp_path / "results" / "latest").resolve() / "results.json").read_text())
    assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-2000:]}"
    assert "within bounds" in results["summary"]


def test_a_workload_the_plugin_cannot_serve_is_refused(plugin_path, tmp_path) -> None:
    r = squall(["run", "--db", "memkv", "--workload", "set", *SHORT], tmp_path, plugin_path)
    assert r.returncode == 3
    assert "--db memkv cannot serve the set workload: it offers no 'set' client" in r.stderr
    assert "workloads it can run: memkv-counter, register" in r.stderr
    r = squall(
        [
            "run",
            "--db",
            "memkv",
            "--workload",
            "register",
            "--nemesis",
            "kill",
            "--unsafe-db-fault",
            "gremlins",
            *SHORT,
        ],
        tmp_path,
        plugin_path,
    )
    assert r.returncode == 3 and "allowed: stale-reads" in r.stderr
    r = squall(["run", "--db", "memkv", "--workload", "register", "--nodes", "3"], tmp_path, plugin_path)
    assert r.returncode == 3 and "--db memkv cannot run 3 node(s); allowed: 1" in r.stderr
