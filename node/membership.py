"""The ensemble's membership in ZooKeeper's dynamic-config form, and the reconfig rules that change it.

A member is ZooKeeper's ``server.N=host:quorum_port:election_port:role;client_host:client_port``.
squall's members talk over one peer port (the quorum port); an election port
is kept only to show the membership as ZooKeeper shows it, and is 0 when the
member was configured without one (``--peers``). ``Membership.render`` writes
ZooKeeper's /zookeeper/config text (``QuorumMaj.toString``); ``reconfigure``
applies a client's reconfig request (``PrepRequestProcessor``'s incremental
and non-incremental forms) with ZooKeeper's error codes: a malformed server
string is BadArguments, an id or port that is not a number MarshallingError.

Only participants vote; observers (Raft learners) receive the log and serve
clients. squall changes one voter at a time (docs/protocol.md, "Membership
changes"), so a non-incremental request is accepted only when it differs from
the current membership by at most one voter.

Pure: no I/O, nothing of the project but the error codes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from node.errors import Err

PARTICIPANT, OBSERVER = "participant", "observer"
ROLES = (PARTICIPANT, OBSERVER)
# The version ZooKeeper gives a static configuration: the zxid (epoch 1, counter 0) that starts the
# first epoch. squall's first Raft term is 1 too.
BOOTSTRAP_VERSION = 1 << 32
MAX_SERVER_ID = (1 << 32) - 1  # ids travel as u32 in peer messages (ZooKeeper's are longs)


class ReconfigError(ValueError):
    """A reconfig request that cannot be carried out: ``code`` is the ZooKeeper error to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Member:
    id: int
    host: str
    peer_port: int
    election_port: int = 0  # 0: not configured (squall has no election port)
    role: str = PARTICIPANT
    client_host: str | None = None
    client_port: int | None = None

    def spec(self) -> str:
        """ZooKeeper's QuorumServer.toString: ``host:port:port:role[;client_host:client_port]``."""
        text = f"{_bracketed(self.host)}:{self.peer_port}:{self.election_port}:{self.role}"
        if self.client_port is not None:
            text += f";{_bracketed(self.client_host or '0.0.0.0')}:{self.client_port}"
        return text

    @property
    def voter(self) -> bool:
        return self.role == PARTICIPANT


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def host_and_port(text: str) -> list[str]:
    """ZooKeeper's ConfigUtils.getHostAndPort: split on ':' outside an IPv6 ``[...]``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ReconfigError(Err.BAD_ARGUMENTS, f"{text!r}: IPv6 address without a closing ]")
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ReconfigError(Err.BAD_ARGUMENTS, f"{text!r}: expected ':' after the IPv6 address")
        return [text[1:end]] + (rest[1:].split(":") if rest else [])
    return text.split(":")


def _port(text: str, what: str) -> int:
    if not text.lstrip("+-").isdigit():
        raise ReconfigError(Err.BAD_ARGUMENTS, f"{what} {text!r} is not a number")
    port = int(text)
    if not 0 <= port <= 65535:
        raise ReconfigError(Err.MARSHALLING_ERROR, f"{what} {port} is out of range 0..65535")
    return port


def parse_member(sid: int, spec: str, *, need_client: bool = False) -> Member:
    """One ``host:port:port[:role][;[client_host:]client_port]`` (QuorumServer's address string)."""
    server_client = spec.split(";")
    if len(server_client) > 2:
        raise ReconfigError(
            Err.BAD_ARGUMENTS,
            f"server.{sid}={spec!r} does not have the form host:port:port[:role][;[client_host:]client_port]",
        )
    client_host = client_port = None
    if len(server_client) == 2:
        client = host_and_port(server_client[1])
        if len(client) > 2:
            raise ReconfigError(
                Err.BAD_ARGUMENTS, f"server.{sid}: client address {server_client[1]!r} is not [host:]port"
            )
        client_host = client[0] if len(client) == 2 else "0.0.0.0"
        client_port = _port(client[-1], "client port")
    parts = host_and_port(server_client[0])
    if not 3 <= len(parts) <= 4:
        raise ReconfigError(
            Err.BAD_ARGUMENTS,
            f"server.{sid}={spec!r} does not have the form host:port:port[:role][;[client_host:]client_port]",
        )
    peer_port, election_port = _port(parts[1], "quorum port"), _port(parts[2], "election port")
    if peer_port == election_port:
        raise ReconfigError(Err.BAD_ARGUMENTS, f"server.{sid}: quorum and election port must be different")
    role = PARTICIPANT
    if len(parts) == 4:
        if parts[3] not in ROLES:
            raise ReconfigError(
                Err.BAD_ARGUMENTS, f"server.{sid}: unknown role {parts[3]!r}; allowed: participant, observer"
            )
        role = parts[3]
    if need_client and client_port is None:
        raise ReconfigError(
            Err.BAD_ARGUMENTS, "Wrong format of server string - each server should have 3 ports specified"
        )
    return Member(sid, parts[0], peer_port, election_port, role, client_host, client_port)


def _parse_server_item(item: str) -> Member:
    """``server.N=spec`` as a reconfig request gives it (joining and new-members items)."""
    parts = item.split("=")
    while parts and parts[-1] == "":
        parts.pop()
    if len(parts) != 2:
        raise ReconfigError(Err.BAD_ARGUMENTS, f"Wrong format of server string: {item!r} (expected server.N=...)")
    digits = parts[0][parts[0].rfind(".") + 1 :]
    if not _is_long(digits):
        raise ReconfigError(Err.MARSHALLING_ERROR, f"server id {digits!r} in {item!r} is not a number")
    sid = int(digits)
    if not 1 <= sid <= MAX_SERVER_ID:
        raise ReconfigError(Err.BAD_ARGUMENTS, f"server id {sid} is out of range; allowed: 1..{MAX_SERVER_ID}")
    return parse_member(sid, parts[1], need_client=True)


def _is_long(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isdigit() and body.isascii()


@dataclass(frozen=True)
class Membership:
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        ids = [m.id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError(f"member ids must be distinct, got {ids}")
        object.__setattr__(self, "members", tuple(sorted(self.members, key=lambda m: m.id)))

    @property
    def voters(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members if m.voter)

    @property
    def learners(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members if not m.voter)

    def get(self, sid: int) -> Member | None:
        for m in self.members:
            if m.id == sid:
                return m
        return None

    def render(self, version: int) -> bytes:
        """ZooKeeper's /zookeeper/config text: a ``server.N=...`` line per member, then ``version=<hex>``.

        Members come in the order ZooKeeper's HashMap of them iterates (by id
        modulo its table size), which for ids below 16 is ascending order."""
        table = 16
        while len(self.members) > table * 3 // 4:
            table *= 2
        ordered = sorted(self.members, key=lambda m: (m.id & (table - 1), m.id))
        lines = [f"server.{m.id}={m.spec()}" for m in ordered] + [f"version={version:x}"]
        return "\n".join(lines).encode("utf-8")

    def encode(self) -> bytes:
        return json.dumps([asdict(m) for m in self.members], sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, blob: bytes) -> Membership:
        """Inverse of ``encode``; ValueError for anything else."""
        try:
            items = json.loads(blob.decode("utf-8"))
            return cls(tuple(Member(**item) for item in items))
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"not an encoded membership: {e}") from None

    def without(self, sid: int) -> Membership:
        return Membership(tuple(m for m in self.members if m.id != sid))

    def with_member(self, member: Member) -> Membership:
        return Membership(tuple(m for m in self.members if m.id != member.id) + (member,))


def _check_addresses(members: tuple[Member, ...]) -> None:
    """ZooKeeper's checkAddressDuplicate: no two servers share a quorum or election address."""
    seen: dict[tuple[str, int], int] = {}
    for m in members:
        for port in (m.peer_port, m.election_port):
            if port == 0:
                continue  # squall's "no election port"
            key = (m.host, port)
            other = seen.get(key)
            if other is not None and other != m.id:
                raise ReconfigError(
                    Err.BAD_ARGUMENTS, f"server.{m.id} and server.{other} share the address {m.host}:{port}"
                )
            seen[key] = m.id


def reconfigure(current: Membership, joining: str | None, leaving: str | None, new_members: str | None) -> Membership:
    """The membership a reconfig request asks for (not yet checked for one-voter-at-a-time)."""
    if new_members is not None:
        items = [item for item in new_members.replace("\n", ",").split(",") if item.strip()]
        members = []
        for item in items:
            key = item.split("=", 1)[0].strip()
            if key == "version":
                continue
            members.append(_parse_server_item(item.strip()))
        try:
            result = Membership(tuple(members))
        except ValueError as e:
            raise ReconfigError(Err.BAD_ARGUMENTS, str(e)) from None
    else:
        result = current
        if leaving is not None:
            for text in leaving.split(","):
                if not _is_long(text):
                    raise ReconfigError(Err.MARSHALLING_ERROR, f"leaving server id {text!r} is not a number")
                result = result.without(int(text))
        if joining is not None:
            for item in joining.split(","):
                result = result.with_member(_parse_server_item(item))
    _check_addresses(result.members)
    if len(result.voters) < 2:
        raise ReconfigError(Err.BAD_ARGUMENTS, "Reconfig failed - new configuration must include at least 2 followers")
    return result


__all__ = [
    "BOOTSTRAP_VERSION",
    "OBSERVER",
    "PARTICIPANT",
    "Member",
    "Membership",
    "ReconfigError",
    "host_and_port",
    "parse_member",
    "reconfigure",
]
