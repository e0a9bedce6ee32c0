"""The memkv server: ``python -m squall_memkv.server --port P --data DIR``.

Protocol: one JSON object per line each way. Requests:
``{"op": "get", "key": k}``, ``{"op": "put", "key": k, "value": v}``,
``{"op": "cas", "key": k, "old": a, "new": b}``, ``{"op": "incr", "key": k}``,
``{"op": "status"}``. Replies carry ``"ok"`` (false with ``"error"`` for a
refused request) and ``"index"``: the number of writes applied so far.
Every write is appended to ``DIR/log`` and fsynced before it is answered, and
the log is replayed at start, so a killed server loses nothing it acknowledged.

TEST ONLY: ``--bug stale-reads`` answers every ``get`` with the value the key
had before its latest write: a deliberately broken database.
"""

import argparse
import json
import os
import socketserver
import threading
from typing import Any

LOCK = threading.Lock()
DATA: dict[str, Any] = {}
PREVIOUS: dict[str, Any] = {}


class State:
    index = 0  # writes applied
    log: Any = None  # the open log file
    bug: str | None = None


STATE = State()


def apply(req: dict) -> dict:
    op, key = req.get("op"), str(req.get("key"))
    if op == "get":
        value = PREVIOUS.get(key) if STATE.bug == "stale-reads" else DATA.get(key)
        return {"ok": True, "value": value}
    if op == "status":
        return {"ok": True, "role": "standalone", "keys": len(DATA)}
    if op == "cas" and DATA.get(key) != req.get("old"):
        return {"ok": False, "error": "cas-mismatch", "value": DATA.get(key)}
    if op not in ("put", "cas", "incr"):
        return {"ok": False, "error": f"unknown op {op!r}"}
    new = {"put": req.get("value"), "cas": req.get("new"), "incr": int(DATA.get(key) or 0) + 1}[op]
    STATE.log.write(json.dumps({"key": key, "value": new}) + "\n")
    STATE.log.flush()
    os.fsync(STATE.log.fileno())
    PREVIOUS[key], DATA[key] = DATA.get(key), new
    STATE.index += 1
    return {"ok": True, "value": new}


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            try:
                req = json.loads(line)
                with LOCK:
                    reply = {**apply(req), "index": STATE.index}
            except (ValueError, AttributeError, TypeError) as exc:  # a bad request costs that request
                reply = {"ok": False, "error": f"bad request: {exc}"}
            self.wfile.write((json.dumps(reply) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description="memkv: squall's example database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="directory of the write-ahead log")
    parser.add_argument("--bug", choices=["stale-reads"], help="TEST ONLY: a deliberate bug")
    args = parser.parse_args()
    os.makedirs(args.data, exist_ok=True)
    path = os.path.join(args.data, "log")
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        whole = text[: text.rfind("\n") + 1]  # a torn last line was never acknowledged: cut it
        if whole != text:
            with open(path, "w") as f:
                f.write(whole)
        for line in whole.splitlines():
            entry = json.loads(line)
            PREVIOUS[entry["key"]], DATA[entry["key"]] = DATA.get(entry["key"]), entry["value"]
            STATE.index += 1
    STATE.log, STATE.bug = open(path, "a"), args.bug
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer((args.host, args.port), Handler) as server:
        print(f"memkv serving on {args.host}:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
