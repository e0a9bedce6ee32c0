"""ZooKeeper paths: validation (PathUtils.validatePath), parents and the system paths."""

from __future__ import annotations

import re

from node.errors import Err, ZkError

# Characters ZooKeeper's PathUtils refuses (Java UTF-16: anything above
# U+FFFF is a surrogate pair and so refused too).
_BAD_CHARS = re.compile("[\x01-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\U0010ffff]")

SPECIAL_PATHS = frozenset({"/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"})


def path_error(path: str) -> str | None:
    """Why ``path`` is not a valid ZooKeeper path (PathUtils.validatePath), or None."""
    if not isinstance(path, str):
        return "path must be a string"
    if not path:
        return "path must not be empty"
    if path[0] != "/":
        return f"path {path!r} must start with /"
    if len(path) == 1:
        return None
    if path[-1] == "/":
        return f"path {path!r} must not end with /"
    if "\0" in path:
        return f"path {path!r} contains a null character"
    if "//" in path:
        return f"path {path!r} has an empty node name (//)"
    for part in path.split("/")[1:]:
        if part in (".", ".."):
            return f"path {path!r} is relative (. and .. are not allowed as names)"
    m = _BAD_CHARS.search(path)
    if m:
        return f"path {path!r} has an invalid character U+{ord(m.group()):04X} at {m.start()}"
    return None


def validate_path(path: str) -> None:
    """Raise ZkError(BAD_ARGUMENTS) saying what is wrong with an invalid path."""
    why = path_error(path)
    if why is not None:
        raise ZkError(Err.BAD_ARGUMENTS, why)


def parent_of(path: str) -> str:
    """The parent path ("/" for top-level nodes and for "/" itself)."""
    i = path.rfind("/")
    return path[:i] if i > 0 else "/"


def child_path(parent: str, name: str) -> str:
    return parent + name if parent == "/" else f"{parent}/{name}"
