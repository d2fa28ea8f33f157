"""Window guard: business hours, freeze dates and the tier's window, checked right before injection."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.deploys import run_deploy
from chaos_engineering.operators.common import is_manual, policy_or_fail
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.timetables import planned_injection_time
from chaos_engineering.windows import SpanOutlook, span_outlook, window_verdict


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def planned_injection(context: Any, tier: Tier) -> dt.datetime | None:
    """When a scheduled run of an announced tier injects: its planned time (the timetable's tick).
    None for a manual run, a deploy's run or a tier without notice: it injects as soon as it is
    approved (and the window allows)."""
    if is_manual(context) or run_deploy(context) is not None or not policy_or_fail().tiers[tier].announce_ahead:
        return None
    return planned_injection_time(data_interval_end=context.get("data_interval_end"), run_after=context["dag_run"].run_after)


def injection_outlook(context: Any, policy: SafetyPolicy, tier: Tier, duration_s: float, now: dt.datetime) -> tuple[SpanOutlook, bool]:
    """What the window says of the run's fault at its injection (the planned time of a scheduled
    announced run, otherwise `now`: it injects once approved), and whether that time is planned.
    Plan refuses with it, and every approval request shows it."""
    planned = planned_injection(context, tier)
    at = max(now, planned) if planned is not None else now
    return span_outlook(policy, tier, at, duration_s, manual=is_manual(context)), planned is not None


class WindowGuardOperator(BaseOperator):
    """Refuses (fails, nothing injected) outside the tier's window, recording why.

    A scheduled run of an announced tier (high: created 72 h ahead so approvals can be given)
    first waits, deferred and holding no worker slot, until its planned injection time.
    """

    ui_color = "#fff8e1"

    def __init__(self, *, tier: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tier = tier

    def execute(self, context: Any) -> dict[str, Any]:
        planned = self._planned_time(context)
        if planned is not None and planned > _now():
            self.log.info("announced run: waiting for the planned injection time %s", planned.isoformat())
            self.defer(trigger=DateTimeTrigger(moment=planned), method_name="execute_complete")
        return self._judge(context, planned)

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        return self._judge(context, self._planned_time(context))

    def _planned_time(self, context: Any) -> dt.datetime | None:
        return planned_injection(context, Tier(self.tier))

    def _judge(self, context: Any, planned: dt.datetime | None) -> dict[str, Any]:
        policy = policy_or_fail()
        now = _now()
        manual = is_manual(context)
        verdict = window_verdict(policy, Tier(self.tier), now, manual=manual)
        record = dataclasses.asdict(verdict) | {
            "checked_at": now.isoformat(),
            "manual": manual,
            "planned_injection": planned.isoformat() if planned else None,
            "next_allowed": verdict.next_allowed.isoformat() if verdict.next_allowed else None,
        }
        context["ti"].xcom_push(key="window", value=record)
        if not verdict.allowed:
            raise AirflowFailException(f"window guard refused the {self.tier}-tier run: {verdict.reason}")
        self.log.info("window guard: %s", verdict.reason)
        return record
