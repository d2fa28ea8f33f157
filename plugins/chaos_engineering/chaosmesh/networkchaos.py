"""The `spec` of a NetworkChaos: netem faults (delay, loss, duplicate, corrupt, rate), bandwidth and partition."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import Field, Strict

from chaos_engineering.chaosmesh.scalars import Int32, NetemDuration, PercentString, Rate, UInt32, UInt64
from chaos_engineering.chaosmesh.selectors import ChaosExperimentSpec, ChaosMeshModel, PodSelector
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, child


class NetworkChaosAction(str, enum.Enum):
    NETEM = "netem"
    DELAY = "delay"
    LOSS = "loss"
    DUPLICATE = "duplicate"
    CORRUPT = "corrupt"
    PARTITION = "partition"
    BANDWIDTH = "bandwidth"


class Direction(str, enum.Enum):
    """Which packets between the selected pods and the target are affected (Chaos Mesh default: to)."""

    TO = "to"
    FROM = "from"
    BOTH = "both"


class ReorderSpec(ChaosMeshModel):
    reorder: PercentString
    correlation: PercentString | None = None
    gap: Int32


class DelaySpec(ChaosMeshModel):
    latency: NetemDuration
    jitter: NetemDuration | None = None
    correlation: PercentString | None = None
    reorder: ReorderSpec | None = None


class LossSpec(ChaosMeshModel):
    loss: PercentString
    correlation: PercentString | None = None


class DuplicateSpec(ChaosMeshModel):
    duplicate: PercentString
    correlation: PercentString | None = None


class CorruptSpec(ChaosMeshModel):
    corrupt: PercentString
    correlation: PercentString | None = None


class RateSpec(ChaosMeshModel):
    rate: Rate


class BandwidthSpec(ChaosMeshModel):
    """tc's token bucket filter: `rate`, queue `limit` and `buffer` in bytes, optional peak."""

    rate: Rate
    limit: Annotated[UInt32, Field(ge=1)]
    buffer: Annotated[UInt32, Field(ge=1)]
    peakrate: UInt64 | None = None
    minburst: UInt32 | None = None


class NetworkChaosSpec(ChaosExperimentSpec):
    action: Annotated[NetworkChaosAction, Strict(False)]
    direction: Annotated[Direction, Strict(False)] | None = None
    target: PodSelector | None = None
    externalTargets: list[str] | None = None  # IPs, CIDRs or host names, optionally with a port
    device: str | None = None
    targetDevice: str | None = None
    delay: DelaySpec | None = None
    loss: LossSpec | None = None
    duplicate: DuplicateSpec | None = None
    corrupt: CorruptSpec | None = None
    rate: RateSpec | None = None
    bandwidth: BandwidthSpec | None = None

    @classmethod
    def cross_field_issues(cls, raw: dict[str, Any]) -> list[SpecIssue]:
        issues = super().cross_field_issues(raw)
        target = raw.get("target")
        if isinstance(target, dict):
            issues += PodSelector.selector_issues(target, child(SPEC_ROOT, "target"))
        action = raw.get("action")
        if isinstance(action, str):
            issues += _parameters_for_action(raw, action)
            issues += _direction_issues(raw, action)
        return issues


# Chaos Mesh builds one netem qdisc from whichever of these blocks are present, for every
# netem-type action; the action's own block must be there, or nothing is injected.
_NETEM_BLOCKS = ("delay", "loss", "duplicate", "corrupt", "rate")
_BLOCK_OF_ACTION = {
    NetworkChaosAction.DELAY.value: ("delay", "delay: {latency: \"100ms\"}"),
    NetworkChaosAction.LOSS.value: ("loss", "loss: {loss: \"25\"}"),
    NetworkChaosAction.DUPLICATE.value: ("duplicate", "duplicate: {duplicate: \"25\"}"),
    NetworkChaosAction.CORRUPT.value: ("corrupt", "corrupt: {corrupt: \"25\"}"),
    NetworkChaosAction.BANDWIDTH.value: ("bandwidth", "bandwidth: {rate: 1mbps, limit: 20971520, buffer: 10000}"),
}


def _parameters_for_action(raw: dict[str, Any], action: str) -> list[SpecIssue]:
    if action == NetworkChaosAction.NETEM.value:
        if not any(raw.get(block) is not None for block in _NETEM_BLOCKS):
            return [
                SpecIssue(
                    SPEC_ROOT,
                    Rule.ACTION_REQUIRES,
                    "action 'netem' needs at least one of delay, loss, duplicate, corrupt or rate.",
                )
            ]
        return []
    block = _BLOCK_OF_ACTION.get(action)
    if block is not None and raw.get(block[0]) is None:
        name, example = block
        return [
            SpecIssue(
                child(SPEC_ROOT, name), Rule.ACTION_REQUIRES, f"action {action!r} needs a {name} block, e.g. {example}."
            )
        ]
    return []


def _direction_issues(raw: dict[str, Any], action: str) -> list[SpecIssue]:
    """Chaos Mesh's webhook rules for traffic-control actions (partition is exempt): `from` and
    `both` need a pod `target`, and externalTargets only work with `to`."""
    direction = raw.get("direction")
    if action == NetworkChaosAction.PARTITION.value or direction not in (Direction.FROM.value, Direction.BOTH.value):
        return []
    where = child(SPEC_ROOT, "direction")
    issues = []
    if raw.get("externalTargets") is not None:
        issues.append(
            SpecIssue(
                where,
                Rule.DIRECTION_TARGET,
                f"externalTargets only work with direction 'to' for action {action!r}; set direction: to.",
            )
        )
    if raw.get("target") is None:
        issues.append(
            SpecIssue(
                where,
                Rule.DIRECTION_TARGET,
                f"direction {direction!r} needs a target (selector and mode) for action {action!r}; "
                "add one or use direction: to.",
            )
        )
    return issues
