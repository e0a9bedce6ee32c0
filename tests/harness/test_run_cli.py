"""`squall run`, `test-all` and `analyze` against the fake cluster side, the
flag validation of the real registry, and cleanup on SIGINT in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli, main
from harness.run_cmd import worst_exit_code
from tests.harness.fakes import fake_registry

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "--time-limit",
    "1",
    "--rate",
    "40",
    "--nemesis-interval",
    "0.3",
    "--concurrency",
    "3",
    "--seed",
    "9",
    "--no-progress",
]


def invoke(args, tmp_path, registry=None):
    runner = CliRunner()
    return runner.invoke(
        cli,
        args + ["--results", str(tmp_path / "results")] if args[0] != "analyze" else args,
        obj=registry or fake_registry(),
        catch_exceptions=False,
    )


def test_run_valid_exits_0_and_fills_latest(tmp_path):
    r = invoke(["run", "--workload", "set"] + FAST, tmp_path)
    assert r.exit_code == 0, r.output
    latest = tmp_path / "results" / "latest"
    assert {"test.json", "history.jsonl", "results.json", "report.html", "junit.xml"} <= {
        p.name for p in latest.iterdir()
    }
    spec = json.loads((latest / "test.json").read_text())
    assert spec["nodes"] == ["n1", "n2", "n3"] and spec["concurrency"] == 3 and spec["seed"] == 9
    assert spec["name"] == "squall-set-partition+kill"


def test_the_broken_database_gate_exits_1_with_the_anomaly_in_the_report(tmp_path):
    r = invoke(["run", "--workload", "set", "--unsafe-db-fault", "lose-writes"] + FAST, tmp_path)
    assert r.exit_code == 1, r.output
    latest = tmp_path / "results" / "latest"
    assert "unsafe-lose-writes" in latest.resolve().parent.name
    assert "acknowledged adds lost" in (latest / "report.html").read_text()


def test_analyze_rechecks_a_stored_run(tmp_path):
    invoke(["run", "--workload", "set", "--unsafe-db-fault", "lose-writes"] + FAST, tmp_path)
    run_dir = (tmp_path / "results" / "latest").resolve()
    (run_dir / "results.json").unlink()
    r = invoke(["analyze", str(run_dir)], tmp_path)
    assert r.exit_code == 1
    assert json.loads((run_dir / "results.json").read_text())["valid"] is False


def test_analyze_of_a_folder_without_a_run_is_bad_input(tmp_path):
    r = CliRunner().invoke(cli, ["analyze", str(tmp_path)], obj=fake_registry())
    assert r.exit_code != 0 and "no test spec" in r.output


def test_replay_reruns_the_stored_spec(tmp_path):
    invoke(["run", "--workload", "set", "--name", "orig"] + FAST, tmp_path)
    first = (tmp_path / "results" / "latest").resolve()
    r = invoke(["run", "--replay", str(first / "test.json"), "--no-progress"], tmp_path)
    assert r.exit_code == 0
    second = (tmp_path / "results" / "latest").resolve()
    assert second != first and second.parent.name == "orig"
    assert (second / "test.json").read_text() == (first / "test.json").read_text()


def test_test_count_runs_k_times_with_successive_seeds(tmp_path):
    r = invoke(["run", "--workload", "set", "--test-count", "2", "--name", "k"] + FAST, tmp_path)
    assert r.exit_code == 0
    runs = sorted((tmp_path / "results" / "k").iterdir())
    assert [json.loads((d / "test.json").read_text())["seed"] for d in runs] == [9, 10]


def test_test_all_prints_a_table_and_exits_with_the_worst(tmp_path):
    r = invoke(
        ["test-all", "--workloads", "set,register", "--nemeses", "partition;none", "--unsafe-db-fault", "lose-writes"]
        + FAST,
        tmp_path,
    )
    assert r.exit_code == 1
    table = r.stdout
    assert table.splitlines()[0].split()[:4] == ["test", "seed", "verdict", "exit"]
    assert table.count("invalid") == 4


def test_worst_exit_code_ranking():
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([0, 2]) == 2
    assert worst_exit_code([2, 1, 0]) == 1
    assert worst_exit_code([1, 4, 2]) == 4
    assert worst_exit_code([5, 4]) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--workload", "bank"],
            "unknown workload 'bank'; allowed: counter, election, lock, multi, queue, register, session, set, watch, "
            "watch-stream",
        ),
        (["--db", "cockroach"], "unknown db 'cockroach'; allowed: etcd, squall, zookeeper"),
        (["--backend", "k8s"], "unknown backend 'k8s'; allowed: "),
        (["--nemesis", "partition,flood"], "allowed: partition, pause, kill"),
        (["--db", "zookeeper", "--concurrency", "lots"], "must be a number N or Nn"),
        (["--db", "zookeeper", "--reads", "eventual"], "not offered by --db zookeeper; allowed: local, sync"),
        (
            ["--db", "squall", "--nodes", "1", "--nemesis", "kill", "--unsafe-db-fault", "gremlins"],
            "allowed: lose-writes, stale-reads",
        ),
        (
            ["--db", "zookeeper", "--unsafe-db-fault", "lose-writes"],
            "for --db zookeeper; allowed: none (this database has no test-only faults)",
        ),
        (["--db", "zookeeper", "--nodes", "0"], "between 1 and 9"),
        (["--test-count", "0"], "--test-count must be at least 1"),
    ],
)
def test_bad_flags_exit_3_and_say_what_is_allowed(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--results", str(tmp_path)] + args)
    assert exc.value.code == 3
    assert message in capsys.readouterr().err


def test_run_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for flag in (
        "--db",
        "--workload",
        "--nemesis",
        "--nemesis-interval",
        "--nodes",
        "--time-limit",
        "--concurrency",
        "--rate",
        "--seed",
        "--test-count",
        "--name",
        "--results",
        "--reads",
        "--replay",
    ):
        assert flag in out
    assert "--unsafe-db-fault" not in out  # test-only, hidden


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(path_glob: Path, pattern: str, timeout_s: float) -> Path | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p in path_glob.glob(pattern) if p.stat().st_size > 0]
        if found:
            return found[0]
        time.sleep(0.1)
    return None


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_to_squall_run_leaves_no_process_or_port_behind(tmp_path, sig, name):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.harness.fake_squall",
            "run",
            "--workload",
            "set",
            "--nodes",
            "3",
            "--time-limit",
            "60",
            "--rate",
            "20",
            "--no-progress",
            "--results",
            str(tmp_path / "results"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    ports: list[int] = []
    try:
        info = _wait_for(tmp_path / "results", "*/*/fake-cluster.txt", 30)
        assert info is not None, "the fake cluster never came up"
        pid_line, port_line = info.read_text().splitlines()
        pids, ports = [int(p) for p in pid_line.split()], [int(p) for p in port_line.split()]
        assert all(_alive(p) for p in pids) and all(_listening(p) for p in ports)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "INTERRUPTED" in out and name in out  # the verdict line goes to stdout
        assert not [p for p in pids if _alive(p)], "a node process survived the signal"
        assert not [p for p in ports if _listening(p)], "a node port is still listening"
        assert (info.parent / "history.jsonl").exists()
        assert json.loads((info.parent / "results.json").read_text())["status"] == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
