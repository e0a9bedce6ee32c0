"""Quota accounting under /zookeeper/quota, against ZooKeeper 3.8's behaviour.

The pure tests drive ``DataTree.apply`` as the log would; the side-by-side
test runs one zkCli.sh session (setquota, listquota, delquota, writes past
soft and hard limits) against the node and against Apache ZooKeeper 3.8 with
``enforceQuota=true``, and requires the same quota lines from both.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from node.errors import Err
from node.tree import (
    OPEN_ACL_UNSAFE,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
    parse_stats,
    render_stats,
)
from tests.node.servers import ServerProcess
from tests.node.test_zkcli import run_zkcli

SID = 0x100000000000001


class Tree:
    def __init__(self, enforce: bool = False) -> None:
        self.tree = DataTree()
        self.tree.enforce_quota = enforce
        self.zxid = 0
        self.apply(CreateSessionOp(SID, 30000, b"p" * 16))

    def apply(self, op):
        self.zxid += 1
        return self.tree.apply(Txn(self.zxid, 1000 + self.zxid, SID, (), op))

    def create(self, path: str, data: bytes | None = b""):
        return self.apply(CreateOp(path, data, OPEN_ACL_UNSAFE))

    def data(self, path: str) -> bytes | None:
        return self.tree.get_data(path)[0]

    def set_quota(self, path: str, limits: str) -> None:
        """What zkCli's setquota does: create the quota path, then the limits node, then the stats node."""
        parts = path.strip("/").split("/")
        for i in range(len(parts)):
            p = "/zookeeper/quota/" + "/".join(parts[: i + 1])
            if self.tree.exists(p) is None:
                assert self.create(p, None).err == Err.OK
        base = "/zookeeper/quota" + path
        assert self.create(base + "/zookeeper_limits", limits.encode()).err == Err.OK
        assert self.create(base + "/zookeeper_stats", b"count=0,bytes=0").err == Err.OK

    def stats(self, path: str) -> dict[str, int]:
        return parse_stats(self.data(f"/zookeeper/quota{path}/zookeeper_stats"))


# ------------------------------------------------------------------ the StatsTrack text


def test_stats_text_round_trips_as_zookeeper_writes_it() -> None:
    assert render_stats({"count": 2, "bytes": -1}) == b"count=2,bytes=-1"
    hard = {"count": -1, "bytes": -1, "countHardLimit": 5, "byteHardLimit": -1}
    assert render_stats(hard) == b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=5"
    assert parse_stats(render_stats(hard)) == hard
    assert parse_stats(b"") == {}
    # unparsable pairs are skipped (ZooKeeper's parser would throw on the apply path)
    assert parse_stats(b"count=x,bytes=3,junk,=,q=") == {"bytes": 3}


# ------------------------------------------------------------------ accounting


def test_setting_a_quota_counts_the_existing_subtree() -> None:
    t = Tree()
    t.create("/a", b"x")
    t.create("/a/b", b"yy")
    t.set_quota("/a", "count=2,bytes=-1")
    assert t.stats("/a") == {"count": 2, "bytes": 3}
    assert t.tree.quotas.roots == {"/a"}


def test_writes_under_a_quota_update_its_stats_without_touching_the_stat_node_stat() -> None:
    t = Tree()
    t.create("/a", b"x")
    t.set_quota("/a", "count=10,bytes=-1")
    before = t.tree.exists("/zookeeper/quota/a/zookeeper_stats")
    assert before is not None
    t.create("/a/c", b"zzz")
    t.create("/a/c/d")
    assert t.stats("/a") == {"count": 3, "bytes": 4}
    t.apply(SetDataOp("/a/c", b"z"))
    assert t.stats("/a") == {"count": 3, "bytes": 2}
    t.apply(DeleteOp("/a/c/d"))
    assert t.stats("/a") == {"count": 2, "bytes": 2}
    after = t.tree.exists("/zookeeper/quota/a/zookeeper_stats")
    assert after is not None
    assert (after.version, after.mzxid) == (before.version, before.mzxid)  # data rewritten in place, as ZooKeeper
    assert after.data_length == len(b"count=2,bytes=2")
    t.create("/ab", b"outside")  # a sibling whose name starts like the quota's is not under it
    assert t.stats("/a") == {"count": 2, "bytes": 2}


def test_the_deepest_quota_takes_the_change() -> None:
    t = Tree()
    t.create("/a")
    t.create("/a/b")
    t.set_quota("/a", "count=100,bytes=-1")
    t.set_quota("/a/b", "count=100,bytes=-1")
    t.create("/a/b/c", b"12")
    t.create("/a/x", b"1")
    assert t.stats("/a/b") == {"count": 2, "bytes": 2}
    assert t.stats("/a") == {"count": 3, "bytes": 1}  # /a, /a/b (at set time), /a/x


def test_deleting_the_limits_node_ends_the_quota() -> None:
    t = Tree()
    t.create("/a")
    t.set_quota("/a", "count=1,bytes=-1")
    assert t.apply(DeleteOp("/zookeeper/quota/a/zookeeper_limits")).err == Err.OK
    assert t.tree.quotas.roots == set()
    t.create("/a/b")
    assert t.stats("/a") == {"count": 1, "bytes": 0}


def test_a_failed_multi_leaves_the_stats_and_roots_as_they_were() -> None:
    t = Tree()
    t.create("/a")
    t.set_quota("/a", "count=10,bytes=-1")
    before = t.data("/zookeeper/quota/a/zookeeper_stats")
    res = t.apply(
        MultiOp(
            (
                CreateOp("/a/x", b"123", OPEN_ACL_UNSAFE),
                SetDataOp("/a", b"abcdef"),
                DeleteOp("/zookeeper/quota/a/zookeeper_limits"),
                CreateOp("/a/x", b"", OPEN_ACL_UNSAFE),  # NodeExists: everything rolls back
            )
        )
    )
    assert res.err == Err.NODE_EXISTS
    assert t.data("/zookeeper/quota/a/zookeeper_stats") == before
    assert t.tree.quotas.roots == {"/a"}
    assert t.tree.exists("/a/x") is None


def test_a_limit_node_directly_under_the_quota_root_is_ignored() -> None:
    t = Tree()
    assert t.create("/zookeeper/quota/zookeeper_limits", b"count=1,bytes=-1").err == Err.OK
    assert t.tree.quotas.roots == set()


def test_snapshots_keep_the_quota_roots_and_stats() -> None:
    t = Tree()
    t.create("/a", b"x")
    t.set_quota("/a", "count=5,bytes=-1")
    t.create("/a/b", b"yy")
    copy = DataTree.deserialize(t.tree.serialize())
    assert copy.quotas.roots == {"/a"}
    assert copy.digest() == t.tree.digest()
    copy.apply(Txn(t.zxid + 1, 5000, SID, (), CreateOp("/a/c", b"1", OPEN_ACL_UNSAFE)))
    assert parse_stats(copy.get_data("/zookeeper/quota/a/zookeeper_stats")[0]) == {"count": 3, "bytes": 4}


def test_crossing_a_soft_limit_is_logged_and_allowed(caplog: pytest.LogCaptureFixture) -> None:
    t = Tree()
    t.create("/a")
    t.set_quota("/a", "count=2,bytes=-1")
    t.create("/a/b")
    with caplog.at_level(logging.WARNING, logger="squall.node.quota"):
        assert t.create("/a/c").err == Err.OK
        assert t.create("/a/d").err == Err.OK
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["Quota exceeded: /a [current count=3, softCountLimit=2]"]  # once, when crossed


# ------------------------------------------------------------------ hard limits (zookeeper.enforceQuota)


def test_hard_limits_refuse_only_when_enforced() -> None:
    for enforce in (False, True):
        t = Tree(enforce)
        t.create("/a")
        t.set_quota("/a", "count=-1,bytes=-1=;byteHardLimit=5;countHardLimit=2")
        assert t.create("/a/b", b"yy").err == Err.OK
        expected = Err.QUOTA_EXCEEDED if enforce else Err.OK
        assert t.create("/a/c", b"").err == expected  # count 3 > 2
        assert t.apply(SetDataOp("/a", b"hello")).err == expected  # bytes 7 > 5
        assert t.apply(SetDataOp("/a", b"h")).err == Err.OK
        assert t.apply(DeleteOp("/a/b")).err == Err.OK  # deletes are never refused


def test_quota_exceeded_comes_where_zookeeper_checks_it() -> None:
    t = Tree(enforce=True)
    t.create("/a")
    t.set_quota("/a", "count=-1,bytes=-1=;countHardLimit=1;byteHardLimit=0")
    # create: NodeExists (and every other check) before the quota
    assert t.create("/a").err == Err.NODE_EXISTS
    assert t.create("/a/new").err == Err.QUOTA_EXCEEDED
    # setData: the quota before the version check; a zero-byte change is never checked
    assert t.apply(SetDataOp("/a", b"x", version=7)).err == Err.QUOTA_EXCEEDED
    assert t.apply(SetDataOp("/a", b"", version=7)).err == Err.BAD_VERSION
    # a multi that exceeds fails as a whole
    res = t.apply(MultiOp((SetDataOp("/a", b""), CreateOp("/a/m", b"", OPEN_ACL_UNSAFE))))
    assert res.err == Err.QUOTA_EXCEEDED and [code for code, _ in res.value] == [0, Err.QUOTA_EXCEEDED]


# ------------------------------------------------------------------ side by side with ZooKeeper 3.8

QUOTA_SCRIPT = """\
create /qa x
create /qa/b yy
setquota -n 2 /qa
listquota /qa
get /zookeeper/quota/qa/zookeeper_limits
get /zookeeper/quota/qa/zookeeper_stats
create /qa/c zzz
create /qa/d
set /qa/b y
listquota /qa
setquota -N 5 /qa
setquota -B 7 /qa
listquota /qa
create /qa/e 1
create /qa/f 1
set /qa/b yyyyyyyy
delete /qa/d
create /qa/f 1
listquota /qa
delquota -n /qa
listquota /qa
delquota /qa
listquota /qa
ls -R /zookeeper/quota
quit
"""

# The quota lines ZooKeeper 3.8 prints for QUOTA_SCRIPT (the same run must give them on both servers).
QUOTA_LINES = [
    "Output quota for /qa count=2,bytes=-1=;byteHardLimit=-1;countHardLimit=-1",
    "Output stat for /qa count=2,bytes=3",
    "count=2,bytes=-1=;byteHardLimit=-1;countHardLimit=-1",
    "count=2,bytes=3",
    "Output quota for /qa count=2,bytes=-1=;byteHardLimit=-1;countHardLimit=-1",
    "Output stat for /qa count=4,bytes=5",
    "Output quota for /qa count=2,bytes=-1=;byteHardLimit=7;countHardLimit=5",
    "Output stat for /qa count=4,bytes=5",
    "Quota has exceeded : /qa/f",  # create past the hard count
    "Quota has exceeded : /qa/b",  # set past the hard bytes
    "Output quota for /qa count=2,bytes=-1=;byteHardLimit=7;countHardLimit=5",
    "Output stat for /qa count=5,bytes=7",
    "Output quota for /qa count=-1,bytes=-1=;byteHardLimit=7;countHardLimit=5",
    "Output stat for /qa count=5,bytes=7",
    "quota for /qa does not exist.",
]
_QUOTA_LINE = re.compile(r"^(Output (quota|stat) for |Quota has exceeded|count=|quota for )")


def quota_lines(output: str) -> list[str]:
    lines = (re.sub(r"^(\[zk: [^\]]*\] )+", "", line).strip() for line in output.splitlines())
    return [line for line in lines if _QUOTA_LINE.match(line)]


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_zkcli_quota_session_matches_zookeeper(kind: str, request: pytest.FixtureRequest, zkcli: Path) -> None:
    if kind == "squall":
        server: ServerProcess = request.getfixturevalue("squall_factory")(extra_args=["--enforce-quota"])
    else:
        # ZooKeeper makes the unknown zoo.cfg key enforceQuota the property zookeeper.enforceQuota
        server = request.getfixturevalue("zookeeper_factory")(extra_config={"enforceQuota": "true"})
    output = run_zkcli(zkcli, server.address, QUOTA_SCRIPT)
    print(output)
    assert quota_lines(output) == QUOTA_LINES, f"quota lines differ; output was:\n{output}"
    listed = [re.sub(r"^(\[zk: [^\]]*\] )+", "", line).strip() for line in output.splitlines()]
    assert "/zookeeper/quota" in listed and "/zookeeper/quota/qa" not in listed, "delquota left the quota path"


def test_enforce_quota_is_read_from_zoo_cfg_as_zookeeper_spells_it() -> None:
    from node.config import parse_zoo_cfg

    assert parse_zoo_cfg("enforceQuota=true\n")[0] == {"enforce_quota": True}
    assert parse_zoo_cfg("zookeeper.enforceQuota=TRUE\n")[0] == {"enforce_quota": True}
    assert parse_zoo_cfg("enforceQuota=yes\n")[0] == {"enforce_quota": False}  # Boolean.parseBoolean
