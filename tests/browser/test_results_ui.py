"""`squall serve` in a real browser: the run table, filters, a run's page, its report and history."""

from __future__ import annotations

import pytest

from tests.browser.launcher import ServeThread
from tests.browser.samples import REPORT_MARKER, make_sample_results

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "results"
    runs = make_sample_results(root)
    srv = ServeThread(root).start()
    try:
        yield srv, runs
    finally:
        srv.stop()


def visible_runs(page) -> list[str]:
    return [r.get_attribute("data-run").split("/")[0] for r in page.query_selector_all("#runs tr.run")]


def test_lists_filters_and_opens_a_report(page, served, screenshot):
    srv, runs = served
    page.goto(srv.url + "/")
    assert visible_runs(page) == ["zk-lock", "squall-register", "squall-set", "zk-register"]
    row = page.query_selector("#runs tr[data-run^='squall-set/']")
    # operations (invocations), ok, fail, info, nemesis operations: the report's counts
    assert [c.inner_text() for c in row.query_selector_all("td")][2:12] == [
        "squall",
        "set",
        "kill",
        "1",
        "invalid",
        "5",
        "3",
        "0",
        "2",
        "2",
    ]
    screenshot("results-index")

    page.select_option("#filter-verdict", "invalid")
    page.click("#apply-filters")
    page.wait_for_url("**verdict=invalid**")
    assert visible_runs(page) == ["squall-set"]
    screenshot("results-filtered")

    page.goto(srv.url + "/")
    page.select_option("#filter-db", "zookeeper")
    page.select_option("#filter-workload", "register")
    page.click("#apply-filters")
    page.wait_for_url("**db=zookeeper**")
    assert visible_runs(page) == ["zk-register"]

    page.click("#runs tr.run a.report-link")
    page.wait_for_selector(f"#{REPORT_MARKER}")
    assert "Report for zk-register" in page.inner_text(f"#{REPORT_MARKER}")
    screenshot("results-report")


def test_run_page_history_and_logs(page, served, screenshot):
    srv, runs = served
    page.goto(srv.url + "/")
    page.click("#runs tr[data-run^='squall-set/'] a.run-link")
    page.wait_for_selector("#run-verdict")
    assert page.inner_text("#run-verdict") == "invalid"
    assert "logs/n1.log" in page.inner_text("#run-logs")
    screenshot("results-run")
    page.click("#history-link")
    page.wait_for_selector("#history tbody tr")
    assert len(page.query_selector_all("#history tbody tr")) == 12
    screenshot("results-history")
    page.go_back()
    page.click("#run-logs a")
    assert "node n1 log of squall-set" in page.inner_text("body")
