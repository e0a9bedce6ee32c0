"""Leftovers of dead runs (issue 11, item 9), with a stand-in for the Docker
client: which runs are dead, `squall cluster down --all`, and the warning a
run gives at its start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from click.testing import CliRunner

from harness import cluster_cmd
from harness.backends import docker as dk


class _Thing:
    def __init__(self, world, name, labels, network=False):
        self.world, self.name, self.labels, self.status = world, name, labels, "running"
        self.attrs = {"Labels": labels} if network else {}
        if network:
            self.labels = None  # docker-py networks carry their labels in attrs

    def remove(self, **_kw):
        self.world.remove(self)

    def unpause(self):
        self.status = "running"


class _Listing:
    def __init__(self, world, networks):
        self.world, self.networks = world, networks

    def list(self, all=False, filters=None):
        key, _, value = (filters or {}).get("label", "").partition("=")
        out = []
        for t in self.world.things:
            labels = t.attrs.get("Labels") if self.networks else t.labels
            if bool(t.attrs) != self.networks or labels is None or key not in labels:
                continue
            if value and labels[key] != value:
                continue
            out.append(t)
        return out


class _Client:
    def __init__(self):
        self.things: list[_Thing] = []
        self.containers = _Listing(self, networks=False)
        self.networks = _Listing(self, networks=True)

    def remove(self, t):
        self.things.remove(t)

    def add_run(self, run_id, owner, kind="run", nodes=2):
        labels = {dk.LABEL_RUN: run_id, dk.LABEL_KIND: kind}
        if owner is not None:
            labels[dk.LABEL_OWNER] = owner
        for i in range(nodes):
            self.things.append(_Thing(self, f"squall-{run_id}-n{i + 1}", dict(labels)))
        self.things.append(_Thing(self, f"squall-{run_id}", dict(labels), network=True))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _world():
    host = socket.gethostname()
    c = _Client()
    c.add_run("live", f"{host}:{os.getpid()}")
    c.add_run("dead", f"{host}:{_dead_pid()}")
    c.add_run("old", None)  # before the owner label: counted as dead
    c.add_run("remote", f"another-host-{os.getpid()}:1")  # cannot be checked here: left alone
    c.add_run("manual", None, kind="manual")  # `squall cluster up`: not a run
    return c


def test_dead_runs_are_those_whose_harness_is_gone():
    dead = dk.dead_runs(_world())
    assert sorted(dead) == ["dead", "old"]
    assert sorted(dead["dead"]) == ["squall-dead", "squall-dead-n1", "squall-dead-n2"]


def test_a_run_warns_at_its_start_about_dead_runs(capsys):
    msg = dk.warn_about_dead_runs(_world())
    assert msg and "2 dead squall run(s)" in msg and "squall cluster down --all" in msg
    assert msg in capsys.readouterr().err
    c = _Client()
    c.add_run("live", f"{socket.gethostname()}:{os.getpid()}")
    assert dk.warn_about_dead_runs(c) is None


def test_cluster_down_all_removes_only_dead_runs(monkeypatch):
    world = _world()
    monkeypatch.setattr(cluster_cmd, "_docker", lambda: (dk, world))
    r = CliRunner().invoke(cluster_cmd.cluster, ["down", "--all"])
    assert r.exit_code == 0, r.output
    assert "removed 4 containers and 2 networks of 2 dead run(s)" in r.output
    runs = {t.name.split("-")[1] for t in world.things}
    assert runs == {"live", "remote", "manual"}
    r = CliRunner().invoke(cluster_cmd.cluster, ["down", "--all"])
    assert r.exit_code == 0 and "no leftovers of dead squall runs" in r.output
    r = CliRunner().invoke(cluster_cmd.cluster, ["down", "--all", "--run", "live"])
    assert r.exit_code != 0 and "exclude each other" in r.output


def test_a_runs_labels_name_its_owner(tmp_path):
    run = dk.DockerCluster(object(), ["n1"], tmp_path, "img", client=None, run_id="x")
    manual = dk.DockerCluster(object(), ["n1"], tmp_path, "img", client=None, run_id="y", kind="manual")
    run.keep_on_exit = manual.keep_on_exit = True
    assert run.labels[dk.LABEL_OWNER] == f"{socket.gethostname()}:{os.getpid()}"
    assert dk.LABEL_OWNER not in manual.labels
    assert dk.owner_alive(run.labels[dk.LABEL_OWNER])


def test_cluster_up_refuses_a_node_count_the_database_cannot_run(monkeypatch):
    from harness.cli import _registry

    def no_docker():
        raise AssertionError("validation must come before Docker is touched")

    monkeypatch.setattr(cluster_cmd, "_docker", no_docker)
    r = CliRunner().invoke(cluster_cmd.cluster, ["up", "--db", "squall", "--nodes", "4"], obj=_registry())
    assert r.exit_code != 0 and "cannot run 4 node(s); allowed: 1, 3, 5" in r.output
