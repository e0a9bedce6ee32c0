"""TEST-ONLY failpoints (node/failpoints.py): parsing, arming, inertness, and every
point of the pure core (Raft and the replica) taking its documented path.

The core's points are driven through the synchronous replica cluster of
test_replica.py, each replica with its own Failpoints, panics and sleeps
injected (nothing here sleeps or exits). The shell's points and the HTTP API
on real processes are in test_failpoints_ensemble.py.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys

import pytest

from node import failpoints as F
from node.consensus import MessageType
from node.failpoints import Action, FailpointError, FailpointPanic, Failpoints, FailpointSpecError
from node.replica import RaftMsg, Replica, Write
from node.tree import EPHEMERAL, OPEN_ACL_UNSAFE, CreateOp
from tests.node.servers import REPO_ROOT, free_port
from tests.node.test_replica import Cluster

# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, action",
    [
        ("off", Action("off")),
        ("panic", Action("panic")),
        ("error", Action("error")),
        ("sleep(250)", Action("sleep", ms=250)),
        ("10%error", Action("error", percent=10.0)),
        ("2.5%panic", Action("panic", percent=2.5)),
        ("3*panic", Action("panic", count=3)),
        ("50%2*sleep(10)", Action("sleep", ms=10, percent=50.0, count=2)),
    ],
)
def test_actions_parse(text: str, action: Action) -> None:
    assert F.parse_action(text) == action
    assert F.parse_action(str(action)) == action  # the printed form parses back


@pytest.mark.parametrize(
    "text, says",
    [
        ("boom", "unknown"),
        ("sleep", "sleep(MS)"),
        ("sleep(0)", "sleep(MS)"),
        ("sleep(x)", "sleep(MS)"),
        ("panic(3)", "takes no argument"),
        ("0%error", "(0, 100]"),
        ("101%error", "(0, 100]"),
        ("0*panic", "at least 1"),
        ("3*off", "off takes no"),
        ("", "does not parse"),
    ],
)
def test_bad_actions_are_refused_naming_the_syntax(text: str, says: str) -> None:
    with pytest.raises(FailpointSpecError, match=r"allowed|MS|\(0, 100\]|at least 1|off takes no") as e:
        F.parse_action(text)
    assert says in str(e.value)


def test_specs_name_a_known_point_and_error_only_where_it_means_something() -> None:
    assert F.parse_spec("before-fsync=error") == ("before-fsync", Action("error"))
    with pytest.raises(FailpointSpecError, match="unknown failpoint 'nope'; allowed: before-fsync"):
        F.parse_spec("nope=panic")
    with pytest.raises(FailpointSpecError, match="expected NAME=ACTION"):
        F.parse_spec("before-fsync")
    with pytest.raises(FailpointSpecError, match="does not take error"):
        F.parse_spec("step-down=error")
    assert F.parse_spec("step-down=panic") == ("step-down", Action("panic"))


def test_every_point_is_documented_and_listed() -> None:
    text = F.describe()
    doc = (REPO_ROOT / "docs" / "failpoints.md").read_text(encoding="utf-8")
    for name, point in F.POINTS.items():
        assert name in text and point.where in text
        assert f"`{name}`" in doc, f"docs/failpoints.md does not describe {name}"


def test_the_http_address_is_loopback_only() -> None:
    assert F.check_http_address("127.0.0.1:9") == ("127.0.0.1", 9)
    with pytest.raises(FailpointSpecError, match="loopback only"):
        F.check_http_address("0.0.0.0:9")
    with pytest.raises(FailpointSpecError, match="HOST:PORT"):
        F.check_http_address("localhost")


# ---------------------------------------------------------------- arming


def test_an_unarmed_set_is_inert() -> None:
    fp = Failpoints()
    assert not fp.active and fp.armed() == {}
    assert all(fp.hit(name) is False for name in F.POINTS)
    assert fp.fired == {}


def test_arm_hit_and_off() -> None:
    panics: list[str] = []
    sleeps: list[float] = []
    fp = Failpoints(["apply=error", "campaign=sleep(40)"], on_panic=panics.append, sleep=sleeps.append)
    assert fp.active and fp.armed() == {"apply": "error", "campaign": "sleep(40)"}
    assert fp.hit("apply") is True
    assert fp.hit("campaign") is False and sleeps == [0.04]
    assert fp.hit("before-reply") is False  # not armed
    fp.arm("apply", "off")
    fp.disarm("campaign")
    assert not fp.active and fp.hit("apply") is False
    fp.arm("step-down", "panic")
    assert fp.hit("step-down") is False and panics == ["step-down"]
    assert fp.fired == {"apply": 1, "campaign": 1, "step-down": 1}


def test_counts_disarm_after_n_fires() -> None:
    fp = Failpoints(["apply=2*error"])
    assert [fp.hit("apply") for _ in range(4)] == [True, True, False, False]
    assert not fp.active and fp.armed() == {}


def test_probabilities_draw_from_the_injected_stream() -> None:
    def fires(seed: int) -> list[bool]:
        fp = Failpoints(["apply=25%error"], rng=random.Random(seed))
        return [fp.hit("apply") for _ in range(2000)]

    a = fires(7)
    assert a == fires(7)  # replayable
    assert 300 < sum(a) < 700  # about a quarter (P(outside) is astronomically small)


def test_a_panic_handler_may_raise() -> None:
    def crash(name: str) -> None:
        raise FailpointPanic(name)

    fp = Failpoints(["snapshot-save=panic"], on_panic=crash)
    with pytest.raises(FailpointPanic, match="snapshot-save"):
        fp.hit("snapshot-save")


# ---------------------------------------------------------------- the pure core's points


class FpCluster(Cluster):
    """test_replica's synchronous cluster with one Failpoints per replica (panics recorded)."""

    def __init__(self, n: int = 3, seed: int = 1, **opts) -> None:
        self.panics: list[tuple[int, str]] = []
        self.fps: dict[int, Failpoints] = {}
        super().__init__(n, seed, **opts)

    def start(self, i: int) -> None:
        def panic(name: str) -> None:
            self.panics.append((i, name))

        fp = self.fps.setdefault(i, Failpoints(on_panic=panic, sleep=lambda s: None))
        self.reps[i] = Replica(
            i, self.ids, self.disks[i].state(), random.Random(self.rng.getrandbits(64)), failpoints=fp, **self.opts
        )

    def write(self, i: int, conn: int, sid: int, seq: int, path: str, flags: int = 0) -> None:
        _write(self, i, conn, sid, seq, path, flags)


def _write(c: Cluster, i: int, conn: int, sid: int, seq: int, path: str, flags: int = 0) -> None:
    c.call(i, "client_request", conn, sid, seq, Write(CreateOp(path, b"", OPEN_ACL_UNSAFE, flags=flags)), c.now)
    c.deliver_all()


def test_unarmed_failpoints_change_nothing() -> None:
    """The same seed gives the same cluster with and without (unarmed) failpoint sets."""

    def run(cls) -> list[str]:
        c = cls(seed=5)
        lead = c.elect()
        sid, _ = c.new_session(lead, conn=1)
        for k in range(5):
            _write(c, lead, 1, sid, 2 + k, f"/k{k}")
            c.tick()
        return [c.r(i).tree.digest() for i in c.ids] + [str(c.r(i).raft.term) for i in c.ids]

    assert run(FpCluster) == run(Cluster)


def test_campaign_error_keeps_every_member_a_follower_until_disarmed() -> None:
    c = FpCluster()
    for fp in c.fps.values():
        fp.arm("campaign", "error")
    c.tick(60)
    assert c.leader() is None and all(c.r(i).raft.term == 0 for i in c.ids)
    assert all(fp.fired["campaign"] >= 2 for fp in c.fps.values())
    for fp in c.fps.values():
        fp.disarm("campaign")
    assert c.elect() in c.ids


def test_become_leader_error_declines_and_another_member_leads() -> None:
    c = FpCluster()
    for i in (1, 2):
        c.fps[i].arm("become-leader", "error")
    assert c.elect() == 3
    assert c.r(1).raft.role.value == "follower" and c.r(2).raft.role.value == "follower"


def test_become_leader_panic_is_a_crash_at_that_instruction() -> None:
    c = FpCluster()
    for fp in c.fps.values():
        fp.arm("become-leader", "1*panic")
    for _ in range(200):
        c.tick()
        if c.panics:
            break
    assert len(c.panics) == 1 and c.panics[0][1] == "become-leader"


def test_step_down_passes_the_point_when_a_leader_loses_its_quorum() -> None:
    c = FpCluster()
    lead = c.elect()
    c.fps[lead].arm("step-down", "panic")
    c.cut = {(a, b) for a in c.ids for b in c.ids if lead in (a, b) and a != b}
    c.tick(40)
    assert (lead, "step-down") in c.panics


def _lagging(c: FpCluster) -> tuple[int, int]:
    lead = c.elect()
    lag = next(i for i in c.ids if i != lead)
    c.crash(lag)
    sid, _ = c.new_session(lead, conn=1)
    for k in range(8):
        c.write(lead, 1, sid, 2 + k, f"/m{k}")
        c.tick()
    assert c.r(lead).raft.log.offset > 0
    return lead, lag


def _snapshots_sent(c: FpCluster) -> int:
    return sum(1 for m in c.sent if isinstance(m, RaftMsg) and m.msg.type is MessageType.SNAPSHOT)


def test_snapshot_send_error_loses_the_snapshot_and_the_leader_retries_later() -> None:
    c = FpCluster(compact_every=2)
    lead, lag = _lagging(c)
    c.fps[lead].arm("snapshot-send", "error")
    c.start(lag)
    c.sent.clear()
    c.tick(30)
    assert _snapshots_sent(c) == 0 and c.fps[lead].fired["snapshot-send"] >= 2  # retried, every time lost
    c.fps[lead].disarm("snapshot-send")
    c.tick(30)
    assert _snapshots_sent(c) >= 1
    assert c.r(lag).tree.digest() == c.r(lead).tree.digest()


def test_snapshot_install_error_refuses_it_until_disarmed() -> None:
    c = FpCluster(compact_every=2)
    lead, lag = _lagging(c)
    c.start(lag)
    c.fps[lag].arm("snapshot-install", "error")
    c.tick(30)
    assert c.fps[lag].fired["snapshot-install"] >= 2
    assert c.r(lag).tree.digest() != c.r(lead).tree.digest()
    c.fps[lag].disarm("snapshot-install")
    c.tick(30)
    assert c.r(lag).tree.digest() == c.r(lead).tree.digest()


def test_snapshot_save_error_skips_compaction() -> None:
    c = FpCluster(compact_every=2)
    for fp in c.fps.values():
        fp.arm("snapshot-save", "error")
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    for k in range(6):
        c.write(lead, 1, sid, 2 + k, f"/s{k}")
        c.tick()
    assert all(c.r(i).raft.log.offset == 0 for i in c.ids)
    for fp in c.fps.values():
        fp.disarm("snapshot-save")
    c.write(lead, 1, sid, 20, "/after")
    c.tick()
    assert all(c.r(i).raft.log.offset > 0 for i in c.ids)


def test_apply_error_stops_the_member_with_a_failpoint_error() -> None:
    c = FpCluster()
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    f = next(i for i in c.ids if i != lead)
    c.fps[f].arm("apply", "error")
    with pytest.raises(FailpointError, match="failpoint apply"):
        c.write(lead, 1, sid, 2, "/x")
        c.tick(3)


def test_session_expire_error_postpones_the_expiry_to_a_later_tick() -> None:
    c = FpCluster()
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1, timeout_ms=1000)
    c.write(lead, 1, sid, 2, "/e", flags=EPHEMERAL)
    c.fps[lead].arm("session-expire", "error")
    c.tick(40)
    assert sid in c.r(lead).tree.sessions and c.fps[lead].fired["session-expire"] >= 10
    c.fps[lead].disarm("session-expire")
    c.tick(3)
    assert all(sid not in c.r(i).tree.sessions and c.r(i).tree.exists("/e") is None for i in c.ids)


# ---------------------------------------------------------------- the HTTP API (in process) and the CLI


def test_the_http_api_arms_lists_and_disarms() -> None:
    from aiohttp import ClientSession

    fp = Failpoints()

    async def scenario() -> None:
        port = free_port()
        runner = await F.serve_http(fp, "127.0.0.1", port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with ClientSession() as s:
                async with s.put(f"{base}/apply", data="3*error") as r:
                    assert r.status == 204
                assert fp.armed() == {"apply": "3*error"}
                async with s.get(f"{base}/") as r:
                    text = await r.text()
                assert "apply=3*error\n" in text and "campaign=off\n" in text
                async with s.get(f"{base}/apply") as r:
                    assert (await r.text()).strip() == "3*error"
                async with s.put(f"{base}/step-down", data="error") as r:
                    assert r.status == 400 and "does not take error" in await r.text()
                async with s.put(f"{base}/nope", data="panic") as r:
                    assert r.status == 404 and "allowed" in await r.text()
                async with s.delete(f"{base}/apply") as r:
                    assert r.status == 204
                assert not fp.active
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def _node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_list_failpoints_prints_every_point() -> None:
    r = _node("--list-failpoints")
    assert r.returncode == 0, r.stderr
    for name in F.POINTS:
        assert f"\n{name}\n" in r.stdout
    assert "TEST-ONLY" in r.stdout


def test_the_node_refuses_a_bad_failpoint_and_a_standalone_node_takes_them(tmp_path) -> None:
    r = _node("--data-dir", str(tmp_path), "--failpoint", "apply=sometimes")
    assert r.returncode != 0 and "failpoint action kind 'sometimes' is unknown" in r.stderr
    r = _node("--data-dir", str(tmp_path), "--failpoint-http", "0.0.0.0:1")
    assert r.returncode != 0 and "loopback only" in r.stderr
    # a standalone node is a one-voter member on the same path: its first apply (the no-op) panics
    r = _node("--data-dir", str(tmp_path), "--failpoint", "apply=panic")
    assert r.returncode == F.PANIC_EXIT and "failpoint apply: panic" in r.stderr
