"""Field types of Chaos Mesh specs: values written as strings (durations, percentages, rates, sizes) and bounded integers."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.chaosmesh.spec_issues import Rule, shown


def _fail(rule: Rule, message: str) -> PydanticCustomError:
    # The message goes through ctx so braces a user wrote are never read as a template.
    return PydanticCustomError(rule.value, "{detail}", {"detail": message})


# --- durations --------------------------------------------------------------------------------


def _go_duration(text: str) -> str:
    try:
        parse_go_duration(text)
    except ValueError as exc:
        raise _fail(Rule.GO_DURATION, f"{exc}.") from None
    return text


def _positive_go_duration(text: str) -> str:
    _go_duration(text)
    if parse_go_duration(text) <= 0:
        raise _fail(Rule.GO_DURATION, f"duration {text!r} must be longer than zero, e.g. \"30s\".")
    return text


# The CRD's own pattern for NetworkChaos delay.latency and delay.jitter: one number, one unit,
# no sign and no "µs". The API server rejects anything else even when Go could parse it.
_NETEM_DURATION = re.compile(r"^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$")


def _netem_duration(text: str) -> str:
    if not _NETEM_DURATION.match(text):
        raise _fail(
            Rule.GO_DURATION,
            f"{shown(text)} is not a netem duration: write one number and one unit (ns, us, ms, s, m, h), "
            'e.g. "100ms", as the CRD pattern ^[0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h)$ requires.',
        )
    return text


#: Any non-negative Go duration ("300ms", "1m30s").
GoDuration = Annotated[str, AfterValidator(_go_duration)]
#: A Go duration longer than zero: the `duration` of an experiment.
PositiveGoDuration = Annotated[str, AfterValidator(_positive_go_duration)]
#: A single-unit duration as the NetworkChaos CRD pattern allows ("90ms").
NetemDuration = Annotated[str, AfterValidator(_netem_duration)]


# --- numbers written as strings ----------------------------------------------------------------

_DECIMAL = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$")


def _percent_string(text: str) -> str:
    # Chaos Mesh parses these with Go's strconv.ParseFloat and hands them to tc netem, which
    # takes a percentage; a plain decimal from 0 to 100 is what the Chaos Mesh docs allow.
    if not _DECIMAL.match(text) or float(text) > 100:
        raise _fail(
            Rule.PERCENT_STRING,
            f"{shown(text)} is not a percentage: write a number from 0 to 100 as a string, e.g. \"25\".",
        )
    return text


#: A percentage from 0 to 100 written as a string ("25", "0.5").
PercentString = Annotated[str, AfterValidator(_percent_string)]

# What Chaos Mesh's webhook reads (ConvertUnitToBytes): a whole number and a bytes-per-second
# unit, lower-cased and trimmed first. Its CRD also documents bit units (kbit, mbit...), but the
# webhook refuses them ("invalid unit").
_RATE = re.compile(r"^\s*[0-9]+\s*(tbps|gbps|mbps|kbps|bps)\s*$", re.IGNORECASE)


def _rate(text: str) -> str:
    if not _RATE.match(text):
        raise _fail(
            Rule.RATE,
            f"{shown(text)} is not a rate: write a whole number and a unit in bytes per second "
            '(bps, kbps, mbps, gbps, tbps), e.g. "1mbps"; Chaos Mesh refuses bit units (kbit, mbit).',
        )
    return text


#: A bandwidth such as "1mbps" (bytes per second; k, m, g, t are powers of 1024).
Rate = Annotated[str, AfterValidator(_rate)]

# What docker's go-units FromHumanSize reads (Chaos Mesh's memory stressor uses it), or "N%".
_BYTE_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)? ?([kKmMgGtTpP][iI]?)?[bB]?$")
_PERCENT_OF_MEMORY = re.compile(r"^0*[0-9]{1,3}%$")


def _byte_size(text: str) -> str:
    if _PERCENT_OF_MEMORY.match(text) and int(text[:-1]) <= 100:
        return text
    if _BYTE_SIZE.match(text):
        return text
    raise _fail(
        Rule.BYTE_SIZE,
        f"{shown(text)} is not a size: write bytes with a unit (B, KB/KiB, MB/MiB, GB/GiB, TB/TiB), "
        'e.g. "256MB", or a share of the memory from 0% to 100%, e.g. "50%".',
    )


#: A memory size such as "256MB" or "50%".
ByteSize = Annotated[str, AfterValidator(_byte_size)]


# --- other formats -----------------------------------------------------------------------------


def _base64(text: str) -> str:
    # The CRD declares `format: byte`: the API server only accepts standard base64 there.
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(
            Rule.FORMAT, f"{shown(text)} is not base64; encode the body first, e.g. `echo -n '...' | base64`."
        ) from None
    return text


#: A body given as base64 (`format: byte`).
Base64Text = Annotated[str, AfterValidator(_base64)]


def _name_value_pair(pair: list[str]) -> list[str]:
    if len(pair) != 2:
        raise _fail(Rule.TYPE, f"each entry must be a [name, value] pair of two strings, got a list of {len(pair)}.")
    return pair


#: `[name, value]`, as HTTPChaos patch headers and queries are written.
NameValuePair = Annotated[list[str], AfterValidator(_name_value_pair)]


# --- bounded integers (the Go field types behind the CRD's `integer`) --------------------------

UInt16 = Annotated[int, Field(ge=0, le=2**16 - 1)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
