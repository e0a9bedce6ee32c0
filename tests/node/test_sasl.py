"""SASL DIGEST-MD5 (node/sasl.py): the RFC's own example, the exchange, the JAAS file, and kazoo.

The kazoo tests run the node in a background thread (as tests/node/test_server.py)
and need ``pure-sasl``, kazoo's SASL client (the dev extra installs it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig
from node.sasl import (
    REALM,
    DigestMd5Server,
    JaasError,
    SaslError,
    parse_directives,
    parse_jaas_users,
    response_value,
)
from node.tree.acl import fixup_acl
from node.tree.records import ACL

JAAS = """
// kazoo's test users
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="super_secret"
    user_jaasuser="jaas_password";
};
/* another login context, ignored */
Client { org.apache.zookeeper.server.auth.DigestLoginModule required username="x" password="y"; };
"""


def test_response_value_matches_rfc_2831_example() -> None:
    # RFC 2831 section 4: chris/secret on imap/elwood.innosoft.com
    args = ("chris", "elwood.innosoft.com", "secret", "OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk", "00000001", "auth")
    assert response_value(*args, "imap/elwood.innosoft.com") == "d388dad90d4bbd760a152321f2143af7"
    assert response_value(*args, "imap/elwood.innosoft.com", method="") == "ea40f60335c427b5527b84dbabcdfffd"


def _client_response(server: DigestMd5Server, user: str, password: str, **override: str) -> bytes:
    d = {
        "username": user,
        "realm": REALM,
        "nonce": server.nonce,
        "cnonce": "c-nonce",
        "nc": "00000001",
        "qop": "auth",
        "digest-uri": f"zookeeper/{REALM}",
    }
    d["response"] = response_value(user, REALM, password, d["nonce"], d["cnonce"], d["nc"], d["qop"], d["digest-uri"])
    d.update(override)
    return ",".join(f'{k}="{v}"' if k not in ("nc", "qop", "response") else f"{k}={v}" for k, v in d.items()).encode()


def test_exchange_authenticates_a_known_user_and_proves_the_server() -> None:
    server = DigestMd5Server({"jaasuser": "jaas_password"})
    challenge = parse_directives(server.step(b""))
    assert challenge["realm"] == REALM and challenge["qop"] == "auth" and challenge["nonce"] == server.nonce
    final = server.step(_client_response(server, "jaasuser", "jaas_password"))
    assert server.user == "jaasuser"
    rspauth = parse_directives(final)["rspauth"]
    expected = response_value(
        "jaasuser", REALM, "jaas_password", server.nonce, "c-nonce", "00000001", "auth", f"zookeeper/{REALM}", method=""
    )
    assert rspauth == expected
    with pytest.raises(SaslError, match="already complete"):
        server.step(b"")


@pytest.mark.parametrize(
    "user, password, override, error",
    [
        ("jaasuser", "wrong", {}, "wrong password"),
        ("nobody", "x", {}, "not in the JAAS config"),
        ("jaasuser", "jaas_password", {"nonce": "stale"}, "another nonce"),
        ("jaasuser", "jaas_password", {"qop": "auth-conf"}, "qop"),
        ("jaasuser", "jaas_password", {"digest-uri": "zookeeper/elsewhere"}, "digest-uri"),
        ("jaasuser", "jaas_password", {"nc": "00000002"}, "nonce count"),
    ],
)
def test_exchange_refuses(user: str, password: str, override: dict[str, str], error: str) -> None:
    server = DigestMd5Server({"jaasuser": "jaas_password"})
    server.step(b"")
    with pytest.raises(SaslError, match=error):
        server.step(_client_response(server, user, password, **override))
    assert server.user is None


@pytest.mark.parametrize("token", [b"username", b'username="x', b"\xff\xfe", b"a=1,a=2", b"username=x"])
def test_malformed_tokens_are_refused_with_a_reason(token: bytes) -> None:
    server = DigestMd5Server({"x": "y"})
    server.step(b"")
    with pytest.raises(SaslError, match="malformed|not UTF-8"):
        server.step(token)


def test_jaas_users_and_errors(tmp_path: Path) -> None:
    assert parse_jaas_users(JAAS) == {"super": "super_secret", "jaasuser": "jaas_password"}
    with pytest.raises(JaasError, match="no 'Server"):
        parse_jaas_users("Client { x required; };")
    with pytest.raises(JaasError, match="DigestLoginModule"):
        parse_jaas_users("Server { com.sun.security.auth.module.Krb5LoginModule required; };")
    with pytest.raises(JaasError, match="defines no user"):
        parse_jaas_users("Server { org.apache.zookeeper.server.auth.DigestLoginModule required; };")
    with pytest.raises(ConfigError, match="--jaas-config: cannot read the JAAS config"):
        NodeConfig(data_dir=tmp_path, jaas_config=str(tmp_path / "missing.conf")).validate()


def test_sasl_acl_ids_are_validated_as_zookeeper_validates_kerberos_names() -> None:
    for ok in ("jaasuser", "zookeeper/host@REALM", "user@REALM", ""):
        assert fixup_acl("/p", [ACL(31, "sasl", ok)], ())[0].id == ok
    for bad in ("a@b@c", "a/b/c@R"):
        with pytest.raises(Exception, match="invalid ACL sasl:"):
            fixup_acl("/p", [ACL(31, "sasl", bad)], ())


# --- through kazoo, against a running node ---


@pytest.fixture
def sasl_node(tmp_path: Path) -> Iterator:
    pytest.importorskip("puresasl", reason="pure-sasl (kazoo's SASL client) is not installed")
    from node.server import BackgroundNode
    from tests.node.test_server import make_cfg

    jaas = tmp_path / "jaas.conf"
    jaas.write_text(JAAS)
    n = BackgroundNode(make_cfg(tmp_path / "data", jaas_config=str(jaas)))
    n.start()
    try:
        yield n
    finally:
        n.stop()


def _client(hosts: str, user: str, password: str):
    from kazoo.client import KazooClient

    return KazooClient(
        hosts=hosts, timeout=5.0, sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": password}
    )


def _ends_auth_failed(client, timeout: float = 15.0) -> bool:
    """Start ``client`` and wait until its SASL exchange is refused (its state AUTH_FAILED).

    Not ``start()``: kazoo reports CONNECTED when the session opens, before the SASL exchange,
    so ``start()`` returns or raises "Connection time-out" by the exchange's timing, against
    ZooKeeper as against the node."""
    from kazoo.protocol.states import KeeperState

    failed = threading.Event()

    def listener(_state) -> None:
        if client.client_state == KeeperState.AUTH_FAILED:
            failed.set()

    client.add_listener(listener)
    client.start_async()
    return failed.wait(timeout)  # (then kazoo closes the client: its state moves on to CLOSED)


@pytest.mark.integration
def test_kazoo_sasl_user_owns_a_sasl_acl_and_others_are_refused(sasl_node) -> None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_acl

    owner = _client(sasl_node.hosts, "jaasuser", "jaas_password")
    other = KazooClient(hosts=sasl_node.hosts, timeout=5.0)
    bad = _client(sasl_node.hosts + "/chroot", "jaasuser", "not-the-password")
    try:
        owner.start(timeout=10)
        other.start(timeout=10)
        owner.create("/s", b"v", acl=[make_acl("sasl", credential="jaasuser", all=True)])
        assert owner.get("/s")[0] == b"v"
        with pytest.raises(NoAuthError):
            other.get("/s")
        # as ZooKeeper: the session connects, the SASL exchange fails, the client is AUTH_FAILED
        assert _ends_auth_failed(bad)
    finally:
        for c in (owner, other, bad):
            c.stop()
            c.close()


@pytest.mark.integration
def test_kazoo_sasl_against_a_node_without_jaas_is_auth_failed(tmp_path: Path) -> None:
    pytest.importorskip("puresasl", reason="pure-sasl (kazoo's SASL client) is not installed")

    from node.server import BackgroundNode
    from tests.node.test_server import make_cfg

    n = BackgroundNode(make_cfg(tmp_path / "data"))
    n.start()
    c = _client(n.hosts + "/x", "jaasuser", "jaas_password")
    try:
        assert _ends_auth_failed(c)
    finally:
        c.stop()
        c.close()
        n.stop()
