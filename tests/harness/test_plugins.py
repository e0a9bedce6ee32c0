"""Plugins by entry point (harness/plugins.py, harness/registry.py,
nemesis/combined.py, `squall list`): squall's own parts come from its
pyproject.toml; another distribution's from its installed metadata; a broken
one is reported by name and never kills the CLI."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import plugins
from harness.registry import Registry, from_plugins, nemesis_composer
from nemesis.base import NemesisPackage
from nemesis.combined import combine


@pytest.fixture
def fresh_discovery():
    plugins.discover.cache_clear()
    plugins._load.cache_clear()
    yield
    plugins.discover.cache_clear()
    plugins._load.cache_clear()


def _distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
    """An installed distribution, as pip leaves one: a dist-info with entry points, and its modules."""
    info = site / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
            for group, eps in entry_points.items()
        )
    )
    for mod, text in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(text))


def test_squalls_own_parts_come_from_its_pyproject_in_order(fresh_discovery):
    d = plugins.discover()
    assert d.names("db") == ("squall", "zookeeper", "etcd")
    assert d.names("workload")[:2] == ("register", "set") and len(d.names("workload")) == 10
    assert d.names("nemesis") == ("partition", "pause", "kill", "packet", "clock", "disk")
    assert d.names("checker") == ("linearizable", "sequential")
    zk = d.get("db", "zookeeper")
    assert zk.dist == "squall" and zk.source == "checkout" and zk.target == "harness.dbs.zookeeper:make"
    assert d.problems == []
    assert plugins.default("db", "squall") == "squall" and plugins.default("db", "nope") == "squall"
    assert plugins.help_list("db") == "squall, zookeeper or etcd"


def test_another_distributions_plugins_are_found_and_loaded_lazily(fresh_discovery, tmp_path, monkeypatch):
    _distribution(
        tmp_path,
        "squall-extra",
        {"squall.dbs": {"extra": "extra_db:make"}, "squall.checkers": {"always": "extra_db:check"}},
        {
            "extra_db": '''
                      """An extra database."""
                      LOADED = True
                      def make(options):
                          return ("extra", options)
                      def check(history, model, budget_s=None):
                          return "checked"
                  '''
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    d = plugins.discover()
    extra = d.get("db", "extra")
    assert (extra.dist, extra.version, extra.source) == ("squall-extra", "1.2.3", "installed")
    assert d.names("db") == ("squall", "zookeeper", "etcd", "extra")  # squall's own first
    import sys

    assert "extra_db" not in sys.modules  # discovery imports nothing
    reg = from_plugins(d, {}, {}, ("partition",))
    assert reg.dbs["extra"]({"x": 1}) == ("extra", {"x": 1})
    assert reg.checkers["always"]([], None) == "checked"
    assert plugins.describe_object(extra.load()) == "An extra database."


def test_a_plugin_that_fails_to_import_is_named_and_the_cli_lives(fresh_discovery, tmp_path, monkeypatch, capsys):
    _distribution(
        tmp_path,
        "squall-broken",
        {"squall.dbs": {"broken": "broken_db:make"}},
        {"broken_db": "import no_such_module_anywhere\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from harness.cli import cli

    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "run" in r.output
    r = CliRunner().invoke(cli, ["run", "--help"])
    assert r.exit_code == 0 and "--db" in r.output  # help never imports a plugin
    r = CliRunner().invoke(cli, ["list"])
    assert r.exit_code == 3
    assert "broken" in r.output and "FAILED TO LOAD" in r.output
    assert (
        "the db plugin 'broken' (broken_db:make, from squall-broken 1.2.3) failed to load: "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere'"
    ) in r.output
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--db", "broken", "--results", str(tmp_path / "r"), "--no-progress"])
    assert exc.value.code == 3 and "failed to load: ModuleNotFoundError" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything ran


def test_a_name_registered_twice_is_a_problem_and_squalls_own_wins(fresh_discovery, tmp_path, monkeypatch):
    _distribution(
        tmp_path,
        "squall-impostor",
        {"squall.dbs": {"zookeeper": "impostor:make"}},
        {"impostor": "def make(options):\n    return None\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    d = plugins.discover()
    assert d.get("db", "zookeeper").dist == "squall"
    assert any("db 'zookeeper' is registered twice" in p and "squall-impostor" in p for p in d.problems)


def test_squall_list_json_describes_every_part(fresh_discovery):
    from harness.cli import cli

    r = CliRunner().invoke(cli, ["list", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    rows = {(p["kind"], p["name"]): p for p in doc["plugins"]}
    assert rows[("db", "zookeeper")]["package"] == "squall" and "Apache ZooKeeper" in rows[("db", "zookeeper")]["about"]
    assert set(rows[("db", "squall")]["interfaces"]) >= {"register", "set", "lock", "watch"}
    assert rows[("workload", "register")]["interface"] == "register"
    assert ("nemesis", "partition") in rows and ("checker", "linearizable") in rows
    assert doc["backends"] == ["docker", "local", "ssh"] and doc["problems"] == []
    assert {"name": "lagging-follower", "uses": ["packet", "kill"]} in doc["sequences"]


# ------------------------------------------------------------ nemeses


class _Nem:
    def __init__(self, tag):
        self.tag, self.done, self.setups, self.teardowns = tag, [], 0, 0

    def setup(self, target):
        self.setups += 1

    def invoke(self, target, op):
        self.done.append(op["f"])
        return {"type": "info", "value": f"{self.tag} did {op['f']}"}

    def teardown(self, target):
        self.teardowns += 1


def _pkg(tag, fs, final=()):
    def source(rng):
        while True:
            for f in fs:
                yield {"f": f, "value": rng.random()}

    return NemesisPackage(_Nem(tag), (tag,), 2.0, source, [{"f": f, "value": None} for f in final])


def test_combined_packages_interleave_and_each_performs_its_own_ops():
    a, b = _pkg("a", ["start-a", "stop-a"], ["stop-a"]), _pkg("b", ["start-b", "stop-b"], ["stop-b"])
    both = combine([a, b])
    assert both.faults == ("a", "b") and both.interval_s == 2.0
    ops = [next(it) for it in [both.ops(random.Random(1))] for _ in range(4)]
    assert [o["f"] for o in ops] == ["start-a", "start-b", "stop-a", "stop-b"]
    both.nemesis.setup(None)
    for o in ops + both.final_ops():
        assert both.nemesis.invoke(None, o)["value"].startswith(o["f"][-1])
    both.nemesis.teardown(None)
    assert a.nemesis.done == ["start-a", "stop-a", "stop-a"] and b.nemesis.setups == b.nemesis.teardowns == 1
    assert combine([a]) is a


def test_two_packages_emitting_the_same_op_are_refused_not_guessed():
    both = combine([_pkg("a", ["flip"]), _pkg("b", ["flip"])])
    src = both.ops(random.Random(1))
    op = next(src)
    next(src)
    out = both.nemesis.invoke(None, op)
    assert "two nemeses emit 'flip'" in out["error"]


def test_squalls_own_faults_are_built_by_one_call_with_the_same_rng(fresh_discovery):
    compose = nemesis_composer(plugins.discover().of("nemesis"))
    from nemesis.package import package

    mine = compose(["partition", "kill"], 3.0, random.Random(5))
    theirs = package(["partition", "kill"], 3.0, random.Random(5))
    take = lambda p: [next(it) for it in [p.ops(random.Random(9))] for _ in range(6)]  # noqa: E731
    assert take(mine) == take(theirs)  # histories of runs with squall's faults are unchanged


def test_the_real_registry_knows_what_each_backend_can_do(fresh_discovery):
    from harness.cli import _registry

    reg = _registry()
    assert isinstance(reg, Registry) and reg.discovery is not None
    assert reg.all_faults_for("docker") == ("partition", "pause", "kill", "packet", "disk")
    assert reg.all_faults_for("local") == ("partition", "pause", "kill", "packet", "clock", "disk")
    assert reg.extra_faults == () and sorted(reg.checkers) == ["linearizable", "sequential"]
    assert reg.nodes_for("zookeeper") == 3
