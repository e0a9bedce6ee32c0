"""An example gate: squall's pytest fixture in a project's own test suite.

Installing squall registers the `squall` fixture (nothing to import). Each
call runs one `squall run` against a fresh cluster, with faults, and checks
the history; the assertion message names the anomaly and the report.

    pytest examples/test_squall_gate.py                      # results in pytest's tmp dirs
    pytest examples/test_squall_gate.py --squall-results results   # kept for a CI artifact

SQUALL_DB, SQUALL_TIME_LIMIT and SQUALL_NODES narrow it for a quick smoke run
(squall's own test suite runs this file with a few seconds per test).
"""

import os

import pytest

DB = os.environ.get("SQUALL_DB", "zookeeper")  # "squall" for the bundled node
TIME_LIMIT = float(os.environ.get("SQUALL_TIME_LIMIT", "20"))
NODES = os.environ.get("SQUALL_NODES")  # default: the database's usual ensemble


@pytest.mark.parametrize("workload", ["register", "set"])
def test_the_database_keeps_its_guarantees_under_partitions_and_kills(squall, workload):
    result = squall.run(
        db=DB,
        workload=workload,
        nemesis="partition,kill",
        time_limit=TIME_LIMIT,
        nodes=NODES,
        seed=int(os.environ.get("SQUALL_SEED", "7")),
    )
    result.assert_valid()  # AssertionError: "... is INVALID ...: <anomaly>\n  report: .../report.html"
    assert result.summary["runs"][0]["counts"]["operations"] > 0
