"""Bandwidth in text and numbers: one parser for every command line and environment variable."""

from __future__ import annotations

import math
import re

__all__ = ["PRESETS", "parse_bandwidth", "parse_duration", "format_bandwidth", "format_bytes"]

#: The uplinks of DADS Table I, in bit/s.
PRESETS: dict[str, float] = {
    "cat1": 0.13e6,
    "3g": 1.1e6,
    "4g": 5.85e6,
    "wifi": 18.88e6,
}

_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z/]*)\s*$", re.IGNORECASE)


def _unit_bps(unit: str) -> float | None:
    """bit/s in one `unit`: bits as 'bit' or a lower-case b (kbit, Mbps, mb/s), bytes as 'byte'
    or an upper-case B (MB/s, MBps, kbyte/s), the case a reader of network rates expects;
    None if it is not a rate."""
    u = unit.removesuffix("/s")
    if u.lower().endswith("ps"):
        u = u[:-2]
    for word, bits in (("bit", 1.0), ("byte", 8.0)):
        if u.lower().endswith(word):
            u, scale = u[: -len(word)], bits
            break
    else:
        if u.endswith("B"):
            u, scale = u[:-1], 8.0
        elif u.endswith("b") or not u:
            u, scale = u[:-1], 1.0
        else:
            return None
    prefix = _PREFIX.get(u.lower())
    return None if prefix is None else prefix * scale


def parse_bandwidth(text: str | float) -> float:
    """'5.85mbit', '300kbit', '1e6bps', '5MB/s' (bytes), '4g' (a DADS preset) or a number of
    bit/s -> bit/s."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        key = text.strip()
        if key.lower() in PRESETS:
            return PRESETS[key.lower()]
        m = _PATTERN.match(key)
        scale = _unit_bps(m.group(2)) if m else None
        if not m or scale is None:
            presets = ", ".join(PRESETS)
            raise ValueError(
                f"bandwidth {text!r} not understood: use e.g. 5.85mbit, 300kbit, 2gbit, 1e6bps, "
                f"5MB/s (bytes: an upper-case B) or a preset ({presets})"
            )
        value = float(m.group(1)) * scale
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"bandwidth must be a positive, finite rate, got {text!r}")
    return value


def format_bandwidth(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def format_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def parse_duration(text: str) -> float:
    """`200ms`, `0.2s` or `0.2` (seconds) -> seconds; ValueError unless a positive duration."""
    t = text.strip().lower()
    scale = 1e-3 if t.endswith("ms") else 1.0
    try:
        value = float(t.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a duration such as 200ms or 0.5s")
    return value
