"""A small, fast EDN reader for Jepsen/Knossos histories.

Why our own: the ``edn_format`` package parses the Knossos corpus correctly
(and this reader gives the same values on all 122 files -- a test checks it)
but is about 3x slower (a PLY lexer) and reports no line numbers, while a
history reader must name the line of a malformed op. This reader handles the
EDN that histories use -- maps, vectors, lists, sets, keywords, symbols,
strings, integers (with N), floats (with M), ratios, characters, nil,
true/false, ``;`` comments, ``#_`` discards and tagged literals (the tag is
dropped, the value kept) -- and raises ``EdnError(line, problem)`` on
anything else.

Value mapping: keywords become ``Keyword`` (a ``str`` subclass, so ``:read``
compares equal to ``"read"`` and serialises to JSON as ``"read"``), symbols
``Symbol`` (also a ``str``), vectors and lists ``list``, sets ``frozenset``,
maps ``dict`` (unhashable keys are turned into tuples).
"""

from __future__ import annotations

import bisect
import re
from fractions import Fraction
from typing import Any


class EdnError(ValueError):
    """Malformed EDN at a 1-based line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


class Keyword(str):
    """An EDN keyword, without its colon (``:read`` -> ``Keyword("read")``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return ":" + str.__str__(self)


class Symbol(str):
    """An EDN symbol."""

    __slots__ = ()


_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,]+|;[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<open>\#\{|[\[({])
  | (?P<close>[\])}])
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][^\s,\[\](){}"]*)
  | (?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9A-Fa-f]{4}|.))
  | (?P<atom>[^\s,\[\](){}";]+)
""",
    re.VERBOSE | re.DOTALL,
)

_INT = re.compile(r"[+-]?\d+N?$")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?$")
_RATIO = re.compile(r"[+-]?\d+/\d+$")
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f", "backspace": "\b"}
_STR_ESC = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_DISCARD = object()


def _unescape(m: re.Match[str]) -> str:
    s = m.group(1)
    if s[0] == "u" and len(s) == 5:
        return chr(int(s[1:], 16))
    return _ESC.get(s, s)


def _atom(tok: str) -> Any:
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    c = tok[0]
    if c == ":":
        if len(tok) == 1:
            raise ValueError("a lone ':' is not a keyword")
        return Keyword(tok[1:])
    if c.isdigit() or (c in "+-" and len(tok) > 1 and tok[1].isdigit()):
        if _INT.match(tok):
            return int(tok.rstrip("N"))
        if _FLOAT.match(tok):
            return float(tok.rstrip("M"))
        if _RATIO.match(tok):
            return Fraction(tok)
        raise ValueError(f"bad number {tok!r}")
    return Symbol(tok)


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted(((_hashable(k), _hashable(x)) for k, x in v.items()), key=repr))
    return v


class _Frame:
    __slots__ = ("opener", "items", "line")

    def __init__(self, opener: str, line: int) -> None:
        self.opener = opener
        self.items: list[Any] = []
        self.line = line


def read_all(text: str) -> tuple[list[Any], list[int]]:
    """Parse every top-level form of ``text``.

    Returns ``(forms, map_lines)`` where ``map_lines`` holds, for every map
    that is a top-level form or a direct element of a top-level vector/list,
    the line it starts on, in order. (That is where history ops live, and
    where an error about an op should point.)
    """
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1 if newlines else 1

    stack: list[_Frame] = []
    forms: list[Any] = []
    map_lines: list[int] = []
    # pending prefixes (#_ discards / #tags) per depth: list of markers
    prefixes: list[list[str]] = [[]]

    def emit(value: Any) -> None:
        # apply prefixes at the current depth: a tag keeps the value, a
        # discard drops it
        pend = prefixes[-1]
        while pend:
            p = pend.pop()
            if p == "#_":
                return
        if stack:
            stack[-1].items.append(value)
        else:
            forms.append(value)

    pos = 0
    n = len(text)
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            raise EdnError(line_of(pos), f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        tok = m.group()
        start = pos
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "atom":
            try:
                emit(_atom(tok))
            except ValueError as exc:
                raise EdnError(line_of(start), str(exc)) from None
        elif kind == "str":
            emit(_STR_ESC.sub(_unescape, tok[1:-1]) if "\\" in tok else tok[1:-1])
        elif kind == "open":
            stack.append(_Frame(tok, line_of(start)))
            prefixes.append([])
        elif kind == "close":
            if not stack:
                raise EdnError(line_of(start), f"unmatched {tok!r}")
            frame = stack.pop()
            if prefixes.pop():
                raise EdnError(line_of(start), f"a '#' prefix has no form before {tok!r}")
            if _CLOSER[frame.opener] != tok:
                raise EdnError(line_of(start), f"{tok!r} closes {frame.opener!r} opened at line {frame.line}")
            items = frame.items
            if frame.opener == "{":
                if len(items) % 2:
                    raise EdnError(frame.line, "a map needs an even number of forms")
                value: Any = {}
                for i in range(0, len(items), 2):
                    k = items[i]
                    try:
                        hash(k)
                    except TypeError:
                        k = _hashable(k)
                    value[k] = items[i + 1]
                if len(stack) <= 1:
                    map_lines.append(frame.line)
            elif frame.opener == "#{":
                try:
                    value = frozenset(items)
                except TypeError:
                    value = frozenset(_hashable(x) for x in items)
            else:
                value = items
            emit(value)
        elif kind == "char":
            s = tok[1:]
            emit(_CHARS.get(s) or (chr(int(s[1:], 16)) if len(s) == 5 and s[0] == "u" else s))
        elif kind == "discard":
            prefixes[-1].append("#_")
        elif kind == "tag":
            prefixes[-1].append("tag")
    if stack:
        frame = stack[-1]
        raise EdnError(
            line_of(n),
            f"unexpected end of input: {frame.opener!r} opened at line {frame.line} is not closed (truncated file?)",
        )
    if prefixes[-1]:
        raise EdnError(line_of(n), "unexpected end of input after a '#' prefix")
    return forms, map_lines


def loads(text: str) -> Any:
    """Parse exactly one EDN form (for literals such as ``{:x 0 :y 0}``)."""
    forms, _ = read_all(text)
    if len(forms) != 1:
        raise EdnError(1, f"expected exactly one EDN form, found {len(forms)}")
    return forms[0]


def plain(v: Any) -> Any:
    """Keywords/symbols to plain ``str`` (recursively); structure kept."""
    if isinstance(v, str):
        return str.__str__(v) if type(v) is not str else v
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, frozenset):
        return frozenset(plain(x) for x in v)
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    return v
