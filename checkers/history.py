"""Histories: the Op record and its JSONL form.

(The readers for other tools' formats, pairing and validation are added by
the checkers work; this file pins the record every package shares.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, asdict
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
NEMESIS = "nemesis"  # the process name of the nemesis in harness histories


@dataclass(slots=True)
class Op:
    """One event of a history: an invocation or a completion.

    ``time`` is nanoseconds since the run started. ``type`` is one of
    invoke / ok / fail / info (info = indeterminate: it may or may not have
    taken effect). ``process`` is an int for clients, "nemesis" for faults.
    """

    index: int
    time: int
    type: str
    process: int | str
    f: str
    value: Any = None
    node: str | None = None
    error: Any = None
    zxid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"index": self.index, "time": self.time, "type": self.type,
             "process": self.process, "f": self.f, "value": self.value}
        for key in ("node", "error", "zxid"):
            v = getattr(self, key)
            if v is not None:
                d[key] = v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"cannot encode {type(obj).__name__} in a history")
