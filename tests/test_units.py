from __future__ import annotations

import math

import pytest

from common.planning.units import format_bandwidth, parse_bandwidth


@pytest.mark.parametrize(("text", "bps"), [
    ("5.85mbit", 5.85e6), ("300kbit", 3e5), ("2gbit", 2e9), ("1e6bps", 1e6), ("1200", 1200.0),
    ("4g", 5.85e6), ("3G", 1.1e6), ("cat1", 0.13e6), ("wifi", 18.88e6), ("10 Mbit/s", 1e7),
])
def test_parse(text: str, bps: float) -> None:
    assert parse_bandwidth(text) == pytest.approx(bps)


@pytest.mark.parametrize("text", ["", "fast", "5 furlongs", "0", "-3mbit", "inf", "nan"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bandwidth(text)
    assert not math.isnan(parse_bandwidth(1.0))


def test_format() -> None:
    assert format_bandwidth(5.85e6) == "5.85 Mbit/s"
    assert format_bandwidth(130e3) == "130 kbit/s"


@pytest.mark.parametrize("text,bps", [
    ("5MBps", 40e6), ("5MB/s", 40e6), ("2kB/s", 16e3), ("1gbyte/s", 8e9),  # bytes: B or byte
    ("5Mbps", 5e6), ("5mbps", 5e6), ("5Mb/s", 5e6), ("5mbit", 5e6), ("5Mbit/s", 5e6),  # bits
])
def test_bytes_are_an_upper_case_b_bits_a_lower_case_one(text: str, bps: float) -> None:
    assert parse_bandwidth(text) == pytest.approx(bps)
