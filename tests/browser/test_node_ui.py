"""The node's web UI in a real browser: create, edit, delete a znode and see it with kazoo; a stale edit is
refused with its message; digest credentials open a protected znode; the ensemble and status pages."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from tests.browser.launcher import AdminNode

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]


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


def open_tree(page, node, path: str = "/") -> None:
    page.goto(f"{node.admin_url}/ui/tree#{path}")
    page.wait_for_function("p => document.getElementById('znode-path').textContent === p", arg=path)


def test_create_edit_delete_through_the_ui_seen_by_kazoo(page, node, zk, screenshot):
    open_tree(page, node, "/")
    screenshot("node-tree-root")
    page.click("#create-box summary")
    page.fill("#create-name", "webapp")
    page.fill("#create-data", '{"replicas": 3}')
    page.click("#create-button")
    page.wait_for_function("() => document.getElementById('znode-path').textContent === '/webapp'")
    data, stat = zk.get("/webapp")
    assert data == b'{"replicas": 3}' and stat.version == 0
    assert page.inner_text("#data-kind") == "json"
    assert '"replicas": 3' in page.inner_text("#data-view")
    assert page.inner_text("#acl-table tbody").split() == ["world", "anyone", "cdrwa"]
    screenshot("node-tree-created")

    page.fill("#edit-data", "edited in the browser")
    page.click("#save-button")
    # the message of the create is still shown (and .ok): wait for the save's own message
    page.wait_for_function("() => document.getElementById('message').textContent.includes('now version')")
    assert page.is_visible("#message.ok")
    assert "now version 1" in page.inner_text("#message")
    data, stat = zk.get("/webapp")
    assert data == b"edited in the browser" and stat.version == 1
    assert page.inner_text("#edit-version") == "1"
    assert page.inner_text("#stat-table tr[data-field=version] td:last-child") == "1"
    screenshot("node-tree-edited")

    zk.create("/webapp/child", b"c")  # the page, still open on /webapp, has not seen this child
    page.click("#delete-box summary")
    page.check("#delete-recursive")
    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#delete-button")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('deleted /webapp')")
    assert dialogs and dialogs[0] == "Delete /webapp and everything under it (1 children)?"
    assert zk.exists("/webapp") is None
    assert page.inner_text("#znode-path") == "/"
    screenshot("node-tree-deleted")


def test_stale_version_edit_is_refused_and_the_message_shown(page, node, zk, screenshot):
    zk.create("/race", b"original")
    open_tree(page, node, "/race")
    assert page.inner_text("#edit-version") == "0"
    zk.set("/race", b"changed by another client")  # after the page loaded version 0
    page.fill("#edit-data", "my stale edit")
    page.click("#save-button")
    page.wait_for_selector("#message.error")
    message = page.inner_text("#message")
    assert "changed since you loaded it" in message and "now at version 1" in message
    assert zk.get("/race")[0] == b"changed by another client"
    screenshot("node-tree-stale-edit")


def test_digest_credentials_open_a_protected_znode(page, node, zk, screenshot):
    zk.create("/vault", b"gold", acl=[make_digest_acl("alice", "pw", all=True)])
    page.goto(f"{node.admin_url}/ui/tree#/vault")
    page.wait_for_selector("#message.error")
    assert "not authorised" in page.inner_text("#message")
    page.fill("#auth-input", "alice:pw")
    page.click("#auth-apply")
    page.wait_for_function("() => document.getElementById('znode-path').textContent === '/vault'")
    assert page.inner_text("#data-view") == "gold"
    assert page.is_hidden("#message")
    assert page.inner_text("#auth-state") == "as alice"
    page.fill("#edit-data", "silver")
    page.click("#save-button")
    page.wait_for_selector("#message.ok")
    alice = KazooClient(hosts=node.hosts, auth_data=[("digest", "alice:pw")])
    alice.start(timeout=15)
    try:
        assert alice.get("/vault")[0] == b"silver"
    finally:
        alice.stop()
        alice.close()
    screenshot("node-tree-acl")


def test_search_by_path_in_the_ui(page, node, zk):
    zk.create("/services/payments/config", b"", makepath=True)
    open_tree(page, node, "/")
    page.fill("#search-q", "payments")
    page.click("#search-form button")
    page.wait_for_selector("#search-hits li")
    assert page.inner_text("#search-hits").split() == ["/services/payments", "/services/payments/config"]
    page.click("#search-hits a[data-path='/services/payments/config']")
    page.wait_for_function("() => document.getElementById('znode-path').textContent === '/services/payments/config'")


def test_ensemble_page_shows_the_node_as_leader(page, node, zk, screenshot):
    page.goto(f"{node.admin_url}/ui/ensemble")
    row = page.wait_for_selector("#peers tbody tr[data-peer='1']")
    assert row.get_attribute("data-role") == "standalone"
    assert "leader" in (row.get_attribute("class") or "")
    assert page.inner_text("#ens-mode") == "standalone"
    assert page.inner_text("#ens-leader") == "id 1"
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    assert cells[0] == "1" and cells[2] == "standalone" and cells[5] == "0"  # lag 0
    assert int(cells[6]) >= 1  # the kazoo session
    assert "started" in page.inner_text("#changes tbody")
    # live refresh: a write moves the zxid shown without reloading the page
    before = page.inner_text("#ens-zxid")
    zk.create("/bump", b"")
    page.wait_for_function("z => document.getElementById('ens-zxid').textContent !== z", arg=before, timeout=15_000)
    screenshot("node-ensemble")


@pytest.mark.timeout(240)
def test_ensemble_page_shows_the_leader_and_changes_after_the_leader_is_killed(page, tmp_path, screenshot):
    """A real 3-member ensemble (subprocesses): a follower's page shows the leader; SIGKILL it; a new one shows."""
    from tests.browser.launcher import AdminEnsemble

    ens = AdminEnsemble(tmp_path / "ensemble")
    try:
        ens.start()
        first = ens.wait_settled(1, {1, 2, 3})["leader"]
        follower = next(i for i in (1, 2, 3) if i != first)
        page.goto(ens.admin_url(follower) + "/ui/ensemble")
        page.wait_for_function(
            "() => ['1','2','3'].every(i => { const r = document.querySelector(`#peers tr[data-peer='${i}']`);"
            " return r && r.querySelector('td:nth-child(4)').textContent === 'serving'; })",
            timeout=30_000,
        )
        assert page.inner_text("#ens-leader") == f"id {first}"
        assert page.inner_text("#ens-mode") == "follower"
        assert page.get_attribute(f"#peers tr[data-peer='{first}']", "data-role") == "leader"
        assert "leader" in (page.get_attribute(f"#peers tr[data-peer='{first}']", "class") or "")
        assert "self" in (page.get_attribute(f"#peers tr[data-peer='{follower}']", "class") or "")
        screenshot("node-ensemble-real")

        ens.kill(first)  # SIGKILL: the leader crashes
        page.wait_for_function(
            "old => { const t = document.getElementById('ens-leader').textContent;"
            " return t.startsWith('id ') && t !== old; }",
            arg=f"id {first}",
            timeout=60_000,
        )
        second = int(page.inner_text("#ens-leader").split()[1])
        assert second in (1, 2, 3) and second != first
        page.wait_for_function(
            "k => document.querySelector(`#peers tr[data-peer='${k}'] td:nth-child(4)`).textContent === 'unreachable'",
            arg=str(first),
            timeout=30_000,
        )
        page.wait_for_function(
            "() => document.getElementById('changes').textContent.includes('changed')", timeout=30_000
        )
        # the page agrees with the members themselves
        view = ens.wait_settled(follower, {i for i in (1, 2, 3) if i != first})
        assert view["leader"] == second
        screenshot("node-ensemble-real-after-leader-kill")
    finally:
        ens.kill_all()


class FakeEnsembleMember:
    """A server-like object reporting three peers (the ensemble_view protocol), to drive the page's rendering.

    It checks the UI rendering only; the real kill-the-leader scenario (3 subprocesses) is the test above.
    """

    def __init__(self) -> None:
        from node.admin.peers import ensemble_from_statuses

        self._build = ensemble_from_statuses
        self.statuses = {
            n: {
                "role": "leader" if n == 1 else "follower",
                "epoch": 1,
                "leader": 1,
                "last_zxid": (1 << 32) + (9 if n != 3 else 6),
                "sessions": 2,
                "connections": 1,
            }
            for n in (1, 2, 3)
        }

    def admin_view(self):
        from node.admin.four_letter import AdminView

        return AdminView(mode=self.statuses[2]["role"], zxid=self.statuses[2]["last_zxid"])

    def ensemble_view(self) -> dict:
        return self._build(2, {1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}, self.statuses)

    def kill_leader(self) -> None:
        self.statuses = {
            1: None,
            **{
                n: {
                    **self.statuses[n],
                    "epoch": 2,
                    "leader": 3,
                    "role": "leader" if n == 3 else "follower",
                    "last_zxid": (2 << 32) + 1,
                }
                for n in (2, 3)
            },
        }


def test_ensemble_page_renders_peers_and_follows_a_leader_change(page, screenshot):
    from tests.browser.launcher import AdminOnly

    member = FakeEnsembleMember()
    admin_server = AdminOnly(member).start()
    try:
        page.goto(admin_server.admin_url + "/ui/ensemble")
        page.wait_for_selector("#peers tbody tr[data-peer='3']")
        rows = page.query_selector_all("#peers tbody tr")
        assert [r.get_attribute("data-role") for r in rows] == ["leader", "follower", "follower"]
        assert "leader" in page.get_attribute("#peers tr[data-peer='1']", "class")
        assert page.inner_text("#peers tr[data-peer='3'] td:nth-child(6)") == "3"  # 3 txns behind the leader
        assert page.inner_text("#ens-leader") == "id 1"
        screenshot("node-ensemble-three")
        member.kill_leader()
        page.wait_for_function("() => document.getElementById('ens-leader').textContent === 'id 3'", timeout=15_000)
        assert page.inner_text("#peers tr[data-peer='1'] td:nth-child(4)") == "unreachable"
        assert page.inner_text("#ens-epoch") == "2"
        page.wait_for_function(
            "() => document.getElementById('changes').textContent.includes('changed')", timeout=15_000
        )
        screenshot("node-ensemble-after-leader-change")
    finally:
        admin_server.stop()


def test_status_page_shows_commands(page, node, screenshot):
    page.goto(f"{node.admin_url}/ui/status")
    page.wait_for_function(
        "() => document.getElementById('command-output').textContent.includes('approximate_data_size')"
    )
    page.click("button[data-command='server_stats']")
    page.wait_for_function(
        "() => document.getElementById('command-output').textContent.includes('\"server_state\": \"standalone\"')"
    )
    screenshot("node-status")
