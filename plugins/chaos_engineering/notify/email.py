"""E-mail notifications through the smtp provider's hook, with the report PDF attached; never raises.

Recipients come from the `smtp` connection's extra `to` (a list, or addresses separated by `,`
or `;`), the sender from its `from_email` (the smtp provider's own extra). A connection without
recipients disables the channel, like a missing connection.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.smtp.hooks.smtp import SmtpHook
from chaos_engineering.notify.delivery import CALL_TIMEOUT_S, DISABLED, FAILED, SENT, SKIPPED, connection_or_none, disabled_once, log_failure, secrets_of
from chaos_engineering.notify.messages import Message, build

DEFAULT_CONN_ID = "smtp_default"
DEFAULT_FROM = "airflow-chaos-engineering@localhost"

#: The events worth an e-mail: the alerts, and the end of a run with its report.
EMAIL_EVENTS = frozenset({"breach_and_kill", "removal_failed", "emergency_stop", "finished"})


class BoundedSmtpHook(SmtpHook):
    """SmtpHook whose waits are bounded whatever the connection's extras say: each socket call
    at most `timeout_s` (the provider defaults to 30 s) and no retry (it defaults to 5)."""

    def __init__(self, smtp_conn_id: str = DEFAULT_CONN_ID, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        super().__init__(smtp_conn_id=smtp_conn_id)
        self.timeout_s = timeout_s

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return min(float(super().timeout), self.timeout_s)

    @property
    def smtp_retry_limit(self) -> int:
        return 0


def recipients_of(conn: Any) -> list[str]:
    to = (conn.extra_dejson or {}).get("to") or []
    if isinstance(to, str):
        to = to.replace(";", ",").split(",")
    return [address.strip() for address in to if address and address.strip()]


def send_message(
    message: Message,
    *,
    conn_id: str = DEFAULT_CONN_ID,
    attachments: Mapping[str, bytes] | None = None,
    timeout: float = CALL_TIMEOUT_S,
) -> str:
    """Sends one message with `attachments` (file name -> bytes); `sent`, `disabled` or `failed`."""
    conn = connection_or_none(conn_id, "E-mail")
    if conn is None:
        return DISABLED
    to = recipients_of(conn)
    if not to:
        disabled_once(f"{conn_id}:to", "E-mail notifications disabled: connection %r has no recipients in its extra 'to'", conn_id)
        return DISABLED
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-notify-") as folder:
            # The hook attaches files by path, named after their base name.
            files = []
            for name, content in (attachments or {}).items():
                path = Path(folder) / Path(name).name
                path.write_bytes(content)
                files.append(str(path))
            with BoundedSmtpHook(conn_id, timeout_s=min(timeout, CALL_TIMEOUT_S)) as hook:
                hook.send_email_smtp(
                    to=to,
                    subject=message.subject,
                    html_content=message.html(),
                    from_email=hook.from_email or DEFAULT_FROM,
                    files=files,
                )
    except Exception as exc:
        log_failure("E-mail", message.event, exc, secrets_of(conn))
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
    """The message of `event` by e-mail, if it is one of `EMAIL_EVENTS` (`skipped` otherwise).

    `extra["report_pdf"]` (bytes) is attached as `report.pdf` (or `extra["report_pdf_name"]`).
    """
    if event not in EMAIL_EVENTS:
        return SKIPPED
    try:
        message = build(event, context=context, plan=plan, result=result, breach=breach, extra=extra)
        extra = extra or {}
        pdf = extra.get("report_pdf")
        attachments = {extra.get("report_pdf_name") or "report.pdf": bytes(pdf)} if pdf else {}
    except Exception as exc:
        log_failure("E-mail", event, exc)
        return FAILED
    return send_message(message, conn_id=conn_id, attachments=attachments, timeout=timeout)
