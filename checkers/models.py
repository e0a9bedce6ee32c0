"""Sequential specifications (models) the consistency checkers search against.

A model, as in Porcupine, is an initial state plus a pure step function, with
an optional partition (P-compositionality: check each key alone) and
describe functions for explanations and the HTML view. States are hashable
(ints, strings, None, tuples, frozensets) so (linearized-set, state) pairs
can be cached.

Interface (``Model``):

- ``initial_state(key=None)`` -- the state a partition starts in.
- ``step(state, op) -> (ok, new_state)`` -- the pure step; ``op`` is a
  ``history.Operation`` (``f``, ``input``, ``output``, ``status``).
- ``compile(op) -> fn`` -- the same step, specialised to one operation ahead
  of the search: ``fn(state)`` returns the new state, or ``ILLEGAL``. The
  checkers call this once per op, then only ``fn`` in their hot loop.
- ``dead_ends(ops) -> (tests, transparent)`` -- per op of a partition, an
  optional test ``fn(state)`` that is True only when no sequence of the ops
  that can still precede the op's return leads from ``state`` to one where
  the op is legal, and which ops those tests do not depend on (a pruning
  hint for the search; see ``Model.dead_ends``).
- ``wants(op) -> (doomed, rescues) | None`` -- the same knowledge op by
  op, for searches without real-time intervals (the sequential checker).
- ``partition(ops) -> [(key, ops)]`` -- by ``Operation.key`` (one partition
  when no op has a key); multi-register never splits (a txn spans keys).
- ``describe_op(op)``, ``describe_state(state)`` -- short human text.

Semantics every model honours:

- an output of ``UNKNOWN_VALUE`` (crashed op, timed-out read, Knossos nil read)
  is accepted whatever the state: a crashed op applies its effect when it can
  (a crashed write writes, a crashed cas swaps only if the compare matches)
  and is a no-op otherwise, which is the same as never having happened;
- status "fail" reaches a model only when the source says failed ops ran
  (``FAIL_HAPPENED``, Porcupine etcd): a failed cas means the compare did not
  match at its linearization point; any other failed op is a legal no-op;
- status "ok" must match the state exactly.

``get_model(name, initial=...)`` builds one by the name the CLI uses:
register, cas-register, kv, multi-register, mutex, set, fifo-queue.
Unsupported operations raise ``ModelError`` naming the allowed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from checkers.history import FAIL, INFO, OK, UNKNOWN_VALUE, Operation


class _Illegal:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ILLEGAL"


ILLEGAL: Any = _Illegal()
StepFn = Callable[[Any], Any]

MODEL_NAMES = ("register", "cas-register", "kv", "multi-register", "mutex", "set", "fifo-queue")


class ModelError(ValueError):
    """A history holds an operation the model does not know, or a bad value."""


_ATOMIC = frozenset({int, str, float, bool, type(None)})


def freeze(v: Any) -> Any:
    """A hashable, comparable form of a value (lists -> tuples, sets ->
    frozensets, dicts -> sorted item tuples)."""
    if type(v) in _ATOMIC:
        return v
    if isinstance(v, (list, tuple)):
        return tuple(freeze(x) for x in v)
    if isinstance(v, (set, frozenset)):
        return frozenset(freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted(((freeze(k), freeze(x)) for k, x in v.items()), key=repr))
    return v


def _identity(s: Any) -> Any:
    return s


# The compiled step of an op that is legal in every state and changes nothing
# (a read whose output was not observed, a failed op that had no effect).
# Checkers may drop such ops: they fit anywhere in their interval.
IDENTITY: StepFn = _identity


def straddling(ops: list[Operation], keys: list[Any]):
    """Sweep a partition in real time, for ``Model.dead_ends``.

    Yields ``(r, active)`` for every completed op ``r`` (by index in
    ``ops``, in return order), where ``active`` counts, by ``keys[p]``, the
    ops ``p != r`` with a non-None key that straddle r's return: called
    before it, and returned after it or never. ``active`` is live (read it
    before taking the next item)."""
    # (3 * position + kind, ...): positions are distinct, so the first
    # field never ties and a close sorts before the query at the same return
    events = []
    for i, o in enumerate(ops):
        k = keys[i]
        r = o.return_index
        if k is not None:
            events.append((3 * o.call_index, i, k))
            if r is not None:
                events.append((3 * r + 1, i, k))
        if r is not None:
            events.append((3 * r + 2, i, None))
    events.sort()
    active: dict[Any, int] = {}
    for code, i, k in events:
        kind = code % 3
        if kind == 0:
            active[k] = active.get(k, 0) + 1
        elif kind == 1:
            c = active[k] - 1
            if c:
                active[k] = c
            else:
                del active[k]
        else:
            yield i, active


def _show(v: Any) -> str:
    if v is UNKNOWN_VALUE:
        return "?"
    if v is None:
        return "nil"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, frozenset):
        return "#{" + " ".join(sorted(_show(x) for x in v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_show(x) for x in v) + "]"
    return str(v)


class Model:
    """Base class: subclasses set ``name``, ``fs`` and implement ``_compile``."""

    name = "model"
    fs: tuple[str, ...] = ()

    def __init__(self, initial: Any = None) -> None:
        self.initial = self.normalize_initial(initial)

    # -- interface ----------------------------------------------------------
    def normalize_initial(self, initial: Any) -> Any:
        return freeze(initial)

    def initial_state(self, key: Any = None) -> Any:
        return self.initial

    def compile(self, op: Operation) -> StepFn:
        if op.f not in self.fs:
            raise ModelError(
                f"the {self.name} model has no operation {op.f!r} (allowed: {', '.join(self.fs)}); pick another --model"
            )
        return self._compile(op)

    def _compile(self, op: Operation) -> StepFn:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_only(self, op: Operation) -> bool:
        """True if ``op`` never changes the state wherever it is legal (a
        read; a failed cas that ran). Checkers use it to prune: claim it
        only when it holds in *every* state. The default claims nothing."""
        return False

    def prune_crashed(self, ops: list[Operation]) -> list[Operation]:
        """``ops`` without crashed ops whose effect no completion could ever
        observe (a crashed enqueue of a value no dequeue returned). Such an op
        can only hurt, so "it never took effect" loses no linearization.
        Checkers search the rest. Models override only with a proof; the
        default keeps everything."""
        return ops

    def equivalence_key(self, op: Operation) -> Any:
        """Ops with equal keys have the same step. The checkers treat equal
        crashed ops as interchangeable (trying only the earliest untaken one).
        Every model here steps on (f, input, output, status) only; a model
        whose step reads anything else (the process, say) must override."""
        return (op.f, repr(op.input), repr(op.output), op.status)

    def dead_ends(self, ops: list[Operation]) -> tuple[list[StepFn | None], list[bool]]:
        """For each op of a partition, None or a test ``doomed(state)``, and
        whether the op is *transparent* to the tests.

        ``doomed(state)`` may be True only when the op can never become
        legal from ``state`` by any sequence of (a) the ops that *straddle
        its return* (called before it returned, returned after it or never)
        and (b) transparent ops, in any number. When the op is the next to
        return among the unlinearized ones, or every op returning before it
        that is unlinearized is transparent, those are the only ops a
        linearization can still place before it, so a search may abandon the
        configuration at once. A test that is unsure must say False. The
        default gives no tests."""
        return [None] * len(ops), [False] * len(ops)

    def wants(self, op: Operation) -> tuple[Callable[[Any], bool], Callable[[Operation], bool]] | None:
        """None, or ``(doomed, rescues)`` for an op that needs a particular
        state: ``doomed(state)`` may be True only when no sequence of ops
        for which ``rescues(other)`` is False can lead from ``state`` to one
        where ``op`` is legal. A search that can show no rescuing op can
        still precede ``op`` may then abandon the configuration. The
        default claims nothing."""
        return None

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        new = self.compile(op)(state)
        if new is ILLEGAL:
            return False, state
        return True, new

    def partition(self, ops: Iterable[Operation]) -> list[tuple[Any, list[Operation]]]:
        parts: dict[Any, list[Operation]] = {}
        for op in ops:
            k = op.key
            try:
                parts.setdefault(k, []).append(op)
            except TypeError:
                parts.setdefault(freeze(k), []).append(op)
        return list(parts.items())

    def describe_op(self, op: Operation) -> str:
        inp, out = op.input, op.output
        tail = " (crashed)" if op.status == INFO else (" (failed)" if op.status == FAIL else "")
        key = f" {op.key}" if op.key is not None else ""
        if inp is None and (out is None or out is UNKNOWN_VALUE) and op.f not in ("read", "get", "dequeue"):
            return f"{op.f}{key}{tail}"
        if op.f in ("read", "get", "dequeue") or inp is None:
            return f"{op.f}{key} -> {_show(out)}{tail}"
        if out is UNKNOWN_VALUE or out == inp or out is None:
            return f"{op.f}{key} {_show(inp)}{tail}"
        return f"{op.f}{key} {_show(inp)} -> {_show(out)}{tail}"

    def describe_state(self, state: Any) -> str:
        return _show(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(initial={self.initial!r})"


class CasRegister(Model):
    """A register with read, write and compare-and-set ``cas [old new]``."""

    name = "cas-register"
    fs: tuple[str, ...] = ("read", "write", "cas")

    def _compile(self, op: Operation) -> StepFn:
        f, status = op.f, op.status
        if f == "read":
            out = op.output
            if out is UNKNOWN_VALUE or status != OK:
                return _identity
            v = freeze(out)
            return lambda s: s if s == v else ILLEGAL
        if f == "write":
            if status == FAIL:
                return _identity
            v = freeze(op.input)
            return lambda s: v
        # cas
        val = op.input if op.input is not None else op.output
        if not isinstance(val, (list, tuple)) or len(val) != 2:
            raise ModelError(f"cas needs [old new], got {val!r}")
        a, b = freeze(val[0]), freeze(val[1])
        if status == OK and op.output is not UNKNOWN_VALUE:
            return lambda s: b if s == a else ILLEGAL
        if status == FAIL:
            return lambda s: ILLEGAL if s == a else s
        return lambda s: b if s == a else s

    def read_only(self, op: Operation) -> bool:
        return op.f == "read" or op.status == FAIL

    def dead_ends(self, ops: list[Operation]) -> tuple[list[StepFn | None], list[bool]]:
        """An ok read of v (or an ok cas from v) needs the register to hold
        v. If no op straddling its return can write v (a write of v, a cas
        to v), the register must hold v already: any other state is a dead
        end. Transparent: the ops that write nothing (reads, failed ops).
        (A subclass with its own step gets no tests: they reason about this
        one.)"""
        if type(self)._compile is not CasRegister._compile:
            return Model.dead_ends(self, ops)

        def produces(o: Operation) -> Any:
            if o.status == FAIL:
                return None
            if o.f == "write":
                return (freeze(o.input),)
            val = o.input if o.input is not None else o.output
            if o.f == "cas" and isinstance(val, (list, tuple)) and len(val) == 2:
                return (freeze(val[1]),)
            return None

        out: list[StepFn | None] = [None] * len(ops)
        made = [produces(o) for o in ops]
        for r, active in straddling(ops, made):
            o = ops[r]
            if o.status != OK or o.output is UNKNOWN_VALUE:
                continue
            if o.f == "read":
                need = freeze(o.output)
            elif o.f == "cas":
                val = o.input if o.input is not None else o.output
                if not isinstance(val, (list, tuple)) or len(val) != 2:
                    continue
                need = freeze(val[0])
            else:
                continue
            if (need,) not in active:

                def doomed(s: Any, need: Any = need) -> bool:
                    return s != need

                out[r] = doomed
        return out, [k is None for k in made]

    def wants(self, op: Operation) -> tuple[Callable[[Any], bool], Callable[[Operation], bool]] | None:
        """An ok read of v or ok cas from v needs v; only a write of v or a
        cas to v can put it there."""
        if type(self)._compile is not CasRegister._compile:
            return None
        if op.status != OK or op.output is UNKNOWN_VALUE:
            return None
        if op.f == "read":
            need = freeze(op.output)
        elif op.f == "cas":
            val = op.input if op.input is not None else op.output
            if not isinstance(val, (list, tuple)) or len(val) != 2:
                return None
            need = freeze(val[0])
        else:
            return None

        def rescues(o: Operation) -> bool:
            if o.status == FAIL:
                return False
            if o.f == "write":
                return freeze(o.input) == need
            val = o.input if o.input is not None else o.output
            return o.f == "cas" and isinstance(val, (list, tuple)) and len(val) == 2 and freeze(val[1]) == need

        return (lambda s: s != need), rescues

    def prune_crashed(self, ops: list[Operation]) -> list[Operation]:
        """Drop crashed writes (and crashed cas) whose new value nothing
        observes: no completed read returns it and no cas compares against
        it. Once the register holds such a value, every read and ok cas
        fails and every crashed cas is a no-op until some write replaces it,
        so the value is never seen. Not done when failed ops ran (Porcupine
        etcd semantics): a failed cas needs the register to hold something
        else, which an unobserved value could provide."""
        if any(o.status == FAIL for o in ops):
            return ops
        seen: set[Any] = set()
        for o in ops:
            if o.f == "read" and o.status == OK and o.output is not UNKNOWN_VALUE:
                seen.add(freeze(o.output))
            elif o.f == "cas" and isinstance(o.input, (list, tuple)) and len(o.input) == 2:
                seen.add(freeze(o.input[0]))
        out = []
        for o in ops:
            if o.status == INFO:
                if o.f == "write" and freeze(o.input) not in seen:
                    continue
                if (
                    o.f == "cas"
                    and isinstance(o.input, (list, tuple))
                    and len(o.input) == 2
                    and freeze(o.input[1]) not in seen
                ):
                    continue
            out.append(o)
        return out

    def describe_op(self, op: Operation) -> str:
        if op.f == "cas" and isinstance(op.input, (list, tuple)) and len(op.input) == 2:
            tail = " (crashed)" if op.status == INFO else (" (failed: no match)" if op.status == FAIL else "")
            key = f" {op.key}" if op.key is not None else ""
            return f"cas{key} {_show(op.input[0])}->{_show(op.input[1])}{tail}"
        return super().describe_op(op)


class Register(CasRegister):
    """A read/write register."""

    name = "register"
    fs = ("read", "write")


class KV(Model):
    """Per-key string registers (Porcupine kv): get, put, append; state ""."""

    name = "kv"
    fs = ("get", "put", "append")

    def read_only(self, op: Operation) -> bool:
        return op.f == "get" or op.status == FAIL

    def dead_ends(self, ops: list[Operation]) -> tuple[list[StepFn | None], list[bool]]:
        """Appends only extend the string, so an ok get of g needs the
        current string to be a prefix of g, unless an op straddling its
        return is a put of some prefix of g. When none is, any state that is
        not a prefix of g is a dead end. Transparent: every op but puts.
        (A subclass with its own step gets no tests.)"""
        if type(self)._compile is not KV._compile:
            return Model.dead_ends(self, ops)

        def resets(o: Operation) -> Any:
            if o.f == "put" and o.status != FAIL:
                return o.input if o.input is not None else ""
            return None

        out: list[StepFn | None] = [None] * len(ops)
        made = [resets(o) for o in ops]
        for r, active in straddling(ops, made):
            o = ops[r]
            if o.f != "get" or o.status != OK or o.output is UNKNOWN_VALUE:
                continue
            g = "" if o.output is None else o.output
            if not isinstance(g, str) or any(isinstance(w, str) and g.startswith(w) for w in active):
                continue

            def doomed_get(s: Any, g: str = g) -> bool:
                return isinstance(s, str) and not g.startswith(s)

            out[r] = doomed_get
        return out, [k is None for k in made]

    def wants(self, op: Operation) -> tuple[Callable[[Any], bool], Callable[[Operation], bool]] | None:
        """An ok get of g needs a prefix of g (appends only extend); only a
        put of a prefix of g can start over."""
        if type(self)._compile is not KV._compile:
            return None
        if op.f != "get" or op.status != OK or op.output is UNKNOWN_VALUE:
            return None
        g = "" if op.output is None else op.output
        if not isinstance(g, str):
            return None

        def rescues(o: Operation) -> bool:
            if o.f != "put" or o.status == FAIL:
                return False
            w = o.input if o.input is not None else ""
            return not isinstance(w, str) or g.startswith(w)

        return (lambda s: isinstance(s, str) and not g.startswith(s)), rescues

    def prune_crashed(self, ops: list[Operation]) -> list[Operation]:
        """Drop crashed puts/appends of a non-empty string that occurs in no
        completed get: after one took effect, every get until the next put
        would contain it, so none can happen before a put erases it."""
        gets = [o.output for o in ops if o.f == "get" and o.status == OK and isinstance(o.output, str)]
        if any(o.status == FAIL for o in ops):
            return ops
        out = []
        for o in ops:
            if (
                o.status == INFO
                and o.f in ("put", "append")
                and isinstance(o.input, str)
                and o.input
                and not any(o.input in g for g in gets)
            ):
                continue
            out.append(o)
        return out

    def __init__(self, initial: Any = "") -> None:
        super().__init__("" if initial is None else initial)

    def _compile(self, op: Operation) -> StepFn:
        f = op.f
        if f == "get":
            out = op.output
            if out is UNKNOWN_VALUE or op.status != OK:
                return _identity
            v = "" if out is None else out
            return lambda s: s if s == v else ILLEGAL
        if op.status == FAIL:
            return _identity
        v = op.input if op.input is not None else ""
        if f == "put":
            return lambda s: v
        return lambda s: s + v


class MultiRegister(Model):
    """Knossos multi-register: ``txn [[:read k v] [:write k v] ...]``.

    State: sorted tuple of (key, value) pairs; a missing key reads nil.
    Micro-ops run in order, so a read sees the txn's own earlier writes.
    """

    name = "multi-register"
    fs = ("txn",)

    def normalize_initial(self, initial: Any) -> Any:
        if initial is None:
            return ()
        if not isinstance(initial, dict):
            raise ModelError(f"multi-register initial state must be a map like {{:x 0 :y 0}}, got {initial!r}")
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in initial.items()), key=repr))

    def partition(self, ops: Iterable[Operation]) -> list[tuple[Any, list[Operation]]]:
        return [(None, list(ops))]

    def read_only(self, op: Operation) -> bool:
        if op.status == FAIL:
            return True
        mops = op.input if op.output is UNKNOWN_VALUE else op.output
        return isinstance(mops, (list, tuple)) and all(
            isinstance(m, (list, tuple)) and m and m[0] == "read" for m in mops
        )

    def _compile(self, op: Operation) -> StepFn:
        if op.status == FAIL:
            return _identity
        crashed = op.output is UNKNOWN_VALUE or op.status == INFO
        mops = op.input if crashed else op.output
        if not isinstance(mops, (list, tuple)):
            raise ModelError(f"txn value must be a list of [f k v], got {mops!r}")
        plan: list[tuple[bool, Any, Any]] = []
        for m in mops:
            if not isinstance(m, (list, tuple)) or len(m) != 3 or m[0] not in ("read", "write"):
                raise ModelError(f"txn micro-op must be [:read k v] or [:write k v], got {m!r}")
            is_write = m[0] == "write"
            if not is_write and (crashed or m[2] is UNKNOWN_VALUE):
                continue
            plan.append((is_write, freeze(m[1]), freeze(m[2])))
        if not plan:
            return _identity

        def step(s: Any) -> Any:
            d = dict(s)
            for is_write, k, v in plan:
                if is_write:
                    d[k] = v
                elif d.get(k) != v:
                    return ILLEGAL
            return tuple(sorted(d.items(), key=repr))

        return step

    def describe_state(self, state: Any) -> str:
        return "{" + ", ".join(f"{k} {_show(v)}" for k, v in state) + "}"


class Mutex(Model):
    """A lock: ``acquire`` needs it free, ``release`` needs it held."""

    name = "mutex"
    fs = ("acquire", "release")

    def normalize_initial(self, initial: Any) -> Any:
        if initial in (None, False, "free", "unlocked", 0):
            return False
        if initial in (True, "locked", "held", 1):
            return True
        raise ModelError(f"mutex initial state must be free/locked, got {initial!r}")

    def _compile(self, op: Operation) -> StepFn:
        acquire = op.f == "acquire"
        if op.status == FAIL:
            return _identity
        if op.status == INFO or op.output is UNKNOWN_VALUE:
            return (lambda s: True) if acquire else (lambda s: False)
        if acquire:
            return lambda s: ILLEGAL if s else True
        return lambda s: False if s else ILLEGAL

    def describe_state(self, state: Any) -> str:
        return "locked" if state else "free"


class SetModel(Model):
    """A grow-only set: ``add v``; ``read`` returns the whole set."""

    name = "set"
    fs = ("add", "read")

    def read_only(self, op: Operation) -> bool:
        return op.f == "read" or op.status == FAIL

    def prune_crashed(self, ops: list[Operation]) -> list[Operation]:
        """Drop crashed adds of a value no completed read contains: once
        added it stays, so every later read would have to contain it."""
        seen: set[Any] = set()
        for o in ops:
            if o.f == "read" and o.status == OK and o.output is not UNKNOWN_VALUE:
                seen.update(freeze(x) for x in (o.output or ()))
        return [o for o in ops if not (o.status == INFO and o.f == "add" and freeze(o.input) not in seen)]

    def normalize_initial(self, initial: Any) -> Any:
        return frozenset() if initial is None else frozenset(freeze(x) for x in initial)

    def _compile(self, op: Operation) -> StepFn:
        if op.status == FAIL:
            return _identity
        if op.f == "add":
            v = freeze(op.input)
            return lambda s: s | {v}
        out = op.output
        if out is UNKNOWN_VALUE or op.status != OK:
            return _identity
        want = frozenset(freeze(x) for x in (out or ()))
        return lambda s: s if s == want else ILLEGAL


class FifoQueue(Model):
    """A FIFO queue: ``enqueue v``; ``dequeue`` returns the head (nil = empty)."""

    name = "fifo-queue"
    fs = ("enqueue", "dequeue")

    def normalize_initial(self, initial: Any) -> Any:
        return () if initial is None else tuple(freeze(x) for x in initial)

    def prune_crashed(self, ops: list[Operation]) -> list[Operation]:
        """Drop crashed enqueues of a value no completed dequeue returned.
        Once in the queue such a value blocks every completed dequeue behind
        it (and makes an empty dequeue illegal) until a crashed dequeue
        removes it; dropping both the enqueue and that dequeue changes no
        observed result."""
        seen = {
            freeze(o.output)
            for o in ops
            if o.f == "dequeue" and o.status == OK and o.output is not UNKNOWN_VALUE and o.output is not None
        }
        return [o for o in ops if not (o.status == INFO and o.f == "enqueue" and freeze(o.input) not in seen)]

    def _compile(self, op: Operation) -> StepFn:
        if op.status == FAIL:
            return _identity
        if op.f == "enqueue":
            v = freeze(op.input)
            return lambda s: s + (v,)
        out = op.output
        if out is UNKNOWN_VALUE or op.status != OK:
            return lambda s: s[1:] if s else s
        if out is None:
            return lambda s: s if not s else ILLEGAL
        v = freeze(out)
        return lambda s: s[1:] if s and s[0] == v else ILLEGAL


_MODELS: dict[str, type[Model]] = {
    "register": Register,
    "cas-register": CasRegister,
    "kv": KV,
    "multi-register": MultiRegister,
    "mutex": Mutex,
    "set": SetModel,
    "fifo-queue": FifoQueue,
}
_NO_INITIAL = object()


def get_model(name: str, initial: Any = _NO_INITIAL) -> Model:
    """The model called ``name`` (one of ``MODEL_NAMES``) starting at
    ``initial`` (plain data, e.g. from ``history.parse_literal``); without
    ``initial`` each model's natural empty state (nil, "", {}, free, #{},
    empty queue)."""
    cls = _MODELS.get(name)
    if cls is None:
        raise ModelError(f"unknown model {name!r} (allowed: {', '.join(MODEL_NAMES)})")
    if initial is _NO_INITIAL:
        return cls()
    return cls(initial)
