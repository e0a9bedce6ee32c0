"""ZooKeeper's four-letter words, as the harness asks them of a node's
client port: ``srvr`` gives a node's role (``Mode:``) and its last zxid."""

from __future__ import annotations

import socket
from typing import Any

from harness.dbs.base import NodeStatus

SERVING_MODES = ("leader", "follower", "standalone", "observer")


def four_letter_word(address: str, word: str, timeout_s: float = 1.0) -> str:
    """Send a four-letter word to "host:port"; return the reply ("" on error)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(word.encode("ascii"))
            chunks = []
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                chunks.append(data)
                if sum(map(len, chunks)) > 1 << 20:
                    break
        return b"".join(chunks).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


def parse_srvr(text: str) -> dict[str, Any]:
    """Parse a ``srvr`` reply into {"mode": str, "zxid": int|None, ...}.

    An empty or unparsable reply gives {"mode": "down"}."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "mode":
            out["mode"] = value
        elif key == "zxid":
            try:
                out["zxid"] = int(value, 16) if value.startswith("0x") else int(value)
            except ValueError:
                out["zxid"] = None
        elif key == "node count":
            try:
                out["node_count"] = int(value)
            except ValueError:
                pass
    if "mode" not in out:
        # A server up but not serving says "This ZooKeeper instance is not
        # currently serving requests".
        out["mode"] = "not-serving" if text.strip() else "down"
    return out


def status_from_srvr(text: str) -> NodeStatus:
    """A ``srvr`` reply as a NodeStatus: the role is ``Mode:``; the zxid is
    the last applied position, its high 32 bits the epoch (the term)."""
    parsed = parse_srvr(text)
    mode = str(parsed["mode"])
    zxid = parsed.get("zxid")
    details = {k: v for k, v in parsed.items() if k not in ("mode", "zxid")}
    return NodeStatus(
        role=mode,
        serving=mode in SERVING_MODES,
        term=None if zxid is None else zxid >> 32,
        applied=zxid,
        details=details,
    )


def srvr_status(address: str, timeout_s: float = 1.0) -> NodeStatus:
    """Ask a node's client port ``srvr``."""
    text = four_letter_word(address, "srvr", timeout_s)
    if not text:
        return NodeStatus.down(f"no answer to srvr from {address}")
    return status_from_srvr(text)
