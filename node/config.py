"""The node's configuration: a frozen record, and a reader for ZooKeeper-style files.

A config file is ZooKeeper's ``zoo.cfg``: a Java properties file, read with
the full syntax of ``java.util.Properties.load`` (:func:`parse_properties`:
``key=value``, ``key: value`` and ``key value`` lines, ``#`` and ``!``
comments, ``\\`` line continuations, ``\\t``/``\\n``/``\\uXXXX`` escapes)
and, like ZooKeeper's ``QuorumPeerConfig``, keys and values trimmed. The keys
squall understands are in :data:`FILE_KEYS`; ZooKeeper keys that make no sense
here (``admin.*``, ``initLimit``, ...) are accepted and reported back as
ignored, so a real ``zoo.cfg`` can be reused. Command-line flags override the
file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from node import failpoints, faults
from node.admin.four_letter import DEFAULT_WHITELIST, ZK_WORDS, parse_whitelist


class ConfigError(ValueError):
    """A bad configuration value; the message says what is allowed."""


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 2181
    tick_ms: int = 2000
    max_frame_bytes: int = 1048576
    max_client_cnxns: int = 60  # per client IP, like maxClientCnxns; 0 = unlimited
    server_id: int = 1
    snapshot_every: int = 100_000  # txns between snapshots (ZooKeeper's snapCount)
    # autopurge.snapRetainCount: snapshots kept (ZooKeeper's default and minimum: 3)
    snap_retain_count: int = 3
    # autopurge.purgeInterval, in hours: log segments and snapshots no longer needed are purged at
    # most this often, at snapshot time. 0 (the default) purges at every snapshot, which keeps
    # the logs bounded; ZooKeeper's 0 means never (its logs grow until an operator purges them).
    purge_interval_h: int = 0
    min_session_timeout_ms: int = 0  # 0: 2 ticks
    max_session_timeout_ms: int = 0  # 0: 20 ticks
    # "user:base64hash" (ZooKeeper's DigestAuthenticationProvider.superDigest): that digest id is superuser
    super_digest: str = ""
    # java.security.auth.login.config: a JAAS file whose Server section lists the SASL DIGEST-MD5 users
    # (node.sasl); "" = SASL clients get AuthFailed, as a ZooKeeper without one. Not a zoo.cfg key (nor ZooKeeper's).
    jaas_config: str = ""
    # fsync the log on the event loop's thread rather than in a disk thread (see node.server.Node).
    # Inline is the default: measured with bench/node.py on this kind of machine it gave
    # 1,700-2,100 sync sets/s against 1,350-1,500 in the disk thread (the thread hand-off
    # costs more than the loop time it frees); a slow disk may prefer --fsync-in-thread.
    fsync_inline: bool = True
    # Ensemble: "1=host:client_port:peer_port,2=..." (empty: standalone); see node.peer.parse_peers
    peers: str = ""
    # Consensus timer period (elections take 10..20 of these); tickTime above only sizes session timeouts
    raft_tick_ms: int = 25
    # TEST ONLY: a deliberate bug to arm (see node.faults); "" = none. Not a zoo.cfg key on purpose.
    unsafe_test_fault: str = ""
    # TEST ONLY: armed failpoints, "NAME=ACTION" each (see node.failpoints); () = none. Not a zoo.cfg key.
    failpoints: tuple[str, ...] = ()
    # TEST ONLY: "host:port" (loopback) of the failpoint HTTP API (node.failpoints.serve_http); "" = off
    failpoint_http: str = ""
    # 4lw.commands.whitelist: the four-letter words the client port answers (ZooKeeper 3.8's default: srvr only)
    four_letter_words: frozenset = DEFAULT_WHITELIST
    # zookeeper.enforceQuota: hard quota limits refuse writes with QuotaExceeded (-125); every member must agree
    enforce_quota: bool = False
    # reconfigEnabled: dynamic reconfiguration (the reconfig request) is allowed; ZooKeeper's default is off
    reconfig_enabled: bool = False
    # --join: this member joins a running ensemble (it waits to be added by a reconfig); not a zoo.cfg key
    join: bool = False
    # readonlymode.enabled: a member cut off from its quorum serves read-only sessions
    read_only: bool = False

    def validate(self) -> NodeConfig:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(1 <= self.port <= 65535, f"port {self.port} is out of range; allowed: 1..65535")
        need(10 <= self.tick_ms <= 600_000, f"tick time {self.tick_ms} ms is out of range; allowed: 10..600000")
        need(
            1024 <= self.max_frame_bytes <= 256 * 1024 * 1024,
            f"max frame size {self.max_frame_bytes} is out of range; allowed: 1024..268435456 bytes",
        )
        need(
            self.max_client_cnxns >= 0,
            f"maxClientCnxns {self.max_client_cnxns} is negative; allowed: 0 (unlimited) or more",
        )
        need(1 <= self.server_id <= 254, f"server id {self.server_id} is out of range; allowed: 1..254")
        need(self.snapshot_every >= 1, f"snapCount {self.snapshot_every} must be at least 1")
        need(
            self.snap_retain_count >= 3,
            f"autopurge.snapRetainCount {self.snap_retain_count} is below ZooKeeper's minimum; allowed: 3 or more",
        )
        need(
            self.purge_interval_h >= 0,
            f"autopurge.purgeInterval {self.purge_interval_h} is negative; allowed: 0 (at every snapshot) or hours",
        )
        need(
            isinstance(self.four_letter_words, frozenset) and self.four_letter_words <= ZK_WORDS,
            f"4lw whitelist {self.four_letter_words!r}: allowed: a frozenset of {', '.join(sorted(ZK_WORDS))}",
        )
        need(5 <= self.raft_tick_ms <= 10_000, f"raft tick {self.raft_tick_ms} ms is out of range; allowed: 5..10000")
        try:
            faults.check(self.unsafe_test_fault)
        except faults.UnknownFault as exc:
            raise ConfigError(str(exc)) from None
        for spec in self.failpoints:
            try:
                failpoints.parse_spec(spec)
            except failpoints.FailpointSpecError as exc:
                raise ConfigError(f"--failpoint: {exc}") from None
        if self.jaas_config:
            from node.sasl import JaasError, load_jaas_users

            try:
                load_jaas_users(self.jaas_config)
            except JaasError as exc:
                raise ConfigError(f"--jaas-config: {exc}") from None
        if self.failpoint_http:
            try:
                failpoints.check_http_address(self.failpoint_http)
            except failpoints.FailpointSpecError as exc:
                raise ConfigError(str(exc)) from None
        return self

    @property
    def min_timeout_ms(self) -> int:
        return self.min_session_timeout_ms or 2 * self.tick_ms

    @property
    def max_timeout_ms(self) -> int:
        return self.max_session_timeout_ms or 20 * self.tick_ms

    @property
    def handshake_timeout_ms(self) -> int:
        """How long a new connection may take to deliver its ConnectRequest before it is closed.

        Five ticks: ZooKeeper's sessionless-connection timeout is 10 s
        (``zookeeper.nio.sessionlessCnxnTimeout``) at its default tickTime of
        2 s. A client sends its ConnectRequest right after connecting, so this
        is generous, and it is shorter than the longest session timeout (20
        ticks), so idle sockets cannot pile up to the per-address limit
        (maxClientCnxns) and lock real clients out for long.
        """
        return 5 * self.tick_ms


def java_bool(text: str) -> bool:
    """Java's Boolean.parseBoolean: "true" in any case is true, anything else false."""
    return text.strip().lower() == "true"


# zoo.cfg key -> (NodeConfig field, converter)
FILE_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "dataDir": ("data_dir", Path),
    "clientPort": ("port", int),
    "clientPortAddress": ("host", str),
    "tickTime": ("tick_ms", int),
    "maxClientCnxns": ("max_client_cnxns", int),
    "jute.maxbuffer": ("max_frame_bytes", int),
    "snapCount": ("snapshot_every", int),
    "autopurge.snapRetainCount": ("snap_retain_count", int),
    "autopurge.purgeInterval": ("purge_interval_h", int),
    "minSessionTimeout": ("min_session_timeout_ms", int),
    "maxSessionTimeout": ("max_session_timeout_ms", int),
    "serverId": ("server_id", int),
    "superDigest": ("super_digest", str),
    "peers": ("peers", str),
    "raftTickMs": ("raft_tick_ms", int),
    "4lw.commands.whitelist": ("four_letter_words", parse_whitelist),
    # ZooKeeper turns an unknown zoo.cfg key K into the system property zookeeper.K, so both spellings work there
    "enforceQuota": ("enforce_quota", java_bool),
    "zookeeper.enforceQuota": ("enforce_quota", java_bool),
    "reconfigEnabled": ("reconfig_enabled", java_bool),
    # a system property in ZooKeeper (-Dreadonlymode.enabled=true); squall also reads it from the file
    "readonlymode.enabled": ("read_only", java_bool),
}


def zk_server_lines(servers: dict[int, str], client_port: int | None) -> str:
    """ZooKeeper's ``server.N=host:peer_port[:election_port][:role][;[addr:]client_port]`` lines -> our peers spec.

    ZooKeeper's election port has no use here (one peer port carries
    everything); it is kept only to show the membership in /zookeeper/config
    as ZooKeeper does. A server without ``;client_port`` gets the file's
    ``clientPort`` (the usual layout: every server on its own host).
    """
    parts = []
    for sid in sorted(servers):
        spec = servers[sid]
        addr, _, client = spec.partition(";")
        fields_ = addr.split(":")
        role = fields_.pop() if len(fields_) in (3, 4) and fields_[-1] in ("participant", "observer") else ""
        if len(fields_) not in (2, 3) or not all(f.isdigit() for f in fields_[1:]):
            raise ConfigError(f"server.{sid}={spec!r}: expected host:peer_port[:election_port][:role][;client_port]")
        client = client.rpartition(":")[2] if client else (str(client_port) if client_port else "")
        if not client.isdigit():
            raise ConfigError(f"server.{sid}={spec!r}: no client port (add ';PORT' or set clientPort)")
        extra = "".join(f":{x}" for x in (fields_[2:] + ([role] if role else [])))
        parts.append(f"{sid}={fields_[0]}:{client}:{fields_[1]}{extra}")
    return ",".join(parts)


_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_KEY_END = "=: \t\f"


def _unescape(raw: str, origin: str, lineno: int) -> str:
    """Java properties escapes: ``\\t \\n \\r \\f``, ``\\uXXXX``, and ``\\x`` -> ``x`` for any other x."""
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\" or i + 1 == len(raw):
            out.append(ch if ch != "\\" else "")  # a lone trailing backslash means nothing (as in Java)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt == "u":
            digits = raw[i + 2 : i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ConfigError(
                    f"{origin}:{lineno}: malformed \\uXXXX escape {raw[i : i + 6]!r}; "
                    "allowed: \\u followed by exactly 4 hex digits"
                )
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_SIMPLE_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _ends_continued(line: str) -> bool:
    """An odd number of trailing backslashes continues the line onto the next one."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def parse_properties(text: str, origin: str = "config") -> list[tuple[int, str, str]]:
    """``java.util.Properties.load`` syntax -> [(line number, key, value)] in file order.

    Written here (the format is small) rather than taken from a library. A
    logical line is natural lines joined at an odd run of trailing
    backslashes, the continuation's leading whitespace dropped; a line whose
    first non-blank character is ``#`` or ``!`` is a comment. The key runs to
    the first unescaped ``=``, ``:`` or whitespace; whitespace and at most one
    ``=``/``:`` separate it from the value. Keys and values are then trimmed,
    as ZooKeeper's ``QuorumPeerConfig`` does.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[tuple[int, str, str]] = []
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _ends_continued(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        if _ends_continued(line):
            line = line[:-1]  # a continuation at end of file: Java drops it
        k = 0
        while k < len(line) and line[k] not in _KEY_END:
            k += 2 if line[k] == "\\" else 1
        key_raw, rest = line[:k], line[k:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        key = _unescape(key_raw, origin, lineno).strip()
        value = _unescape(rest, origin, lineno).strip()
        out.append((lineno, key, value))
    return out


def parse_zoo_cfg(text: str, origin: str = "config") -> tuple[dict[str, object], list[str]]:
    """Parse a zoo.cfg (Java properties) into NodeConfig field values; return (values, ignored keys)."""
    values: dict[str, object] = {}
    ignored: list[str] = []
    servers: dict[int, str] = {}
    for lineno, key, value in parse_properties(text, origin):
        if not key:
            raise ConfigError(f"{origin}:{lineno}: a line with a value but no key; expected key=value")
        if key.startswith("server.") and key[7:].isdigit():
            servers[int(key[7:])] = value
            continue
        if key not in FILE_KEYS:
            ignored.append(key)
            continue
        name, conv = FILE_KEYS[key]
        try:
            values[name] = conv(value)
        except ValueError as exc:
            what = f"is not a valid {conv.__name__}" if conv in (int, str, Path) else str(exc)
            raise ConfigError(f"{origin}:{lineno}: {key}={value!r} {what}") from None
    if servers and "peers" not in values:
        port = values.get("port")
        values["peers"] = zk_server_lines(servers, port if isinstance(port, int) else None)
    return values, ignored


def load_config(path: str | os.PathLike | None, overrides: dict[str, object]) -> tuple[NodeConfig, list[str]]:
    """Build a config from an optional file plus flag overrides (flags win); validate it."""
    values: dict[str, object] = {}
    ignored: list[str] = []
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        values, ignored = parse_zoo_cfg(text, str(path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "data_dir" not in values:
        raise ConfigError("no data directory: pass --data-dir DIR or set dataDir in the config file")
    known = {f.name for f in fields(NodeConfig)}
    cfg = NodeConfig(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]
    return replace(cfg, data_dir=Path(cfg.data_dir)).validate(), ignored
