"""Where the conformance corpora live (``$SQUALL_CORPORA`` or
``<repo>/../shared/corpora``); tests skip when absent, and fail when CI=true."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def corpora_dir() -> Path | None:
    env = os.environ.get("SQUALL_CORPORA")
    path = Path(env) if env else ROOT.parent / "shared" / "corpora"
    return path if path.is_dir() else None


def require_corpora() -> Path:
    path = corpora_dir()
    if path is None:
        msg = f"conformance corpora not found: set SQUALL_CORPORA or place them at {ROOT.parent / 'shared' / 'corpora'}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true: the corpora are required)")
        pytest.skip(msg)
    return path


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    return require_corpora()
