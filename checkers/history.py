"""Histories: the ``Op`` record, JSONL I/O, readers for other tools' formats,
pairing of invocations with completions, and validation.

Public API (others build on it; extend, don't rename):

- ``Op`` -- one event (invoke / ok / fail / info). ``key`` (optional) names the
  object the op touches; models partition by it (P-compositionality).
- ``History`` -- a ``list`` of ``Op`` plus where it came from (``path``,
  ``format``, the source line of every op) and the source's *semantics*:
  ``fail_means`` (``FAIL_DID_NOT_HAPPEN`` for Jepsen/Knossos/squall: the op
  did not take effect and is dropped; ``FAIL_HAPPENED`` for Porcupine's etcd
  logs: the op ran and failed, e.g. a cas whose compare did not match) and
  ``nil_read_unknown`` (Knossos: a read that returned nil constrains
  nothing). ``default_model``/``default_initial`` say which model the source
  is normally checked with (None when the format does not say).
- ``HistoryError(path, line, problem)`` -- malformed input; ``str()`` names the
  file, line and problem.
- ``read_jsonl``, ``write_jsonl``, ``read_history(path, format="auto")``,
  ``parse_history(text, format, path)``, ``detect_format(text)``,
  ``parse_literal(text)`` (an EDN or JSON literal, e.g. ``--initial``).
- ``Operation`` and ``pair(ops)`` -- invocations matched with completions:
  ``status`` is ``"ok"``, ``"fail"`` or ``"info"`` (crashed or still pending:
  it may have taken effect at any time after its call, or never).
- ``UNKNOWN_VALUE`` -- the output of an operation whose result was not
  observed (crashed, timed out, a Knossos nil read): models accept any output.

Semantics of the types (docs/history-format.md has the full account):
``invoke`` starts an op; ``ok`` it took effect with the returned value;
``fail`` it did not take effect (unless the source says otherwise); ``info``
indeterminate. Nemesis ops (process "nemesis") and ``info`` events from a
process with no open invocation are not client operations and are skipped by
``pair``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkers import _edn

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
NEMESIS = "nemesis"  # the process name of the nemesis in harness histories

FAIL_DID_NOT_HAPPEN = "did-not-happen"
FAIL_HAPPENED = "happened"
FORMATS = ("jsonl", "edn", "porcupine-etcd", "porcupine-kv")


@dataclass(slots=True)
class Op:
    """One event of a history: an invocation or a completion.

    ``time`` is nanoseconds since the run started. ``type`` is one of
    invoke / ok / fail / info (info = indeterminate: it may or may not have
    taken effect). ``process`` is an int for clients, "nemesis" for faults.
    ``key`` optionally names the object touched (a register's key, a znode
    path); models partition a history by it. ``session`` optionally names the
    client session a completion ran in (ZooKeeper's session id, hex).
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
    key: Any = None
    session: Any = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "index": self.index,
            "time": self.time,
            "type": self.type,
            "process": self.process,
            "f": self.f,
            "value": self.value,
        }
        for key in ("node", "error", "zxid", "key", "session"):
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
    if obj is UNKNOWN_VALUE:
        return None
    raise TypeError(f"cannot encode {type(obj).__name__} in a history")


class _UnknownValue:
    """The output of an operation nobody observed; models accept any output."""

    __slots__ = ()
    _instance: _UnknownValue | None = None

    def __new__(cls) -> _UnknownValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "?"

    def __reduce__(self) -> str:
        return "UNKNOWN_VALUE"


UNKNOWN_VALUE = _UnknownValue()


class HistoryError(ValueError):
    """A malformed history: names the file, the line (1-based) and the problem."""

    def __init__(self, path: str | os.PathLike[str] | None, line: int | None, problem: str) -> None:
        self.path = str(path) if path is not None else "<history>"
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class History(list):
    """A list of ``Op`` that remembers its source and the source's semantics.

    ``lines[i]`` is the source line of ``self[i]`` (for error messages);
    appending without a line is allowed (``line_of`` falls back to the
    position).
    """

    def __init__(
        self,
        ops: Iterable[Op] = (),
        *,
        path: str | None = None,
        format: str = "jsonl",
        fail_means: str = FAIL_DID_NOT_HAPPEN,
        nil_read_unknown: bool = False,
        lines: list[int] | None = None,
        default_model: str | None = None,
        default_initial: Any = None,
    ) -> None:
        super().__init__(ops)
        if fail_means not in (FAIL_DID_NOT_HAPPEN, FAIL_HAPPENED):
            raise ValueError(f"fail_means must be {FAIL_DID_NOT_HAPPEN!r} or {FAIL_HAPPENED!r}, not {fail_means!r}")
        self.path = path
        self.format = format
        self.fail_means = fail_means
        self.nil_read_unknown = nil_read_unknown
        self.lines = list(lines) if lines is not None else []
        self.default_model = default_model
        self.default_initial = default_initial

    def line_of(self, position: int) -> int:
        """The source line of the op at ``position`` (1-based)."""
        if position < len(self.lines):
            return self.lines[position]
        return position + 1

    @property
    def semantics(self) -> dict[str, Any]:
        return {"format": self.format, "fail_means": self.fail_means, "nil_read_unknown": self.nil_read_unknown}

    def __repr__(self) -> str:
        return f"History({len(self)} ops, format={self.format!r}, path={self.path!r})"


# --------------------------------------------------------------------------
# JSONL

_OP_FIELDS = ("index", "time", "type", "process", "f", "value", "node", "error", "zxid", "key", "session")


def op_from_dict(d: Any, position: int, path: str | None = None, line: int | None = None) -> Op:
    """Build an ``Op`` from a JSON object; unknown keys are ignored (so newer
    writers stay readable), missing ``index``/``time`` default to the
    position and 0."""
    if not isinstance(d, dict):
        raise HistoryError(path, line, f"expected a JSON object (one op), got {type(d).__name__}")
    for req in ("type", "process", "f"):
        if req not in d:
            raise HistoryError(path, line, f"op has no {req!r} field (required: type, process, f)")
    typ = d["type"]
    if typ not in TYPES:
        raise HistoryError(path, line, f"unknown op type {typ!r} (allowed: {', '.join(TYPES)})")
    index = d.get("index", position)
    time = d.get("time", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        raise HistoryError(path, line, f"index must be an integer, not {index!r}")
    if not isinstance(time, int) or isinstance(time, bool):
        raise HistoryError(path, line, f"time must be integer nanoseconds, not {time!r}")
    process = d["process"]
    if not isinstance(process, (int, str)) or isinstance(process, bool):
        raise HistoryError(path, line, f"process must be an integer or a name, not {process!r}")
    if not isinstance(d["f"], str):
        raise HistoryError(path, line, f"f must be a string, not {d['f']!r}")
    return Op(
        index,
        time,
        typ,
        process,
        d["f"],
        d.get("value"),
        d.get("node"),
        d.get("error"),
        d.get("zxid"),
        d.get("key"),
        d.get("session"),
    )


def parse_jsonl(text: str, path: str | None = None) -> History:
    ops: list[Op] = []
    lines: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s:
            continue
        try:
            d = json.loads(s)
        except json.JSONDecodeError as exc:
            raise HistoryError(
                path,
                lineno,
                f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON op (truncated file?)",
            ) from None
        ops.append(op_from_dict(d, len(ops), path, lineno))
        lines.append(lineno)
    return History(ops, path=path, format="jsonl", lines=lines)


def read_jsonl(path: str | os.PathLike[str]) -> History:
    """Read a squall JSONL history (one ``Op`` object a line)."""
    return parse_jsonl(_read_text(path), str(path))


def write_jsonl(path: str | os.PathLike[str], ops: Iterable[Op]) -> None:
    """Write ops as JSONL, one a line (atomically: temp file then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for op in ops:
            fh.write(op.to_json())
            fh.write("\n")
    os.replace(tmp, path)


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise HistoryError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise HistoryError(path, None, f"cannot read: {exc.strerror}") from None


# --------------------------------------------------------------------------
# EDN (Jepsen / Knossos)


def parse_edn(text: str, path: str | None = None) -> History:
    """Knossos/Jepsen EDN: a sequence of op maps, maybe wrapped in a vector.

    Semantics (Knossos): ``:fail`` did not happen; ``:info`` or no completion
    is crashed; a ``:read`` that completed ``:ok`` with nil constrains
    nothing; ``:process :nemesis`` is not a client.
    """
    try:
        forms, map_lines = _edn.read_all(text)
    except _edn.EdnError as exc:
        raise HistoryError(path, exc.line, f"malformed EDN: {exc.problem}") from None
    if len(forms) == 1 and isinstance(forms[0], list):
        items = forms[0]
    else:
        items = forms
    ops: list[Op] = []
    lines: list[int] = []
    for pos, item in enumerate(items):
        line = map_lines[pos] if pos < len(map_lines) else None
        if not isinstance(item, dict):
            raise HistoryError(
                path, line, f"expected an op map like {{:process 0, :type :invoke, :f :read, :value nil}}, got {item!r}"
            )
        d = {str.__str__(k) if isinstance(k, str) else k: v for k, v in item.items()}
        d = {k: _edn.plain(v) for k, v in d.items() if k in _OP_FIELDS}
        if "type" in d and not isinstance(d["type"], str):
            d["type"] = repr(d["type"])
        if isinstance(d.get("time"), float):
            d["time"] = int(d["time"])
        ops.append(op_from_dict(d, pos, path, line))
        lines.append(line if line is not None else pos + 1)
    return History(ops, path=path, format="edn", lines=lines, nil_read_unknown=True)


# --------------------------------------------------------------------------
# Porcupine etcd logs

_ETCD_LINE = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(\w+)\s+:(\w+)\s+(.*?)\s*$")
_ETCD_CAS = re.compile(r"^\[\s*(-?\d+)\s+(-?\d+)\s*\]$")


def _etcd_int(s: str, path: str | None, line: int) -> int | None:
    if s == "nil":
        return None
    try:
        return int(s)
    except ValueError:
        raise HistoryError(path, line, f"expected an integer or nil, got {s!r}") from None


def parse_porcupine_etcd(text: str, path: str | None = None) -> History:
    """Porcupine's Jepsen etcd logs (``porcupine/jepsen/*.log``).

    Only the documented line shapes are used; every other line (notably
    ``:info ... :timed-out``) is ignored, so such an op stays pending. A
    ``:fail :read :timed-out`` becomes a ``fail`` read with value None and
    error "timed-out" (it returned nothing). ``fail_means`` is
    FAIL_HAPPENED: a failed cas ran and its compare did not match.
    """
    ops: list[Op] = []
    lines: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        m = _ETCD_LINE.match(raw)
        if not m:
            continue
        proc, typ, f, val = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        value: Any
        error = None
        if f == "read":
            if typ == INVOKE:
                value = None
            elif typ == OK:
                value = _etcd_int(val, path, lineno)
            elif typ == FAIL and val == ":timed-out":
                value, error = None, "timed-out"
            else:
                continue
        elif f == "write":
            if typ not in (INVOKE, OK):
                continue
            value = _etcd_int(val, path, lineno)
        elif f == "cas":
            if typ not in (INVOKE, OK, FAIL):
                continue
            cm = _ETCD_CAS.match(val)
            if not cm:
                raise HistoryError(path, lineno, f"cas value must be [old new], got {val!r}")
            value = [int(cm.group(1)), int(cm.group(2))]
        else:
            continue
        ops.append(Op(len(ops), len(ops), typ, proc, f, value, error=error))
        lines.append(lineno)
    return History(
        ops,
        path=path,
        format="porcupine-etcd",
        lines=lines,
        fail_means=FAIL_HAPPENED,
        default_model="cas-register",
        default_initial=None,
    )


# --------------------------------------------------------------------------
# Porcupine kv logs

_KV_LINE = re.compile(
    r"^\{:process (\d+), :type :(invoke|ok), :f :(get|put|append), "
    r':key "((?:[^"\\]|\\.)*)", :value (nil|"((?:[^"\\]|\\.)*)")\}\s*$'
)


def parse_porcupine_kv(text: str, path: str | None = None) -> History:
    """Porcupine's kv logs: per-key string registers, invoke/ok only."""
    ops: list[Op] = []
    lines: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _KV_LINE.match(raw)
        if not m:
            raise HistoryError(
                path,
                lineno,
                "expected {:process P, :type :invoke|:ok, "
                ':f :get|:put|:append, :key "K", :value "V"|nil}, got '
                f"{raw[:80]!r}",
            )
        value = None if m.group(5) == "nil" else m.group(6)
        ops.append(Op(len(ops), len(ops), m.group(2), int(m.group(1)), m.group(3), value, key=m.group(4)))
        lines.append(lineno)
    return History(ops, path=path, format="porcupine-kv", lines=lines, default_model="kv", default_initial="")


# --------------------------------------------------------------------------
# format detection and the one entry point


def detect_format(text: str) -> str:
    """Guess the format from the first meaningful line (empty -> "jsonl")."""
    for raw in text.splitlines():
        s = raw.strip()
        if not s or s.startswith(";"):
            continue
        if "jepsen.util" in s and _ETCD_LINE.match(s):
            return "porcupine-etcd"
        if _KV_LINE.match(s):
            return "porcupine-kv"
        if s.startswith('{"') or s.startswith('{ "'):
            return "jsonl"
        if s[0] in "[({#:":
            return "edn"
        if s.startswith("INFO"):
            return "porcupine-etcd"
        return "jsonl"
    return "jsonl"


_PARSERS = {
    "jsonl": parse_jsonl,
    "edn": parse_edn,
    "porcupine-etcd": parse_porcupine_etcd,
    "porcupine-kv": parse_porcupine_kv,
}


def parse_history(text: str, format: str = "auto", path: str | None = None) -> History:
    """Parse history text in ``format`` ("auto" detects it by content)."""
    if format == "auto":
        format = detect_format(text)
    parser = _PARSERS.get(format)
    if parser is None:
        raise HistoryError(path, None, f"unknown history format {format!r} (allowed: auto, {', '.join(FORMATS)})")
    return parser(text, path)


def read_history(path: str | os.PathLike[str], format: str = "auto") -> History:
    """Read a history file; an empty file is a valid, empty history."""
    return parse_history(_read_text(path), format, str(path))


def parse_literal(text: str) -> Any:
    """An EDN or JSON literal (``0``, ``nil``, ``'{:x 0 :y 0}'``, ``'{"x": 0}'``)
    as plain Python data: keywords become strings, vectors lists."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return _edn.plain(_edn.loads(text))
    except _edn.EdnError as exc:
        raise ValueError(f"not an EDN or JSON literal: {text!r} ({exc})") from None


# --------------------------------------------------------------------------
# pairing


@dataclass(slots=True)
class Operation:
    """An invocation paired with its completion.

    ``call_index``/``return_index`` are positions in the history list (the
    real-time order checkers use); ``call_time``/``return_time`` the ops'
    ``time``. ``return_index`` and ``return_time`` are None when the op
    crashed (``info``) or never completed: it may take effect at any time
    after its call, or never. ``input`` is the invocation's value, ``output``
    the completion's (``UNKNOWN_VALUE`` when not observed). ``id`` is the
    position in ``pair()``'s result.
    """

    id: int
    process: int | str
    f: str
    input: Any
    output: Any
    status: str
    call_index: int
    return_index: int | None
    call_time: int
    return_time: int | None
    key: Any = None
    invoke: Op | None = None
    completion: Op | None = None

    @property
    def crashed(self) -> bool:
        return self.status == INFO

    @property
    def index(self) -> int:
        """The invoking ``Op``'s index (how witnesses name operations)."""
        return self.invoke.index if self.invoke is not None else self.call_index

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "process": self.process,
            "f": self.f,
            "key": self.key,
            "input": _out(self.input),
            "output": _out(self.output),
            "status": self.status,
            "call_index": self.call_index,
            "return_index": self.return_index,
            "call_time": self.call_time,
            "return_time": self.return_time,
        }


def _out(v: Any) -> Any:
    if v is UNKNOWN_VALUE:
        return "?"
    if isinstance(v, list):
        return [_out(x) for x in v]
    return v


def _unknown_nil_reads(f: str, value: Any) -> Any:
    """Knossos: a read that returned nil says nothing (also inside a txn)."""
    if f == "read" and value is None:
        return UNKNOWN_VALUE
    if f == "txn" and isinstance(value, list):
        out = []
        for mop in value:
            if isinstance(mop, (list, tuple)) and len(mop) == 3 and mop[0] == "read" and mop[2] is None:
                mop = [mop[0], mop[1], UNKNOWN_VALUE]
            out.append(mop)
        return out
    return value


def pair(ops: Iterable[Op], *, path: str | None = None, nil_read_unknown: bool | None = None) -> list[Operation]:
    """Match every client invocation with its completion.

    Raises ``HistoryError`` naming the file and line for: an unknown op type,
    an ok/fail completion with no open invocation, a completion whose ``f``
    differs from its invocation's, and a process invoking while its previous
    invocation is still open. Nemesis ops and orphan ``info`` events are
    skipped. The result is ordered by call position.

    ``fail`` completions are kept with status "fail": whether they happened
    is the source's semantics (``History.fail_means``), which the checkers
    apply. Options default to the History's own when ``ops`` is one.
    """
    hist = ops if isinstance(ops, History) else None
    if path is None and hist is not None:
        path = hist.path
    if nil_read_unknown is None:
        nil_read_unknown = hist.nil_read_unknown if hist is not None else False

    def line(pos: int) -> int:
        return hist.line_of(pos) if hist is not None else pos + 1

    open_: dict[Any, tuple[int, Op]] = {}
    done: list[Operation] = []
    for pos, op in enumerate(ops):
        typ = op.type
        if typ not in TYPES:
            raise HistoryError(path, line(pos), f"unknown op type {typ!r} (allowed: {', '.join(TYPES)})")
        proc = op.process
        if proc == NEMESIS:
            continue
        if typ == INVOKE:
            prev = open_.get(proc)
            if prev is not None:
                raise HistoryError(
                    path,
                    line(pos),
                    f"process {proc!r} invokes {op.f!r} "
                    f"while its {prev[1].f!r} invoked at line "
                    f"{line(prev[0])} has not completed (a process "
                    "runs one operation at a time)",
                )
            open_[proc] = (pos, op)
            continue
        prev = open_.pop(proc, None)
        if prev is None:
            if typ == INFO:
                continue  # e.g. a nemesis event under another name
            raise HistoryError(
                path, line(pos), f"{typ} completion of {op.f!r} by process {proc!r} has no open invocation"
            )
        cpos, inv = prev
        if inv.f != op.f:
            raise HistoryError(
                path, line(pos), f"process {proc!r} invoked {inv.f!r} (line {line(cpos)}) but completed {op.f!r}"
            )
        if typ == INFO:
            out: Any = UNKNOWN_VALUE
            ret_i = ret_t = None
        else:
            out = op.value
            if typ == OK and nil_read_unknown:
                out = _unknown_nil_reads(op.f, out)
            if typ == FAIL and op.error == "timed-out" and op.f == "read":
                out = UNKNOWN_VALUE
            ret_i, ret_t = pos, op.time
        key = inv.key if inv.key is not None else op.key
        done.append(Operation(0, proc, inv.f, inv.value, out, typ, cpos, ret_i, inv.time, ret_t, key, inv, op))
    for proc, (cpos, inv) in open_.items():
        done.append(
            Operation(0, proc, inv.f, inv.value, UNKNOWN_VALUE, INFO, cpos, None, inv.time, None, inv.key, inv, None)
        )
    done.sort(key=lambda o: o.call_index)
    for i, o in enumerate(done):
        o.id = i
    return done


def iter_files(path: str | os.PathLike[str]) -> Iterator[Path]:
    """History files under a directory (sorted), or the file itself."""
    p = Path(path)
    if p.is_dir():
        for q in sorted(p.rglob("*")):
            if (
                q.is_file()
                and q.suffix in (".jsonl", ".edn", ".log", ".txt", ".json")
                and q.name not in ("EXPECTED.tsv", "MODELS.tsv", "README.md")
            ):
                yield q
    else:
        yield p


# --------------------------------------------------------------------------
# Jepsen ``independent`` histories

_REGISTER_FS = ("read", "write", "cas")


def _pair2(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2


def is_independent(ops: Iterable[Op]) -> bool:
    """True if every client register op carries a ``[k v]`` value, as
    Jepsen's ``independent`` generator writes them: reads ``[k nil]`` or
    ``[k v]``, writes ``[k v]``, cas ``[k [old new]]``.

    A plain register history cannot look like this unless its register holds
    pairs: a plain cas is ``[old new]`` with a scalar ``new``, and a plain
    read or write has a scalar value. Ops that already have a ``key`` are
    left alone (not independent). Completions without a value (an ``info``,
    a failed read) are ignored.
    """
    seen = False
    for op in ops:
        if op.process == NEMESIS or op.f not in _REGISTER_FS:
            continue
        if op.key is not None:
            return False
        v = op.value
        if v is None and op.type != INVOKE:
            continue
        if not _pair2(v):
            return False
        if op.f == "cas" and not _pair2(v[1]):
            return False
        seen = True
    return seen


def split_independent(history: Iterable[Op]) -> History:
    """The history with each ``[k v]`` value unwrapped to ``v`` and ``key``
    set to ``k`` (so models check every key alone). A completion without a
    value takes its invocation's key. Use after :func:`is_independent`."""
    src = history if isinstance(history, History) else None
    open_keys: dict[Any, Any] = {}
    out: list[Op] = []
    for op in history:
        if op.process == NEMESIS or op.f not in _REGISTER_FS:
            out.append(op)
            continue
        if _pair2(op.value):
            key, value = op.value[0], op.value[1]
        else:
            key, value = open_keys.get(op.process), op.value
        if op.type == INVOKE:
            open_keys[op.process] = key
        else:
            open_keys.pop(op.process, None)
        out.append(Op(op.index, op.time, op.type, op.process, op.f, value, op.node, op.error, op.zxid, _hashable(key)))
    if src is None:
        return History(out)
    return History(
        out,
        path=src.path,
        format=src.format,
        fail_means=src.fail_means,
        nil_read_unknown=src.nil_read_unknown,
        lines=src.lines,
        default_model=src.default_model,
        default_initial=src.default_initial,
    )


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k
