"""Generators: pure, composable operation schedules (after Jepsen's).

A generator is an immutable value with one method::

    gen.op(ctx) -> None                      # exhausted
                 | (Pending(until), next_gen) # nothing to do yet
                 | (op_dict, next_gen)        # this op, for this process, at op["time"]

``next_gen`` may be ``None`` (exhausted after this). Generators never sleep,
read a clock or start threads: the *interpreter* (``harness.runner`` for real
runs, :func:`simulate` here for tests) owns threads and time and passes both
in through :class:`Context`. That is what lets every schedule be tested in
simulated time.

Interpreter rules (the semantics every combinator is written against):

* An emitted op carries ``"process"`` (the process of a free thread in the
  context) and ``"time"`` (seconds since the run started; possibly in the
  future). The interpreter dispatches it at that time and then continues
  with ``next_gen``.
* If something completes before a future op's time, the interpreter may drop
  that op and ask the *previous* generator again with the new context
  (generators are values, so asking twice is safe). State set on the way
  (a time limit's cutoff) is then fixed only at the first dispatch, as in
  Jepsen.
* On ``Pending`` the interpreter adopts ``next_gen`` (it may carry a deadline,
  e.g. :class:`Sleep`'s) and waits until ``until`` or the next completion.

Randomness comes from ``ctx.rng``, which the interpreter seeds from the
test's seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

Thread = int | str  # client threads are 0..n-1; the nemesis thread is "nemesis"
NEMESIS_THREAD = "nemesis"


@dataclass(frozen=True)
class Pending:
    """Nothing to emit now; ask again at ``until`` (seconds) or after a completion."""

    until: float | None = None


PENDING = Pending()


def _thread_key(t: Thread) -> tuple[int, str]:
    return (1, str(t)) if isinstance(t, str) else (0, f"{t:09d}")


@dataclass(frozen=True)
class Context:
    """What a generator may know: the time, the threads in scope, which are free.

    ``workers`` maps every thread to its current process id (a client process
    retired after an indeterminate op gets a new id on the same thread).
    ``threads`` is the set of threads this (possibly routed) generator may use.
    """

    time: float
    threads: frozenset
    free: frozenset
    workers: Mapping[Thread, Any]
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False)

    def restrict(self, pred: Callable[[Thread], bool]) -> Context:
        threads = frozenset(t for t in self.threads if pred(t))
        return replace(self, threads=threads, free=self.free & threads)

    def only(self, thread: Thread) -> Context:
        return self.restrict(lambda t: t == thread)

    def free_threads(self) -> list[Thread]:
        return sorted(self.free & self.threads, key=_thread_key)

    def pick_free_thread(self) -> Thread | None:
        """A free thread chosen at random (so no client starves), or None."""
        free = self.free_threads()
        if not free:
            return None
        return free[0] if len(free) == 1 else self.rng.choice(free)

    def all_free(self) -> bool:
        return self.threads <= self.free


def is_client_thread(t: Thread) -> bool:
    return isinstance(t, int)


class Generator(Protocol):
    def op(self, ctx: Context) -> tuple[dict | Pending, Generator | None] | None: ...


Result = tuple[dict | Pending, "Generator | None"] | None


def step(gen: Generator | None, ctx: Context) -> Result:
    """Ask ``gen`` (which may be None, i.e. exhausted) for its next op."""
    return None if gen is None else gen.op(ctx)


def _emit(template: dict, ctx: Context) -> dict | None:
    """Fill in process and time for a free thread; None when none is free."""
    thread = ctx.pick_free_thread()
    if thread is None:
        return None
    op = dict(template)
    op["process"] = ctx.workers[thread]
    op.setdefault("time", ctx.time)
    if op["time"] < ctx.time:
        op["time"] = ctx.time
    return op


def _min_until(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# -- leaves -----------------------------------------------------------------


@dataclass(frozen=True)
class Once:
    """Emit one op (a dict) on any free thread, then be exhausted."""

    template: dict

    def op(self, ctx: Context) -> Result:
        emitted = _emit(self.template, ctx)
        if emitted is None:
            return PENDING, self
        return emitted, None


class _Cell:
    """A lazily realised, memoised item of an iterator (like a Clojure lazy seq).

    Wrapping an endless iterator this way keeps :class:`Source` a value:
    asking the same Source twice sees the same item.
    """

    __slots__ = ("_pull", "_done", "_item", "_rest")

    def __init__(self, pull: Callable[[], Any]) -> None:
        self._pull = pull
        self._done = False
        self._item: Any = None
        self._rest: _Cell | None = None

    def first(self) -> Any:
        if not self._done:
            try:
                self._item = self._pull()
            except StopIteration:
                self._item = None
            self._done = True
        return self._item

    def rest(self) -> _Cell:
        self.first()
        if self._rest is None:
            self._rest = _Cell(self._pull)
        return self._rest


@dataclass(frozen=True)
class Source:
    """Ops pulled from an iterator or zero-arg callable (e.g. a workload's
    endless op stream); ``None`` or StopIteration from it ends the source."""

    cell: _Cell

    def op(self, ctx: Context) -> Result:
        item = self.cell.first()
        if item is None:
            return None
        if not isinstance(item, dict):
            raise TypeError(
                f"an op source yielded {type(item).__name__}; ops are dicts like {{'f': 'read', 'value': None}}"
            )
        emitted = _emit(item, ctx)
        if emitted is None:
            return PENDING, self
        return emitted, Source(self.cell.rest())


def source(ops: Iterable[dict] | Iterator[dict] | Callable[[], dict]) -> Source:
    if isinstance(ops, Iterator):  # an iterator is drawn from as it is, even a callable one
        it = ops
    elif callable(ops):
        return Source(_Cell(ops))
    else:
        it = iter(ops)
    return Source(_Cell(lambda: next(it)))


def lift(x: Any) -> Generator | None:
    """Dicts emit once, lists/tuples run in order, iterators and callables are sources."""
    if x is None:
        return None
    if isinstance(x, dict):
        return Once(x)
    if isinstance(x, (list, tuple)):
        return Seq(tuple(lift(g) for g in x if g is not None))
    if hasattr(x, "op") and callable(x.op):
        return x
    if callable(x) or hasattr(x, "__next__") or hasattr(x, "__iter__"):
        return source(x)
    raise TypeError(
        f"cannot make a generator from {type(x).__name__}; use a dict, list, iterator, callable or generator"
    )


@dataclass(frozen=True)
class Sleep:
    """Emit nothing for ``dt`` seconds from the first time it is asked."""

    dt: float
    deadline: float | None = None

    def op(self, ctx: Context) -> Result:
        deadline = ctx.time + self.dt if self.deadline is None else self.deadline
        if ctx.time >= deadline:
            return None
        return Pending(deadline), Sleep(self.dt, deadline)


# -- sequencing -------------------------------------------------------------


@dataclass(frozen=True)
class Seq:
    """Run generators one after the other (no waiting in between)."""

    gens: tuple

    def op(self, ctx: Context) -> Result:
        gens = self.gens
        while gens:
            r = step(gens[0], ctx)
            if r is None:
                gens = gens[1:]
                continue
            op, nxt = r
            rest = ((nxt,) if nxt is not None else ()) + gens[1:]
            return op, (Seq(rest) if rest else None)
        return None


@dataclass(frozen=True)
class Synchronize:
    """Wait until every thread in scope is free, then behave as ``gen``."""

    gen: Any

    def op(self, ctx: Context) -> Result:
        if not ctx.all_free():
            return PENDING, self
        return step(self.gen, ctx)


def phases(*gens: Any) -> Seq:
    """Each generator runs only once every thread has finished the previous one."""
    return Seq(tuple(Synchronize(lift(g)) for g in gens))


@dataclass(frozen=True)
class Cycle:
    """Repeat ``gen`` from its start, ``times`` times (None: forever)."""

    gen: Any
    times: int | None = None
    current: Any = None
    started: bool = False

    def op(self, ctx: Context) -> Result:
        current, times, fresh = (self.current, self.times, False) if self.started else (self.gen, self.times, True)
        for _ in range(2):
            if times is not None and times <= 0:
                return None
            r = step(current, ctx)
            if r is not None:
                op, nxt = r
                return op, Cycle(self.gen, times, nxt, True) if (nxt is not None or times != 1) else None
            if fresh:
                return None  # the generator is empty from its start: repeating it cannot help
            times = None if times is None else times - 1
            current, fresh = self.gen, True
        return None


# -- limits and pacing ------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """At most ``n`` ops from ``gen``."""

    n: int
    gen: Any

    def op(self, ctx: Context) -> Result:
        if self.n <= 0:
            return None
        r = step(self.gen, ctx)
        if r is None:
            return None
        op, nxt = r
        if isinstance(op, Pending):
            return op, Limit(self.n, nxt) if nxt is not None else None
        return op, (Limit(self.n - 1, nxt) if nxt is not None and self.n > 1 else None)


def once(gen: Any) -> Limit:
    return Limit(1, lift(gen))


@dataclass(frozen=True)
class TimeLimit:
    """Ops from ``gen`` until ``dt`` seconds after this was first asked."""

    dt: float
    gen: Any
    cutoff: float | None = None

    def op(self, ctx: Context) -> Result:
        cutoff = ctx.time + self.dt if self.cutoff is None else self.cutoff
        if ctx.time >= cutoff:
            return None
        r = step(self.gen, ctx)
        if r is None:
            return None
        op, nxt = r
        wrapped = TimeLimit(self.dt, nxt, cutoff) if nxt is not None else None
        if isinstance(op, Pending):
            # wake at the cutoff at the latest, so the limit ends on time
            return Pending(_min_until(op.until, cutoff)), wrapped
        if op["time"] >= cutoff:
            # Not "exhausted": another part of ``gen`` (clients now busy) may
            # still have ops before the cutoff once something completes.
            return Pending(cutoff), TimeLimit(self.dt, self.gen, cutoff)
        return op, wrapped


@dataclass(frozen=True)
class Delay:
    """Space ops from ``gen`` at least ``dt`` seconds apart (a rate limit)."""

    dt: float
    gen: Any
    next_time: float | None = None

    def op(self, ctx: Context) -> Result:
        r = step(self.gen, ctx)
        if r is None:
            return None
        op, nxt = r
        if isinstance(op, Pending):
            return op, (Delay(self.dt, nxt, self.next_time) if nxt is not None else None)
        at = max(op["time"], self.next_time if self.next_time is not None else ctx.time)
        op = {**op, "time": at}
        return op, (Delay(self.dt, nxt, at + self.dt) if nxt is not None else None)


@dataclass(frozen=True)
class Stagger:
    """Ops from ``gen`` with random gaps, uniform in [0, 2*dt): on average
    1/dt ops per second across all threads (Jepsen's stagger)."""

    dt: float
    gen: Any
    next_time: float | None = None

    def op(self, ctx: Context) -> Result:
        r = step(self.gen, ctx)
        if r is None:
            return None
        op, nxt = r
        if isinstance(op, Pending):
            return op, (Stagger(self.dt, nxt, self.next_time) if nxt is not None else None)
        at = max(op["time"], self.next_time if self.next_time is not None else ctx.time)
        op = {**op, "time": at}
        gap = ctx.rng.uniform(0, 2 * self.dt)
        return op, (Stagger(self.dt, nxt, at + gap) if nxt is not None else None)


def rate_limit(rate: float, gen: Any) -> Stagger:
    """About ``rate`` ops per second in total, with random spacing."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 ops/s, got {rate}")
    return Stagger(1.0 / rate, lift(gen))


# -- choice and concurrency ---------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """Each op from one of ``gens`` chosen at random; exhausted ones drop out."""

    gens: tuple

    def op(self, ctx: Context) -> Result:
        gens = list(self.gens)
        while gens:
            i = ctx.rng.randrange(len(gens))
            r = step(gens[i], ctx)
            if r is None:
                del gens[i]
                continue
            op, nxt = r
            if nxt is None:
                rest = gens[:i] + gens[i + 1 :]
            else:
                rest = gens[:i] + [nxt] + gens[i + 1 :]
            return op, (Mix(tuple(rest)) if rest else None)
        return None


def mix(*gens: Any) -> Mix:
    return Mix(tuple(lift(g) for g in gens))


@dataclass(frozen=True)
class Any_:
    """Run ``gens`` side by side: whichever has the soonest op goes first."""

    gens: tuple

    def op(self, ctx: Context) -> Result:
        best: tuple[int, dict, Any] | None = None
        until: float | None = None
        advanced = list(self.gens)
        live = []
        for i, g in enumerate(self.gens):
            r = step(g, ctx)
            if r is None:
                continue
            live.append(i)
            op, nxt = r
            if isinstance(op, Pending):
                advanced[i] = nxt  # keep a pending generator's state (deadlines)
                until = _min_until(until, op.until)
            elif best is None or op["time"] < best[1]["time"]:
                best = (i, op, nxt)
        if not live:
            return None
        if best is None:
            rest = tuple(advanced[i] for i in live if advanced[i] is not None)
            return Pending(until), (Any_(rest) if rest else None)
        i, op, nxt = best
        # the chosen generator advances; pending ones keep their new state;
        # ones whose op lost the race stay as they were (their op was not taken)
        rest = tuple(g for g in ((nxt if j == i else advanced[j]) for j in live) if g is not None)
        return op, (Any_(rest) if rest else None)


def any_(*gens: Any) -> Any_:
    return Any_(tuple(g for g in (lift(x) for x in gens) if g is not None))


@dataclass(frozen=True)
class OnThreads:
    """Route ``gen`` to the threads ``pred`` accepts (clients, the nemesis)."""

    pred: Callable[[Thread], bool]
    gen: Any

    def op(self, ctx: Context) -> Result:
        sub = ctx.restrict(self.pred)
        if not sub.threads:
            return None
        r = step(self.gen, sub)
        if r is None:
            return None
        op, nxt = r
        return op, (OnThreads(self.pred, nxt) if nxt is not None else None)


def clients(gen: Any) -> OnThreads:
    return OnThreads(is_client_thread, lift(gen))


def _is_nemesis_thread(t: Thread) -> bool:
    return t == NEMESIS_THREAD


def nemesis(gen: Any) -> OnThreads:
    return OnThreads(_is_nemesis_thread, lift(gen))


@dataclass(frozen=True)
class EachThread:
    """An independent copy of ``gen`` for every thread in scope."""

    gen: Any
    per_thread: tuple | None = None  # ((thread, gen), ...) once started

    def op(self, ctx: Context) -> Result:
        table = dict(self.per_thread) if self.per_thread is not None else {t: self.gen for t in ctx.threads}
        best: tuple[Thread, dict, Any] | None = None
        until: float | None = None
        for t in sorted(table, key=_thread_key):
            if t not in ctx.free:
                continue
            r = step(table[t], ctx.only(t))
            if r is None:
                table[t] = None
                continue
            op, nxt = r
            if isinstance(op, Pending):
                table[t] = nxt
                until = _min_until(until, op.until)
            elif best is None or op["time"] < best[1]["time"]:
                best = (t, op, nxt)
        if best is not None:
            table[best[0]] = best[2]
        remaining = tuple((t, g) for t, g in sorted(table.items(), key=lambda kv: _thread_key(kv[0])) if g is not None)
        if best is None:
            if not remaining:
                return None
            return Pending(until), EachThread(self.gen, remaining)
        return best[1], (EachThread(self.gen, remaining) if remaining else None)


def each_thread(gen: Any) -> EachThread:
    return EachThread(lift(gen))


@dataclass(frozen=True)
class EachSlot:
    """A generator of its own for every client *slot*: ``gens[s]`` serves the
    threads whose process is ``s`` modulo ``len(gens)``.

    A slot is what outlives a process: a thread whose op came back ``info``
    continues as process ``p + concurrency``, and a thread that replaces a
    hung one takes the hung process plus ``concurrency``; both stay in the
    slot, so a slot's ops come from one source whatever happens. With a
    deterministic source per slot (its own seeded rng), every slot invokes
    the same sequence of ops in every run with the same seed, however the
    threads' timing interleaves. Which free thread goes next is chosen at
    random (``ctx.rng``), as :meth:`Context.pick_free_thread` does.
    """

    gens: tuple

    def op(self, ctx: Context) -> Result:
        n = len(self.gens)
        if all(g is None for g in self.gens):
            return None
        free = ctx.free_threads()
        ctx.rng.shuffle(free)
        gens = list(self.gens)
        until: float | None = None
        for t in free:
            slot = ctx.workers[t] % n
            r = step(gens[slot], ctx.only(t))
            if r is None:
                gens[slot] = None
                continue
            op, nxt = r
            gens[slot] = nxt
            if isinstance(op, Pending):
                until = _min_until(until, op.until)
                continue
            return op, EachSlot(tuple(gens))
        if all(g is None for g in gens):
            return None
        return Pending(until), EachSlot(tuple(gens))


def each_slot(slots: int, make: Callable[[int], Any]) -> EachSlot:
    """``make(slot)`` for slots 0..slots-1 (see :class:`EachSlot`)."""
    if slots < 1:
        raise ValueError(f"each_slot needs at least one slot, got {slots}")
    return EachSlot(tuple(lift(make(s)) for s in range(slots)))


# -- a simulated interpreter, for tests and for reasoning -------------------


@dataclass
class SimOp:
    time: float
    thread: Thread
    op: dict


def simulate(
    gen: Any,
    threads: Iterable[Thread],
    *,
    latency: float | Callable[[dict], float] = 0.01,
    seed: int = 0,
    max_ops: int = 10_000,
    max_time: float = 1e9,
) -> list[SimOp]:
    """Run ``gen`` in simulated time; every op takes ``latency`` seconds.

    Returns the dispatched ops in order. Follows the interpreter rules in the
    module docstring exactly, so a schedule that behaves here behaves in a
    real run (modulo real latencies).
    """
    rng = random.Random(seed)
    threads = list(threads)
    workers = {t: t for t in threads}
    process_thread = {p: t for t, p in workers.items()}
    free = set(threads)
    inflight: list[tuple[float, int, Thread]] = []
    seq = 0
    now = 0.0
    out: list[SimOp] = []
    current = lift(gen)
    lat = latency if callable(latency) else (lambda _op, d=latency: d)

    def complete_until(t: float) -> None:
        while inflight and inflight[0][0] <= t:
            _, _, th = heapq.heappop(inflight)
            free.add(th)

    while len(out) < max_ops and now <= max_time:
        ctx = Context(now, frozenset(threads), frozenset(free), workers, rng)
        r = step(current, ctx)
        if r is None:
            break
        op, nxt = r
        if isinstance(op, Pending):
            current = nxt
            wake = _min_until(op.until, inflight[0][0] if inflight else None)
            if wake is None:
                raise RuntimeError("generator is pending with nothing in flight and no deadline: it would wait forever")
            now = max(now, wake)
            complete_until(now)
            continue
        if op["time"] > now:
            if inflight and inflight[0][0] < op["time"]:
                now = inflight[0][0]
                complete_until(now)
                continue  # drop the op, ask the same generator again
            now = op["time"]
            complete_until(now)
        thread = process_thread[op["process"]]
        if thread not in free:
            raise RuntimeError(f"generator emitted an op for busy thread {thread!r}: {op}")
        free.discard(thread)
        seq += 1
        heapq.heappush(inflight, (now + lat(op), seq, thread))
        out.append(SimOp(now, thread, op))
        current = nxt
    return out
