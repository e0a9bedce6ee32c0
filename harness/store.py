"""The results store: ``results/<test-name>/<timestamp>/`` and ``results/latest``.

A run directory holds ``test.json`` (the spec, written first), ``history.jsonl``
(written as soon as the run ends and before any checking, so a crashing or
interrupted checker loses nothing), ``results.json``, ``report.html``,
``junit.xml`` and ``logs/`` with every node's log. ``latest`` is a relative
symlink to the newest run, replaced atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkers.history import TYPES, Op

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S"


class StoreError(ValueError):
    """A stored run is missing or malformed; the message says which file."""


def new_run_dir(results_root: str | Path, test_name: str, now: datetime | None = None) -> Path:
    """Create and return a fresh ``<root>/<test_name>/<timestamp>`` directory."""
    now = now or datetime.now(UTC)
    stamp = now.strftime(TIMESTAMP_FORMAT) + f".{now.microsecond // 1000:03d}"
    parent = Path(results_root) / test_name
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        candidate = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise StoreError(f"could not create a fresh run directory under {parent}")


def update_latest(results_root: str | Path, run_dir: str | Path) -> Path:
    """Point ``<root>/latest`` at ``run_dir`` (relative link, atomic replace)."""
    root = Path(results_root)
    link = root / "latest"
    target = os.path.relpath(Path(run_dir).resolve(), root.resolve())
    tmp = root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    _write_atomic(Path(path), json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return repr(obj)


def write_spec(run_dir: str | Path, spec: Any) -> Path:
    path = Path(run_dir) / "test.json"
    _write_atomic(path, spec.to_json() + "\n")
    return path


def write_results(run_dir: str | Path, results: dict) -> Path:
    path = Path(run_dir) / "results.json"
    write_json(path, results)
    return path


def write_history(run_dir: str | Path, ops: Iterable[Op]) -> Path:
    path = Path(run_dir) / "history.jsonl"
    _write_atomic(path, "".join(op.to_json() + "\n" for op in ops))
    return path


def read_history(path: str | Path) -> list[Op]:
    """Read a history.jsonl; a malformed line is an error naming its line number."""
    path = Path(path)
    if path.is_dir():
        path = path / "history.jsonl"
    if not path.exists():
        raise StoreError(f"no history at {path}")
    ops = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if d.get("type") not in TYPES:
                raise ValueError(f"type {d.get('type')!r} is not one of {', '.join(TYPES)}")
            ops.append(
                Op(
                    int(d["index"]),
                    int(d["time"]),
                    d["type"],
                    d["process"],
                    d["f"],
                    d.get("value"),
                    d.get("node"),
                    d.get("error"),
                    d.get("zxid"),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{path}:{lineno}: not a history op ({exc})") from exc
    return ops


def read_results(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
