"""Verdicts a CI gate can trust (issue 11): no false pass from a run that did
nothing, from a failed setup, or from re-analysing one."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from checkers.result import Result
from harness import store
from harness.cli import cli
from harness.clock import VirtualClock
from harness.runner import EXIT_SETUP_FAILED, EXIT_UNKNOWN, run_test
from harness.spec import TestSpec
from tests.harness.fakes import FakeBackend, FakeSetWorkload, fake_registry

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


class _ClaimsValid(FakeSetWorkload):
    """A checker that calls any history valid: the runner must not believe it
    when no client operation completed ok."""

    def check(self, history) -> Result:
        return Result.ok("claims-valid", "nothing wrong seen", {"lines": len(history)})


def _refuse(op: dict) -> None:
    raise ConnectionError("refused (fake)")


def test_a_run_without_one_ok_client_op_is_unknown_and_an_error_in_junit(tmp_path):
    backend = FakeBackend()
    workload = _ClaimsValid(backend, on_invoke=_refuse)
    spec = TestSpec(
        name="nothing", nodes=("n1",), workload="set", nemesis=(), time_limit_s=0.5, concurrency=2, rate=40.0, seed=1
    )
    run_dir = store.new_run_dir(tmp_path, spec.name)
    outcome = run_test(spec, backend, object(), workload, None, run_dir, clock=VirtualClock())
    assert outcome.valid == "unknown" and outcome.exit_code == EXIT_UNKNOWN
    assert outcome.history_len > 0  # ops were attempted, none completed ok
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] == "unknown" and results["client_ok_ops"] == 0
    assert "no client operation completed ok" in results["summary"]
    junit = (run_dir / "junit.xml").read_text()
    assert "<error" in junit and 'errors="1"' in junit and "<failure" not in junit


def _invoke(args, registry):
    return CliRunner().invoke(cli, args, obj=registry, catch_exceptions=False)


def test_analyze_of_a_setup_failed_run_exits_4_and_rewrites_nothing(tmp_path):
    results = tmp_path / "results"
    r = _invoke(["run", "--workload", "set", "--results", str(results)] + FAST, fake_registry(fail_create=True))
    assert r.exit_code == EXIT_SETUP_FAILED
    run_dir = (results / "latest").resolve()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert json.loads(before["results.json"])["status"] == "setup-failed"
    assert "<error" in before["junit.xml"].decode()
    r = _invoke(["analyze", str(run_dir)], fake_registry())
    assert r.exit_code == EXIT_SETUP_FAILED
    assert "setup failed" in r.output and "nothing was rewritten" in r.output
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_analyze_of_a_run_that_did_nothing_is_not_a_pass_even_without_its_results(tmp_path):
    results = tmp_path / "results"
    _invoke(["run", "--workload", "set", "--results", str(results)] + FAST, fake_registry(fail_create=True))
    run_dir = (results / "latest").resolve()
    (run_dir / "results.json").unlink()  # the marker of the failed setup is gone
    r = _invoke(["analyze", str(run_dir)], fake_registry())
    assert r.exit_code == EXIT_UNKNOWN, r.output
    assert json.loads((run_dir / "results.json").read_text())["valid"] == "unknown"
    assert "<error" in (run_dir / "junit.xml").read_text()


def test_analyze_says_which_files_it_wrote_and_out_writes_elsewhere(tmp_path):
    results = tmp_path / "results"
    r = _invoke(["run", "--workload", "set", "--results", str(results)] + FAST, fake_registry())
    assert r.exit_code == 0, r.output
    run_dir = (results / "latest").resolve()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    out = tmp_path / "elsewhere"
    r = _invoke(["analyze", str(run_dir), "--out", str(out)], fake_registry())
    assert r.exit_code == 0, r.output
    for name in ("results.json", "junit.xml", "report.html"):
        assert (out / name).exists() and str(out / name) in r.output
    assert f"report: {out / 'report.html'}" in r.output
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    r = _invoke(["analyze", str(run_dir)], fake_registry())
    assert r.exit_code == 0 and f"wrote {run_dir / 'results.json'}" in r.output


# -- rough edges: what the database cannot run is refused before anything starts


def _real(args, capsys) -> tuple[int, str]:
    """`squall ARGS` through the console entry point (usage errors exit 3)."""
    from harness.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out + err


@pytest.mark.parametrize(
    "db, nodes, ok",
    [("squall", 4, False), ("squall", 2, False), ("squall", 5, True), ("zookeeper", 4, True), ("zookeeper", 2, True)],
)
def test_node_counts_are_checked_against_the_database(db, nodes, ok):
    from harness.cli import _registry
    from harness.run_cmd import _Common, build_spec
    from harness.spec import SpecError

    c = _Common(
        backend="local",
        db=db,
        nemesis_interval=5.0,
        nodes=str(nodes),
        time_limit=5.0,
        concurrency="2n",
        rate=20.0,
        seed=1,
        results_dir="results",
        reads="local",
        progress=False,
        unsafe_db_fault=None,
    )
    if ok:
        assert len(build_spec(_registry(), c, "register", "partition", None).nodes) == nodes
    else:
        with pytest.raises(SpecError, match=r"--db squall cannot run \d node\(s\); allowed: 1, 3, 5"):
            build_spec(_registry(), c, "register", "partition", None)


def test_nodes_4_for_the_squall_ensemble_exits_3_before_starting_anything(tmp_path, capsys):
    code, out = _real(
        ["run", "--db", "squall", "--nodes", "4", "--results", str(tmp_path / "r"), "--no-progress"], capsys
    )
    assert code == 3 and "allowed: 1, 3, 5" in out
    assert not (tmp_path / "r").exists()


def test_a_partition_of_one_node_is_refused(tmp_path, capsys):
    code, out = _real(
        [
            "run",
            "--db",
            "zookeeper",
            "--nodes",
            "1",
            "--nemesis",
            "partition,kill",
            "--results",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 3 and "partition needs at least 2 nodes" in out
    code, out = _real(
        [
            "run",
            "--db",
            "zookeeper",
            "--nodes",
            "1",
            "--nemesis",
            "kill",
            "--time-limit",
            "0",
            "--results",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 3 and "time limit" in out and "partition" not in out  # the fault itself is accepted
    assert not (tmp_path / "r").exists()


def test_the_last_line_of_a_run_names_report_html(tmp_path):
    results = tmp_path / "results"
    r = _invoke(["run", "--workload", "set", "--results", str(results)] + FAST, fake_registry())
    assert r.exit_code == 0
    last = r.output.strip().splitlines()[-1]
    assert last.strip() == f"report: {(results / 'latest').resolve() / 'report.html'}"


def test_a_replayed_spec_is_validated_like_a_new_one(tmp_path, capsys):
    spec = TestSpec(name="old", db="squall", nodes=("n1", "n2", "n3", "n4"), nemesis=("kill",), seed=1)
    d = tmp_path / "old-run"
    d.mkdir()
    store.write_spec(d, spec)
    code, out = _real(["run", "--replay", str(d), "--results", str(tmp_path / "r")], capsys)
    assert code == 3 and "cannot run 4 node(s)" in out


def test_the_harness_logs_the_run_to_squall_log(tmp_path):
    results = tmp_path / "results"
    r = _invoke(["run", "--workload", "set", "--results", str(results)] + FAST, fake_registry())
    assert r.exit_code == 0
    text = ((results / "latest").resolve() / "squall.log").read_text()
    for line in (
        "setup: creating the cluster",
        "setup: cluster ready",
        "main phase",
        "fault start-partition",
        "heal phase",
        "final phase",
        "history.jsonl written",
        "teardown:",
        "outcome: exit 0",
    ):
        assert line in text, f"squall.log lacks {line!r}"
