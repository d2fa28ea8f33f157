"""The text of each lifecycle notification, built from plain dicts: Slack blocks, plain text and HTML."""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos_engineering.notify.run import RunRef, approval_task, experiment_of_object, run_ref

EVENTS = ("approval_requested", "started", "breach_and_kill", "removal_failed", "emergency_stop", "recovery_verdict", "finished")

ICONS = {"info": ":information_source:", "success": ":white_check_mark:", "warning": ":warning:", "critical": ":rotating_light:"}
VERDICT_TITLES = {
    "held": "hypothesis held",
    "broken": "hypothesis broken",
    "aborted": "aborted",
    "dry_run": "dry run",
}
VERDICT_SEVERITY = {"held": "success", "broken": "critical", "aborted": "warning", "dry_run": "info"}

# Slack's limits (https://api.slack.com/reference/block-kit/blocks): we cut, never fail.
_HEADER_MAX, _TEXT_MAX, _FIELDS_PER_SECTION = 150, 3000, 10


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    url: str | None = None


@dataclass(frozen=True)
class Message:
    """One notification, channel-neutral; `slack_payload()`, `text` and `html()` render it."""

    event: str
    severity: str
    title: str
    summary: str
    facts: tuple[Fact, ...]
    details: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()

    @property
    def subject(self) -> str:
        return f"[chaos] {self.title}"

    @property
    def text(self) -> str:
        """The whole message as plain text (logs, a CLI, any plain-text channel)."""
        lines = [self.title, "", self.summary, ""]
        lines += [f"{f.label}: {f.value}" + (f" ({f.url})" if f.url and f.url != f.value else "") for f in self.facts]
        if self.details:
            lines += ["", *(f"- {d}" for d in self.details)]
        if self.links:
            lines += ["", *(f"{label}: {url}" for label, url in self.links)]
        return "\n".join(lines)

    def slack_payload(self) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{ICONS[self.severity]} {self.title}", _HEADER_MAX), "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_mrkdwn(self.summary), _TEXT_MAX)}},
        ]
        fields = [{"type": "mrkdwn", "text": _cut(f"*{_mrkdwn(f.label)}*\n{_slack_value(f)}", 2000)} for f in self.facts]
        for start in range(0, len(fields), _FIELDS_PER_SECTION):
            blocks.append({"type": "section", "fields": fields[start : start + _FIELDS_PER_SECTION]})
        if self.details:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(f"• {_mrkdwn(d)}" for d in self.details), _TEXT_MAX)}})
        if self.links:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": " | ".join(f"*<{url}|{_mrkdwn(label)}>*" for label, url in self.links)}})
        return {"text": _cut(f"{self.title}: {self.summary}", _TEXT_MAX), "blocks": blocks}

    def html(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><th align='left'>{esc(f.label)}</th><td>"
            + (f"<a href='{esc(f.url)}'>{esc(f.value)}</a>" if f.url else esc(f.value))
            + "</td></tr>"
            for f in self.facts
        )
        details = "<ul>" + "".join(f"<li>{esc(d)}</li>" for d in self.details) + "</ul>" if self.details else ""
        links = "<p>" + " | ".join(f"<a href='{esc(url)}'>{esc(label)}</a>" for label, url in self.links) + "</p>" if self.links else ""
        return f"<html><body><h2>{esc(self.title)}</h2><p>{esc(self.summary)}</p><table>{rows}</table>{details}{links}</body></html>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> str:
    """Slack reads &, < and > as control characters in mrkdwn."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_value(fact: Fact) -> str:
    return f"<{fact.url}|{_mrkdwn(fact.value)}>" if fact.url else _mrkdwn(fact.value)


# --- formatting of the numbers and times in a message ------------------------------------------


def when(value: Any) -> str | None:
    """A unix time or an ISO string as `2026-01-31 02:00:05 UTC`."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    except (TypeError, ValueError):
        try:
            moment = dt.datetime.fromisoformat(str(value)).astimezone(dt.timezone.utc)
        except ValueError:
            return str(value)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def number(value: Any, unit: str | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    try:
        text = f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
    return f"{text} {unit}" if unit else text


def seconds(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        try:
            return dt.datetime.fromisoformat(str(value)).timestamp()
        except ValueError:
            return None


# --- what every message says: which experiment, which tier, which target, which run ----------------


def _label(plan: Mapping[str, Any] | None) -> str:
    plan = plan or {}
    return f"{plan.get('experiment') or 'unknown experiment'} ({plan.get('tier') or 'unknown'} tier)"


def identity_facts(plan: Mapping[str, Any] | None, run: RunRef) -> list[Fact]:
    plan = plan or {}
    experiment = plan.get("experiment") or "unknown"
    if plan.get("title"):
        experiment = f"{experiment}: {plan['title']}"
    return [
        Fact("Tier", plan.get("tier") or "unknown"),
        Fact("Experiment", experiment),
        Fact("Target service", plan.get("target_service") or "unknown"),
        Fact("Run", run.name, run.url),
    ]


def _object_name(plan: Mapping[str, Any] | None, fault: Mapping[str, Any] | None = None) -> str | None:
    if fault and fault.get("name"):
        return f"{fault.get('kind', '')} {fault.get('namespace')}/{fault['name']}".strip()
    metadata = ((plan or {}).get("manifest") or {}).get("metadata") or {}
    if metadata.get("name"):
        return f"{(plan or {}).get('kind', '')} {metadata.get('namespace')}/{metadata['name']}".strip()
    return None


def _run_link(run: RunRef) -> list[tuple[str, str]]:
    return [("Run in Airflow", run.url)] if run.url else []


# --- one builder per lifecycle event ------------------------------------------------------------


def approval_requested(
    plan: Mapping[str, Any], run: RunRef, *, approval_url: str | None = None, role: str | None = None, timeout_s: float | None = None
) -> Message:
    who = f"the {role} approval" if role else "approval"
    facts = identity_facts(plan, run) + [
        Fact("Fault", f"{plan.get('kind', 'unknown')} for {number(plan.get('duration_s'))} s (ended by Chaos Mesh itself)"),
        Fact("Hypothesis", plan.get("hypothesis") or "n/a"),
    ]
    if (name := _object_name(plan)) is not None:
        facts.append(Fact("Object", name))
    if timeout_s:
        facts.append(Fact("Answer within", seconds(timeout_s) + " (no answer injects nothing)"))
    links = ([("Approve or reject in Airflow", approval_url)] if approval_url else []) + _run_link(run)
    return Message(
        event="approval_requested",
        severity="info",
        title=f"Approval requested: {_label(plan)}",
        summary=f"{_label(plan)} against {plan.get('target_service') or 'an unknown service'} waits for {who}. "
        "Nothing is injected until it is approved; a rejection or no answer in time injects nothing.",
        facts=tuple(facts),
        links=tuple(links),
    )


def started(plan: Mapping[str, Any], run: RunRef, *, fault: Mapping[str, Any] | None = None) -> Message:
    fault = fault or {}
    injected = _ts(fault.get("injected_at"))
    duration = plan.get("duration_s")
    facts = identity_facts(plan, run) + [
        Fact("Object", _object_name(plan, fault) or "unknown"),
        Fact("Injected at", when(injected) or "unknown"),
        Fact("Ends by itself", when(injected + float(duration)) if injected is not None and duration is not None else f"after {number(duration)} s"),
        Fact("Hypothesis", plan.get("hypothesis") or "n/a"),
    ]
    return Message(
        event="started",
        severity="warning",
        title=f"Fault injected: {_label(plan)}",
        summary=f"A {plan.get('kind', 'fault')} on {plan.get('target_service') or 'an unknown service'} is active for at most "
        f"{number(duration)} s. The kill switch removes it at once if any safety threshold is breached.",
        facts=tuple(facts),
        links=tuple(_run_link(run)),
    )


def breach_and_kill(
    plan: Mapping[str, Any],
    run: RunRef,
    breach: Mapping[str, Any],
    *,
    fault: Mapping[str, Any] | None = None,
    removal_requested_at: float | None = None,
    removal_error: str | None = None,
) -> Message:
    threshold = ((plan.get("thresholds") or {}).get(breach.get("threshold")) or {})
    unit = threshold.get("unit")
    removed = removal_requested_at is not None and not removal_error
    facts = identity_facts(plan, run) + [
        Fact("Threshold", f"{breach.get('threshold')} ({breach.get('rule')} {number(breach.get('limit'))})"),
        Fact("Measured", number(breach.get("value"), unit)),
        Fact("Baseline", number(breach.get("baseline"), unit)),
        Fact("Bound", number(breach.get("bound"), unit)),
        Fact("Detected at", when(breach.get("at")) or "unknown"),
    ]
    injected, at = _ts((fault or {}).get("injected_at")), _ts(breach.get("at"))
    if injected is not None and at is not None:
        facts.append(Fact("Detected after injection", seconds(at - injected)))
    if removed:
        facts.append(Fact("Fault removed", f"{when(removal_requested_at)} ({seconds(removal_requested_at - at) if at is not None else 'n/a'} after detection)"))
    else:
        facts.append(Fact("Fault removal", f"FAILED: {removal_error or 'not requested'}"))
    if (name := _object_name(plan, fault)) is not None:
        facts.append(Fact("Object", name))
    action = (
        "The kill switch removed the fault; the run is failed and recovery is being measured."
        if removed
        else "The kill switch could NOT remove the fault: run the emergency stop now (`chaosctl emergency-stop` or the emergency-stop DAG)."
    )
    return Message(
        event="breach_and_kill",
        severity="critical",
        title=f"Safety breach, {'fault removed' if removed else 'REMOVAL FAILED'}: {_label(plan)}",
        summary=f"{breach.get('message') or breach.get('threshold')}. {action}",
        facts=tuple(facts),
        links=tuple(_run_link(run)),
    )


def removal_failed(
    plan: Mapping[str, Any],
    run: RunRef,
    *,
    still_on_cluster: Iterable[Mapping[str, Any]] = (),
    error: str | None = None,
    failing_since: float | None = None,
    timeout_s: float | None = None,
    gave_up: bool = False,
) -> Message:
    """The teardown cannot remove the run's fault: `still_on_cluster` as the teardown lists it
    (kind, namespace, name, deleting_since, and what the object says of its run)."""
    objects = list(still_on_cluster)
    plan = plan or (objects[0] if objects else {})
    details = [
        f"{o.get('kind')} {o.get('namespace')}/{o.get('name')}"
        + (f": deletion requested at {when(o['deleting_since'])}, not finished" if o.get("deleting_since") else ": deletion not accepted")
        for o in objects
    ] or ["the run's objects cannot even be listed: check the cluster by hand"]
    facts = identity_facts(plan, run) + [
        Fact("Still on the cluster", str(len(objects)) if objects else "unknown"),
        Fact("Failing since", when(failing_since) or "n/a (a deletion Chaos Mesh has not finished)"),
        Fact("Last error", error or "none: Chaos Mesh has not finished the deletion"),
        Fact("Teardown", f"gave up after {seconds(timeout_s)}" if gave_up else f"still trying, for up to {seconds(timeout_s)}"),
    ]
    return Message(
        event="removal_failed",
        severity="critical",
        title=f"Fault removal FAILING, the fault may still be applied: {_label(plan)}",
        summary="The teardown cannot remove this run's Chaos Mesh object(s) (listed below). Run `chaosctl stop` now "
        "(or the emergency-stop DAG) and follow docs/RUNBOOK.md#chaos-fault-removal-failing; "
        "check the targets by hand once the objects are gone.",
        facts=tuple(facts),
        details=tuple(details),
        links=tuple(_run_link(run)),
    )


def emergency_stop(
    run: RunRef,
    *,
    removed: Iterable[Mapping[str, Any]] = (),
    reason: str | None = None,
    requested_by: str | None = None,
    failed_runs: Iterable[str] = (),
    errors: Iterable[str] = (),
) -> Message:
    """`removed`: the Chaos Mesh objects deleted (as listed from the API server) or
    `experiment_of_object` dicts of them."""
    items = [o if "metadata" not in o else experiment_of_object(o) for o in removed]
    details = [
        f"{o.get('kind')} {o.get('namespace')}/{o.get('name')}: {o.get('experiment') or 'unknown experiment'} "
        f"({o.get('tier') or 'unknown'} tier), target {o.get('target_service') or 'unknown'}, "
        f"run {o.get('dag_id') or '?'} / {o.get('run_id') or '?'}"
        for o in items
    ] or ["no chaos object of this system was present"]
    details += [f"run failed: {r}" for r in failed_runs]
    details += [f"ERROR: {e}" for e in errors]

    def distinct(key: str) -> str:
        return ", ".join(sorted({str(o.get(key)) for o in items if o.get(key)})) or "none"

    facts = [
        Fact("Tier", distinct("tier")),
        Fact("Experiment", distinct("experiment")),
        Fact("Target service", distinct("target_service")),
        Fact("Run", run.name, run.url),
        Fact("Objects removed", str(len(items))),
        Fact("Requested by", requested_by or "unknown"),
    ]
    if reason:
        facts.append(Fact("Reason", reason))
    errors = list(errors)
    return Message(
        event="emergency_stop",
        severity="critical",
        title=f"Emergency stop: {len(items)} fault(s) removed" + (", WITH ERRORS" if errors else ""),
        summary="Every chaos object this system created was removed, the experiment lock released and running experiment runs failed."
        if not errors
        else "The emergency stop did not finish cleanly: check the errors below and the cluster by hand.",
        facts=tuple(facts),
        details=tuple(details),
        links=tuple(_run_link(run)),
    )


def _stage_line(stage: str, record: Mapping[str, Any] | None) -> str:
    if record is None:
        return f"{stage}: not run"
    deadline = f"deadline {number(record.get('deadline_s'))} s"
    if record.get("status") == "recovered":
        return f"{stage}: recovered after {seconds(record.get('time_to_recover_s'))} ({deadline})"
    if record.get("status") == "unobserved":
        return f"{stage}: not observed in time: first checked {seconds(record.get('time_to_recover_s'))} after removal ({deadline}), back by then"
    pending = "; ".join(record.get("pending") or [])
    return f"{stage}: missed its {deadline}" + (f" (still: {pending})" if pending else "")


def recovery_summary(recovery: Mapping[str, Mapping[str, Any] | None]) -> tuple[int, int, float | None]:
    """(stages recovered in time, stages that ran, time until the last of them recovered: None
    unless every stage listed ran and recovered)."""
    ran = [r for r in recovery.values() if r is not None]
    ok = [r for r in ran if r.get("status") == "recovered"]
    times = [float(r["time_to_recover_s"]) for r in ok if r.get("time_to_recover_s") is not None]
    return len(ok), len(ran), (max(times) if recovery and len(times) == len(recovery) else None)


def recovery_verdict(plan: Mapping[str, Any], run: RunRef, recovery: Mapping[str, Mapping[str, Any] | None]) -> Message:
    ok, ran, total = recovery_summary(recovery)
    stages = len(recovery)
    if ran and ok == ran == stages:
        title, severity, summary = "Recovered", "success", f"Every recovery stage met its deadline; fully recovered after {seconds(total)}."
    elif not ran:
        title, severity, summary = "Recovery not measured", "warning", "No recovery stage ran (was a fault removed?)."
    else:
        title, severity, summary = "Recovery incomplete", "critical", f"{ok} of {stages} recovery stages met their deadline."
    facts = identity_facts(plan, run) + [Fact("Stages on time", f"{ok} of {stages}"), Fact("Time to recover", seconds(total))]
    return Message(
        event="recovery_verdict",
        severity=severity,
        title=f"{title}: {_label(plan)}",
        summary=summary,
        facts=tuple(facts),
        details=tuple(_stage_line(stage, record) for stage, record in recovery.items()),
        links=tuple(_run_link(run)),
    )


def finished(
    result: Mapping[str, Any],
    run: RunRef,
    *,
    plan: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
    report_url: str | None = None,
) -> Message:
    """`result`: result.json; `report`: report.json when it was built (scores, findings)."""
    plan = plan or result.get("experiment") or {}
    verdict = result.get("verdict") or "unknown"
    facts = identity_facts(plan, run) + [Fact("Verdict", VERDICT_TITLES.get(verdict, verdict)), Fact("Reason", result.get("verdict_reason") or "n/a")]
    details: list[str] = []
    if report:
        for key, label in (("impact_score", "Customer impact score"), ("system_health_score", "System health score")):
            score = report.get(key) or {}
            if score.get("value") is not None:
                facts.append(Fact(label, f"{number(score['value'])} / 100"))
        detect = [b.get("time_to_detect_s") for b in report.get("breaches") or [] if b.get("time_to_detect_s") is not None]
        if detect:
            facts.append(Fact("Time to detect", seconds(detect[0])))
        details += [f"{f.get('severity', 'info')}: {f.get('title')}" for f in (report.get("findings") or [])[:5]]
    _, _, recovered = recovery_summary(result.get("recovery") or {})
    if result.get("fault"):
        facts.append(Fact("Time to recover", seconds(recovered) if recovered is not None else "not recovered in time"))
    if report_url:
        facts.append(Fact("Report", report_url, report_url))
    links = ([("Report", report_url)] if report_url else []) + _run_link(run)
    return Message(
        event="finished",
        severity=VERDICT_SEVERITY.get(verdict, "warning"),
        title=f"Finished, {VERDICT_TITLES.get(verdict, verdict)}: {_label(plan)}",
        summary=f"Verdict: {VERDICT_TITLES.get(verdict, verdict)}. {result.get('verdict_reason') or ''}".strip(),
        facts=tuple(facts),
        details=tuple(details),
        links=tuple(links),
    )


def build(
    event: str,
    *,
    context: Any = None,
    plan: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    breach: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    base_url: str | None = None,
) -> Message:
    """The message of `event` from what the caller has; see `announce` for what each event reads."""
    extra = dict(extra or {})
    if plan is None and result is not None:
        plan = result.get("experiment")
    run = run_ref(context, plan=plan, result=result, base_url=base_url)
    plan = plan or {}
    if event == "approval_requested":
        url = extra.get("approval_url")
        if url is None and (task := approval_task(context)) is not None:
            url = run.required_actions_url(*task)
        return approval_requested(plan, run, approval_url=url or run.url, role=extra.get("role"), timeout_s=extra.get("timeout_s"))
    if event == "started":
        return started(plan, run, fault=extra.get("fault"))
    if event == "breach_and_kill":
        return breach_and_kill(
            plan, run, breach or {}, fault=extra.get("fault"),
            removal_requested_at=extra.get("removal_requested_at"), removal_error=extra.get("removal_error"),
        )
    if event == "removal_failed":
        return removal_failed(
            plan, run, still_on_cluster=extra.get("still_on_cluster") or (), error=extra.get("error"),
            failing_since=extra.get("failing_since"), timeout_s=extra.get("timeout_s"), gave_up=bool(extra.get("failed")),
        )
    if event == "emergency_stop":
        return emergency_stop(
            run, removed=extra.get("removed") or (), reason=extra.get("reason"), requested_by=extra.get("requested_by"),
            failed_runs=extra.get("failed_runs") or (), errors=extra.get("errors") or (),
        )
    if event == "recovery_verdict":
        return recovery_verdict(plan, run, extra.get("recovery") or (result or {}).get("recovery") or {})
    if event == "finished":
        return finished(result or {}, run, plan=plan, report=extra.get("report"), report_url=extra.get("report_url"))
    raise ValueError(f"unknown notification event {event!r}; one of {', '.join(EVENTS)}")
