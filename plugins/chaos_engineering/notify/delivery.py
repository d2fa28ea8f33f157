"""What every channel shares: a hard time budget, connections that may be absent, failures logged without secrets."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("chaos_engineering.notify")

#: The most any one network call of a notification may wait (connect, or each read).
CALL_TIMEOUT_S = 3.0

_disabled_logged: set[str] = set()
_disabled_lock = threading.Lock()


class Deadline:
    """The time left for a delivery: every call takes min(its own cap, what is left)."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def left(self, cap: float = CALL_TIMEOUT_S) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("the notification's time budget is spent")
        return min(cap, left)


def connection_or_none(conn_id: str, channel: str) -> Any | None:
    """The Airflow connection, or None when it is not defined: that channel is then disabled."""
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        disabled_once(conn_id, "%s notifications disabled: no Airflow connection %r", channel, conn_id)
        return None
    except Exception as exc:  # a secrets backend or the API server that does not answer
        log.warning("%s notifications not sent: connection %r unreadable: %s", channel, conn_id, type(exc).__name__)
        return None


def disabled_once(key: str, message: str, *args: Any) -> None:
    """Logs at info the first time only: an unconfigured channel is a choice, not an error."""
    with _disabled_lock:
        first = key not in _disabled_logged
        _disabled_logged.add(key)
    if first:
        log.info(message, *args)


def secrets_of(conn: Any) -> list[str]:
    """What must never appear in a log line: the password (a webhook URL or its token), the host
    (a webhook base URL) and the login."""
    found = []
    for value in (getattr(conn, "password", None), getattr(conn, "host", None), getattr(conn, "login", None)):
        if value and str(value).strip():
            found.append(str(value).strip())
    return found


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """The text with every secret and every URL replaced: a webhook URL is itself the secret."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL.sub("<url>", text)


def log_failure(channel: str, event: str, exc: BaseException, secrets: Iterable[str] = ()) -> None:
    """One warning line: no traceback (the exception chain may quote the URL), nothing secret."""
    log.warning("%s notification %r not sent: %s: %s", channel, event, type(exc).__name__, redact(str(exc), secrets))


# What a channel did with one notification (announce returns one per channel).
SENT, DISABLED, SKIPPED, FAILED, TIMED_OUT = "sent", "disabled", "skipped", "failed", "timed_out"
