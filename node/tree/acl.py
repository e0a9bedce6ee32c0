"""ACL checks as ZooKeeper makes them: permission bits, identity matching, fixupACL.

``check_acl`` is ZooKeeper's ``checkACL`` (world, digest, ip, sasl and super),
``fixup_acl`` its ``PrepRequestProcessor.fixupACL`` (validation and the
``auth`` scheme's expansion), ``digest_id`` the digest scheme's id.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from node.errors import Err, ZkError
from node.tree.records import ACL, Identity

# Identity schemes whose ids count as "authenticated" for the ``auth`` ACL
# scheme (ZooKeeper: ``ServerAuthenticationProvider.isAuthenticated``; ip is
# not, so a client with only its ip identity gets InvalidACL for ``auth``).
AUTHENTICATED_SCHEMES = frozenset({"digest", "sasl", "x509"})


def digest_id(user: str, password: str) -> str:
    """The digest-scheme id of ``user:password``: ``user:base64(sha1(user:password))``."""
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode('ascii')}"


_net_cache: dict[str, Any] = {}


def _ip_network(spec: str):
    """Parse an ip-scheme ACL id ("10.0.0.1" or "10.0.0.0/8"); None if invalid."""
    try:
        return _net_cache[spec]
    except KeyError:
        pass
    net = None
    addr, slash, bits = spec.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
        if slash:
            if not bits.isdigit() or int(bits) > ip.max_prefixlen:
                raise ValueError(bits)
            net = ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)
        else:
            net = ipaddress.ip_network(addr)
    except ValueError:
        net = None
    if len(_net_cache) < 4096:
        _net_cache[spec] = net
    return net


def _ip_matches(client_ip: str, acl_id: str) -> bool:
    net = _ip_network(acl_id)
    if net is None:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return ip.version == net.version and ip in net


# ZooKeeper's SASLAuthenticationProvider.isValid: the id parses as a Kerberos name
# (``KerberosName``: either no '@', or service[/host]@realm).
_KERBEROS_NAME = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)")


def _acl_id_valid(scheme: str, ident: str) -> bool:
    if scheme == "digest":
        parts = ident.split(":")
        while parts and parts[-1] == "":  # Java's String.split drops trailing empties
            parts.pop()
        return len(parts) == 2
    if scheme == "ip":
        return _ip_network(ident) is not None
    if scheme == "sasl":
        return "@" not in ident or _KERBEROS_NAME.fullmatch(ident) is not None
    return False


def check_acl(acl: Iterable[ACL], perm: int, identities: Iterable[Identity]) -> bool:
    """ZooKeeper's checkACL: may a holder of ``identities`` do ``perm`` here?

    An empty ACL allows everything; ("super", ...) allows everything;
    world:anyone matches all; digest and sasl ids match by equality; ip ids match the
    client's address against the entry's address or CIDR block.
    """
    acl = tuple(acl)
    if not acl:
        return True
    perm = int(perm)  # a Perm flag would make every `perms & perm` below a slow Flag operation
    idents = tuple(identities)
    for scheme, _ in idents:
        if scheme == "super":
            return True
    for entry in acl:
        if not entry.perms & perm:
            continue
        if entry.scheme == "world" and entry.id == "anyone":
            return True
        for scheme, ident in idents:
            if scheme != entry.scheme:
                continue
            if scheme == "ip":
                if _ip_matches(ident, entry.id):
                    return True
            elif ident == entry.id:
                return True
    return False


def fixup_acl(path: str, acl: Iterable[ACL], identities: Iterable[Identity]) -> tuple[ACL, ...]:
    """Validate a client's ACL list and expand ``auth`` (ZooKeeper's fixupACL).

    Raises ZkError(INVALID_ACL) for an empty list, an unknown scheme, a
    malformed digest/ip id, world with an id other than "anyone", or ``auth``
    when the creator has no authenticated (digest) identity.
    """
    uniq: list[ACL] = []
    for entry in acl:
        if entry not in uniq:
            uniq.append(entry)
    if not uniq:
        raise ZkError(Err.INVALID_ACL, f"empty ACL for {path}: give at least one entry, e.g. world:anyone")
    out: list[ACL] = []
    for entry in uniq:
        if entry.scheme == "world" and entry.id == "anyone":
            out.append(entry)
        elif entry.scheme == "auth":
            found = False
            for scheme, ident in identities:
                if scheme in AUTHENTICATED_SCHEMES:
                    found = True
                    out.append(ACL(entry.perms, scheme, ident))
            if not found:
                raise ZkError(
                    Err.INVALID_ACL, f"ACL 'auth' for {path} needs an authenticated (digest) identity; add auth first"
                )
        elif _acl_id_valid(entry.scheme, entry.id):
            out.append(entry)
        else:
            raise ZkError(
                Err.INVALID_ACL,
                f"invalid ACL {entry.scheme}:{entry.id} for {path}: "
                "schemes are world:anyone, auth, digest:user:hash, ip:addr[/bits], sasl:user",
            )
    return tuple(out)
