"""`squall serve`: the run table, filters, run pages, files, zips, path traversal and the bind rule."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from harness.serve_cmd import ServeConfigError, check_bind, list_runs, safe_path
from tests.browser.launcher import ServeThread
from tests.browser.samples import REPORT_MARKER, make_sample_results

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def results(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "results"
    runs = make_sample_results(root)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret outside the results folder", encoding="utf-8")
    # a symlink inside a run that points outside the results folder must not be followed
    os.symlink(secret, runs["valid"] / "logs" / "escape.log")
    return root, runs


@pytest.fixture()
def served(results):
    root, runs = results
    srv = ServeThread(root).start()
    try:
        yield srv, root, runs
    finally:
        srv.stop()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def raw_get(port: int, raw_path: str) -> int:
    """Send the path bytes exactly as given (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        assert b"top secret" not in body and b"root:" not in body
        return resp.status
    finally:
        conn.close()


# ---------------------------------------------------------------- pure parts


def test_list_runs_reads_verdicts_counts_and_sorts_newest_first(results):
    root, _ = results
    runs = list_runs(root)
    assert [r.name for r in runs] == ["zk-lock", "squall-register", "squall-set", "zk-register"]
    by_name = {r.name: r for r in runs}
    assert by_name["zk-register"].verdict == "valid"
    assert by_name["squall-set"].verdict == "invalid"
    assert by_name["squall-register"].verdict == "unknown"
    assert by_name["zk-lock"].verdict == "incomplete"
    assert by_name["squall-set"].ops == {"operations": 5, "ok": 3, "fail": 0, "info": 2, "nemesis": 2, "lines": 12}
    assert by_name["squall-register"].nemesis == "pause,kill"
    assert by_name["zk-register"].db == "zookeeper" and by_name["zk-register"].workload == "register"
    assert by_name["zk-register"].time == "2026-01-02T01:00:00+00:00"


def test_list_runs_filters(results):
    root, _ = results
    assert [r.name for r in list_runs(root, verdict="invalid")] == ["squall-set"]
    assert {r.name for r in list_runs(root, db="zookeeper")} == {"zk-register", "zk-lock"}
    assert {r.name for r in list_runs(root, workload="register", db="squall")} == {"squall-register"}
    assert list_runs(root, verdict="valid", workload="set") == []


def test_a_broken_run_folder_is_listed_with_its_problem(results):
    root, runs = results
    (runs["valid"] / "history.jsonl").write_text('{"type": "ok"}\nnot json\n', encoding="utf-8")
    (runs["invalid"] / "results.json").write_text("{broken", encoding="utf-8")
    by_name = {r.name: r for r in list_runs(root)}
    assert any("history.jsonl:2" in p for p in by_name["zk-register"].problems)
    assert by_name["squall-set"].verdict == "incomplete"
    assert any("results.json" in p for p in by_name["squall-set"].problems)


@pytest.mark.parametrize(
    "parts",
    [
        ("..",),
        ("zk-register", ".."),
        ("a/../../x",),
        ("/etc/passwd",),
        ("",),
        ("zk-register", "..", "..", "secret.txt"),
        ("x\x00y",),
    ],
)
def test_safe_path_refuses_escapes(results, parts):
    root, _ = results
    assert safe_path(root, *parts) is None


def test_safe_path_refuses_symlinks_leading_outside(results):
    root, runs = results
    run = runs["valid"]
    assert safe_path(root, run.parent.name, run.name, "logs", "n1.log") is not None
    assert safe_path(root, run.parent.name, run.name, "logs", "escape.log") is None


def test_check_bind_refuses_non_loopback_without_token():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "a-long-token")
    with pytest.raises(ServeConfigError, match="refusing to serve results on 0.0.0.0 without a token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ServeConfigError, match="--token"):
        check_bind("10.1.2.3", "")


# ---------------------------------------------------------------- over HTTP


def test_index_lists_every_run_with_counts(served):
    srv, _, _ = served
    status, body, _ = get(srv.url + "/")
    assert status == 200
    html = body.decode()
    for name in ("zk-register", "squall-set", "squall-register", "zk-lock"):
        assert f'href="/runs/{name}/' in html
    assert html.count('class="run"') == 4
    assert 'v-invalid">invalid' in html


def test_index_filters_by_verdict_workload_and_db(served):
    srv, _, _ = served
    html = get(srv.url + "/?verdict=invalid")[1].decode()
    assert html.count('class="run"') == 1 and "squall-set" in html
    html = get(srv.url + "/?db=zookeeper&workload=lock")[1].decode()
    assert html.count('class="run"') == 1 and "zk-lock" in html
    data = json.loads(get(srv.url + "/api/runs?db=squall")[1])
    assert {r["name"] for r in data["runs"]} == {"squall-set", "squall-register"}


def test_run_page_report_history_results_and_logs(served):
    srv, _, runs = served
    run = runs["invalid"]
    base = f"{srv.url}/runs/{run.parent.name}/{run.name}"
    status, body, _ = get(base + "/")
    assert status == 200
    page = body.decode()
    assert "invalid" in page and "logs/n1.log" in page and "squall-set is False" in page
    assert "escape.log" not in page  # symlinks are not listed
    status, body, headers = get(base + "/files/report.html")
    assert status == 200 and REPORT_MARKER in body.decode() and headers["Content-Type"].startswith("text/html")
    status, body, _ = get(base + "/files/results.json")
    assert status == 200 and json.loads(body)["valid"] is False
    status, body, _ = get(base + "/files/logs/n1.log")
    assert status == 200 and b"node n1 log of squall-set" in body
    status, body, _ = get(base + "/history")
    assert status == 200 and body.decode().count('<tr class="t-') == 12  # 10 client ops + 2 nemesis


def test_zip_download_holds_the_run(served):
    srv, _, runs = served
    run = runs["valid"]
    status, body, headers = get(f"{srv.url}/runs/{run.parent.name}/{run.name}.zip")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    prefix = f"{run.parent.name}/{run.name}/"
    assert {prefix + f for f in ("test.json", "history.jsonl", "results.json", "report.html", "logs/n1.log")} <= names
    assert prefix + "logs/escape.log" not in names  # the symlink out of the folder is left out


@pytest.mark.parametrize(
    "path",
    [
        "/runs/zk-register/{stamp}/files/../../../secret.txt",
        "/runs/zk-register/{stamp}/files/..%2f..%2f..%2fsecret.txt",
        "/runs/zk-register/{stamp}/files/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/runs/zk-register/{stamp}/files//etc/passwd",
        "/runs/zk-register/{stamp}/files/logs/escape.log",
        "/runs/zk-register/{stamp}/files/..\\..\\..\\secret.txt",
        "/runs/../../secret.txt",
        "/runs/%2e%2e/%2e%2e/files/secret.txt",
        "/runs/latest/x/",
        "/runs/zk-register/..%2f..%2f/",
        "/runs/zk-register/{stamp}/files/../../../../../../etc/passwd",
        "/static/../serve_cmd.py",
        "/static/%2e%2e/serve_cmd.py",
        "/runs/no-such-test/20260101T000000.000/",
        "/runs/zk-register/{stamp}/files/no-such-file",
    ],
)
def test_path_traversal_gets_404(served, path):
    srv, _, runs = served
    status = raw_get(srv.port, path.format(stamp=runs["valid"].name))
    assert status == 404, f"{path} answered {status}"


def test_token_is_required_when_given(results):
    root, _ = results
    srv = ServeThread(root, token="s3cret-token").start()
    try:
        assert get(srv.url + "/")[0] == 401
        assert get(srv.url + "/", {"Authorization": "Bearer wrong-token"})[0] == 401
        status, body, _ = get(srv.url + "/", {"Authorization": "Bearer s3cret-token"})
        assert status == 200 and b"zk-register" in body
    finally:
        srv.stop()


def _login(port: int, path: str) -> tuple[int, dict]:
    """GET without following the redirect: (status, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_browser_login_with_the_token_in_the_url_sets_a_cookie_and_redirects(results):
    root, _ = results
    srv = ServeThread(root, token="s3cret-token").start()
    try:
        status, headers = _login(srv.port, "/?token=s3cret-token&verdict=valid")
        assert status == 302, status  # was a 500 with a yarl that has no URL.without_query
        assert headers["location"] == "/?verdict=valid"
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == "squall_serve_token=s3cret-token"
        status, body, _ = get(srv.url + "/", {"Cookie": cookie})
        assert status == 200 and b"zk-register" in body
        assert _login(srv.port, "/?token=wrong-token")[0] == 401
    finally:
        srv.stop()


def test_cli_refuses_a_public_bind_without_token(tmp_path):
    (tmp_path / "results").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--results",
            str(tmp_path / "results"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SQUALL_SERVE_TOKEN": ""},
    )
    assert proc.returncode == 3, proc.stderr
    assert "refusing to serve results on 0.0.0.0 without a token" in proc.stderr


def test_cli_refuses_a_missing_results_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "serve", "--results", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and "does not exist" in proc.stderr


def test_foreign_host_header_is_refused_without_token(served):
    srv, _, _ = served
    assert get(srv.url + "/", {"Host": "evil.example"})[0] == 403
    assert get(srv.url + "/", {"Host": "localhost"})[0] == 200


@pytest.mark.integration
def test_cli_serves_and_stops_on_sigint(results):
    import re
    import signal

    root, _ = results
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve", "--results", str(root), "--port", "0"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"4 runs in .* at (http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        status, body, _ = get(m.group(1))
        assert status == 200 and b"zk-register" in body
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stderr.close()
