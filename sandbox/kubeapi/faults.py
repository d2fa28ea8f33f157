"""The API fault table: rules that make the emulated API server fail, hang or slow down on purpose."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.kubeapi.errors import ApiError, bad_request, conflict, not_found, path_not_found

CONTROL_PATH = "/sandbox/api-faults"
FAULT_HEADER = "X-Sandbox-Api-Fault"
MODES = ("error", "hang", "delay", "lose-reply")
#: The modes that wait, and so need `seconds`.
WAITING_MODES = ("hang", "delay", "lose-reply")
VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
FIELDS = ("verb", "path", "mode", "status", "reason", "message", "seconds", "times")
MAX_SECONDS = 3600

# The StatusReason a real API server gives with each code (k8s.io/apimachinery metav1), and its message.
_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}
_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected by the sandbox API fault table",
    503: "the server is currently unable to handle the request",
    504: "Timeout: request did not complete within requested timeout - context deadline exceeded",
}
# An object's URL, core or grouped, namespaced or not: its group, plural and name for a Status.
_OBJECT_PATH = re.compile(
    r"/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<plural>[^/]+)/(?P<name>[^/]+)"
)


@dataclass
class FaultRule:
    id: int
    verb: str
    path: str
    mode: str
    seconds: float | None = None
    times: int | None = None
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def applies(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.verb in ("*", method) and self._pattern.fullmatch(path) is not None

    def error(self, path: str) -> ApiError:
        """The Status this rule answers for `path`: the API server's own wording for the code,
        naming the object when the path is an object's (a 409 then reads as a lost update)."""
        status = self.status or 500
        reason = self.reason or _REASONS.get(status, "Unknown")
        if self.message is not None:
            return ApiError(status, reason, self.message)
        target = _OBJECT_PATH.fullmatch(path)
        if target is not None and status in (404, 409):
            made = (not_found if status == 404 else conflict)(target["plural"], target["group"] or "", target["name"])
            return ApiError(status, reason, made.message, made.details)
        if status == 404:
            return ApiError(status, reason, path_not_found().message)
        return ApiError(status, reason, _MESSAGES.get(status, f"{reason}: injected by the sandbox API fault table"))

    def as_dict(self) -> dict:
        rule = {"id": self.id, "verb": self.verb, "path": self.path, "mode": self.mode}
        if self.mode == "error":
            status = self.status or 500
            rule |= {"status": status, "reason": self.reason or _REASONS.get(status, "Unknown"), "message": self.message}
        else:
            rule["seconds"] = self.seconds
        return rule | {"times": self.times, "hits": self.hits}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problems(body: dict) -> list[str]:
    """Every reason `body` is not a valid rule, each naming its field and what to write instead."""
    problems = [f"{key}: unknown field (a rule has {', '.join(FIELDS)})" for key in body if key not in FIELDS]
    verb = body.get("verb", "*")
    if not isinstance(verb, str) or verb.upper() not in (*VERBS, "*"):
        problems.append(f"verb: {json.dumps(verb)} is not an HTTP method: use one of {', '.join(VERBS)}, or \"*\" for any")
    path = body.get("path")
    if not isinstance(path, str) or not path:
        problems.append('path: required: a regular expression the whole request path must match, e.g. ".*/podchaos/.*"')
    else:
        try:
            re.compile(path)
        except re.error as exc:
            problems.append(f"path: {json.dumps(path)} is not a regular expression: {exc}")
    mode = body.get("mode")
    if mode not in MODES:
        problems.append(f"mode: {json.dumps(mode)} is not a mode: use one of {', '.join(MODES)}")
    seconds = body.get("seconds")
    if mode in WAITING_MODES:
        if not _is_number(seconds) or not 0 < seconds <= MAX_SECONDS:
            problems.append(
                f"seconds: mode {mode} needs a number of seconds more than 0 and at most {MAX_SECONDS}, not {json.dumps(seconds)}"
            )
    elif "seconds" in body and mode == "error":
        problems.append(f"seconds: only modes {', '.join(WAITING_MODES)} wait; remove it from an error rule")
    if mode == "error":
        status = body.get("status")
        if status is not None and (not _is_integer(status) or not 400 <= status <= 599):
            problems.append(f"status: an error rule answers an HTTP error code from 400 to 599, not {json.dumps(status)}")
        problems += [
            f"{key}: must be a string, not {json.dumps(body[key])}"
            for key in ("reason", "message") if body.get(key) is not None and not isinstance(body[key], str)
        ]
    elif mode in MODES:
        problems += [f"{key}: only an error rule has one; remove it from a {mode} rule" for key in ("status", "reason", "message") if key in body]
    times = body.get("times")
    if times is not None and (not _is_integer(times) or times < 1):
        problems.append(f"times: the number of requests the rule affects is a positive integer, or null for all, not {json.dumps(times)}")
    return problems


class FaultTable:
    """Ordered rules; the first that applies to a request decides what happens to it.

    Only the server's event loop touches it (the control routes and the middleware), so it needs no lock.
    """

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._released = asyncio.Event()

    def add(self, body: object) -> FaultRule:
        if not isinstance(body, dict):
            kind = {list: "an array", str: "a string", type(None): "null"}.get(type(body), type(body).__name__)
            raise bad_request(f"an API fault rule is a JSON object with {', '.join(FIELDS)}, not {kind}")
        problems = _problems(body)
        if problems:
            raise bad_request("invalid API fault rule: " + "; ".join(problems))
        rule = FaultRule(
            id=next(self._ids),
            verb=body.get("verb", "*").upper(),
            path=body["path"],
            mode=body["mode"],
            seconds=body.get("seconds"),
            times=body.get("times"),
            status=body.get("status"),
            reason=body.get("reason"),
            message=body.get("message"),
        )
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> FaultRule:
        for rule in self.rules:
            if str(rule.id) == rule_id:
                self.rules.remove(rule)
                return rule
        raise ApiError(404, "NotFound", f"no API fault rule {rule_id}: GET {CONTROL_PATH} lists them", {})

    def clear(self) -> int:
        """Drop every rule and let every held request go on at once; returns how many rules there were."""
        cleared = len(self.rules)
        self.rules = []
        self._released.set()
        self._released = asyncio.Event()
        return cleared

    def match(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.applies(method, path):
                rule.hits += 1
                return rule
        return None

    async def wait(self, seconds: float, client_gone: asyncio.Future | None = None) -> bool:
        """Sleep `seconds`, less if the table is cleared; True when `client_gone` finished first."""
        released = asyncio.ensure_future(self._released.wait())
        watched = {released} | ({client_gone} if client_gone is not None else set())
        try:
            done, _ = await asyncio.wait(watched, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            released.cancel()
        return client_gone is not None and client_gone in done


async def _request_messages(receive: Receive) -> list[Message]:
    """The whole request body, as the messages that carried it (ending with a disconnect if the client left)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ApiFaultMiddleware:
    """Applies the table before anything else sees a request, as a broken server or network would.

    error: answer the rule's Status at once, the request goes no further.
    delay: read the request, wait `seconds`, then serve it, even if its client has left meanwhile
    (a write then lands that its client never heard of).
    hang: read the request and send nothing for `seconds`; a client that gives up first (a
    deadline, a closed connection) leaves no trace: the request is dropped, never served. One
    still waiting after `seconds` is served normally.
    lose-reply: serve the request at once (a write lands), then hold its answer for `seconds`; a
    client that gives up first never hears it (a create stored, its reply lost). One still
    waiting after `seconds` gets it. Only for requests with a finite answer (not a watch).
    Clearing the table cuts every wait short. The control path is never affected.
    """

    def __init__(self, app: ASGIApp, table: FaultTable) -> None:
        self.app, self.table = app, table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            await self.app(scope, receive, send)
            return
        rule = self.table.match(scope["method"], path)
        if rule is None:
            await self.app(scope, receive, send)
            return
        header = {FAULT_HEADER: str(rule.id)}
        if rule.mode == "error":
            error = rule.error(path)
            await JSONResponse(error.status(), status_code=error.code, headers=header)(scope, receive, send)
            return
        messages = await _request_messages(receive)
        if messages[-1]["type"] == "http.disconnect":
            return
        if rule.mode == "lose-reply":
            await self._lose_reply(scope, messages, receive, send, rule)
            return
        if rule.mode == "hang":
            if await self._client_left(receive, rule.seconds):
                return
        else:
            await self.table.wait(rule.seconds)
        await self.app(scope, _replay(messages, receive), _tagged(send, rule.id))

    async def _client_left(self, receive: Receive, seconds: float) -> bool:
        """Wait `seconds` (cut short by clearing the table); True when the client left meanwhile."""
        client_gone = asyncio.ensure_future(_disconnect(receive))
        try:
            return await self.table.wait(seconds, client_gone)
        finally:
            client_gone.cancel()

    async def _lose_reply(self, scope: Scope, messages: list[Message], receive: Receive, send: Send, rule: FaultRule) -> None:
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(scope, _replay(messages, receive), keep)
        if await self._client_left(receive, rule.seconds):
            return
        tagged = _tagged(send, rule.id)
        for message in answer:
            await tagged(message)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _tagged(send: Send, rule_id: int) -> Send:
    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (FAULT_HEADER.lower().encode(), str(rule_id).encode())]
            message = {**message, "headers": headers}
        await send(message)

    return tagged
