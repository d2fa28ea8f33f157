"""Go durations as Chaos Mesh writes them ("90s", "1m30s", "300ms"): parsing and canonical formatting."""

from __future__ import annotations

import math
import re

_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu; Go accepts both spellings
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_UNITS_HINT = "ns, us (or µs), ms, s, m or h"
# One "<number><unit>" component: Go reads the unit as every character up to the next digit or dot.
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
# time.Duration is an int64 of nanoseconds; Go rejects anything longer (about 292 years).
_MAX_NANOSECONDS = 2**63 - 1

_HOUR = _NANOSECONDS["h"]
_MINUTE = _NANOSECONDS["m"]
_SECOND = _NANOSECONDS["s"]


def parse_go_duration(text: str) -> float:
    """Seconds in a Go `time.ParseDuration` string such as "300ms", "1.5h" or "2h45m".

    Follows Go's grammar (a sequence of decimal numbers, each with an optional fraction and a
    unit; "0" alone is zero) except that negative durations are rejected: no Chaos Mesh field
    accepts one. Raises ValueError naming what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string such as \"30s\", got {type(text).__name__}")
    if text == "":
        raise ValueError("empty duration: write a number with a unit, e.g. \"30s\" or \"5m\"")
    if text.startswith("-"):
        raise ValueError(f"duration {text!r} is negative: write a positive one, e.g. \"30s\"")
    body = text[1:] if text.startswith("+") else text
    if body == "0":
        return 0.0
    if body == "":
        raise ValueError(f"invalid duration {text!r}: write a number with a unit, e.g. \"30s\"")
    total = 0
    position = 0
    while position < len(body):
        match = _COMPONENT.match(body, position)
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}: expected a number at {body[position:]!r}")
        if not unit:
            raise ValueError(f"invalid duration {text!r}: missing unit after the number (use {_UNITS_HINT})")
        if unit not in _NANOSECONDS:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r} (use {_UNITS_HINT})")
        if len(whole) > 20:
            raise ValueError(f"duration {text!r} is out of range (Go durations stop at about 292 years)")
        scale = _NANOSECONDS[unit]
        total += int(whole or "0") * scale
        if fraction:
            # Go truncates the fraction to whole nanoseconds per component; digits past the
            # twentieth cannot change that result for any unit up to an hour.
            fraction = fraction[:20]
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > _MAX_NANOSECONDS:
            raise ValueError(f"duration {text!r} is out of range (Go durations stop at about 292 years)")
        position = match.end()
    return total / _SECOND


def format_go_duration(seconds: float) -> str:
    """The shortest canonical Go duration for `seconds`: 90 -> "1m30s", 600 -> "10m", 0.3 -> "300ms".

    Zero components are left out ("1h30s", not Go's "1h0m30s"); the result is rounded to whole
    nanoseconds and always parses back with `parse_go_duration`.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} seconds as a duration: it must be finite and not negative")
    nanoseconds = seconds * _SECOND if isinstance(seconds, int) else round(seconds * _SECOND)
    if nanoseconds > _MAX_NANOSECONDS:
        raise ValueError(f"{seconds!r} seconds is out of range for a Go duration (about 292 years)")
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < _SECOND:
        for unit in ("ms", "us", "ns"):
            if nanoseconds >= _NANOSECONDS[unit]:
                return _decimal(nanoseconds, _NANOSECONDS[unit]) + unit
    hours, rest = divmod(nanoseconds, _HOUR)
    minutes, rest = divmod(rest, _MINUTE)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        parts.append(_decimal(rest, _SECOND) + "s")
    return "".join(parts)


def _decimal(nanoseconds: int, unit: int) -> str:
    """`nanoseconds` in `unit`, with the fraction's trailing zeros removed: (1_500, 1_000) -> "1.5"."""
    whole, rest = divmod(nanoseconds, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")
