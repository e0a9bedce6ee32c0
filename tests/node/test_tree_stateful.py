"""A hypothesis state machine runs the data tree against a plain-dict model.

The model is deliberately naive (a dict of path -> record, recomputed
children), so that the tree's indexes, undo log, cversion bookkeeping,
sequential names, ephemerals and multi rollback are all checked against
something obviously right. Every txn is also encoded, decoded and replayed on
a second tree, and snapshots are round-tripped, so determinism and the log
and snapshot formats are checked on the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from node.errors import Err
from node.tree import (
    OPEN_ACL_UNSAFE,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
    decode_txn,
    encode_txn,
)

SESSIONS = (101, 102)
NAMES = st.sampled_from(["a", "b", "c"])
FLAGS = st.sampled_from([0, 0, 1, 2, 3])


@dataclass
class MNode:
    data: bytes
    version: int = 0
    creates: int = 0
    owner: int = 0
    mzxid: int = 0
    extra: dict = field(default_factory=dict)


def parent(path: str) -> str:
    i = path.rfind("/")
    return path[:i] if i > 0 else "/"


class Model:
    def __init__(self) -> None:
        self.nodes: dict[str, MNode] = {
            p: MNode(b"") for p in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config")
        }
        self.sessions: set[int] = set()

    def children(self, path: str) -> list[str]:
        prefix = path if path == "/" else path + "/"
        return sorted(
            p[len(prefix) :]
            for p in self.nodes
            if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :] and p != "/"
        )

    def create(self, path: str, data: bytes, flags: int, session: int, zxid: int) -> tuple[int, str | None]:
        if "/" not in path:
            return Err.BAD_ARGUMENTS, None
        if flags in (1, 3) and session not in self.sessions:
            return Err.SESSION_EXPIRED, None
        par = parent(path)
        if par not in self.nodes:
            return Err.NO_NODE, None
        if flags in (2, 3):
            path = f"{path}{self.nodes[par].creates:010d}"
        if path in self.nodes:
            return Err.NODE_EXISTS, None
        if self.nodes[par].owner:
            return Err.NO_CHILDREN_FOR_EPHEMERALS, None
        self.nodes[path] = MNode(data, owner=session if flags in (1, 3) else 0, mzxid=zxid)
        self.nodes[par].creates += 1
        return Err.OK, path

    def delete(self, path: str, version: int) -> int:
        if path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
            return Err.BAD_ARGUMENTS
        if parent(path) not in self.nodes or path not in self.nodes:
            return Err.NO_NODE
        if version != -1 and version != self.nodes[path].version:
            return Err.BAD_VERSION
        if self.children(path):
            return Err.NOT_EMPTY
        del self.nodes[path]
        return Err.OK

    def set_data(self, path: str, data: bytes, version: int, zxid: int) -> int:
        n = self.nodes.get(path)
        if n is None:
            return Err.NO_NODE
        if version != -1 and version != n.version:
            return Err.BAD_VERSION
        n.data, n.version, n.mzxid = data, n.version + 1, zxid
        return Err.OK

    def check(self, path: str, version: int) -> int:
        n = self.nodes.get(path)
        if n is None:
            return Err.NO_NODE
        return Err.OK if version in (-1, n.version) else Err.BAD_VERSION


class TreeMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tree = DataTree()
        self.replica = DataTree()
        self.model = Model()
        self.zxid = 0

    def apply(self, op, session: int):
        self.zxid += 1
        txn = Txn(self.zxid, 5000 + self.zxid, session, (("ip", "127.0.0.1"),), op)
        result = self.tree.apply(txn)
        replayed = self.replica.apply(decode_txn(encode_txn(txn)))
        assert (replayed.err, replayed.value) == (result.err, result.value)
        return result

    def existing(self, data) -> str:
        # /zookeeper/config is READ-only (world:anyone READ); the model has no ACLs
        return data.draw(st.sampled_from(sorted(p for p in self.model.nodes if p != "/zookeeper/config")))

    @rule(session=st.sampled_from(SESSIONS))
    def open_session(self, session: int) -> None:
        assert self.apply(CreateSessionOp(session, 4000, b"k" * 16), 0).err == Err.OK
        self.model.sessions.add(session)

    @rule(session=st.sampled_from(SESSIONS))
    def close_session(self, session: int) -> None:
        r = self.apply(CloseSessionOp(session), session)
        expect = sorted(p for p, n in self.model.nodes.items() if n.owner == session)
        assert r.value == expect
        for p in expect:
            del self.model.nodes[p]
        self.model.sessions.discard(session)

    @rule(
        data=st.data(), name=NAMES, flags=FLAGS, payload=st.binary(max_size=4), session=st.sampled_from((0,) + SESSIONS)
    )
    def create(self, data, name: str, flags: int, payload: bytes, session: int) -> None:
        base = self.existing(data)
        path = (base if base != "/" else "") + "/" + name
        if session != 0 and session not in self.model.sessions:
            assert self.apply(CreateOp(path, payload, OPEN_ACL_UNSAFE, flags), session).err == Err.SESSION_EXPIRED
            return
        r = self.apply(CreateOp(path, payload, OPEN_ACL_UNSAFE, flags), session)
        code, made = self.model.create(path, payload, flags, session, self.zxid)
        assert r.err == code, (path, flags)
        if code == Err.OK:
            assert r.value[0] == made

    @rule(data=st.data(), wrong_version=st.booleans())
    def delete(self, data, wrong_version: bool) -> None:
        path = self.existing(data)
        version = (
            self.model.nodes[path].version + 1
            if wrong_version
            else data.draw(st.sampled_from([-1, self.model.nodes[path].version]))
        )
        r = self.apply(DeleteOp(path, version), 0)
        assert r.err == self.model.delete(path, version), path

    @rule(data=st.data(), payload=st.binary(max_size=4), version=st.sampled_from([-1, 0, 1, 2]))
    def set_data(self, data, payload: bytes, version: int) -> None:
        path = self.existing(data)
        r = self.apply(SetDataOp(path, payload, version), 0)
        assert r.err == self.model.set_data(path, payload, version, self.zxid)

    @rule(data=st.data(), n=st.integers(1, 4))
    def multi(self, data, n: int) -> None:
        ops = []
        for _ in range(n):
            kind = data.draw(st.sampled_from(["create", "delete", "set", "check"]))
            path = self.existing(data)
            if kind == "create":
                child = (path if path != "/" else "") + "/" + data.draw(NAMES)
                ops.append(CreateOp(child, b"m", OPEN_ACL_UNSAFE, data.draw(st.sampled_from([0, 2]))))
            elif kind == "delete":
                ops.append(DeleteOp(path, -1))
            elif kind == "set":
                ops.append(SetDataOp(path, b"s", data.draw(st.sampled_from([-1, 0, 1]))))
            else:
                ops.append(CheckOp(path, data.draw(st.sampled_from([-1, 0, 1]))))
        r = self.apply(MultiOp(tuple(ops)), 0)
        # the model runs the ops on a copy; it commits only if all succeed
        import copy

        trial = copy.deepcopy(self.model)
        codes = []
        for op in ops:
            if isinstance(op, CreateOp):
                codes.append(trial.create(op.path, op.data, op.flags, 0, self.zxid)[0])
            elif isinstance(op, DeleteOp):
                codes.append(trial.delete(op.path, op.version))
            elif isinstance(op, SetDataOp):
                codes.append(trial.set_data(op.path, op.data, op.version, self.zxid))
            else:
                codes.append(trial.check(op.path, op.version))
            if codes[-1] != Err.OK:
                break
        if codes[-1] == Err.OK:
            assert [e for e, _ in r.value] == [Err.OK] * len(ops)
            self.model = trial
        else:
            k = len(codes) - 1
            assert [e for e, _ in r.value] == [Err.OK] * k + [codes[-1]] + [Err.RUNTIME_INCONSISTENCY] * (
                len(ops) - k - 1
            )
            assert r.events == []

    @precondition(lambda self: self.zxid % 7 == 3)
    @rule()
    def snapshot_round_trip(self) -> None:
        copy = DataTree.deserialize(self.tree.serialize())
        assert copy.digest() == self.tree.digest()
        self.tree = copy

    @invariant()
    def tree_matches_model(self) -> None:
        if not hasattr(self, "tree"):
            return
        assert set(self.tree.nodes) == set(self.model.nodes)
        for path, m in self.model.nodes.items():
            data, stat = self.tree.get_data(path, [])
            kids, _ = self.tree.get_children(path, [])
            assert data == m.data and stat.version == m.version, path
            assert kids == self.model.children(path), path
            assert stat.num_children == len(kids)
            if path not in ("/", "/zookeeper"):
                assert stat.cversion == 2 * m.creates - len(kids), path
            assert stat.ephemeral_owner == m.owner
            if m.mzxid:
                assert stat.mzxid == m.mzxid
        assert self.tree.digest()[0] == self.replica.digest()[0]
        assert self.tree.digest() == self.replica.digest()
        assert set(self.tree.sessions) == self.model.sessions


TreeMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_tree_against_model = TreeMachine.TestCase
