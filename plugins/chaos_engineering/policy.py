"""The safety policy: thresholds, protected services, business hours and per-tier rules, typed."""

from __future__ import annotations

import datetime as dt
import enum
import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.issues import ValidationIssue, issues_from_pydantic, with_lines


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a Go duration such as '90s' or '5m', got {value!r}")
    seconds = parse_go_duration(value)
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero")
    return seconds


#: A Go-style duration string ("10s", "5m", "1h30m") held as seconds.
Seconds = Annotated[float, BeforeValidator(_seconds)]


def _cron(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    return expression


#: A five-field cron expression, read in the policy's business-hours time zone.
Cron = Annotated[str, AfterValidator(_cron)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Mode(str, enum.Enum):
    """Chaos Mesh's selection modes."""

    ONE = "one"
    ALL = "all"
    FIXED = "fixed"
    FIXED_PERCENT = "fixed-percent"
    RANDOM_MAX_PERCENT = "random-max-percent"


class ThresholdRule(str, enum.Enum):
    MAX_DROP_PERCENT = "max_drop_percent"
    MAX_INCREASE = "max_increase"
    AT_MOST = "at_most"
    AT_LEAST = "at_least"

    def tightens(self, new: float, old: float) -> bool:
        """Whether limit `new` is at least as strict as `old` under this rule."""
        return new >= old if self is ThresholdRule.AT_LEAST else new <= old


class Threshold(Strict):
    description: str = ""
    query: str = Field(min_length=1)
    unit: str = ""
    rule: ThresholdRule
    limit: float

    @model_validator(mode="after")
    def _limit_in_range(self) -> Threshold:
        if self.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.MAX_INCREASE) and self.limit < 0:
            raise ValueError(f"limit of a {self.rule.value} rule cannot be negative")
        if self.rule is ThresholdRule.MAX_DROP_PERCENT and self.limit > 100:
            raise ValueError("limit of a max_drop_percent rule is a percentage: at most 100")
        return self


class SafetySettings(Strict):
    check_interval: Seconds
    max_failed_reads: int = Field(ge=1, le=10)
    query_timeout: Seconds
    lock_wait: Seconds
    # The inject task's heartbeat promises the monitor's first one within this long (the
    # dead-man watchdog removes the fault after it): scheduling the monitor task and handing its
    # trigger to a triggerer (a pod start with the KubernetesExecutor) happen in between.
    monitor_handover: Seconds = Field(default=60.0, ge=10, le=600)
    # A fault whose deletion Chaos Mesh has not finished after this long (a stuck finalizer: the
    # fault may still be applied) raises an alert and has its finalizer forced off.
    deletion_timeout: Seconds = Field(default=60.0, ge=5, le=900)
    thresholds: dict[str, Threshold] = Field(min_length=1)


class SteadyLimit(Strict):
    """An absolute bound a threshold's value must respect before any fault (pre-flight): a
    relative rule alone would accept a platform that is already failing."""

    at_most: float | None = None
    at_least: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> SteadyLimit:
        if self.at_most is None and self.at_least is None:
            raise ValueError("give at_most or at_least (or both)")
        if self.at_most is not None and self.at_least is not None and self.at_least > self.at_most:
            raise ValueError("at_least is greater than at_most: nothing could pass")
        return self


class Preflight(Strict):
    healthy_window: Seconds
    critical_alerts_query: str = Field(min_length=1)
    # Threshold name -> absolute bound before the fault. Every relative threshold (max_drop_percent,
    # max_increase) needs one (see SafetyPolicy._cross_references).
    steady_limits: dict[str, SteadyLimit] = Field(default_factory=dict)


class RecoveryStage(Strict):
    deadline: Seconds
    thresholds: list[str] = Field(default_factory=list)
    require_targets_ready: bool = False


class Recovery(Strict):
    immediate: RecoveryStage
    short_term: RecoveryStage
    business: RecoveryStage

    def stages(self) -> dict[str, RecoveryStage]:
        return {"immediate": self.immediate, "short_term": self.short_term, "business": self.business}


class ProtectionLevel(str, enum.Enum):
    ABSOLUTE = "absolute"
    HIGH = "high"
    MEDIUM = "medium"
    NONE = "none"

    def forbids(self, tier: Tier) -> bool:
        """Whether a `tier` experiment may not reach a service of this level (MISSION.md)."""
        return {
            ProtectionLevel.ABSOLUTE: True,
            ProtectionLevel.HIGH: tier is not Tier.HIGH,
            ProtectionLevel.MEDIUM: tier is Tier.HIGH,
            ProtectionLevel.NONE: False,
        }[self]


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class Service(Strict):
    """Where a service's pods live and the labels every one of them carries."""

    namespace: str = Field(min_length=1)
    labels: dict[str, str] = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _label_values(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not _LABEL_VALUE.match(value) or len(value) > 63:
                raise ValueError(f"label {key}={value!r} is not a valid Kubernetes label value")
        return labels


class ProtectedService(Service):
    level: ProtectionLevel
    # Host names, IPs or CIDRs the service answers on besides its in-cluster DNS names (which are
    # derived from its name and namespace): a NetworkChaos externalTarget may not reach them.
    hosts: list[str] = Field(default_factory=list)


class Weekday(str, enum.Enum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @classmethod
    def of(cls, day: dt.date) -> Weekday:
        return list(cls)[day.weekday()]


_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _time_range(value: object) -> tuple[dt.time, dt.time | None]:
    """ "08:00-20:00" -> (08:00, 20:00); an end of 24:00 is held as None (end of day)."""
    match = _RANGE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a time range 'HH:MM-HH:MM'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if (h2, m2) > (24, 0):
        raise ValueError(f"{value!r} ends after 24:00")
    if (h2, m2) <= (h1, m1):
        raise ValueError(f"{value!r} ends before it starts; split a range across midnight in two")
    return dt.time(h1, m1), None if h2 == 24 else dt.time(h2, m2)


TimeRange = Annotated[tuple[dt.time, dt.time | None], BeforeValidator(_time_range)]
WeeklyHours = dict[Weekday, list[TimeRange]]


def _within(weekly: WeeklyHours, local: dt.datetime) -> bool:
    now = local.time()
    return any(
        start <= now and (end is None or now < end)
        for start, end in weekly.get(Weekday.of(local.date()), [])
    )


class BusinessHours(Strict):
    timezone: str
    weekly: WeeklyHours
    freeze_dates: list[dt.date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from None
        return name

    def local(self, moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(zoneinfo.ZoneInfo(self.timezone))

    def is_business_time(self, moment: dt.datetime) -> bool:
        return _within(self.weekly, self.local(moment))

    def is_frozen(self, moment: dt.datetime) -> bool:
        return self.local(moment).date() in self.freeze_dates


class TierWindow(Strict):
    """When a tier may inject. `business_hours: false` keeps it out of business hours; `weekly`,
    when given, further restricts it to those local intervals (the policy's time zone)."""

    business_hours: bool = False
    weekly: WeeklyHours | None = None


class BlastRadius(Strict):
    modes: list[Mode] = Field(min_length=1)
    max_pods: int = Field(ge=1)
    max_percent: int = Field(ge=1, le=100)


class TierPolicy(Strict):
    approvals: list[str] = Field(default_factory=list)
    schedule: Cron
    # Whether the schedule runs (timetables.SafeWindowTimetable); off: manual runs only.
    scheduled: bool = False
    announce_ahead: Seconds | None = None
    window: TierWindow
    max_duration: Seconds
    allowed_kinds: dict[ChaosKind, list[str]] = Field(min_length=1)
    blast_radius: BlastRadius
    manual_override: bool = False
    # How long a human approval counts (from its answer to the injection); the policy's top-level
    # `approval_valid_for` when not given. An announced tier needs at least its announce_ahead.
    approval_valid_for: Seconds | None = None
    # Scenarios (include/scenarios): the longest span from the first step's start to the last
    # step's planned end; unset, the tier runs no scenario.
    scenario_max_duration: Seconds | None = None
    # The pods every step active at one moment may touch together (both sides of network faults);
    # the tier's blast_radius.max_pods when unset.
    scenario_max_pods: int | None = Field(default=None, ge=1)

    @property
    def scenario_pod_limit(self) -> int:
        return self.scenario_max_pods if self.scenario_max_pods is not None else self.blast_radius.max_pods


class ReportSettings(Strict):
    base_url: str = Field(min_length=1)
    conn_id: str | None = None
    retention_days: int = Field(ge=1)


class DrillProbe(Strict):
    """The canary writer of a disaster-recovery drill (see docs/RUNBOOK.md for its contract)."""

    conn_id: str = Field(default="dr_probe_default", min_length=1)
    interval: Seconds
    # Canaries acknowledged before the fault is injected; any failure then stops the drill.
    baseline: Seconds
    # After the outage, writes must keep succeeding this long for the database to count as back.
    settle: Seconds
    # From the injection: give up (RTO missed) when writes are not back by then.
    observe: Seconds


class DrillTargets(Strict):
    rto: Seconds
    # The window of acknowledged writes a failover may lose.
    rpo: Seconds


class DisasterRecovery(Strict):
    """The monthly disaster-recovery drill: a high-tier experiment measured by a canary writer."""

    experiment: str = Field(min_length=1)
    schedule: Cron
    scheduled: bool = False
    probe: DrillProbe
    targets: DrillTargets

    @model_validator(mode="after")
    def _clocks(self) -> DisasterRecovery:
        if self.probe.interval >= self.probe.settle:
            raise ValueError("probe.interval must be shorter than probe.settle")
        if self.targets.rto >= self.probe.observe:
            raise ValueError("targets.rto must be shorter than probe.observe (the drill could never see it met)")
        return self


class SafetyPolicy(Strict):
    version: Literal[1]
    chaos_namespace: str = Field(min_length=1)
    allowed_target_namespaces: list[str] = Field(min_length=1)
    safety: SafetySettings
    preflight: Preflight
    recovery: Recovery
    protected_services: dict[str, ProtectedService] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)
    business_hours: BusinessHours
    tiers: dict[Tier, TierPolicy]
    approvers: dict[str, list[str]] = Field(default_factory=dict)
    approval_timeout: Seconds
    # An approval answered longer ago than this does not count at injection (per tier: tiers.*.approval_valid_for).
    approval_valid_for: Seconds = 8 * 3600.0
    # NetworkChaos/... `remoteCluster` values an experiment may name; none by default (refused).
    allowed_remote_clusters: list[str] = Field(default_factory=list)
    reports: ReportSettings
    disaster_recovery: DisasterRecovery | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> SafetyPolicy:
        problems = [f"tier {t.value!r} is missing" for t in Tier if t not in self.tiers]
        known = set(self.safety.thresholds)
        for stage_name, stage in self.recovery.stages().items():
            problems += [
                f"recovery.{stage_name} names unknown threshold {name!r} (known: {sorted(known)})"
                for name in stage.thresholds
                if name not in known
            ]
        for tier, rules in self.tiers.items():
            problems += [
                f"tiers.{tier.value}.approvals names role {role!r} that has no approvers"
                for role in rules.approvals
                if not self.approvers.get(role)
            ]
        for tier, rules in self.tiers.items():
            problems += _approver_overlaps(self.approvers, tier, rules.approvals)
            validity = self.approval_validity(tier)
            if rules.announce_ahead and validity < rules.announce_ahead:
                problems.append(
                    f"tiers.{tier.value}: approvals are valid for {validity:g} s but the tier is announced "
                    f"{rules.announce_ahead:g} s ahead; an approval given at announcement would expire before "
                    f"injection (raise tiers.{tier.value}.approval_valid_for)"
                )
        known_steady = set(self.preflight.steady_limits)
        problems += [
            f"preflight.steady_limits names unknown threshold {name!r} (known: {sorted(known)})"
            for name in sorted(known_steady - known)
        ]
        problems += [
            f"safety.thresholds.{name} is relative ({threshold.rule.value}) and has no absolute bound in "
            f"preflight.steady_limits.{name}: a platform already failing would pass pre-flight"
            for name, threshold in self.safety.thresholds.items()
            if threshold.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.MAX_INCREASE) and name not in known_steady
        ]
        overlap = set(self.services) & set(self.protected_services)
        problems += [f"service {name!r} is listed both as protected and unprotected" for name in sorted(overlap)]
        if self.chaos_namespace in self.allowed_target_namespaces:
            problems.append("chaos_namespace must not be a target namespace")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def approval_validity(self, tier: Tier) -> float:
        """Seconds a human approval of a `tier` run counts for, from its answer."""
        own = self.tiers[tier].approval_valid_for if tier in self.tiers else None
        return own if own is not None else self.approval_valid_for

    def service(self, name: str) -> Service | None:
        return self.protected_services.get(name) or self.services.get(name)

    def protection_of(self, name: str) -> ProtectionLevel:
        protected = self.protected_services.get(name)
        return protected.level if protected else ProtectionLevel.NONE


def _approver_overlaps(approvers: dict[str, list[str]], tier: Tier, roles: list[str]) -> list[str]:
    """Separation of duties: when a tier needs several roles, no person may answer for two of them."""
    problems = []
    for index, first in enumerate(roles):
        for second in roles[index + 1 :]:
            both = sorted(set(approvers.get(first, [])) & set(approvers.get(second, [])))
            if both:
                problems.append(
                    f"tiers.{tier.value} needs approvals from {first!r} and {second!r}, but {', '.join(both)} "
                    f"{'is' if len(both) == 1 else 'are'} an approver of both; two approvals must come from two people"
                )
    return problems


DEFAULT_POLICY_NAME = "safety_policy.yaml"


INCLUDE_DIR_ENV = "CHAOS_INCLUDE_DIR"


def default_include_dir() -> Path:
    """`$CHAOS_INCLUDE_DIR`, else `include/` beside `plugins/` (this repository's layout and an
    Airflow home's)."""
    override = os.environ.get(INCLUDE_DIR_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "include"


def load_policy(path: Path | None = None) -> tuple[SafetyPolicy | None, list[ValidationIssue]]:
    """Read and validate the policy; any issue means no policy (and so no experiment) at all."""
    from chaos_engineering.yamlload import EMPTY_FILE, YAMLFileError, read_document

    path = path or default_include_dir() / DEFAULT_POLICY_NAME
    try:
        document = read_document(path)
    except OSError as exc:
        return None, [ValidationIssue(str(path), "", "unreadable", f"cannot read the policy: {exc.strerror}")]
    except YAMLFileError as exc:
        return None, [ValidationIssue(str(path), exc.field, exc.rule, exc.message, exc.line)]
    if document is None:
        return None, [ValidationIssue(str(path), "", "type", f"{EMPTY_FILE}; write the safety policy in it")]
    if not isinstance(document.data, dict):
        return None, [ValidationIssue(str(path), "", "type", "the policy must be a mapping of keys", document.line)]
    try:
        return SafetyPolicy.model_validate(document.data), []
    except ValidationError as exc:
        return None, with_lines(issues_from_pydantic(str(path), SafetyPolicy, exc), document.line_of)
