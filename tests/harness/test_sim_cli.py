"""`squall sim` end to end through the composition root."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest
from click.testing import CliRunner

from harness.cli import cli


def _run(args):
    # One worker unless a test is about workers: fewer forks of this (threaded) test process.
    if "--workers" not in args:
        args = [*args, "--workers", "1"]
    return CliRunner().invoke(cli, ["sim", *args], catch_exceptions=False)


def test_sim_reports_valid_seeds_as_json_and_exits_0():
    res = _run(["--seeds", "4", "--seed", "20", "--ops", "15", "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["seeds"] == 4 and body["invalid"] == 0
    assert [o["nodes"] for o in body["outcomes"]] == [3, 5, 3, 5]
    assert [o["seed"] for o in body["outcomes"]] == [20, 21, 22, 23]
    assert all(o["verdict"] == "valid" and len(o["history_hash"]) == 64 for o in body["outcomes"])


def test_sim_prints_a_failing_seed_with_a_replay_command_that_reproduces_it():
    # Leaders committing without a quorum lose acknowledged writes; the run
    # must say which seed failed and how to replay it, and the replay must
    # fail the same way with the same history.
    res = _run(["--seeds", "40", "--nodes", "3", "--unsafe-commit-without-quorum", "--fail-fast", "--json"])
    assert res.exit_code == 1, res.output
    body = json.loads(res.stdout)
    bad = [o for o in body["outcomes"] if o["verdict"] == "invalid"]
    assert len(bad) == 1 and bad[0] == body["outcomes"][-1]  # fail-fast stopped there
    replay = f"squall sim --seeds 1 --seed {bad[0]['seed']} --nodes 3 --ops 30 --unsafe-commit-without-quorum"
    assert f"replay: {replay}" in res.stderr
    again = _run(replay.split()[2:] + ["--json"])
    assert again.exit_code == 1
    assert json.loads(again.stdout)["outcomes"][0]["history_hash"] == bad[0]["history_hash"]


@pytest.mark.parametrize("workers, per_process", [(1, 4), (2, 2)])
def test_a_failing_simulator_process_is_an_error_not_a_verdict(monkeypatch, workers, per_process):
    import harness.sim_cmd as sim_cmd

    # (the parent makes each chunk's simulator command, so the workers run the patched one too)
    monkeypatch.setattr(
        sim_cmd,
        "simulator_command",
        lambda *a: [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(4)"],
    )
    res = _run(["--seeds", "4", "--workers", str(workers)])
    assert res.exit_code == 3
    assert f"exited with 4 after 0 of {per_process} seeds" in res.output and "boom" in res.output


def test_sim_refuses_a_bad_cluster_size():
    res = CliRunner().invoke(cli, ["sim", "--nodes", "4"])
    assert res.exit_code != 0 and "4" in res.output


def test_check_sync_flags_a_sync_read_older_than_an_acknowledged_write():
    from harness.sim_cmd import check_sync

    ok_hist = [
        {"index": 0, "time": 10, "type": "invoke", "process": 0, "f": "write", "value": 1, "key": "k0"},
        {"index": 1, "time": 20, "type": "ok", "process": 0, "f": "write", "value": 1, "key": "k0", "zxid": 0x105},
        {"index": 2, "time": 30, "type": "invoke", "process": 1, "f": "read", "value": None, "key": "k0", "sync": True},
        {
            "index": 3,
            "time": 40,
            "type": "ok",
            "process": 1,
            "f": "read",
            "value": 1,
            "key": "k0",
            "zxid": 0x105,
            "sync": True,
        },
    ]
    assert check_sync(ok_hist) == []
    stale = [dict(d) for d in ok_hist]
    stale[3]["zxid"] = 0x104
    problems = check_sync(stale)
    assert len(problems) == 1 and "op index 1" in problems[0]
    # A write acknowledged only after the sync was invoked does not bind it.
    late = [ok_hist[0], ok_hist[2], dict(ok_hist[1], time=35), dict(ok_hist[3], zxid=0x104)]
    assert check_sync(late) == []


def test_the_simulator_issues_sync_reads():
    from node.sim import SimConfig, run_seed

    n = sum(1 for s in range(4) for d in run_seed(s, SimConfig(nodes=3)).history if d.get("sync") and d["type"] == "ok")
    assert n > 0


def test_check_client_zxids_flags_a_client_seeing_time_go_backwards():
    from harness.sim_cmd import check_client_zxids

    def ok(i, process, client, zxid):
        return {
            "index": i,
            "time": i,
            "type": "ok",
            "process": process,
            "f": "read",
            "value": None,
            "key": "k0",
            "zxid": zxid,
            "client": client,
        }

    # Process 0 became process 3 after a timeout: still client 0.
    assert check_client_zxids([ok(0, 0, 0, 5), ok(1, 1, 1, 2), ok(2, 3, 0, 5), ok(3, 3, 0, 6)]) == []
    problems = check_client_zxids([ok(0, 0, 0, 5), ok(1, 3, 0, 4)])
    assert len(problems) == 1 and "client 0" in problems[0] and "back in time" in problems[0]


def _h(*events):
    out = []
    for i, (t, p, f, v, key) in enumerate(events):
        out.append(
            {
                "index": i,
                "time": i,
                "type": t,
                "process": p,
                "f": f,
                "value": v,
                "key": key,
                **({"zxid": 0x100000000 + i} if t == "ok" else {}),
            }
        )
    return out


def test_pruning_drops_only_unobserved_indeterminate_writes():
    from harness.sim_cmd import prune_unobserved_indeterminate_writes as prune

    h = _h(
        ("invoke", 0, "write", 1, "k"),
        ("ok", 0, "write", 1, "k"),
        ("invoke", 1, "write", 2, "k"),
        ("info", 1, "write", 2, "k"),  # never seen: dropped
        ("invoke", 2, "write", 3, "k"),
        ("info", 2, "write", 3, "k"),  # read below: kept
        ("invoke", 3, "cas", [3, 4], "k"),
        ("info", 3, "cas", [3, 4], "k"),  # 4 never seen: dropped
        ("invoke", 4, "read", None, "k"),
        ("ok", 4, "read", 3, "k"),
    )
    kept = [d["index"] for d in prune(h)]
    assert kept == [0, 1, 4, 5, 8, 9]
    # Values written twice: the argument does not hold, nothing is pruned.
    dup = _h(
        ("invoke", 0, "write", 1, "k"),
        ("ok", 0, "write", 1, "k"),
        ("invoke", 1, "write", 1, "k"),
        ("info", 1, "write", 1, "k"),
        ("invoke", 2, "write", 5, "k"),
        ("info", 2, "write", 5, "k"),
    )
    assert prune(dup) == dup


def test_pruning_keeps_a_violation_visible():
    from harness.sim_cmd import judge

    # A lost acknowledged write: 1 is acked, then a later read (after it
    # completed) still sees the initial value. An unobserved info write
    # alongside must not hide that.
    h = _h(
        ("invoke", 0, "write", 1, "k"),
        ("ok", 0, "write", 1, "k"),
        ("invoke", 1, "write", 2, "k"),
        ("info", 1, "write", 2, "k"),
        ("invoke", 0, "read", None, "k"),
        ("ok", 0, "read", None, "k"),
    )
    lin, seq = judge(h)
    assert seq.is_invalid


def test_failures_are_counted_as_violations_and_liveness_failures():
    from harness.sim_cmd import SeedOutcome, failure_counts

    outs = [
        SeedOutcome(1, 3, "valid"),
        SeedOutcome(2, 3, "invalid", ["liveness: no write acknowledged"]),
        SeedOutcome(3, 5, "invalid", ["linearizable: lost write", "liveness: stuck"]),
        SeedOutcome(4, 5, "invalid", ["simulator: trees differ"]),
        SeedOutcome(5, 3, "unknown", ["sequential unknown: budget"]),
    ]
    assert failure_counts(outs) == (2, 2)


def test_sim_text_summary_reports_violations_and_liveness_failures():
    res = _run(["--seeds", "2", "--seed", "3", "--ops", "10"])
    assert res.exit_code == 0, res.output
    assert "2 seeds in" in res.stdout and "2 valid, 0 failing, 0 unknown" in res.stdout
    assert "0 seeds with violations, 0 seeds with liveness failures" in res.stdout


def test_chunks_cover_the_seeds_contiguously_in_order():
    from harness.sim_cmd import CHUNK_SEEDS, chunks

    for seeds, first, workers in [(1, 0, 4), (7, 3, 2), (100, 10, 3), (10_000, 0, 2)]:
        cs = chunks(seeds, first, workers)
        assert [s for s, _ in cs] == sorted(s for s, _ in cs)
        covered = [s + i for s, c in cs for i in range(c)]
        assert covered == list(range(first, first + seeds))
        assert all(1 <= c <= CHUNK_SEEDS for _, c in cs)
        # even sizes: each seed keeps the cluster size (3 and 5 alternate) it has in one run of all seeds
        assert all(c % 2 == 0 for _, c in cs[:-1])
        assert len(cs) >= min(workers, seeds)  # every worker gets work


def test_workers_give_the_same_outcomes_in_the_same_order():
    def outcomes(workers):
        res = _run(["--seeds", "5", "--seed", "7", "--ops", "15", "--workers", str(workers), "--json"])
        assert res.exit_code == 0, res.output
        body = json.loads(res.stdout)
        assert body["workers"] == workers and body["seeds_per_min"] > 0
        return [(o["seed"], o["nodes"], o["verdict"], o["history_hash"], o["problems"]) for o in body["outcomes"]]

    one = outcomes(1)
    assert [o[0] for o in one] == [7, 8, 9, 10, 11]
    assert outcomes(3) == one


_MARKER = "SQUALL_TEST_SIM_MARKER"


def _processes_marked(marker: str) -> list[str]:
    """Live processes whose environment carries ``_MARKER=marker``: the sim workers
    and simulators this test started, and no one else's (another pytest worker, or
    another session on the machine, may be running simulators meanwhile)."""
    from pathlib import Path

    found = []
    tag = f"{_MARKER}={marker}".encode()
    for d in Path("/proc").iterdir():
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            state = (d / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if tag in env and state != b"Z" and d.name != str(os.getpid()):
            found.append(d.name)
    return found


def test_fail_fast_with_workers_stops_at_the_same_seed_and_leaves_nothing_running(monkeypatch):
    import multiprocessing
    import uuid

    marker = uuid.uuid4().hex
    monkeypatch.setenv(_MARKER, marker)  # inherited by the workers and their simulators

    args = ["--seeds", "40", "--nodes", "3", "--ops", "29", "--unsafe-commit-without-quorum", "--fail-fast", "--json"]
    serial = json.loads(_run(args + ["--workers", "1"]).stdout)
    res = _run(args + ["--workers", "2"])
    assert res.exit_code == 1, res.output
    body = json.loads(res.stdout)
    assert [o["seed"] for o in body["outcomes"]] == [o["seed"] for o in serial["outcomes"]]
    assert body["outcomes"][-1]["verdict"] == "invalid"
    assert multiprocessing.active_children() == []
    if sys.platform.startswith("linux"):
        # A simulator whose worker was killed dies with it (PR_SET_PDEATHSIG, node/sim.py);
        # the kernel delivers that kill as the worker exits, so allow it a moment to land.
        deadline = time.monotonic() + 5.0
        while _processes_marked(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_marked(marker) == []


def test_sim_text_summary_prints_seeds_per_minute_and_workers():
    res = _run(["--seeds", "2", "--ops", "15", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert re.search(r"^\d+ seeds/min with 2 workers$", res.stdout, re.M), res.stdout
