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
