"""`squall check RUN_DIR` reproduces the run's own verdict for every workload
(issue 11, item 2), and Jepsen independent `[k v]` histories are checked per key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from checkers.history import Op
from harness import runner, store
from harness.cli import _registry, cli
from harness.spec import TestSpec


class H:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p, f, value, typ="ok", out=None, zxid=None, error=None):
        self.ops.append(Op(len(self.ops), len(self.ops) * 1000, "invoke", p, f, value))
        self.ops.append(
            Op(len(self.ops), len(self.ops) * 1000, typ, p, f, value if out is None else out, error=error, zxid=zxid)
        )
        return self


def _register(broken: bool) -> list[Op]:
    h = H().op(0, "write", [0, 1], zxid=10).op(1, "read", [0, None], out=[0, 1], zxid=10)
    h.op(1, "cas", [0, [1, 2]], zxid=11).op(0, "write", [1, 7], zxid=12).op(0, "read", [1, None], out=[1, 7], zxid=12)
    if broken:
        h.op(1, "cas", [0, [5, 6]], zxid=13)  # from a value the register never held
    return h.ops


def _set(broken: bool) -> list[Op]:
    h = H().op(0, "add", 0).op(1, "add", 1).op(0, "add", 2, "info")
    return h.op(0, "final-read", None, out=[1] if broken else [0, 1, 2]).ops


def _w(read, zxid):
    return {"read": read, "wrote": read + 1, "lock": "lock-1", "write_zxid": zxid}


def _lock(broken: bool) -> list[Op]:
    h = H().op(0, "fenced-write", None, out=_w(0, 10))
    return h.op(1, "fenced-write", None, out=_w(0 if broken else 1, 11)).ops


def _session(broken: bool) -> list[Op]:
    h = H().op(0, "create", None, out={"node": "e-a-1", "session": "0x1"})
    h.op(0, "close", None, out={"closed": "0x1", "session": "0x2"})
    h.op(0, "create", None, out={"node": "e-a-2", "session": "0x2"})
    nodes = {"e-a-1": "0x1", "e-a-2": "0x2"} if broken else {"e-a-2": "0x2"}
    return h.op(0, "final-read", None, out={"session": "0x2", "nodes": nodes}).ops


HISTORIES = {"register": _register, "set": _set, "lock": _lock, "session": _session}
EXIT = {True: 0, False: 1, "unknown": 2}


def _run_dir(tmp_path: Path, workload: str, ops: list[Op]) -> Path:
    spec = TestSpec(name=f"hand-{workload}", workload=workload, nodes=("n1",), seed=3)
    d = store.new_run_dir(tmp_path, spec.name)
    store.write_spec(d, spec)
    store.write_history(d, ops)
    return d


def _check(*args) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["check", *map(str, args)], obj=_registry())
    return r.exit_code, r.output


@pytest.mark.parametrize("broken", [False, True], ids=["valid", "broken"])
@pytest.mark.parametrize("workload", sorted(HISTORIES))
def test_check_of_a_run_dir_gives_the_workloads_verdict(tmp_path, workload, broken):
    ops = HISTORIES[workload](broken)
    d = _run_dir(tmp_path, workload, ops)
    spec = TestSpec.load(d)
    w = _registry().workloads[workload]({"reads": spec.reads, "seed": spec.seed})
    valid, _, _ = runner.judge(spec, w, ops)
    assert valid is (not broken)  # the hand-built histories are what they claim
    for target in (d, d / "history.jsonl"):
        code, out = _check(target)
        assert code == EXIT[valid], out
    code, out = _check(d, "--json")
    [row] = json.loads(out)["results"]
    assert row["valid"] is valid and row["workload"] == workload


def test_a_run_dir_with_an_unknown_workload_names_the_flag_to_pass(tmp_path):
    d = _run_dir(tmp_path, "register", _register(False))
    spec = json.loads((d / "test.json").read_text())
    spec["workload"] = "no-such-workload"
    (d / "test.json").write_text(json.dumps(spec))
    code, out = _check(d)
    assert code == 3 and "unknown workload 'no-such-workload'" in out and "--model" in out


def test_an_empty_run_history_is_unknown_unless_allowed(tmp_path):
    d = _run_dir(tmp_path, "set", [])
    assert _check(d)[0] == 2
    assert _check(d, "--allow-empty")[0] == 0


def test_model_overrides_the_run_mode(tmp_path):
    d = _run_dir(tmp_path, "register", _register(False))
    code, out = _check(d / "history.jsonl", "--model", "cas-register", "--json")
    [row] = json.loads(out)["results"]
    assert row["model"] == "cas-register" and "workload" not in row
    assert row["independent"] is True and code == 0  # the run's [key, value] ops, split by key


def _edn(ops: list[tuple]) -> str:
    lines = []
    for p, typ, f, v in ops:
        lines.append(f"{{:process {p}, :type :{typ}, :f :{f}, :value {v}}}")
    return "[\n" + "\n".join(lines) + "\n]\n"


def test_a_jepsen_independent_history_is_checked_per_key(tmp_path):
    # two keys, each linearizable alone; as ONE register the reads contradict each other
    good = _edn(
        [
            (0, "invoke", "write", "[:x 1]"),
            (0, "ok", "write", "[:x 1]"),
            (1, "invoke", "write", "[:y 2]"),
            (1, "ok", "write", "[:y 2]"),
            (0, "invoke", "read", "[:x nil]"),
            (0, "ok", "read", "[:x 1]"),
            (1, "invoke", "cas", "[:y [2 3]]"),
            (1, "ok", "cas", "[:y [2 3]]"),
            (1, "invoke", "read", "[:y nil]"),
            (1, "ok", "read", "[:y 3]"),
        ]
    )
    path = tmp_path / "independent.edn"
    path.write_text(good)
    code, out = _check(path, "--json")
    [row] = json.loads(out)["results"]
    assert code == 0 and row["valid"] is True and row["independent"] is True, out
    bad = good.replace(":ok, :f :read, :value [:x 1]", ":ok, :f :read, :value [:x 2]")
    path.write_text(bad)
    code, out = _check(path, "--json")
    [row] = json.loads(out)["results"]
    assert code == 1 and row["valid"] is False and row["counterexample"]["key"] == "x", out


def test_a_plain_cas_register_history_is_not_taken_for_an_independent_one(tmp_path):
    path = tmp_path / "plain.edn"
    path.write_text(
        _edn(
            [
                (0, "invoke", "write", "1"),
                (0, "ok", "write", "1"),
                (1, "invoke", "cas", "[1 2]"),
                (1, "ok", "cas", "[1 2]"),
                (0, "invoke", "read", "nil"),
                (0, "ok", "read", "2"),
            ]
        )
    )
    code, out = _check(path, "--json")
    [row] = json.loads(out)["results"]
    assert code == 0 and "independent" not in row, out


def test_a_history_whose_model_cannot_be_inferred_names_the_flag(tmp_path):
    d = _run_dir(tmp_path, "set", _set(False))
    (d / "test.json").unlink()  # a bare set history: cas-register is assumed and cannot step `add`
    code, out = _check(d / "history.jsonl")
    assert code == 3 and "pass --model" in out and "test.json" in out, out


@pytest.mark.parametrize("db", ["zookeeper", "squall"])
def test_a_stale_read_after_sync_names_zookeeper_1675_only_for_zookeeper(tmp_path, db):
    """`squall check` and `squall analyze` of a run whose read after sync missed
    an acknowledged write: on Apache ZooKeeper that is its documented
    limitation (ZOOKEEPER-1675), named as such; on the node it is a finding."""

    h = H().op(0, "write", [0, 1], zxid=10).op(0, "write", [0, 2], zxid=11)
    h.op(1, "read", [0, None], out=[0, 1], zxid=10)  # sync then get, after the write of 2 was acknowledged
    spec = TestSpec(name=f"stale-{db}", db=db, workload="register", nodes=("n1", "n2", "n3"), seed=3, reads="sync")
    d = store.new_run_dir(tmp_path, spec.name)
    store.write_spec(d, spec)
    store.write_history(d, h.ops)
    code, out = _check(d)
    assert code == 1 and "fresh-after-sync" in out
    assert ("ZOOKEEPER-1675" in out) is (db == "zookeeper"), out
    r = CliRunner().invoke(cli, ["analyze", str(d)], obj=_registry())
    results = json.loads((d / "results.json").read_text())
    assert r.exit_code == 1 and ("ZOOKEEPER-1675" in results["summary"]) is (db == "zookeeper")
    assert bool(results.get("known_limitations")) is (db == "zookeeper")
