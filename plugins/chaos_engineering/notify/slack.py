"""Slack notifications through the slack provider's webhook hook: a notifier and a plain `send`.

Never raises and never waits long: one try, at most `CALL_TIMEOUT_S` per network call, no
retry handlers (slack_sdk's default retries a failed connection), failures logged without the
webhook URL (the URL is the secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from airflow.sdk import BaseNotifier
from chaos_engineering.notify.delivery import CALL_TIMEOUT_S, DISABLED, FAILED, SENT, connection_or_none, log_failure, secrets_of
from chaos_engineering.notify.messages import Message, build
from chaos_engineering.notify.run import plan_from_context

#: A `slackwebhook` connection: `password` = the full webhook URL (or `host` + token).
DEFAULT_CONN_ID = "slack_chaos"


def send_message(message: Message, *, conn_id: str = DEFAULT_CONN_ID, timeout: float = CALL_TIMEOUT_S) -> str:
    """Posts one message; `sent`, `disabled` (no connection) or `failed` (logged)."""
    conn = connection_or_none(conn_id, "Slack")
    if conn is None:
        return DISABLED
    try:
        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=min(timeout, CALL_TIMEOUT_S), retry_handlers=[])
        hook.send_dict(message.slack_payload())
    except Exception as exc:
        log_failure("Slack", message.event, exc, secrets_of(conn))
        return FAILED
    return SENT


def send(
    event: str,
    *,
    conn_id: str = DEFAULT_CONN_ID,
    context: Any = None,
    plan: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    breach: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    timeout: float = CALL_TIMEOUT_S,
) -> str:
    """Builds the message of `event` (see `messages.build`) and posts it. Never raises."""
    try:
        message = build(event, context=context, plan=plan, result=result, breach=breach, extra=extra)
    except Exception as exc:
        log_failure("Slack", event, exc)
        return FAILED
    return send_message(message, conn_id=conn_id, timeout=timeout)


class ChaosSlackNotifier(BaseNotifier):
    """A lifecycle message to Slack as an Airflow notifier: `notifiers=[...]` of a human-in-the-loop
    task (`event="approval_requested"`), or a task's `on_failure_callback`.

    Reads the run's plan from the XCom of `plan_task_id`. Never raises: a notifier that raises
    would fail the approval task it belongs to.
    """

    template_fields = ("slack_webhook_conn_id", "extra")

    def __init__(
        self,
        *,
        event: str,
        slack_webhook_conn_id: str = DEFAULT_CONN_ID,
        plan_task_id: str = "plan",
        extra: dict[str, Any] | None = None,
        timeout: float = CALL_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.event = event
        self.slack_webhook_conn_id = slack_webhook_conn_id
        self.plan_task_id = plan_task_id
        self.extra = extra
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        send(
            self.event,
            conn_id=self.slack_webhook_conn_id,
            context=context,
            plan=plan_from_context(context, self.plan_task_id),
            extra=self.extra,
            timeout=self.timeout,
        )
