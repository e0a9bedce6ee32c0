"""The node's admin HTTP server: every endpoint, metrics parsing, the tree API through real client requests,
ACLs, stale versions, CSRF and the bind rule. The node runs in-process (tests/browser/launcher.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.error
import urllib.request

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from node.admin import http as admin
from node.admin import peers, security, tree_api
from node.admin.peers import ensemble_from_statuses, status_from_mntr
from node.metrics import Histogram, NodeMetrics, op_name
from node.tree import CreateOp, MultiOp, SetDataOp
from tests.browser.launcher import AdminNode

pytestmark = pytest.mark.integration


@pytest.fixture()
def node(tmp_path):
    n = AdminNode(tmp_path / "data").start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture()
def zk(node):
    client = KazooClient(hosts=node.hosts, timeout=10)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, raw, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def jcall(*args, **kwargs) -> tuple[int, dict]:
    status, raw, _ = call(*args, **kwargs)
    return status, json.loads(raw)


def csrf(node) -> dict:
    return {"X-Squall-CSRF": jcall(node.admin_url + "/api/csrf")[1]["csrf"]}


# ---------------------------------------------------------------- commands and metrics


def test_commands_lists_every_command(node):
    status, body = jcall(node.admin_url + "/commands")
    assert status == 200
    assert [c["name"] for c in body["commands"]] == list(admin.COMMANDS)
    assert all(c["url"].endswith("/commands/" + c["name"]) for c in body["commands"])


@pytest.mark.parametrize("name", admin.COMMANDS)
def test_every_command_answers_json(node, zk, name):
    zk.create("/watched", b"x")
    zk.get("/watched", watch=lambda ev: None)
    status, body = jcall(f"{node.admin_url}/commands/{name}")
    assert status == 200
    assert body["command"] == name
    sid = zk.client_id[0]
    checks = {
        "ruok": lambda b: b == {"command": "ruok", "error": None},
        "is_read_only": lambda b: b["read_only"] is False,
        "server_stats": lambda b: (
            b["server_stats"]["server_state"] == "standalone"
            and b["node_count"] >= 3
            and b["server_stats"]["last_processed_zxid"] > 0
            and "connections" not in b
        ),
        "stats": lambda b: (
            len(b["connections"]) >= 1 and b["secure_connections"] == [] and "session_id" not in b["connections"][0]
        ),
        "monitor": lambda b: (
            b["server_state"] == "standalone"
            and b["znode_count"] >= 3
            and b["watch_count"] >= 1
            and b["approximate_data_size"] > 0
            and b["open_file_descriptor_count"] > 0
        ),
        "configuration": lambda b: b["client_port"] == node.client_port and b["tick_time"] == 200,
        "connections": lambda b: any(c["session_id"] == sid for c in b["connections"]),
        "dirs": lambda b: b["datadir_size"] > 0 and b["datadir_size"] == b["logdir_size"],
        "watch_summary": lambda b: b["num_total_watches"] >= 1 and b["num_paths"] >= 1,
        "watches": lambda b: "/watched" in b["session_id_to_watched_paths"][str(sid)],
        "watches_by_path": lambda b: sid in b["path_to_session_ids"]["/watched"],
        "dump": lambda b: str(sid) in b["session_timeouts"],
        "environment": lambda b: "zookeeper.version" in b,
        "leader": lambda b: b["error"] == "server is not initialized",  # ZooKeeper's standalone answer
        "ensemble": lambda b: (
            b["mode"] == "standalone"
            and b["leader"] == b["server_id"] == 1
            and len(b["peers"]) == 1
            and b["peers"][0]["self"]
            and b["peers"][0]["lag"] == 0
            and b["peers"][0]["sessions"] >= 1
            and b["leader_changes"][0]["event"] == "started"
        ),
    }
    assert checks[name](body), body
    assert name == "leader" or body["error"] is None


@pytest.mark.parametrize(
    "alias,name",
    [
        ("mntr", "monitor"),
        ("srvr", "server_stats"),
        ("stat", "stats"),
        ("conf", "configuration"),
        ("cons", "connections"),
        ("envi", "environment"),
        ("isro", "is_read_only"),
        ("wchs", "watch_summary"),
        ("wchc", "watches"),
        ("wchp", "watches_by_path"),
        ("lead", "leader"),
    ],
)
def test_zookeepers_aliases_answer_as_the_primary_name(node, alias, name):
    status, body = jcall(f"{node.admin_url}/commands/{alias}")
    assert status == 200 and body["command"] == name


def test_unknown_command_is_404_and_lists_the_known_ones(node):
    status, body = jcall(node.admin_url + "/commands/nope")
    assert status == 404 and body["command"] == "nope" and body["error"].startswith("Unknown command: nope")
    assert "monitor" in body["error"] and "ensemble" in body["error"]


def test_metrics_use_a_registry_per_admin_server_not_the_global_one(node, zk, tmp_path):
    from prometheus_client import REGISTRY, generate_latest

    from tests.browser.launcher import AdminNode

    other = AdminNode(tmp_path / "other").start()
    try:
        zk.create("/only-on-the-first", b"")
        first = call(node.admin_url + "/metrics")
        second = call(other.admin_url + "/metrics")
    finally:
        other.stop()
    assert first[0] == second[0] == 200 and first[2]["Content-Type"].startswith("text/plain; version=0.0.4")

    def znodes(text: bytes) -> float:
        line = next(x for x in text.decode().splitlines() if x.startswith("squall_znodes "))
        return float(line.split()[1])

    assert znodes(first[1]) == znodes(second[1]) + 1  # each node's own numbers
    assert b"squall_" not in generate_latest(REGISTRY)  # nothing registered process-wide


def test_metrics_parse_with_the_prometheus_parser(node, zk):
    from prometheus_client.parser import text_string_to_metric_families

    zk.create("/m", b"1")
    zk.set("/m", b"2")
    zk.exists("/m", watch=lambda ev: None)
    status, raw, headers = call(node.admin_url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(raw.decode())}

    def value(name, **labels):
        for s in families[name].samples:
            if all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no sample {name} {labels}")

    assert value("squall_znodes") >= 3
    assert value("squall_sessions") >= 1
    assert value("squall_connections") >= 1
    assert value("squall_watches") >= 1
    assert families["squall_txns"].type == "counter"
    assert value("squall_txns", op="create") >= 1 and value("squall_txns", op="setData") >= 1
    assert families["squall_write_latency_seconds"].type == "histogram"
    count = [
        s
        for s in families["squall_write_latency_seconds"].samples
        if s.name.endswith("_count") and s.labels["op"] == "setData"
    ]
    assert count and count[0].value >= 1
    assert families["squall_fsync_latency_seconds"].type == "histogram"
    assert families["squall_fsyncs"].type == "counter" and value("squall_fsyncs") >= 1
    assert families["squall_role_changes"].type == "counter"
    assert value("squall_info", role="standalone") == 1
    # every request is counted by operation, reads included
    zk.get("/m")
    zk.get_children("/")
    families = {f.name: f for f in text_string_to_metric_families(call(node.admin_url + "/metrics")[1].decode())}
    assert families["squall_requests"].type == "counter"
    assert value("squall_requests", op="getData") >= 1 and value("squall_requests", op="create") >= 1
    children = [s.value for s in families["squall_requests"].samples if s.labels["op"].startswith("getChildren")]
    assert sum(children) >= 1
    handled = [
        s
        for s in families["squall_request_handling_seconds"].samples
        if s.name.endswith("_count") and s.labels["op"] == "getData"
    ]
    assert handled and handled[0].value >= 1


# ---------------------------------------------------------------- tree API


def test_tree_create_read_edit_delete_seen_by_kazoo(node, zk):
    h = csrf(node)
    status, body = jcall(node.admin_url + "/api/tree/create", "POST", {"path": "/app", "data": '{"a": [1, 2]}'}, h)
    assert status == 201 and body["data"]["kind"] == "json" and '"a": [' in body["data"]["pretty"]
    assert zk.get("/app")[0] == b'{"a": [1, 2]}'
    status, body = jcall(node.admin_url + "/api/tree/set", "POST", {"path": "/app", "data": "v2", "version": 0}, h)
    assert status == 200 and body["stat"]["version"] == 1
    data, stat = zk.get("/app")
    assert data == b"v2" and stat.version == 1
    status, body = jcall(node.admin_url + "/api/tree?path=/app")
    assert status == 200 and body["data"] == {"kind": "text", "text": "v2", "size": 2, "hex": "7632"}
    assert body["stat"]["mzxid"] == stat.mzxid and body["acl"] == [
        {"scheme": "world", "id": "anyone", "perms": "cdrwa", "perms_bits": 31}
    ]
    status, body = jcall(node.admin_url + "/api/tree/delete", "POST", {"path": "/app", "version": 1}, h)
    assert status == 200
    assert zk.exists("/app") is None


def test_stale_version_edit_is_refused_with_a_clear_message(node, zk):
    h = csrf(node)
    zk.create("/cfg", b"one")
    zk.set("/cfg", b"someone else")  # a concurrent change: now version 1
    status, body = jcall(node.admin_url + "/api/tree/set", "POST", {"path": "/cfg", "data": "mine", "version": 0}, h)
    assert status == 409 and body["code"] == "bad-version"
    assert (
        "changed since you loaded it" in body["error"]
        and "version 0" in body["error"]
        and "now at version 1" in body["error"]
    )
    assert zk.get("/cfg")[0] == b"someone else"
    status, body = jcall(node.admin_url + "/api/tree/delete", "POST", {"path": "/cfg", "version": 0}, h)
    assert status == 409 and body["code"] == "bad-version"
    assert zk.exists("/cfg") is not None


def test_binary_data_is_shown_as_hex_and_edited_as_hex(node, zk):
    zk.create("/bin", b"\x00\x01\xfe\xff")
    status, body = jcall(node.admin_url + "/api/tree?path=/bin")
    assert body["data"]["kind"] == "binary" and "00 01 fe ff" in body["data"]["text"]
    status, _ = jcall(
        node.admin_url + "/api/tree/set",
        "POST",
        {"path": "/bin", "data": "de ad be ef", "encoding": "hex", "version": 0},
        csrf(node),
    )
    assert status == 200 and zk.get("/bin")[0] == b"\xde\xad\xbe\xef"


def test_recursive_delete_and_not_empty(node, zk):
    h = csrf(node)
    zk.create("/tree/a/b", b"", makepath=True)
    status, body = jcall(node.admin_url + "/api/tree/delete", "POST", {"path": "/tree"}, h)
    assert status == 409 and body["code"] == "not-empty" and "recursive" in body["error"]
    status, _ = jcall(node.admin_url + "/api/tree/delete", "POST", {"path": "/tree", "recursive": True}, h)
    assert status == 200 and zk.exists("/tree") is None
    status, body = jcall(node.admin_url + "/api/tree/delete", "POST", {"path": "/"}, h)
    assert status == 400


def test_acls_are_honoured_and_digest_credentials_work(node, zk):
    h = csrf(node)
    zk.create("/secret", b"hidden", acl=[make_digest_acl("alice", "pw", all=True)])
    status, body = jcall(node.admin_url + "/api/tree?path=/secret")
    assert status == 403 and body["code"] == "no-auth" and "user:password" in body["error"]
    status, body = jcall(node.admin_url + "/api/tree?path=/secret", headers={"X-Squall-Digest": "alice:wrong"})
    assert status == 403
    status, body = jcall(node.admin_url + "/api/tree?path=/secret", headers={"X-Squall-Digest": "alice:pw"})
    assert status == 200 and body["data"]["text"] == "hidden"
    digest = base64.b64encode(hashlib.sha1(b"alice:pw").digest()).decode()
    assert body["acl"] == [{"scheme": "digest", "id": f"alice:{digest}", "perms": "cdrwa", "perms_bits": 31}]
    status, _ = jcall(node.admin_url + "/api/tree/set", "POST", {"path": "/secret", "data": "x", "version": 0}, h)
    assert status == 403
    status, _ = jcall(
        node.admin_url + "/api/tree/set",
        "POST",
        {"path": "/secret", "data": "x", "version": 0},
        {**h, "X-Squall-Digest": "alice:pw"},
    )
    assert status == 200
    # an ACL given in the create form: only bob may read the new znode
    status, body = jcall(
        node.admin_url + "/api/tree/create",
        "POST",
        {"path": "/bobs", "data": "b", "acl": "auth::cdrwa"},
        {**h, "X-Squall-Digest": "bob:pw2"},
    )
    assert status == 201 and body["acl"][0]["id"].startswith("bob:")
    assert jcall(node.admin_url + "/api/tree?path=/bobs")[0] == 403


def test_create_rejects_bad_acl_and_bad_paths(node):
    h = csrf(node)
    status, body = jcall(node.admin_url + "/api/tree/create", "POST", {"path": "/x", "acl": "world:anyone:zz"}, h)
    assert status == 400 and "not one of c, d, r, w, a" in body["error"]
    status, body = jcall(node.admin_url + "/api/tree/create", "POST", {"path": "/x/."}, h)
    assert status == 400 and "relative paths" in body["error"]
    status, body = jcall(node.admin_url + "/api/tree/create", "POST", {"path": "/bad\x00name"}, h)
    assert status == 400 and body["code"] == "bad-arguments"
    status, body = jcall(node.admin_url + "/api/tree/create", "POST", {"path": "/missing/child"}, h)
    assert status == 404
    status, body = jcall(node.admin_url + "/api/tree/set", "POST", {"path": "/", "data": "x", "version": "1"}, h)
    assert status == 400 and "version must be an integer" in body["error"]


def test_search_by_path(node, zk):
    zk.create("/services/alpha/config", b"", makepath=True)
    zk.create("/services/beta", b"")
    status, body = jcall(node.admin_url + "/api/search?q=ALPHA")
    assert status == 200 and body["hits"] == ["/services/alpha", "/services/alpha/config"]
    assert jcall(node.admin_url + "/api/search?q=")[0] == 400


# ---------------------------------------------------------------- CSRF and tokens


def test_state_changing_requests_need_the_csrf_token_and_same_origin(node, zk):
    url = node.admin_url + "/api/tree/create"
    status, body = jcall(url, "POST", {"path": "/csrf"})
    assert status == 403 and body["code"] == "csrf-token"
    status, body = jcall(url, "POST", {"path": "/csrf"}, {"X-Squall-CSRF": "guess"})
    assert status == 403
    status, body = jcall(url, "POST", {"path": "/csrf"}, {**csrf(node), "Origin": "http://evil.example"})
    assert status == 403 and body["code"] == "csrf-origin"
    assert zk.exists("/csrf") is None
    assert jcall(url, "POST", {"path": "/csrf"}, {**csrf(node), "Origin": node.admin_url})[0] == 201


def test_pages_carry_the_csrf_token_and_assets_are_local(node):
    status, raw, headers = call(node.admin_url + "/ui/tree")
    html = raw.decode()
    assert status == 200 and 'name="squall-csrf"' in html
    assert "http://" not in html.replace(node.admin_url, "") and "https://" not in html  # no CDN
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for page in (
        "/ui/ensemble",
        "/ui/status",
        "/static/admin.css",
        "/static/tree.js",
        "/static/common.js",
        "/static/ensemble.js",
    ):
        assert call(node.admin_url + page)[0] == 200, page
    assert call(node.admin_url + "/static/../http.py")[0] == 404


def test_non_loopback_bind_without_token_is_refused_at_startup():
    with pytest.raises(admin.AdminConfigError, match="refusing to serve the admin API on 0.0.0.0") as info:
        asyncio.run(admin.start_admin(object(), "0.0.0.0", 0, token=None))
    assert "--admin-token" in str(info.value) and "127.0.0.1" in str(info.value)
    with pytest.raises(admin.AdminConfigError):
        asyncio.run(admin.start_admin(object(), "192.0.2.10", 0, token=""))


def test_with_a_token_every_request_needs_it(tmp_path):
    n = AdminNode(tmp_path / "data", admin_host="0.0.0.0", token="token-1234567").start()
    try:
        url = f"http://127.0.0.1:{n.admin_url.rsplit(':', 1)[1]}"
        assert call(url + "/commands/ruok")[0] == 401
        assert call(url + "/commands/ruok", headers={"Authorization": "Bearer nope-nope-nope"})[0] == 401
        assert jcall(url + "/commands/ruok", headers={"Authorization": "Bearer token-1234567"}) == (
            200,
            {"command": "ruok", "error": None},
        )
        assert call(url + "/metrics", headers={"X-Squall-Token": "token-1234567"})[0] == 200
    finally:
        n.stop()


def test_browser_login_with_the_token_in_the_url_sets_a_cookie_and_redirects(tmp_path):
    import http.client

    n = AdminNode(tmp_path / "data", admin_host="0.0.0.0", token="token-1234567").start()
    try:
        port = int(n.admin_url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            conn.request("GET", "/tree?token=token-1234567&path=%2F")
            resp = conn.getresponse()
            resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        assert resp.status == 302, resp.status  # was a 500 with a yarl that has no URL.without_query
        assert headers["location"] == "/tree?path=/"
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == "squall_admin_token=token-1234567"
        assert call(f"http://127.0.0.1:{port}/commands/ruok", headers={"Cookie": cookie})[0] == 200
        assert call(f"http://127.0.0.1:{port}/?token=wrong-wrong-wrong")[0] == 401
    finally:
        n.stop()


# ---------------------------------------------------------------- pure helpers


def test_describe_data_kinds():
    assert tree_api.describe_data(None)["kind"] == "null"
    assert tree_api.describe_data(b"hello")["kind"] == "text"
    j = tree_api.describe_data(b'{"k":1}')
    assert j["kind"] == "json" and j["pretty"] == '{\n  "k": 1\n}'
    assert tree_api.describe_data(b"{not json")["kind"] == "text"
    b = tree_api.describe_data(b"\x00abc")
    assert b["kind"] == "binary" and b["text"].startswith("00000000  00 61 62 63")
    assert tree_api.describe_data(b"\xff\xfe")["kind"] == "binary"


def test_parse_acl_lines():
    assert tree_api.parse_acl_lines("") == [("world", "anyone", 31)]
    assert tree_api.parse_acl_lines("digest:bob:abc=:rw\nip:10.0.0.1:r") == [
        ("digest", "bob:abc=", 3),
        ("ip", "10.0.0.1", 1),
    ]
    with pytest.raises(ValueError, match="expected scheme:id:perms"):
        tree_api.parse_acl_lines("world")
    with pytest.raises(ValueError, match="scheme 'x509'"):
        tree_api.parse_acl_lines("x509:me:r")


def test_role_tracker_counts_changes():
    rt = peers.RoleTracker()
    rt.observe(1, "follower", 2, 1)
    rt.observe(2, "follower", 2, 1)
    rt.observe(3, "leader", 1, 2)
    assert rt.role_changes == 1
    assert [c["event"] for c in rt.changes] == ["started", "changed"]
    assert rt.changes[-1]["previous"] == {"role": "follower", "leader": 2, "epoch": 1}


def test_histogram_buckets_are_cumulative():
    h = Histogram(buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    samples = h.samples({})
    assert [s[2] for s in samples if s[0] == "_bucket"] == [1, 2, 3]
    assert samples[-1] == ("_count", {}, 3)


def test_node_metrics_hooks_count_and_time_what_the_shell_reports():
    m = NodeMetrics()
    m.txn("setData")
    m.txn("setData")
    m.write_done("setData", 0.002)
    m.fsync_done(0.001)
    assert m.txns == {"setData": 2} and m.fsyncs == 1
    assert m.write_latency["setData"].samples({})[-1] == ("_count", {}, 1)
    assert m.fsync.samples({})[-1] == ("_count", {}, 1)
    assert [op_name(op) for op in (SetDataOp("/a", b""), CreateOp("/a", b"", ()), MultiOp(()))] == [
        "setData",
        "create",
        "multi",
    ]


@pytest.mark.integration
def test_a_write_is_timed_from_arrival_to_its_written_reply(node, zk):
    """The shell's hooks: a write counted when handed to the replica, timed once its reply is written
    (recorded right after the write, in the same event-loop callback: the answer to a later request on
    the same connection proves that callback finished)."""
    before = node.server.metrics.write_latency.get("create")
    n0 = before.count if before is not None else 0
    zk.create("/timed", b"x")
    assert zk.exists("/timed") is not None  # served after the create's callback ended
    m = node.server.metrics
    assert m.txns["create"] >= 1 and m.write_latency["create"].count == n0 + 1 and m.fsyncs >= 1


def test_ensemble_view_from_a_node_that_reports_peers():
    class Ensemble:
        def ensemble_view(self):
            return {
                "mode": "follower",
                "server_id": 2,
                "epoch": 3,
                "last_zxid": (3 << 32) + 5,
                "leader": 1,
                "peers": [
                    {"id": 1, "role": "leader", "last_zxid": (3 << 32) + 9},
                    {"id": 2, "role": "follower", "last_zxid": (3 << 32) + 5},
                    {"id": 3, "role": "follower", "last_zxid": (2 << 32) + 7, "state": "down"},
                ],
            }

    view = peers.ensemble_view(Ensemble(), peers.four_letter.AdminView())
    lags = {p["id"]: p["lag"] for p in view["peers"]}
    assert lags == {1: 0, 2: 4, 3: None}
    assert [p["self"] for p in view["peers"]] == [False, True, False]


def test_foreign_host_header_is_refused_without_token(node):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not drive the admin API."""
    status, body = jcall(node.admin_url + "/commands/ruok", headers={"Host": "evil.example:8080"})
    assert status == 403 and body["code"] == "bad-host"
    assert jcall(node.admin_url + "/commands/ruok", headers={"Host": "localhost:1"})[0] == 200
    assert security.host_is_loopback("[::1]:80") and security.host_is_loopback("127.0.0.1")
    assert not security.host_is_loopback("10.0.0.1:80") and not security.host_is_loopback(None)


def test_ensemble_from_replica_statuses():
    z = lambda n: (2 << 32) + n  # noqa: E731
    raw = ensemble_from_statuses(
        2,
        {1: "h:1", 2: "h:2", 3: "h:3"},
        {
            1: {"role": "leader", "epoch": 2, "leader": 1, "last_zxid": z(10), "sessions": 4, "connections": 2},
            2: {"role": "follower", "epoch": 2, "leader": 1, "last_zxid": z(7), "sessions": 4, "connections": 1},
            3: None,
        },
    )
    assert raw["mode"] == "follower" and raw["leader"] == 1 and raw["epoch"] == 2

    class Ensemble:
        def ensemble_view(self):
            return raw

    view = peers.ensemble_view(Ensemble(), peers.four_letter.AdminView())
    by_id = {p["id"]: p for p in view["peers"]}
    assert by_id[1]["lag"] == 0 and by_id[2]["lag"] == 3 and by_id[3]["lag"] is None
    assert by_id[3]["state"] == "unreachable" and by_id[2]["self"] and not by_id[1]["self"]


def test_status_from_mntr_reads_only_what_the_member_reported():

    text = (
        "zk_version\tx\nzk_server_state\tfollower\nzk_num_alive_connections\t2\nzk_last_zxid\t0x20000000a\n"
        "zk_global_sessions\t5\nzk_peer_state\tfollower\nzk_epoch\t2\nzk_leader_id\t3\n"
    )
    assert status_from_mntr(text) == {
        "role": "follower",
        "epoch": 2,
        "leader": 3,
        "last_zxid": (2 << 32) + 10,
        "sessions": 5,
        "connections": 2,
    }
    looking = status_from_mntr("zk_server_state\tlooking\nzk_peer_state\tlooking\nzk_leader_id\t0\n")
    assert looking["leader"] is None and looking["last_zxid"] is None and looking["role"] == "looking"
    assert status_from_mntr("") is None and status_from_mntr("imok") is None


def test_a_member_never_asked_is_unknown_not_unreachable():
    raw = ensemble_from_statuses(1, {1: "h:1", 2: "h:2"}, {1: {"role": "leader", "leader": 1}})
    assert [(p["id"], p["state"]) for p in raw["peers"]] == [(1, "serving"), (2, "unknown")]
    assert "last_zxid" not in raw["peers"][1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ensemble_command_on_a_real_three_member_ensemble(tmp_path):
    """/commands/ensemble of a follower of a real ensemble: its peers as they report themselves over mntr."""
    from tests.browser.launcher import AdminEnsemble
    from tests.node.servers import four_letter_word

    ens = AdminEnsemble(tmp_path)
    zk = None
    try:
        ens.start()
        view = ens.wait_settled(1, {1, 2, 3})
        leader = view["leader"]
        follower = next(i for i in (1, 2, 3) if i != leader)
        zk = KazooClient(hosts=ens.members[leader].address, timeout=10)
        zk.start(timeout=30)
        for i in range(5):
            zk.create(f"/e{i}", b"x")
        leader_zxid = int(
            next(
                line
                for line in four_letter_word("127.0.0.1", ens.members[leader].port, "srvr").splitlines()
                if line.startswith("Zxid:")
            ).split(":")[1],
            16,
        )
        # the follower's view catches up with the leader's zxid (bounded poll, no timing asserted)
        import time

        deadline, view = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            view = ens.wait_settled(follower, {1, 2, 3})
            peers = {p["id"]: p for p in view["peers"]}
            if all(
                isinstance(peers[i].get("last_zxid"), int) and peers[i]["last_zxid"] >= leader_zxid for i in (1, 2, 3)
            ):
                break
            time.sleep(0.3)
        assert view is not None and view["command"] == "ensemble" and view["error"] is None
        assert view["server_id"] == follower and view["mode"] == "follower" and view["leader"] == leader
        peers = {p["id"]: p for p in view["peers"]}
        assert sorted(peers) == [1, 2, 3]
        assert [peers[i]["role"] for i in (1, 2, 3)].count("leader") == 1 and peers[leader]["role"] == "leader"
        assert peers[follower]["self"] and not peers[leader]["self"]
        assert peers[leader]["address"] == ens.members[leader].address
        for i in (1, 2, 3):
            assert peers[i]["last_zxid"] >= leader_zxid, peers[i]
            assert peers[i]["lag"] == 0 or isinstance(peers[i]["lag"], int) and peers[i]["lag"] >= 0
            assert peers[i]["sessions"] >= 1  # kazoo's session (plus the admin's own, if any)
            assert isinstance(peers[i]["connections"], int)
        assert peers[leader]["connections"] >= 1  # the kazoo client is connected to the leader
        assert view["leader_changes"] and view["leader_changes"][0]["event"] == "started"
        # the other admin commands answer on an ensemble member too
        status, mntr = jcall(ens.admin_url(follower) + "/commands/mntr")
        assert status == 200 and mntr["peer_state"] == "follower" and mntr["leader_id"] == leader
        status, lead = jcall(ens.admin_url(follower) + "/commands/leader")
        assert status == 200 and lead["is_leader"] is False and lead["leader_id"] == leader, lead
        assert lead["leader_ip"] == "127.0.0.1"
        # a killed member is reported unreachable, with no numbers
        other = next(i for i in (1, 2, 3) if i not in (leader, follower))
        ens.kill(other)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            view = ens.ensemble(follower)
            gone = next((p for p in (view or {}).get("peers", []) if p["id"] == other), None)
            if gone is not None and gone["state"] == "unreachable":
                break
            time.sleep(0.3)
        assert gone is not None and gone["state"] == "unreachable" and "last_zxid" not in gone, view
    finally:
        if zk is not None:
            try:
                zk.stop()
                zk.close()
            except Exception:  # noqa: BLE001
                pass
        ens.kill_all()
