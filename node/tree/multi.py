"""Multi: all-or-nothing application of a list of create/delete/setData/check ops under one zxid.

Each sub-op runs through the tree's own handler, which records an undo step
for every change while a multi is in progress (``DataTree._undo``); the first
failing op rolls everything back, so a failed multi leaves the tree as it
was. Results are ZooKeeper's: OK for the ops before the failing one (clients
report them as rolled back), its own code for it, RuntimeInconsistency after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.errors import Err
from node.tree.records import ApplyResult, CheckOp, CreateOp, DeleteOp, MultiOp, Rollback, SetDataOp, Txn, WatchEvent

if TYPE_CHECKING:
    from node.tree.datatree import DataTree

MULTI_OPS = frozenset({CreateOp, DeleteOp, SetDataOp, CheckOp})


def multi_failure(op: MultiOp, index: int, code: int) -> ApplyResult:
    """The result of a multi whose op ``index`` failed with ``code`` (the tree unchanged)."""
    results: list[tuple[int, Any]] = []
    for i in range(len(op.ops)):
        if i < index:
            results.append((Err.OK, None))
        elif i == index:
            results.append((code, None))
        else:
            results.append((Err.RUNTIME_INCONSISTENCY, None))
    return ApplyResult(code, results, [])


def apply_multi(
    tree: DataTree, txn: Txn, op: MultiOp, events: list[WatchEvent], handlers: dict[type, Callable[..., Any]]
) -> ApplyResult:
    tree._undo = []
    results: list[tuple[int, Any]] = []
    try:
        for i, sub in enumerate(op.ops):
            handler = handlers.get(type(sub)) if type(sub) in MULTI_OPS else None
            code: int
            if handler is None:
                code = Err.BAD_ARGUMENTS
            else:
                try:
                    results.append((Err.OK, handler(tree, txn, sub, events)))
                    continue
                except Rollback as rb:
                    code = rb.code
            failure = multi_failure(op, i, code)
            if tree.unsafe_multi_partial:  # TEST-ONLY FAULT: no rollback
                return ApplyResult(code, failure.value, events)
            for step in reversed(tree._undo):
                step()
            return failure
    finally:
        tree._undo = None
    return ApplyResult(Err.OK, results, events)
