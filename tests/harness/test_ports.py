"""Free ports (harness/ports.py): from the kernel, or from $SQUALL_PORT_RANGE."""

from __future__ import annotations

import socket

import pytest

from harness import ports


def test_without_a_range_the_kernel_picks(monkeypatch):
    monkeypatch.delenv(ports.ENV, raising=False)
    got = ports.free_ports(5)
    assert len(set(got)) == 5 and all(1024 <= p <= 65535 for p in got)


def _spare_low() -> int:
    """Ports no other test uses meanwhile: this worker's own range under xdist (tests/conftest.py)."""
    bounds = ports.port_range()
    return bounds[1] - 50 if bounds else 9000


def test_a_range_is_walked_and_taken_ports_are_skipped(monkeypatch):
    low = _spare_low()
    monkeypatch.setenv(ports.ENV, f"{low}-{low + 39}")
    monkeypatch.setattr(ports, "_cursor", 0)
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", low + 1))  # taken: must be skipped
        first = ports.free_ports(3)
        assert low + 1 not in first and all(low <= p < low + 40 for p in first)
        assert len(set(first)) == 3
        second = ports.free_ports(3)
        assert not set(first) & set(second)  # the walk goes on: no early reuse
        assert ports.free_port() not in first + second
    finally:
        held.close()


def _hold_one_of_two_free_ports() -> tuple[socket.socket, int]:
    """Bind the first of two adjacent free ports of this worker's range; the second stays free.

    Any port may be in use: this worker's earlier tests leave connections in TIME_WAIT on the
    ports of its range, and without a range the ports may be the kernel's ephemeral ones, which
    outgoing connections take. So try every pair of the range (from its top) until one fits."""
    bounds = ports.port_range()
    low_end, high_end = bounds if bounds else (9000, 9200)
    for low in range(high_end - 1, low_end - 1, -1):
        held = socket.socket()
        try:
            held.bind(("127.0.0.1", low))
        except OSError:
            held.close()
            continue
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", low + 1))
        except OSError:
            held.close()
            continue
        finally:
            probe.close()
        return held, low
    pytest.fail(f"no two adjacent free ports in {low_end}-{high_end}")


def test_a_range_with_too_few_free_ports_says_so(monkeypatch):
    held, low = _hold_one_of_two_free_ports()
    monkeypatch.setenv(ports.ENV, f"{low}-{low + 1}")
    try:
        with pytest.raises(OSError, match=f"only 1 of 2 ports are free in SQUALL_PORT_RANGE={low}-{low + 1}"):
            ports.free_ports(2)
    finally:
        held.close()


@pytest.mark.parametrize("bad", ["20000", "a-b", "30000-20000", "80-90", "60000-70000", "1-2-3"])
def test_a_malformed_range_is_refused_with_the_expected_form(monkeypatch, bad):
    monkeypatch.setenv(ports.ENV, bad)
    with pytest.raises(ValueError, match="expected LOW-HIGH"):
        ports.free_ports(1)
