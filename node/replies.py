"""Pure translation between the client wire protocol and the data tree.

Requests become tree operations (:func:`write_op`, :func:`multi_op`) and the
tree's results become reply frames (:func:`write_reply`). Nothing here holds
state or does I/O; the client connection (``node.connection``) calls it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from node import tree as T
from node.wire import protocol as P

# Writes the replica orders through the log (everything else is answered from the local tree).
TREE_WRITES = frozenset(
    {P.CREATE, P.CREATE2, P.CREATE_CONTAINER, P.CREATE_TTL, P.DELETE, P.SET_DATA, P.SET_ACL, P.CHECK, P.MULTI}
)

CREATE_KINDS = {
    P.CREATE: "create",
    P.CREATE2: "create2",
    P.CREATE_CONTAINER: "createContainer",
    P.CREATE_TTL: "createTTL",
}


def acls(records: tuple) -> tuple:
    return tuple(T.ACL(a.perms, a.scheme, a.id) for a in records)


def create_op(r: P.CreateRequest, opcode: int) -> Any:
    return T.CreateOp(r.path, r.data, acls(r.acl), r.flags, r.ttl, CREATE_KINDS[opcode])


def write_op(opcode: int, rec: Any) -> Any:
    """The tree op of a single write request (a multi's ops included; not MULTI itself)."""
    if opcode in CREATE_KINDS:
        return create_op(rec, opcode)
    if opcode == P.DELETE:
        return T.DeleteOp(rec.path, rec.version)
    if opcode == P.SET_DATA:
        return T.SetDataOp(rec.path, rec.data, rec.version)
    if opcode == P.SET_ACL:
        return T.SetACLOp(rec.path, acls(rec.acl), rec.version)
    return T.CheckOp(rec.path, rec.version)


def multi_op(r: P.MultiRequest) -> Any:
    """The MultiOp of a multi request, or None when it holds a non-write op (BAD_ARGUMENTS)."""
    ops = []
    for opcode, rec in r.ops:
        if opcode not in P.MULTI_WRITE_OPS:
            return None
        ops.append(write_op(opcode, rec))
    return T.MultiOp(tuple(ops))


def write_reply(opcode: int, r: Any, xid: int, zxid: int, err: int, value: Any) -> bytes:
    """The reply frame of an applied write; ``(err, value)`` is the tree's ApplyResult for its op."""
    if opcode == P.MULTI:
        results = value
        if err and not results:
            return P.reply(xid, zxid, err)
        failed = any(e for e, _ in results)
        out = []
        for (op, _), (e, v) in zip(r.ops, results, strict=False):
            if failed:
                out.append(P.OpResult(P.ERROR, int(e)))
            elif op == P.CREATE:
                out.append(P.OpResult(P.CREATE, 0, v[0]))
            elif op in (P.CREATE2, P.CREATE_TTL, P.CREATE_CONTAINER):
                out.append(P.OpResult(op, 0, v))
            elif op == P.SET_DATA:
                out.append(P.OpResult(P.SET_DATA, 0, v))
            else:
                out.append(P.OpResult(op))
        return P.reply_multi(xid, zxid, out)
    if err or opcode in (P.DELETE, P.CHECK, P.CLOSE_SESSION):
        return P.reply(xid, zxid, err)
    if opcode == P.CREATE:
        return P.reply_path(xid, zxid, value[0])
    if opcode in CREATE_KINDS:
        path, stat = value
        return P.reply_path_stat(xid, zxid, path, stat)
    return P.reply_stat(xid, zxid, value)  # setData, setACL


def digest_identity(text: str) -> str:
    """ZooKeeper's digest id: ``user:base64(sha1(whole auth string))``, user = text before the first colon."""
    if ":" in text:
        user, _, password = text.partition(":")
        return T.digest_id(user, password)
    return f"{text}:{base64.b64encode(hashlib.sha1(text.encode('utf-8')).digest()).decode('ascii')}"


def who_am_i(identities: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """As ZooKeeper's AuthenticationProvider.getUserName: a digest id shows its user part only."""
    return [(scheme, ident.split(":", 1)[0] if scheme == "digest" else ident) for scheme, ident in identities]


__all__ = [
    "CREATE_KINDS",
    "TREE_WRITES",
    "acls",
    "create_op",
    "digest_identity",
    "multi_op",
    "who_am_i",
    "write_op",
    "write_reply",
]
