"""memkv's clients: one TCP connection, one request at a time.

``Conn.call`` maps outcomes as squall expects (``workloads.base``): a reply
is ``ok`` or, when memkv refused the request, ``fail``; nothing sent (no
connection) is ``fail``; a request sent and not answered (timeout, lost
connection) is ``info``: it may have been applied.
"""

from __future__ import annotations

import json
import socket
from typing import Any


class Conn:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.timeout_s = 5.0
        self.sock: socket.socket | None = None
        self.file: Any = None
        self.server: str | None = None

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.hosts, self.timeout_s = [h for h in hosts.split(",") if h], timeout_s

    def close(self) -> None:
        for thing in (self.file, self.sock):
            try:
                if thing is not None:
                    thing.close()
            except OSError:
                pass
        self.sock = self.file = self.server = None

    def _connect(self) -> None:
        errors = []
        for address in self.hosts:
            host, _, port = address.rpartition(":")
            try:
                self.sock = socket.create_connection((host, int(port)), timeout=self.timeout_s)
                self.file = self.sock.makefile("rwb")
                self.server = address
                return
            except OSError as exc:
                errors.append(f"{address}: {exc}")
        raise ConnectionError("; ".join(errors) or "no hosts")

    def call(self, request: dict[str, Any], fail_value: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(memkv's reply, or None) and the completion to return when there is none."""
        if self.sock is None:
            try:
                self._connect()
            except (OSError, ValueError) as exc:
                return None, {"type": "fail", "value": fail_value, "error": f"not-connected: {exc}"}
        try:
            self.file.write((json.dumps(request) + "\n").encode())
            self.file.flush()
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            return json.loads(line), {}
        except (OSError, ValueError) as exc:
            self.close()
            return None, {"type": "info", "value": fail_value, "error": f"{type(exc).__name__}: {exc}"}


class RegisterClient:
    """squall's ``register`` interface on memkv: read, write and cas of int values."""

    def __init__(self) -> None:
        self.conn = Conn()

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.conn.open(hosts, node, timeout_s)

    def close(self) -> None:
        self.conn.close()

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if f not in ("read", "write", "cas") or not isinstance(value, list) or len(value) != 2:
            return {
                "type": "fail",
                "value": value,
                "error": f"bad register op {op!r}: f must be read, write or cas, value [key, arg]",
            }
        key, arg = value
        if f == "read":
            request = {"op": "get", "key": str(key)}
        elif f == "write":
            request = {"op": "put", "key": str(key), "value": arg}
        elif isinstance(arg, list) and len(arg) == 2:
            request = {"op": "cas", "key": str(key), "old": arg[0], "new": arg[1]}
        else:
            return {"type": "fail", "value": value, "error": f"bad cas {op!r}: value [key, [old, new]]"}
        reply, otherwise = self.conn.call(request, value)
        if reply is None:
            return otherwise
        out = {
            "value": [key, reply.get("value")] if f == "read" else value,
            "zxid": reply.get("index"),
            "server": self.conn.server,
        }
        if not reply.get("ok"):
            return {**out, "type": "fail", "error": reply.get("error")}
        return {**out, "type": "ok", "error": None}


class IncrClient:
    """memkv's own ``memkv-incr`` interface: ``incr`` a key, ``read`` it."""

    def __init__(self) -> None:
        self.conn = Conn()

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.conn.open(hosts, node, timeout_s)

    def close(self) -> None:
        self.conn.close()

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f = op.get("f")
        if f not in ("incr", "read"):
            return {"type": "fail", "value": op.get("value"), "error": f"bad memkv-incr op {op!r}: incr or read"}
        reply, otherwise = self.conn.call({"op": "incr" if f == "incr" else "get", "key": "counter"}, None)
        if reply is None:
            return otherwise
        return {
            "type": "ok" if reply.get("ok") else "fail",
            "value": reply.get("value"),
            "error": reply.get("error"),
            "zxid": reply.get("index"),
            "server": self.conn.server,
        }
