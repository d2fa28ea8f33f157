"""Tell people and Prometheus what a run is doing: `announce(event, ...)` sends Slack, e-mail and metrics.

Every channel is optional (no connection = channel disabled, said once at info), isolated (one
failing does not stop the others) and bounded: the channels run side by side and `announce`
returns after at most `Channels.budget_s` whatever they do, so it may sit on the safety path.

What each event reads (plain dicts, as the steps record them):

| event | plan | result | breach | extra |
|---|---|---|---|---|
| approval_requested | plan XCom | | | role, timeout_s, approval_url (else derived from a HITL context) |
| started | plan XCom | | | fault (inject's XCom: kind, name, namespace, injected_at) |
| breach_and_kill | plan XCom | | monitor event's breach | fault, removal_requested_at, removal_error |
| removal_failed | plan XCom | | | still_on_cluster (kind, namespace, name, deleting_since, the object's labels), error, failing_since, timeout_s, failed (given up) |
| emergency_stop | | | | removed (Chaos Mesh objects or experiment_of_object dicts), requested_by, reason, failed_runs, errors |
| recovery_verdict | plan XCom | or result.json | | recovery ({stage: record or None}) |
| finished | (result's) | result.json | | report (report.json), report_url, report_pdf (bytes), report_pdf_name |
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier
from chaos_engineering.notify import email, metrics, slack
from chaos_engineering.notify.delivery import CALL_TIMEOUT_S, DISABLED, FAILED, SKIPPED, TIMED_OUT, Deadline, log, log_failure
from chaos_engineering.notify.messages import EVENTS, build
from chaos_engineering.notify.run import plan_from_context

__all__ = ["EVENTS", "Channels", "ChaosNotifier", "announce"]


@dataclass(frozen=True)
class Channels:
    """The connection of each channel (None switches it off) and the time `announce` may take."""

    slack_conn_id: str | None = slack.DEFAULT_CONN_ID  # slackwebhook
    smtp_conn_id: str | None = email.DEFAULT_CONN_ID  # smtp, extra `to` = recipients
    pushgateway_conn_id: str | None = metrics.DEFAULT_CONN_ID  # http
    budget_s: float = CALL_TIMEOUT_S + 0.5


DEFAULT_CHANNELS = Channels()


def announce(
    event: str,
    *,
    context: Any = None,
    plan: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    breach: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    channels: Channels = DEFAULT_CHANNELS,
) -> dict[str, str]:
    """Sends `event` to every configured channel; returns each channel's outcome (`sent`,
    `disabled`, `skipped`, `failed`, `timed_out`). Never raises, returns within `channels.budget_s`.

    A channel still running at the deadline is left to finish in the background (a daemon
    thread, itself bounded by its own timeouts) and reported as `timed_out`.
    """
    outcome: dict[str, str] = {}
    try:
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r}; one of {', '.join(EVENTS)}")
        deadline = Deadline(channels.budget_s)
        message = build(event, context=context, plan=plan, result=result, breach=breach, extra=extra)
        extra = extra or {}
        pdf = extra.get("report_pdf")
        attachments = {extra.get("report_pdf_name") or "report.pdf": bytes(pdf)} if pdf and event == "finished" else {}
        work: dict[str, Callable[[], str]] = {}
        if channels.slack_conn_id:
            work["slack"] = lambda: slack.send_message(message, conn_id=channels.slack_conn_id)
        if channels.smtp_conn_id:
            work["email"] = lambda: (
                email.send_message(message, conn_id=channels.smtp_conn_id, attachments=attachments)
                if event in email.EMAIL_EVENTS
                else SKIPPED
            )
        if channels.pushgateway_conn_id:
            work["metrics"] = lambda: metrics.push(
                event, plan=plan, result=result, breach=breach, extra=extra, conn_id=channels.pushgateway_conn_id, deadline=deadline
            )
        outcome = {name: DISABLED for name in ("slack", "email", "metrics") if name not in work}
        outcome |= _run_side_by_side(work, deadline)
    except Exception as exc:
        log_failure("chaos", event, exc)
        outcome.setdefault("error", FAILED)
    return outcome


def _run_side_by_side(work: dict[str, Callable[[], str]], deadline: Deadline) -> dict[str, str]:
    outcome: dict[str, str] = {}
    lock = threading.Lock()

    def run(name: str, job: Callable[[], str]) -> None:
        try:
            status = job()
        except Exception as exc:  # each channel catches its own; this is the last guard
            log_failure(name, "", exc)
            status = FAILED
        with lock:
            outcome[name] = status

    threads = [threading.Thread(target=run, args=item, name=f"chaos-notify-{item[0]}", daemon=True) for item in work.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        try:
            thread.join(deadline.left(cap=float("inf")))
        except TimeoutError:
            break
    with lock:
        late = [name for name in work if name not in outcome]
        for name in late:
            outcome[name] = TIMED_OUT
    if late:
        log.warning("notification channel(s) %s still busy after the time budget: not waiting", ", ".join(late))
    return dict(outcome)


class ChaosNotifier(BaseNotifier):
    """`announce` as an Airflow notifier: for a human-in-the-loop task's `notifiers=`
    (`event="approval_requested"`, so the approvers get the link and `chaos_approvals_pending`
    goes to 1) or a callback. Reads the plan from the XCom of `plan_task_id`; never raises."""

    template_fields = ("extra",)

    def __init__(
        self,
        *,
        event: str,
        plan_task_id: str = "plan",
        extra: dict[str, Any] | None = None,
        channels: Channels = DEFAULT_CHANNELS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.event = event
        self.plan_task_id = plan_task_id
        self.extra = extra
        self.channels = channels

    def notify(self, context: Any) -> None:
        announce(self.event, context=context, plan=plan_from_context(context, self.plan_task_id), extra=self.extra, channels=self.channels)
