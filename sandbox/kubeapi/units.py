"""The string units Chaos Mesh accepts: Go durations, go-units byte sizes, bandwidth rates, floats."""

# Each parser raises ValueError with the text Go's own parser gives, because Chaos Mesh's webhook
# puts that text into its rejection ("parse duration field error:time: invalid duration ...").

from __future__ import annotations

import re

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float:
    """time.ParseDuration: `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`, or "0"."""
    quoted = '"' + text + '"'
    rest, sign = text, 1.0
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if rest == "":
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while rest:
        match = re.match(r"(\d*)(\.(\d*))?", rest)
        whole, fraction = match.group(1), match.group(3)
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {quoted}")
        rest = rest[match.end():]
        unit_match = re.match(r"[^\d.]*", rest)
        unit = unit_match.group(0)
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        rest = rest[len(unit):]
        total += float(f"{whole or '0'}.{fraction or '0'}") * _GO_UNITS[unit]
    return sign * total


def go_float(text: str) -> float:
    """strconv.ParseFloat for the percentage strings of NetworkChaos ("25", "0.5")."""
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text or ""):
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    return float(text)


def go_atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text or ""):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def human_size_bytes(text: str) -> int:
    """go-units FromHumanSize (decimal multiples; "MB", "MiB" and "M" all mean 10^6)."""
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    number, suffix = (text[: sep + 1], text[sep + 1:]) if text[sep] != " " else (text[:sep], text[sep + 1:])
    try:
        size = go_float(number)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax') from None
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if not suffix:
        return int(size)
    lowered = suffix.lower()
    if len(lowered) > 3:
        raise ValueError(f"invalid suffix: '{suffix}'")
    if lowered == "b":
        return int(size)
    tail = lowered[1:]
    if lowered[0] not in _DECIMAL or tail not in ("", "b", "ib"):
        raise ValueError(f"invalid suffix: '{lowered}'")
    return int(size * _DECIMAL[lowered[0]])


def memory_size(text: str) -> tuple[int | None, int | None]:
    """A StressChaos memory size: (bytes, None) or (None, percent of the pod's memory)."""
    if text.endswith("%"):
        percent = go_atoi(text[:-1])
        if not 0 <= percent <= 100:
            raise ValueError("illegal proportion")
        return None, percent
    return human_size_bytes(text), None


def rate_bytes_per_second(text: str) -> int:
    """Chaos Mesh's ConvertUnitToBytes: "bps" means bytes per second, k/m/g/t are powers of 1024."""
    lowered = text.strip().lower()
    for power, unit in ((4, "tbps"), (3, "gbps"), (2, "mbps"), (1, "kbps"), (0, "bps")):
        if lowered.endswith(unit):
            number = lowered[: -len(unit)].strip()
            if not number.isdigit():
                raise ValueError(f'strconv.ParseUint: parsing "{number}": invalid syntax')
            return int(number) * 1024**power
    raise ValueError("invalid unit")
