"""Readers, JSONL round trip, format detection, pairing and validation."""

from __future__ import annotations

import json

import pytest

from checkers import _edn
from checkers.history import (
    FAIL_DID_NOT_HAPPEN,
    FAIL_HAPPENED,
    UNKNOWN_VALUE,
    History,
    HistoryError,
    Op,
    detect_format,
    pair,
    parse_history,
    parse_literal,
    read_history,
    read_jsonl,
    write_jsonl,
)


def _write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# -- JSONL ------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path) -> None:
    ops = [
        Op(0, 10, "invoke", 1, "write", 3, key="k"),
        Op(1, 20, "ok", 1, "write", 3, node="n1", zxid=7, key="k"),
        Op(2, 30, "invoke", "nemesis", "kill", None),
        Op(3, 40, "info", "nemesis", "kill", ["n2"], error="boom"),
    ]
    path = tmp_path / "h.jsonl"
    write_jsonl(path, ops)
    back = read_jsonl(path)
    assert list(back) == ops
    assert back.format == "jsonl" and back.lines == [1, 2, 3, 4]
    assert json.loads(path.read_text().splitlines()[1])["zxid"] == 7


def test_empty_file_is_empty_history(tmp_path) -> None:
    h = read_history(_write(tmp_path, "e.jsonl", ""))
    assert h == [] and isinstance(h, History)
    assert pair(h) == []


def test_truncated_jsonl_names_file_and_line(tmp_path) -> None:
    p = _write(
        tmp_path,
        "t.jsonl",
        '{"index":0,"time":0,"type":"invoke","process":0,"f":"read"}\n{"index":1,"time":1,"type":"ok","proc',
    )
    with pytest.raises(HistoryError) as ei:
        read_history(p)
    assert ei.value.line == 2 and str(p) in str(ei.value)
    assert "t.jsonl:2:" in str(ei.value) and "JSON" in str(ei.value)


def test_unknown_type_is_an_error(tmp_path) -> None:
    p = _write(
        tmp_path, "u.jsonl", '{"type":"invoke","process":0,"f":"read"}\n\n{"type":"okay","process":0,"f":"read"}\n'
    )
    with pytest.raises(HistoryError) as ei:
        read_jsonl(p)
    assert ei.value.line == 3 and "'okay'" in ei.value.problem
    assert "invoke, ok, fail, info" in ei.value.problem


def test_missing_field_is_an_error(tmp_path) -> None:
    with pytest.raises(HistoryError, match="no 'f' field"):
        read_jsonl(_write(tmp_path, "m.jsonl", '{"type":"invoke","process":0}\n'))


# -- EDN ----------------------------------------------------------------------

KNOSSOS = """; a comment
[{:process 0, :type :invoke, :f :write, :value 1}
 {:process 1, :type :invoke, :f :read, :value nil}
 {:process 0, :type :ok, :f :write, :value 1}
 {:process 1, :type :ok, :f :read, :value nil}
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 2, :type :invoke, :f :cas, :value [1 2], :time 5}
 {:process 2, :type :fail, :f :cas, :value [1 2]}
 {:process 3, :type :invoke, :f :write, :value 4}
 {:process 3, :type :info, :f :write, :value 4, :error :timeout}
 {:process 4, :type :invoke, :f :read, :value nil}]
"""


def test_edn_reader_semantics(tmp_path) -> None:
    h = read_history(_write(tmp_path, "k.edn", KNOSSOS))
    assert h.format == "edn" and h.nil_read_unknown and h.fail_means == FAIL_DID_NOT_HAPPEN
    assert len(h) == 10 and h.lines[0] == 2 and h.lines[5] == 7
    assert h[4].process == "nemesis" and h[5].time == 5 and h[5].value == [1, 2]
    assert h[8].error == "timeout"
    ops = pair(h)
    assert [(o.process, o.f, o.status) for o in ops] == [
        (0, "write", "ok"),
        (1, "read", "ok"),
        (2, "cas", "fail"),
        (3, "write", "info"),
        (4, "read", "info"),
    ]
    assert ops[1].output is UNKNOWN_VALUE  # Knossos: a nil read says nothing
    assert ops[3].return_index is None and ops[3].crashed
    assert ops[4].return_index is None  # never completed = crashed


def test_truncated_edn_names_line(tmp_path) -> None:
    p = _write(tmp_path, "t.edn", KNOSSOS[:-4])
    with pytest.raises(HistoryError) as ei:
        read_history(p)
    assert "t.edn:" in str(ei.value) and "not closed" in str(ei.value)
    assert ei.value.line == 11


def test_malformed_edn_op(tmp_path) -> None:
    p = _write(tmp_path, "b.edn", "[{:process 0, :type :invoke, :f :read}\n {:process 0, :type :bogus, :f :read}]\n")
    with pytest.raises(HistoryError) as ei:
        read_history(p, format="edn")
    assert ei.value.line == 2 and "bogus" in ei.value.problem


def test_edn_values() -> None:
    v = _edn.loads('{:a [1 -2 3.5 2N "s\\"q" #{:x} (nil true false)] :b #_ 99 \\c :c #inst "2020"}')
    assert v == {"a": [1, -2, 3.5, 2, 's"q', frozenset({"x"}), [None, True, False]], "b": "c", "c": "2020"}
    assert isinstance(list(v)[0], _edn.Keyword) and repr(list(v)[0]) == ":a"
    with pytest.raises(_edn.EdnError, match="closes"):
        _edn.read_all("[1 2}")
    with pytest.raises(_edn.EdnError, match="unmatched"):
        _edn.read_all("1 ]")


def test_parse_literal() -> None:
    assert parse_literal("0") == 0
    assert parse_literal("nil") is None
    assert parse_literal("{:x 0 :y 0}") == {"x": 0, "y": 0}
    assert type(list(parse_literal("{:x 0}"))[0]) is str
    assert parse_literal('{"x": 1}') == {"x": 1}
    with pytest.raises(ValueError, match="literal"):
        parse_literal("{:x")


# -- Porcupine ----------------------------------------------------------------

ETCD = """INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1 :invoke :cas [1 2]
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 1 :fail :cas [1 2]
INFO  jepsen.util - 2\t:invoke\t:write\t3
INFO  jepsen.util - 2\t:info\t:write\t:timed-out
some other log line
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:fail\t:read\t:timed-out
"""


def test_porcupine_etcd(tmp_path) -> None:
    p = _write(tmp_path, "etcd_x.log", ETCD)
    h = read_history(p)
    assert h.format == "porcupine-etcd" and h.fail_means == FAIL_HAPPENED
    assert h.default_model == "cas-register" and h.default_initial is None
    assert [o.type for o in h] == ["invoke", "invoke", "ok", "fail", "invoke", "invoke", "fail"]
    assert h.lines == [1, 2, 3, 4, 5, 8, 9]
    ops = pair(h)
    assert ops[0].output is None  # nil = never written, a real value
    assert ops[1].status == "fail" and ops[1].output == [1, 2]
    assert ops[2].status == "info" and ops[2].return_index is None  # :info ignored
    assert ops[3].output is UNKNOWN_VALUE  # timed-out read


def test_porcupine_etcd_bad_cas(tmp_path) -> None:
    p = _write(tmp_path, "e.log", "INFO  jepsen.util - 1 :invoke :cas [1 x]\n")
    with pytest.raises(HistoryError) as ei:
        read_history(p, format="porcupine-etcd")
    assert ei.value.line == 1 and "[old new]" in ei.value.problem


def test_porcupine_kv(tmp_path) -> None:
    text = (
        '{:process 0, :type :invoke, :f :get, :key "7", :value nil}\n'
        '{:process 0, :type :ok, :f :get, :key "7", :value "x 1 y"}\n'
        '{:process 1, :type :invoke, :f :append, :key "3", :value "a"}\n'
    )
    h = read_history(_write(tmp_path, "c.txt", text))
    assert h.format == "porcupine-kv" and h.default_model == "kv"
    assert h[1].key == "7" and h[1].value == "x 1 y" and h[0].value is None
    with pytest.raises(HistoryError) as ei:
        parse_history(text + "{:process 1, :type :ok, :f :appe", "porcupine-kv", "c.txt")
    assert ei.value.line == 4 and ei.value.path == "c.txt"


def test_detect_format() -> None:
    assert detect_format("") == "jsonl"
    assert detect_format('{"type":"invoke"}') == "jsonl"
    assert detect_format("; c\n[{:process 0}]") == "edn"
    assert detect_format("{:process 0, :type :invoke, :f :read, :value nil}") == "edn"
    assert detect_format(ETCD) == "porcupine-etcd"
    assert detect_format('{:process 0, :type :ok, :f :put, :key "1", :value "v"}') == "porcupine-kv"
    with pytest.raises(HistoryError, match="unknown history format"):
        parse_history("", "xml")


# -- pairing and validation ---------------------------------------------------


def _ops(*rows) -> list[Op]:
    return [Op(i, i * 10, t, p, f, v) for i, (t, p, f, v) in enumerate(rows)]


def test_pair_basic_and_order() -> None:
    ops = _ops(
        ("invoke", 0, "write", 1),
        ("invoke", 1, "read", None),
        ("ok", 1, "read", 1),
        ("ok", 0, "write", 1),
        ("invoke", 1, "write", 2),
        ("fail", 1, "write", 2),
    )
    out = pair(ops)
    assert [(o.id, o.process, o.call_index, o.return_index, o.status) for o in out] == [
        (0, 0, 0, 3, "ok"),
        (1, 1, 1, 2, "ok"),
        (2, 1, 4, 5, "fail"),
    ]
    assert out[0].call_time == 0 and out[0].return_time == 30
    assert out[1].input is None and out[1].output == 1
    assert out[0].to_dict()["index"] == 0


def test_completion_without_invocation() -> None:
    h = History(_ops(("ok", 0, "read", 1)), path="h.jsonl", lines=[7])
    with pytest.raises(HistoryError) as ei:
        pair(h)
    assert ei.value.line == 7 and "no open invocation" in str(ei.value)
    assert str(ei.value).startswith("h.jsonl:7:")


def test_double_invoke() -> None:
    h = History(_ops(("invoke", 0, "read", None), ("invoke", 0, "write", 2)), path="h.jsonl")
    with pytest.raises(HistoryError) as ei:
        pair(h)
    assert ei.value.line == 2 and "line 1" in ei.value.problem
    assert "one operation at a time" in ei.value.problem


def test_mismatched_f_and_unknown_type() -> None:
    with pytest.raises(HistoryError, match="completed 'write'"):
        pair(_ops(("invoke", 0, "read", None), ("ok", 0, "write", 2)))
    with pytest.raises(HistoryError, match="unknown op type 'done'"):
        pair(_ops(("done", 0, "read", None)))


def test_nemesis_and_orphan_info_are_skipped() -> None:
    ops = _ops(
        ("invoke", "nemesis", "kill", None),
        ("info", "nemesis", "kill", "n1"),
        ("info", 7, "partition", None),
        ("invoke", 0, "read", None),
    )
    out = pair(ops)
    assert len(out) == 1 and out[0].process == 0 and out[0].crashed
