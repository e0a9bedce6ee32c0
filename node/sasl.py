"""SASL DIGEST-MD5 authentication, as ZooKeeper's server offers it, and its JAAS user list.

ZooKeeper authenticates SASL clients (request opcode 102, ``GetSASLRequest`` /
``SetSASLResponse``) through Java's SASL server with the users of the
``Server`` section of its JAAS file (``-Djava.security.auth.login.config``)::

    Server {
        org.apache.zookeeper.server.auth.DigestLoginModule required
        user_super="super_secret"
        user_jaasuser="jaas_password";
    };

``squall node --jaas-config FILE`` reads the same file. The mechanism is
DIGEST-MD5 (RFC 2831) with ZooKeeper's fixed realm and server name
``zk-sasl-md5`` and quality of protection ``auth`` (authentication only; no
integrity or confidentiality layer, which ZooKeeper's clients do not ask
for). A successful exchange gives the connection the identity
``("sasl", username)``, matched by ACL entries ``sasl:username``. Kerberos
(GSSAPI) is not offered.

No library offers the server side of DIGEST-MD5 in Python (``pure-sasl`` is
a client), so the exchange is written here from the RFC: a challenge, the
client's response checked against the password, and ``rspauth`` proving the
server knew it too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

REALM = "zk-sasl-md5"  # ZooKeeper's SecurityUtils: DIGEST-MD5 always uses this server name and realm
SERVICE = "zookeeper"
QOP = "auth"


class SaslError(ValueError):
    """A SASL exchange failed (bad credentials or a malformed token); the connection gets AuthFailed."""


class JaasError(ValueError):
    """A JAAS file that cannot be used; the message names the file and the problem."""


# --------------------------------------------------------------------------- JAAS


_SECTION = re.compile(r"(\w+)\s*\{(.*?)\}\s*;", re.S)
_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse_jaas_users(text: str, source: str = "JAAS config") -> dict[str, str]:
    """The ``user_NAME="password"`` options of the ``Server`` section's DigestLoginModule."""
    sections = {name: body for name, body in _SECTION.findall(_strip_comments(text))}
    if "Server" not in sections:
        found = ", ".join(sorted(sections)) or "none"
        raise JaasError(f"{source}: no 'Server {{ ... }};' section (sections found: {found})")
    body = sections["Server"]
    if "DigestLoginModule" not in body:
        raise JaasError(
            f"{source}: the Server section has no org.apache.zookeeper.server.auth.DigestLoginModule"
            " (the only login module squall supports: SASL DIGEST-MD5)"
        )
    users = {
        key[len("user_") :]: value.replace('\\"', '"').replace("\\\\", "\\")
        for key, value in _OPTION.findall(body)
        if key.startswith("user_") and len(key) > len("user_")
    }
    if not users:
        raise JaasError(f'{source}: the Server section defines no user (options user_NAME="password")')
    return users


def load_jaas_users(path: str | Path) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise JaasError(f"cannot read the JAAS config {path}: {exc.strerror or exc}") from exc
    return parse_jaas_users(text, str(path))


# --------------------------------------------------------------------------- DIGEST-MD5


def parse_directives(token: bytes) -> dict[str, str]:
    """``k=v,k="quoted, \\"v\\""`` -> dict (RFC 2831 section 7.1's digest-response syntax)."""
    text = token.decode("utf-8")
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise SaslError(f"malformed DIGEST-MD5 response near {text[i : i + 20]!r}: no '='")
        key = text[i:eq].strip().lower()
        i = eq + 1
        if i < n and text[i] == '"':
            i += 1
            value = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                raise SaslError(f"malformed DIGEST-MD5 response: unterminated quoted value of {key!r}")
            i += 1
            val = "".join(value)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            val = text[i:end].strip()
            i = end
        if key in out:
            raise SaslError(f"malformed DIGEST-MD5 response: directive {key!r} appears twice")
        out[key] = val
    return out


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def response_value(
    username: str,
    realm: str,
    password: str,
    nonce: str,
    cnonce: str,
    nc: str,
    qop: str,
    digest_uri: str,
    method: str = "AUTHENTICATE",
    authzid: str | None = None,
) -> str:
    """RFC 2831 section 2.1.2.1's response-value (``method`` "" gives rspauth's)."""
    key = hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()
    a1 = key + f":{nonce}:{cnonce}".encode() + (b"" if authzid is None else f":{authzid}".encode())
    a2 = f"{method}:{digest_uri}".encode()
    return _md5_hex(f"{_md5_hex(a1)}:{nonce}:{nc}:{cnonce}:{qop}:{_md5_hex(a2)}".encode())


@dataclass
class DigestMd5Server:
    """One connection's DIGEST-MD5 exchange: ``step`` each client token until ``user`` is set."""

    users: dict[str, str]
    realm: str = REALM
    server_name: str = REALM
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    challenged: bool = False
    user: str | None = None

    def challenge(self) -> bytes:
        return (f'realm="{self.realm}",nonce="{self.nonce}",qop="{QOP}",charset=utf-8,algorithm=md5-sess').encode()

    def step(self, token: bytes) -> bytes:
        """The server's answer to ``token``; raises SaslError when authentication fails."""
        if self.user is not None:
            raise SaslError("the SASL exchange is already complete")
        if not self.challenged:
            # the client's first token is empty (DIGEST-MD5 starts with the server's challenge)
            self.challenged = True
            return self.challenge()
        try:
            d = parse_directives(token)
        except UnicodeDecodeError as exc:
            raise SaslError("malformed DIGEST-MD5 response: not UTF-8") from exc
        for key in ("username", "nonce", "cnonce", "nc", "response"):
            if key not in d:
                raise SaslError(f"malformed DIGEST-MD5 response: no {key!r} directive")
        qop = d.get("qop", QOP)
        if qop != QOP:
            raise SaslError(f"DIGEST-MD5 qop {qop!r} is not offered; offered: {QOP}")
        if d["nonce"] != self.nonce:
            raise SaslError("DIGEST-MD5 response is for another nonce")
        if d.get("realm", self.realm) != self.realm:
            raise SaslError(f"DIGEST-MD5 realm {d.get('realm')!r} is not {self.realm!r}")
        if d["nc"] != "00000001":
            raise SaslError(f"DIGEST-MD5 nonce count {d['nc']!r} is not 00000001")
        expected_uri = f"{SERVICE}/{self.server_name}"
        uri = d.get("digest-uri", "")
        if uri != expected_uri:
            raise SaslError(f"DIGEST-MD5 digest-uri {uri!r} is not {expected_uri!r}")
        username = d["username"]
        password = self.users.get(username)
        if password is None:
            raise SaslError(f"SASL user {username!r} is not in the JAAS config")
        authzid = d.get("authzid")
        if authzid is not None and authzid != username:
            raise SaslError(f"SASL user {username!r} may not act as {authzid!r}")
        args = (username, self.realm, password, self.nonce, d["cnonce"], d["nc"], qop, uri)
        if not hmac.compare_digest(response_value(*args, authzid=authzid).encode(), d["response"].lower().encode()):
            raise SaslError(f"SASL user {username!r}: wrong password")
        self.user = username
        return f"rspauth={response_value(*args, method='', authzid=authzid)}".encode()


__all__ = [
    "DigestMd5Server",
    "JaasError",
    "REALM",
    "SaslError",
    "load_jaas_users",
    "parse_directives",
    "parse_jaas_users",
    "response_value",
]
