"""Apache ZooKeeper's own shell, ``zkCli.sh`` from Debian's package, drives a server.

One scripted session (the commands on stdin, as a user would type them):
create, create -e, create -s, get, get -w, set, ls, stat, delete,
deleteall, and the errors a user sees (node exists, not empty, bad
version, no node). The expected output is checked line by line, in order.
A second session covers containers, getEphemerals, getAllChildrenNumber,
ACLs with digest auth, whoami, sync and persistent-recursive watches.

The same script runs against Apache ZooKeeper 3.8 standalone, which proves
the expectations describe ZooKeeper's behaviour and not our guess of it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.node.servers import ServerProcess

SCRIPT = """\
create /zkc "hello"
create -e /zkc/eph "e"
create -s /zkc/seq- "s"
create /zkc "again"
get -w /zkc
set /zkc "world"
get /zkc
ls /zkc
stat /zkc
stat /zkc/eph
delete /zkc
delete /zkc/eph
ls /zkc
set -v 5 /zkc "x"
deleteall /zkc
ls /zkc
get /nope
quit
"""

# Lines that must appear, in this order, in the session's merged output.
EXPECTED_IN_ORDER = [
    "Created /zkc",
    "Created /zkc/eph",
    "Created /zkc/seq-0000000001",  # parent's cversion was 1 (one child created before)
    "Node already exists: /zkc",
    "hello",
    "world",
    "[eph, seq-0000000001]",
    "cversion = 2",  # stat /zkc
    "dataVersion = 1",
    "aclVersion = 0",
    "ephemeralOwner = 0x0",
    "dataLength = 5",
    "numChildren = 2",
    "dataLength = 1",  # stat /zkc/eph
    "numChildren = 0",
    "Node not empty: /zkc",
    "[seq-0000000001]",
    "version No is not valid : /zkc",
    "Node does not exist: /zkc",
    "Node does not exist: /nope",
]

# `get -w /zkc` then `set` on the same session: the watch fires.
WATCH_EVENT = "WatchedEvent state:SyncConnected type:NodeDataChanged path:/zkc"


# A second session over the newer opcodes, through the Java client: container
# and ephemeral listing, child counts, ACLs with digest auth, whoAmI, sync,
# persistent-recursive watches and their removal.
EXTENDED_SCRIPT = """\
create /ext "a"
create -c /ext/box
create /ext/box/item "i"
create -e /ext/e1 "x"
getEphemerals /ext
getAllChildrenNumber /ext
getAcl /ext
addauth digest alice:secret
setAcl /ext/box/item auth:alice:secret:crwda
getAcl /ext/box/item
whoami
sync /ext
addWatch -m PERSISTENT_RECURSIVE /ext
set /ext/box/item "j"
create /ext/new "n"
removewatches /ext -a
set /ext "b"
get -s /ext
quit
"""

EXTENDED_IN_ORDER = [
    "Created /ext",
    "Created /ext/box",
    "Created /ext/box/item",
    "Created /ext/e1",
    "[/ext/e1]",  # getEphemerals
    "3",  # getAllChildrenNumber: box, box/item, e1
    "'world,'anyone",
    ": cdrwa",
    "'digest,'alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=",  # base64(sha1("alice:secret"))
    ": cdrwa",
    "digest: alice",  # whoami
    "Sync is OK",
    "Created /ext/new",
    "b",
    "dataVersion = 1",
    "numChildren = 3",
]

# events of the persistent-recursive watch on /ext, and its removal (type 7)
EXTENDED_EVENTS = [
    "WatchedEvent state:SyncConnected type:NodeDataChanged path:/ext/box/item",
    "WatchedEvent state:SyncConnected type:NodeCreated path:/ext/new",
    "WatchedEvent state:SyncConnected type:PersistentWatchRemoved path:/ext",
]


def run_zkcli(zkcli: Path, address: str, script: str, timeout_s: float = 90) -> str:
    """Run one zkCli.sh session with ``script`` on stdin; return stdout+stderr merged in order."""
    proc = subprocess.run(
        # without -waitforconnection zkCli runs the first commands before the session
        # is up, and they fail with ConnectionLoss on a loaded machine
        [str(zkcli), "-server", address, "-timeout", "30000", "-waitforconnection"],
        input=script,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
    )
    return "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("SLF4J:"))


def check_in_order(output: str, expected: list[str]) -> list[str]:
    """The expected lines missing from ``output`` (each searched after the previous match)."""
    lines = [line.strip() for line in output.splitlines()]
    missing, pos = [], 0
    for want in expected:
        try:
            pos = lines.index(want, pos) + 1
        except ValueError:
            missing.append(want)
    return missing


def _stats(output: str) -> list[dict[str, str]]:
    """Every `stat` block (cZxid .. numChildren) in the output, as dicts."""
    blocks, current = [], None
    for line in output.splitlines():
        m = re.fullmatch(r"\s*(\w+) = (.*)", line)
        if not m:
            continue
        key, value = m.groups()
        if key == "cZxid":
            current = {}
            blocks.append(current)
        if current is not None:
            current[key] = value.strip()
    return blocks


def check_session(output: str) -> None:
    missing = check_in_order(output, EXPECTED_IN_ORDER)
    assert not missing, f"zkCli output lacks (in order) {missing}; output was:\n{output}"
    assert WATCH_EVENT in output, f"no data watch event for /zkc; output was:\n{output}"
    stats = _stats(output)
    assert len(stats) == 2, f"expected two stat blocks; output was:\n{output}"
    parent, eph = stats
    czxid, mzxid, pzxid = (int(parent[k], 16) for k in ("cZxid", "mZxid", "pZxid"))
    # the parent was created first, its children next (pzxid), then it was set (mzxid)
    assert czxid < pzxid < mzxid, f"zxid order wrong in {parent}"
    assert int(eph["ephemeralOwner"], 16) != 0, f"the ephemeral node has no owner: {eph}"
    assert int(eph["cZxid"], 16) == int(eph["mZxid"], 16) == int(eph["pZxid"], 16), eph
    # the ephemeral child came after its parent and before the sequential child (the parent's pzxid)
    assert czxid < int(eph["cZxid"], 16) < pzxid, (parent, eph)
    for block in stats:
        for key in ("ctime", "mtime"):
            assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \w+ \d{4}", block[key]), block[key]


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_zkcli_scripted_session(kind: str, request: pytest.FixtureRequest, zkcli: Path) -> None:
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    output = run_zkcli(zkcli, server.address, SCRIPT)
    print(output)
    check_session(output)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_zkcli_extended_session(kind: str, request: pytest.FixtureRequest, zkcli: Path) -> None:
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    output = run_zkcli(zkcli, server.address, EXTENDED_SCRIPT)
    print(output)
    missing = check_in_order(output, EXTENDED_IN_ORDER)
    assert not missing, f"zkCli output lacks (in order) {missing}; output was:\n{output}"
    absent = [e for e in EXTENDED_EVENTS if e not in output]
    assert not absent, f"watch events missing: {absent}; output was:\n{output}"
    # the watch was removed before `set /ext`: no event may follow for it
    assert "type:NodeDataChanged path:/ext\n" not in output + "\n", f"event after removewatches:\n{output}"


def test_check_in_order_reports_missing_and_out_of_order() -> None:
    assert check_in_order("a\nb\nc", ["a", "c"]) == []
    assert check_in_order("a\nb\nc", ["c", "a"]) == ["a"]
    assert check_in_order("a", ["a", "z"]) == ["z"]
