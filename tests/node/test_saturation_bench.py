"""Smoke tests of bench/saturation.py: a second or two against one standalone node.

Only that it measures something and leaves nothing behind: no figures are
asserted (timing belongs in the bench's own output, not in tests).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.node.servers import REPO_ROOT, zookeeper_installed

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BENCH = REPO_ROOT / "bench" / "saturation.py"
SMALL = ["--members", "1", "--skip-zookeeper", "--processes", "1", "--connections", "2", "--outstanding", "4"]


def _leftovers(pgid: int, work_dir: Path) -> list[str]:
    """Live processes of the bench's process group (its workers) or using its work dir (its servers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[0] == b"Z":
            continue
        if int(stat[2]) == pgid or str(work_dir) in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


def _assert_nothing_left(pgid: int, work_dir: Path) -> None:
    for _ in range(50):  # a resource tracker may take a moment to see its parent gone
        left = _leftovers(pgid, work_dir)
        if not left:
            return
        time.sleep(0.1)
    pytest.fail(f"processes left behind: {left}")


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(BENCH), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _run_short(args: list[str], work_dir: Path) -> tuple[subprocess.Popen, str]:
    """Run the bench for 1.5 s per mix; return the process (exited 0) and its table."""
    proc = _start([*args, "--duration", "1.5", "--work-dir", str(work_dir)])
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    return proc, out


def _figure(table: str, mix: str, figure: str) -> float:
    m = re.search(rf"^{re.escape(mix)}\s+{re.escape(figure)}\s+([\d,.]+)", table, re.MULTILINE)
    assert m, f"no {mix} {figure} row in:\n{table}"
    return float(m.group(1).replace(",", ""))


def test_short_run_reports_throughput_and_leaves_nothing(tmp_path: Path) -> None:
    proc, out = _run_short(SMALL, tmp_path)
    assert _figure(out, "90/10", "reads/s") > 0
    assert _figure(out, "90/10", "writes/s") > 0
    assert _figure(out, "writes", "writes/s") > 0
    assert "load generator" in out
    _assert_nothing_left(proc.pid, tmp_path)


@pytest.mark.zookeeper
def test_short_run_against_zookeeper(tmp_path: Path) -> None:
    """The lean client speaks to the reference server too (the handshake, create, getData, setData)."""
    if not zookeeper_installed():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Debian's zookeeper package is missing (required under CI=true)")
        pytest.skip("Debian's zookeeper package is not installed")
    args = [a if a != "--skip-zookeeper" else "--skip-squall" for a in SMALL]
    proc, out = _run_short(args, tmp_path)
    assert "zookeeper" in out and _figure(out, "90/10", "reads/s") > 0 and _figure(out, "writes", "writes/s") > 0
    _assert_nothing_left(proc.pid, tmp_path)


def test_ctrl_c_mid_run_stops_every_process(tmp_path: Path) -> None:
    proc = _start([*SMALL, "--duration", "60", "--work-dir", str(tmp_path)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # wait for the workers to be running
            if len([p for p in _leftovers(proc.pid, tmp_path) if not p.startswith(f"{proc.pid}:")]) >= 3:
                break  # the server, a worker and the resource tracker
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            left = _leftovers(proc.pid, tmp_path)
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            pytest.fail(f"the bench did not stop within 60 s of its SIGINT; processes: {left}; stderr:\n{err[-4000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    _assert_nothing_left(proc.pid, tmp_path)


def test_bad_flag_names_the_allowed_range() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--outstanding", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "--outstanding 0 is out of range; allowed: 1..1024" in proc.stderr


def test_a_killed_owner_leaves_no_server_behind(tmp_path: Path) -> None:
    """A test runner or bench killed with SIGKILL (no finally runs) leaves no server behind:
    tests/node/servers.py registers each with its process's watchdog."""
    data = tmp_path / "owner-data"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from tests.node.servers import squall_node\n"
            "squall_node(Path(sys.argv[1])).start()\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n",
            str(data),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        assert _leftovers(-1, data), "the server is not running"
    finally:
        os.killpg(owner.pid, signal.SIGKILL)  # the owner only: the server has its own session
        owner.wait()
    _assert_nothing_left(-1, data)
