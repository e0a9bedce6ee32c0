"""Failpoints on a real 3-member ensemble (processes on loopback, kazoo clients).

Each action at a real point: `panic` kills the member (exit 70) and the other
two go on; `sleep` holds a reply back; `before-fsync=error` stops the member
(non-zero exit) without acknowledging the write; points armed on the command line
(`--failpoint`) and at run time (`--failpoint-http`) alike. Every member is
killed in teardown. Waits poll with generous deadlines; the only time
measured is a lower bound that a sleep guarantees.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from node.failpoints import PANIC_EXIT
from tests.node.servers import ServerProcess, free_port, server_mode, squall_node

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

DEADLINE_S = 30.0


class Members:
    def __init__(self, members: list[ServerProcess], fp_ports: list[int]) -> None:
        self.members = members
        self.fp_ports = fp_ports

    def arm(self, i: int, name: str, action: str) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.fp_ports[i]}/{name}", data=action.encode(), method="PUT")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 204

    def wait_leader(self) -> int:
        deadline = time.monotonic() + DEADLINE_S
        modes: list[str] = []
        while time.monotonic() < deadline:
            modes = [server_mode(m) for m in self.members]
            live = [md for m, md in zip(self.members, modes, strict=True) if m.running]
            if modes.count("leader") == 1 and all(md in ("leader", "follower") for md in live):
                return modes.index("leader")
            time.sleep(0.05)
        raise AssertionError(f"no single leader within {DEADLINE_S}s: {modes}")

    def client(self, i: int, timeout: float = 10.0, retry: bool = True) -> KazooClient:
        zk = KazooClient(
            hosts=self.members[i].address,
            timeout=timeout,
            connection_retry={"max_tries": -1 if retry else 0, "delay": 0.05, "max_delay": 0.5},
        )
        zk.start(timeout=DEADLINE_S)
        return zk


@pytest.fixture
def start_members(tmp_path: Path) -> Iterator:
    started: list[ServerProcess] = []

    def start(per_member_args: list[list[str]] | None = None) -> Members:
        ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}" for i, (c, p, _) in enumerate(ports))
        members = []
        for i, (c, _, f) in enumerate(ports):
            extra = (per_member_args or [[], [], []])[i]
            m = squall_node(
                tmp_path / f"n{i + 1}" / "data",
                port=c,
                extra_args=[
                    "--id",
                    str(i + 1),
                    "--peers",
                    peers,
                    "--tick-ms",
                    "1000",
                    "--failpoint-http",
                    f"127.0.0.1:{f}",
                    *extra,
                ],
                log_path=tmp_path / f"n{i + 1}.out",
            )
            started.append(m)
            members.append(m)
        for m in members:
            m.start()
        return Members(members, [f for _, _, f in ports])

    try:
        yield start
    finally:
        for m in started:
            m.kill()
        for m in started:
            print(f"--- {m.address} log tail:\n{m.log_tail(15)}")


def _stop(*clients: KazooClient) -> None:
    for zk in clients:
        try:
            zk.stop()
            zk.close()
        except Exception:
            pass


def _exit_code(m: ServerProcess, within_s: float = DEADLINE_S) -> int:
    assert m.proc is not None
    deadline = time.monotonic() + within_s
    while m.proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{m.address} still runs after {within_s}s")
        time.sleep(0.05)
    return m.proc.returncode


def test_points_armed_on_the_command_line_decide_who_leads(start_members) -> None:
    ens = start_members([["--failpoint", "become-leader=error"], ["--failpoint", "become-leader=error"], []])
    assert ens.wait_leader() == 2  # members 1 and 2 decline every election they win
    assert "failpoint become-leader armed: error" in ens.members[0].log_text()


def test_panic_kills_the_member_and_the_others_go_on(start_members) -> None:
    ens = start_members()
    lead = ens.wait_leader()
    victim = (lead + 1) % 3
    ens.arm(victim, "apply", "panic")
    zk = ens.client(lead)
    try:
        zk.create("/before-panic", b"x")
        assert _exit_code(ens.members[victim]) == PANIC_EXIT
        assert "failpoint apply: panic" in ens.members[victim].log_text()
        zk.create("/after-panic", b"y")  # the two others are a quorum
        assert zk.exists("/after-panic") is not None
    finally:
        _stop(zk)


def test_sleep_holds_the_reply_back(start_members) -> None:
    ens = start_members()
    lead = ens.wait_leader()
    zk = ens.client(lead)
    try:
        zk.create("/warm", b"")
        ens.arm(lead, "before-reply", "sleep(600)")
        t0 = time.monotonic()
        zk.create("/slow", b"")
        assert time.monotonic() - t0 >= 0.6  # a lower bound: the point slept before replying
        assert "failpoint before-reply fired (sleep)" in ens.members[lead].log_text()
    finally:
        _stop(zk)


def test_an_fsync_error_stops_the_member_without_acknowledging(start_members) -> None:
    ens = start_members()
    lead = ens.wait_leader()
    f = (lead + 1) % 3
    zk = ens.client(f, timeout=4.0, retry=False)  # its session is on every disk before the point is armed
    ens.arm(f, "before-fsync", "error")
    try:
        with pytest.raises((KazooException, KazooTimeoutError)):
            zk.create("/never-acked-by-f", b"z")  # f must fsync the entry before it may answer
    finally:
        _stop(zk)
    assert _exit_code(ens.members[f]) not in (0, PANIC_EXIT)  # 1 under `python -m node`, 3 under `squall node`
    text = ens.members[f].log_text()
    assert "failpoint before-fsync: error" in text and "this member stops" in text
    zk = ens.client(lead)
    try:
        zk.create("/still-writable", b"")  # the leader and the other follower go on
    finally:
        _stop(zk)
