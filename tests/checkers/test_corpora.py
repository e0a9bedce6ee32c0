"""Every history of the Porcupine and Knossos corpora gets the verdict its
own authors' test suite asserts (EXPECTED.tsv; models in knossos/MODELS.tsv)."""

from __future__ import annotations

import pytest

from checkers.history import parse_literal, read_history
from checkers.linearizable import check, verify_witness
from checkers.models import get_model
from tests.checkers.conftest import corpora_dir, read_tsv, require_corpora

_ABSENT = [pytest.param(None, None, id="corpora-absent")]


def _rows(folder: str) -> list:
    base = corpora_dir()
    if base is None or not (base / folder / "EXPECTED.tsv").exists():
        return _ABSENT
    return [pytest.param(r["file"], r["expected"], id=r["file"]) for r in read_tsv(base / folder / "EXPECTED.tsv")]


def _knossos_models() -> dict[str, dict[str, str]]:
    base = require_corpora()
    return {r["file"]: r for r in read_tsv(base / "knossos" / "MODELS.tsv")}


def _expect(result, expected: str, name: str, history, model) -> None:
    want = {"ok": True, "illegal": False}[expected]
    assert result.valid is want, f"{name}: expected {expected}, got {result.summary}"
    if want:
        assert verify_witness(history, model, result.witness) == []
    else:
        ce = result.counterexample
        assert ce["op"]["description"] and ce["partial_linearizations"]


@pytest.mark.parametrize("name,expected", _rows("porcupine"))
def test_porcupine(name: str | None, expected: str | None) -> None:
    base = require_corpora()
    history = read_history(base / "porcupine" / name)
    assert len(history) > 0
    model = get_model(history.default_model, history.default_initial)
    _expect(check(history, model, budget_s=120), expected, name, history, model)


@pytest.mark.parametrize("name,expected", _rows("knossos"))
def test_knossos(name: str | None, expected: str | None) -> None:
    base = require_corpora()
    spec = _knossos_models()[name]
    initial = spec["initial_state"]
    initial = None if initial.startswith("free") else parse_literal(initial)
    history = read_history(base / "knossos" / name)
    assert history.format == "edn"
    model = get_model(spec["model"], initial)
    _expect(check(history, model, budget_s=120), expected, name, history, model)


@pytest.mark.parametrize(
    "name",
    [
        "cas-register/bad/cas-failure.edn",
        "cas-register/bad/rethink-fail-minimal.edn",
        "cas-register/bad/rethink-fail-smaller.edn",
        "cas-register/bad/rethink-fail.edn",
    ],
)
def test_knossos_illegal_with_nil_initial(name: str) -> None:
    """Knossos also asserts these illegal with (cas-register nil)."""
    base = require_corpora()
    history = read_history(base / "knossos" / name)
    result = check(history, get_model("cas-register", None), budget_s=120)
    assert result.valid is False, result.summary


def test_corpus_counts() -> None:
    """The corpora hold what the README promises (108 + 122 asserted files)."""
    base = require_corpora()
    assert len(read_tsv(base / "porcupine" / "EXPECTED.tsv")) == 108
    assert len(read_tsv(base / "knossos" / "EXPECTED.tsv")) == 122


@pytest.mark.slow
def test_edn_reader_agrees_with_edn_format() -> None:
    """Our EDN reader gives the same values as the edn_format package on
    every Knossos history."""
    edn_format = pytest.importorskip("edn_format")
    from edn_format.edn_lex import Keyword

    from checkers import _edn

    def norm(v):
        if isinstance(v, Keyword):
            return v.name
        if isinstance(v, dict) or type(v).__name__ == "ImmutableDict":
            return {norm(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)) or type(v).__name__ == "ImmutableList":
            return [norm(x) for x in v]
        if isinstance(v, frozenset):
            return frozenset(norm(x) for x in v)
        return v

    files = sorted((require_corpora() / "knossos").rglob("*.edn"))
    assert len(files) == 122
    for f in files:
        text = f.read_text(encoding="utf-8")
        ours = _edn.plain(_edn.read_all(text)[0])
        ours = ours[0] if len(ours) == 1 else ours
        assert norm(edn_format.loads(text)) == ours, f


@pytest.mark.parametrize("name,expected", [("c50-bad", False), ("c50-ok", True)])
def test_sequential_decides_porcupine_kv_with_its_default_budget(name: str, expected: bool) -> None:
    """Without zxids too: c50-bad is refuted on one key by the search (its
    dead-read pruning), c50-ok proved through its linearization."""
    from checkers import sequential

    base = require_corpora()
    history = read_history(base / "porcupine" / "kv" / f"{name}.txt")
    model = get_model("kv")
    result = sequential.check(history, model)
    assert result.valid is expected, result.summary
    if expected:
        assert sequential.verify_witness(history, model, result.witness) == []
    else:
        assert result.counterexample["op"]["description"]
