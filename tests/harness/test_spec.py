"""The test spec: validation, JSON round trip, CLI value parsing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.spec import SpecError, TestSpec, default_name, normalize_nodes, parse_concurrency, parse_nemesis


def spec(**kw):
    base = dict(name="t1", nodes=("n1", "n2", "n3"), seed=42)
    base.update(kw)
    return TestSpec(**base)


def test_round_trips_through_json():
    s = spec(nemesis=("partition", "kill"), options=(("unsafe_db_fault", "lose-writes"),))
    again = TestSpec.from_json(s.to_json())
    assert again == s
    assert json.loads(s.to_json())["options"] == {"unsafe_db_fault": "lose-writes"}


def test_load_from_a_run_directory(tmp_path):
    s = spec()
    (tmp_path / "test.json").write_text(s.to_json())
    assert TestSpec.load(tmp_path) == s
    assert TestSpec.load(tmp_path / "test.json") == s


def test_load_says_what_is_missing(tmp_path):
    with pytest.raises(SpecError, match="no test spec at"):
        TestSpec.load(tmp_path)


def test_unknown_fields_are_rejected_with_the_allowed_ones():
    d = spec().to_dict()
    d["colour"] = "blue"
    with pytest.raises(SpecError, match="unknown fields \\['colour'\\]; allowed"):
        TestSpec.from_dict(d)


def test_spec_is_frozen_and_hashable():
    s = spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "other"  # type: ignore[misc]
    assert hash(s) == hash(spec())


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(name="a/b"), "test name"),
        (dict(time_limit_s=0), "time limit"),
        (dict(concurrency=0), "concurrency"),
        (dict(rate=-1), "rate"),
        (dict(reads="eventually"), "local, sync"),
        (dict(nodes=("n1", "n1")), "distinct"),
    ],
)
def test_bad_values_say_what_is_allowed(kw, message):
    with pytest.raises(SpecError, match=message):
        spec(**kw)


def test_bad_json_is_a_spec_error():
    with pytest.raises(SpecError, match="not valid JSON"):
        TestSpec.from_json("{nope")


@pytest.mark.parametrize("text, nodes, expected", [("5", 3, 5), ("2n", 3, 6), ("1n", 5, 5), (" 3n ", 1, 3)])
def test_concurrency(text, nodes, expected):
    assert parse_concurrency(text, nodes) == expected


@pytest.mark.parametrize("text", ["", "n", "2x", "-1", "0", "0n"])
def test_bad_concurrency(text):
    with pytest.raises(SpecError, match="concurrency"):
        parse_concurrency(text, 3)


def test_nemesis_lists():
    allowed = ("partition", "pause", "kill")
    assert parse_nemesis("partition,kill", allowed) == ("partition", "kill")
    assert parse_nemesis("none", allowed) == ()
    assert parse_nemesis("kill, kill", allowed) == ("kill",)
    with pytest.raises(SpecError, match="unknown nemesis fault\\(s\\) flood; allowed: partition, pause, kill"):
        parse_nemesis("partition,flood", allowed)


def test_nodes_and_names():
    assert normalize_nodes(3) == ("n1", "n2", "n3")
    assert normalize_nodes(["a", "b"]) == ("a", "b")
    with pytest.raises(SpecError, match="between 1 and 9"):
        normalize_nodes(0)
    assert default_name("zookeeper", "set", ("partition", "kill")) == "zookeeper-set-partition+kill"
    assert default_name("squall", "lock", ()) == "squall-lock-none"
