"""The verdict every checker returns, and how verdicts combine.

A checker never lies (ARCHITECTURE.md): it says ``valid=True`` only with a
witness, ``valid=False`` only with a counterexample, and ``"unknown"``
otherwise. ``Result.__post_init__`` enforces that, so the only ways to build a
result are the three constructors below (or the dataclass with the same
evidence):

- ``Result.ok(checker, summary, witness, ...)`` -- valid, with a witness
  (for linearizability: the linearization of every partition);
- ``Result.illegal(checker, summary, explanation, counterexample, ...)`` --
  invalid, with a counterexample (for linearizability: the failing key, the
  operation that cannot be linearized, the longest partial linearizations
  with model states);
- ``Result.unknown(checker, summary, explanation, ...)`` -- the checker could
  not decide (budget ran out, the checker raised, ...).

``merge(results)`` combines verdicts with the precedence
False > "unknown" > True (Jepsen's ``compose``). ``run_checker(name, fn,
...)`` calls a checker and turns any exception into an "unknown" result, so a
buggy checker can never turn into a "valid".

``to_dict()`` is JSON-safe: sets and tuples become lists, non-string dict keys
become strings, anything else unknown becomes its ``repr``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"
VERDICTS = (True, False, UNKNOWN)


@dataclass(frozen=True)
class Result:
    """One checker's verdict with its evidence.

    ``valid``: True | False | "unknown". ``summary``: one line.
    ``explanation``: readable, multi-line; says what failed and why.
    ``witness``: the evidence of validity (required when valid is True).
    ``counterexample``: a dict, the evidence of invalidity (required when
    valid is False). ``details``: anything else worth keeping (timings,
    counts, per-partition verdicts).
    """

    valid: bool | str
    checker: str
    summary: str
    explanation: str = ""
    witness: Any = None
    counterexample: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not any(self.valid is v or (isinstance(v, str) and self.valid == v) for v in VERDICTS):
            raise ValueError(f"Result.valid must be True, False or 'unknown', not {self.valid!r}")
        if self.valid is True and self.witness is None:
            raise ValueError("a valid Result needs a witness (use Result.unknown when there is no evidence)")
        if self.valid is False and not self.counterexample:
            raise ValueError(
                "an invalid Result needs a counterexample dict (use Result.unknown when there is no evidence)"
            )
        if "\n" in self.summary:
            raise ValueError("Result.summary must be one line; put the rest in explanation")

    # -- constructors -----------------------------------------------------
    @classmethod
    def ok(
        cls, checker: str, summary: str, witness: Any, explanation: str = "", details: dict[str, Any] | None = None
    ) -> Result:
        """A valid verdict; ``witness`` must not be None."""
        return cls(True, checker, summary, explanation or summary, witness, None, dict(details or {}))

    @classmethod
    def illegal(
        cls,
        checker: str,
        summary: str,
        explanation: str,
        counterexample: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> Result:
        """An invalid verdict; ``counterexample`` must be a non-empty dict."""
        return cls(False, checker, summary, explanation, None, counterexample, dict(details or {}))

    @classmethod
    def unknown(
        cls, checker: str, summary: str, explanation: str = "", details: dict[str, Any] | None = None
    ) -> Result:
        """The checker could not decide; says why in summary/explanation."""
        return cls(UNKNOWN, checker, summary, explanation or summary, None, None, dict(details or {}))

    @classmethod
    def from_exception(cls, checker: str, exc: BaseException) -> Result:
        """A checker that raised proved nothing: "unknown", with the traceback."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls.unknown(
            checker,
            f"{checker} raised {type(exc).__name__}: {_one_line(str(exc))}",
            f"The checker raised an exception, so nothing was proved either way.\n{tb}",
            {"exception": type(exc).__name__, "message": str(exc)},
        )

    # -- views --------------------------------------------------------------
    @property
    def is_valid(self) -> bool:
        return self.valid is True

    @property
    def is_invalid(self) -> bool:
        return self.valid is False

    @property
    def is_unknown(self) -> bool:
        return self.valid == UNKNOWN and not isinstance(self.valid, bool)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``json.dumps`` works on it without a default)."""
        d: dict[str, Any] = {
            "valid": self.valid,
            "checker": self.checker,
            "summary": self.summary,
            "explanation": self.explanation,
        }
        if self.witness is not None:
            d["witness"] = jsonable(self.witness)
        if self.counterexample is not None:
            d["counterexample"] = jsonable(self.counterexample)
        d["details"] = jsonable(self.details)
        return d


def merge(results: Iterable[Result], checker: str = "composed") -> Result:
    """Combine verdicts: any False makes False, else any "unknown" makes
    "unknown", else True. An empty input is vacuously valid.

    The merged witness/counterexample maps each sub-checker's name to its own
    evidence, so nothing is lost; ``details["results"]`` keeps every
    sub-result's dict.
    """
    results = list(results)
    subs = {"results": [r.to_dict() for r in results]}
    bad = [r for r in results if r.is_invalid]
    if bad:
        names = ", ".join(r.checker for r in bad)
        return Result.illegal(
            checker,
            f"invalid: {names}" if len(bad) > 1 else bad[0].summary,
            "\n\n".join(f"[{r.checker}] {r.explanation}" for r in bad),
            {r.checker: r.counterexample for r in bad},
            subs,
        )
    unk = [r for r in results if r.is_unknown]
    if unk:
        return Result.unknown(
            checker,
            unk[0].summary if len(unk) == 1 else "unknown: " + ", ".join(r.checker for r in unk),
            "\n\n".join(f"[{r.checker}] {r.explanation}" for r in unk),
            subs,
        )
    return Result.ok(
        checker,
        f"valid ({len(results)} checkers)" if results else "valid (no checkers)",
        {r.checker: r.witness for r in results},
        "\n".join(f"[{r.checker}] {r.summary}" for r in results),
        subs,
    )


def run_checker(checker: str, fn: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """Call ``fn(*args, **kwargs)``; an exception becomes "unknown"."""
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a checker's bug must not be a verdict
        return Result.from_exception(checker, exc)
    if not isinstance(result, Result):
        return Result.unknown(checker, f"{checker} returned {type(result).__name__}, not a Result")
    return result


def jsonable(obj: Any) -> Any:
    """Turn evidence into JSON-safe data (lists, dicts with str keys, scalars)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else _key_str(k)): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    return repr(obj)


def _key_str(k: Any) -> str:
    if k is None:
        return "null"
    if isinstance(k, (bool, int, float)):
        return str(k).lower() if isinstance(k, bool) else str(k)
    return repr(k)


def _one_line(s: str) -> str:
    return " ".join(s.split())[:200]
