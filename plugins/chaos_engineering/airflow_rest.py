"""A REST client for Airflow 3.3's public API (/api/v2): `chaosctl run`/`runs`, and the end-to-end tests as one user."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util import Retry

log = logging.getLogger(__name__)


def show_warnings(stream) -> None:
    """Print the client's retries and failed polls (each says what it waits for) to `stream`,
    among a command's progress lines; once per process (a later call replaces the stream)."""
    for handler in [h for h in log.handlers if h.get_name() == "progress"]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.set_name("progress")
    handler.setFormatter(logging.Formatter("[%(asctime)s]   %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False

RUN_FINISHED = frozenset({"success", "failed"})
TASK_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
AWAITING_INPUT = "awaiting_input"

# The race in shared/AIRFLOW-NOTES.md: a response sent within ~0.5 s of the task parking in
# awaiting_input failed the task. The worker's exit after parking must reach the scheduler first.
MIN_AWAITING_SECONDS = 1.5
LOG_TAIL_LINES = 40

# Called with the task's key once it is awaiting input; True once the scheduler has processed the
# worker's exit after parking (see AirflowStack.scheduler_processed_park).
ParkSettledCheck = Callable[["TaskKey"], bool]

# A read (GET) that gets no answer, or one of these, is tried again: the api-server is overloaded or
# restarting. A write is tried once: a trigger retried after a lost answer would start a second run.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
READ_ATTEMPTS = 5
# urllib3's exponential backoff: 0, 2, 4, 8 s between the attempts, never more than BACKOFF_MAX_S;
# a Retry-After (429, 503) is honoured up to RETRY_AFTER_MAX_S.
BACKOFF_FACTOR_S = 1.0
BACKOFF_MAX_S = 10.0
RETRY_AFTER_MAX_S = 30


class AirflowApiError(RuntimeError):
    """Airflow answered a REST call with an unexpected status."""

    def __init__(self, user: str, method: str, path: str, status_code: int, detail: Any) -> None:
        self.user = user
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"{method} {path} as {user!r} -> HTTP {status_code}: {detail}")


class AirflowUnavailable(AirflowApiError):
    """A request that got no usable answer however often it was tried: none at all (`status_code`
    None: timed out, refused, connection lost) or only 429/502/503/504. Transient by nature: the
    waits take it as "unknown, poll again". `path` is the URL's path as sent (`/api/v2/...`)."""

    def __init__(
        self, user: str, method: str, path: str, status_code: int | None, detail: Any, *, attempts: int, elapsed: float
    ) -> None:
        super().__init__(user, method, path, status_code or 0, detail)
        self.status_code = status_code
        self.attempts = attempts
        self.elapsed = elapsed

    def __str__(self) -> str:
        answer = f"HTTP {self.status_code}: {self.detail}" if self.status_code is not None else self.detail
        tries = f"{self.attempts} attempts" if self.attempts > 1 else "1 attempt"
        return f"{self.method} {self.path} as {self.user!r}: {answer} (gave up after {tries} over {self.elapsed:.0f} s)"


class AirflowWaitTimeout(AssertionError):
    """Something did not happen in Airflow within the time a test (or `chaosctl run --timeout`) allowed for it."""


@dataclass(frozen=True)
class TaskKey:
    """One task instance of a DAG run, with the try it is on."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 0


@dataclass(frozen=True)
class TaskStateChange:
    """A task instance moved from one state to another, seen while polling a run."""

    task: str
    previous: str | None
    current: str | None
    elapsed: float

    def __str__(self) -> str:
        return f"[{self.elapsed:6.1f}s] {self.task}: {self.previous or '-'} -> {self.current or '-'}"


def _task_label(task_instance: Mapping[str, Any]) -> str:
    map_index = task_instance.get("map_index", -1)
    return task_instance["task_id"] if map_index in (-1, None) else f"{task_instance['task_id']}[{map_index}]"


def _detail(response: requests.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text


def _format_error_detail(detail: Any) -> list[str]:
    """The structured exception of a task log entry as a short traceback: innermost frame, type, value."""
    if not detail:
        return []
    if not isinstance(detail, list):
        return [f"    {detail}"]
    lines = []
    for exception in detail:
        frames = exception.get("frames") or []
        if frames:
            frame = frames[-1]
            lines.append(f"    at {frame.get('filename')}:{frame.get('lineno')} in {frame.get('name')}")
        lines.append(f"    {exception.get('exc_type')}: {exception.get('exc_value')}")
    return lines


def describe_failure(error: BaseException | None, timeout: float) -> str:
    """What went wrong with one attempt, in words: "timed out after 30 s", "could not connect: ..."."""
    if isinstance(error, MaxRetryError):
        error = error.reason
    if isinstance(error, ReadTimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, NewConnectionError):
        return f"could not connect: {str(error).rpartition(': ')[2]}"
    if isinstance(error, ConnectTimeoutError):
        return f"could not connect within {timeout:g} s"
    if isinstance(error, ProtocolError) and len(error.args) > 1:
        return f"lost the connection: {error.args[1]}"
    return f"{type(error).__name__}: {error}"


class RetriesExhausted(MaxRetryError):
    """urllib3's MaxRetryError, saying how many attempts were made."""

    def __init__(self, pool: Any, url: str, reason: Exception | None, attempts: int) -> None:
        super().__init__(pool, url, reason)
        self.attempts = attempts


class ReadRetry(Retry):
    """urllib3's retry policy, logging each retry in one line that says what it waits for:
    `GET /api/v2/... timed out after 30 s; retrying in 2 s (attempt 2 of 5)`."""

    def __init__(self, *args: Any, request_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout

    def new(self, **kw: Any) -> ReadRetry:
        return super().new(request_timeout=self.request_timeout, **kw)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> ReadRetry:
        what = f"answered HTTP {response.status}" if response is not None else describe_failure(error, self.request_timeout)
        try:
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exhausted:
            raise RetriesExhausted(_pool, url, exhausted.reason, len(self.history) + 1) from exhausted.reason
        wait = self._wait(retry, response)
        log.warning(
            "%s %s %s; retrying %s (attempt %d of %d)",
            method, url, what, f"in {wait:g} s" if wait > 0 else "now",
            len(retry.history) + 1, len(retry.history) + (retry.total or 0) + 1,
        )
        return retry

    def _wait(self, retry: Retry, response: Any) -> float:
        """What `Retry.sleep` will wait before the next attempt: the Retry-After, else the backoff."""
        if response is not None and self.respect_retry_after_header:
            try:
                after = retry.get_retry_after(response)
            except InvalidHeader:
                after = None
            if after:
                return after
        return retry.get_backoff_time()


def read_retry(
    attempts: int = READ_ATTEMPTS, backoff_factor: float = BACKOFF_FACTOR_S, request_timeout: float = 30.0
) -> ReadRetry:
    """The policy of the requests that are safe to repeat: GETs, and `POST /auth/token` (a new token
    changes nothing on the server)."""
    return ReadRetry(
        total=attempts - 1,
        other=0,  # TLS and other errors no retry can mend
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=BACKOFF_MAX_S,
        retry_after_max=RETRY_AFTER_MAX_S,
        raise_on_status=False,
        request_timeout=request_timeout,
    )


def _attempts(response_or_error: Any) -> int:
    """How many attempts a retried request took, from its answer or from the error that ended it."""
    if isinstance(response_or_error, requests.Response):
        retries = getattr(response_or_error.raw, "retries", None)
        return len(retries.history) + 1 if retries is not None else 1
    reason = response_or_error.args[0] if response_or_error.args else None
    return reason.attempts if isinstance(reason, RetriesExhausted) else 1


class AirflowClient:
    """The REST API as one user sees it: every call carries its bearer token.

    The token is `token` as given (airflowctl's `AIRFLOW_CLI_TOKEN`; never exchanged, a 401 is
    final), or one exchanged for `username`/`password` at `POST /auth/token`, which the simple auth
    manager, FAB and Keycloak all serve (renewed once on a 401).
    """

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        poll_interval: float = 0.5,
        request_timeout: float = 30.0,
        park_settled: ParkSettledCheck | None = None,
        read_attempts: int = READ_ATTEMPTS,
        backoff_factor: float = BACKOFF_FACTOR_S,
    ) -> None:
        if token is None and (username is None or password is None):
            raise ValueError("an Airflow client needs a token, or a username and a password")
        self.base_url = base_url.rstrip("/")
        # Who the error messages name: never the token itself.
        self.username = username if token is None else username or "(bearer token)"
        self._password = password
        self._static_token = token
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self._park_settled = park_settled
        # Writes go once, through a session that never retries (requests' default); reads and the
        # token through one whose adapter retries (read_retry).
        self._session = requests.Session()
        self._retrying = requests.Session()
        adapter = HTTPAdapter(max_retries=read_retry(read_attempts, backoff_factor, request_timeout))
        self._retrying.mount("http://", adapter)
        self._retrying.mount("https://", adapter)
        self._token: str | None = token
        # When this client first saw each task instance awaiting input (monotonic seconds).
        self._awaiting_since: dict[TaskKey, float] = {}

    # -- transport ------------------------------------------------------------------------------

    def token(self) -> str:
        """The given token, or a JWT from `POST /auth/token` (cached until a 401)."""
        if self._token is None:
            started = time.monotonic()
            try:
                response = self._retrying.post(
                    f"{self.base_url}/auth/token",
                    json={"username": self.username, "password": self._password},
                    timeout=self.request_timeout,
                )
            except requests.RequestException as error:
                raise self._unavailable("POST", "/auth/token", error, started) from error
            if response.status_code in RETRY_STATUSES:
                raise self._unavailable("POST", "/auth/token", response, started)
            if response.status_code != 201:
                raise AirflowApiError(
                    self.username, "POST", "/auth/token", response.status_code, response.text
                )
            self._token = response.json()["access_token"]
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        expect: Collection[int] = (200,),
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call `/api/v2{path}`; return the decoded JSON body, or raise `AirflowApiError`.

        A GET is retried on timeouts, lost connections and 429/502/503/504 (`read_retry`); when
        every attempt failed it raises `AirflowUnavailable`, naming the call and how long it tried.
        Any other method goes once: a write whose answer was lost may still have happened.
        """
        read = method.upper() == "GET"
        session = self._retrying if read else self._session
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                response = session.request(
                    method,
                    f"{self.base_url}/api/v2{path}",
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {self.token()}", **(headers or {})},
                    timeout=self.request_timeout,
                )
            except requests.RequestException as error:
                if not read:
                    raise
                raise self._unavailable(method, f"/api/v2{path}", error, started) from error
            if response.status_code == 401 and attempt == 1 and self._static_token is None:
                self._token = None  # expired: log in again once
                continue
            break
        if read and response.status_code in RETRY_STATUSES:
            raise self._unavailable(method, f"/api/v2{path}", response, started)
        if response.status_code not in expect:
            raise AirflowApiError(self.username, method, path, response.status_code, _detail(response))
        return response.json() if response.content else None

    def _unavailable(
        self, method: str, path: str, failure: requests.Response | requests.RequestException, started: float
    ) -> AirflowUnavailable:
        if isinstance(failure, requests.Response):
            status_code, detail = failure.status_code, _detail(failure)
        else:
            reason = failure.args[0] if failure.args else None
            cause = reason if isinstance(reason, BaseException) else failure
            status_code, detail = None, describe_failure(cause, self.request_timeout)
        return AirflowUnavailable(
            self.username, method, path, status_code, detail, attempts=_attempts(failure), elapsed=time.monotonic() - started
        )

    @staticmethod
    def _run_path(dag_id: str, run_id: str) -> str:
        # Manual run ids hold ':' and '+', which must not reach the router unescaped.
        return f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"

    @classmethod
    def _task_path(cls, dag_id: str, run_id: str, task_id: str) -> str:
        return f"{cls._run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}"

    # -- DAGs -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /api/v2/monitor/health`: metadatabase, scheduler, triggerer, dag_processor."""
        return self.request("GET", "/monitor/health")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API lists it, or None while it is not parsed yet."""
        try:
            return self.request("GET", f"/dags/{quote(dag_id, safe='')}")
        except AirflowApiError as error:
            if error.status_code == 404:
                return None
            raise

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/importErrors", params={"limit": 100})["import_errors"]

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{quote(dag_id, safe='')}", json={"is_paused": paused})

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0, *, unpause: bool = True) -> dict[str, Any]:
        """Wait until the dag-processor has parsed `dag_id` and the API lists it; unpause it."""
        deadline = time.monotonic() + timeout
        waiting_for = f"DAG {dag_id!r} to appear in the API"
        while (dag := self._poll(lambda: self.dag(dag_id), waiting_for, deadline)) is None:
            if time.monotonic() > deadline:
                try:
                    errors = "\n".join(
                        f"  {e['filename']}: {e['stack_trace'].strip()[-600:]}" for e in self.import_errors()
                    )
                except AirflowUnavailable as error:
                    errors = f"unavailable ({error})"
                raise AirflowWaitTimeout(
                    f"DAG {dag_id!r} did not appear in the API within {timeout:.0f}s; "
                    f"import errors: {errors or 'none'}"
                )
            time.sleep(self.poll_interval)
        if unpause and dag.get("is_paused"):
            self.unpause(dag_id)
            dag["is_paused"] = False
        return dag

    # -- runs -----------------------------------------------------------------------------------

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, logical_date: datetime | None = None
    ) -> str:
        """`POST /dags/{dag_id}/dagRuns`; return the new run's id."""
        body = {
            "conf": dict(conf or {}),
            "logical_date": logical_date.isoformat() if logical_date is not None else None,
        }
        run = self.request("POST", f"/dags/{quote(dag_id, safe='')}/dagRuns", json=body)
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", self._run_path(dag_id, run_id))

    def recent_runs(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        """The DAG's `limit` newest runs (by `run_after`), newest first."""
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns"
        return self.request("GET", path, params={"order_by": "-run_after", "limit": limit})["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.run(dag_id, run_id)["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (the API pages by at most 100)."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.request(
                "GET",
                f"{self._run_path(dag_id, run_id)}/taskInstances",
                params={"limit": 100, "offset": len(found)},
            )
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """{task_id (or `task_id[map_index]` when mapped): state}; None is "not scheduled yet"."""
        return {_task_label(ti): ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"{self._task_path(dag_id, run_id, task_id)}"
        if map_index != -1:
            path += f"/{map_index}"
        return self.request("GET", path)

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 120.0,
        *,
        on_change: Callable[[TaskStateChange], None] | None = None,
        expect: str | None = None,
    ) -> str:
        """Poll the run until it finishes; return its final state.

        `on_change` is called with every task state change seen. With `expect`, a different final
        state raises, naming every task's state and the tail of the failed task's log.
        """
        started = time.monotonic()
        deadline = started + timeout
        seen: dict[str, str | None] = {}
        waiting_for = f"run {dag_id}/{run_id} to finish"
        state: str | None = None
        while True:
            # A failed poll is "unknown": keep the state last seen and poll again until the deadline.
            state = self._poll(lambda: self.run_state(dag_id, run_id), waiting_for, deadline, default=state)
            self._poll(lambda: self._report_changes(dag_id, run_id, seen, started, on_change), waiting_for, deadline)
            if state in RUN_FINISHED:
                if expect is not None and state != expect:
                    raise AssertionError(
                        f"run {dag_id}/{run_id} ended {state!r}, expected {expect!r}\n"
                        + self.describe_run(dag_id, run_id)
                    )
                return state
            if time.monotonic() > deadline:
                last = repr(state) if state is not None else "unknown (no poll answered)"
                raise AirflowWaitTimeout(
                    f"run {dag_id}/{run_id} still {last} after {timeout:.0f}s\n"
                    + self.describe_run(dag_id, run_id)
                )
            time.sleep(self.poll_interval)

    def _poll(self, read: Callable[[], Any], waiting_for: str, deadline: float, default: Any = None) -> Any:
        """One read of a wait: what `read` returns, or `default` when Airflow gave no usable answer
        (the wait goes on until its own deadline; the log says what it waits for)."""
        try:
            return read()
        except AirflowUnavailable as error:
            left = max(0.0, deadline - time.monotonic())
            log.warning("%s; still waiting for %s (%.0f s left)", error, waiting_for, left)
            return default

    def _report_changes(
        self,
        dag_id: str,
        run_id: str,
        seen: dict[str, str | None],
        started: float,
        on_change: Callable[[TaskStateChange], None] | None,
    ) -> None:
        now = time.monotonic()
        for ti in self.task_instances(dag_id, run_id):
            label, state = _task_label(ti), ti["state"]
            self._note_awaiting(dag_id, run_id, ti, now)
            if label in seen and seen[label] == state:
                continue
            previous = seen.get(label)
            seen[label] = state
            if on_change is not None and (previous is not None or state is not None):
                on_change(TaskStateChange(label, previous, state, now - started))

    def _note_awaiting(self, dag_id: str, run_id: str, ti: Mapping[str, Any], now: float) -> None:
        if ti["state"] == AWAITING_INPUT:
            key = TaskKey(dag_id, run_id, ti["task_id"], ti.get("map_index", -1), ti.get("try_number", 0))
            self._awaiting_since.setdefault(key, now)

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: str | Iterable[str],
        timeout: float = 120.0,
        *,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Poll until the task instance is in one of `states`; return it.

        Fails at once if the task finishes in another state, or the run ends without it getting there.
        """
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        waiting_for = f"task {task_id} of {dag_id}/{run_id} to be {' or '.join(sorted(wanted))}"
        ti: dict[str, Any] | None = None
        while True:
            # A failed poll is "unknown": keep what was seen last and poll again until the deadline.
            polled = self._poll(lambda: self.task_instance(dag_id, run_id, task_id, map_index), waiting_for, deadline)
            if polled is not None:
                ti = polled
                self._note_awaiting(dag_id, run_id, ti, time.monotonic())
                if ti["state"] in wanted:
                    return ti
            finished = polled is not None and ti["state"] in TASK_FINISHED
            run_over = polled is not None and (
                self._poll(lambda: self.run_state(dag_id, run_id), waiting_for, deadline) in RUN_FINISHED
            )
            if finished or run_over or time.monotonic() > deadline:
                last = repr(ti["state"]) if ti is not None else "unknown (no poll answered)"
                why = f"finished {last}" if finished else f"is {last}"
                raise AirflowWaitTimeout(
                    f"task {task_id} of {dag_id}/{run_id} {why}, waited for {sorted(wanted)} "
                    f"({timeout:.0f}s allowed)\n" + self.describe_run(dag_id, run_id)
                )
            time.sleep(self.poll_interval)

    # -- human in the loop ----------------------------------------------------------------------

    def pending_approvals(self, dag_id: str | None = None) -> list[dict[str, Any]]:
        """HITL requests nobody has answered yet, across all runs (of `dag_id`, if given)."""
        path = f"/dags/{quote(dag_id, safe='') if dag_id else '~'}/dagRuns/~/hitlDetails"
        return self.request("GET", path, params={"response_received": "false", "limit": 100})["hitl_details"]

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"{self._task_path(dag_id, run_id, task_id)}/{map_index}/hitlDetails"
        return self.request("GET", path)

    def respond(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: list[str],
        params_input: Mapping[str, Any] | None = None,
        map_index: int = -1,
        *,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Answer a HITL task as this user, once it is safe to (see MIN_AWAITING_SECONDS)."""
        self.wait_until_respondable(dag_id, run_id, task_id, map_index=map_index, timeout=timeout)
        path = f"{self._task_path(dag_id, run_id, task_id)}/{map_index}/hitlDetails"
        return self.request(
            "PATCH",
            path,
            json={"chosen_options": list(chosen_options), "params_input": dict(params_input or {})},
        )

    def wait_until_respondable(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1, timeout: float = 120.0
    ) -> None:
        """Wait until the task has been awaiting input for MIN_AWAITING_SECONDS and, when the stack
        can tell, until the scheduler has processed the worker's exit after parking."""
        deadline = time.monotonic() + timeout
        ti = self.wait_for_task_state(dag_id, run_id, task_id, AWAITING_INPUT, timeout, map_index=map_index)
        key = TaskKey(dag_id, run_id, task_id, map_index, ti.get("try_number", 0))
        since = self._awaiting_since.setdefault(key, time.monotonic())
        time.sleep(max(0.0, since + MIN_AWAITING_SECONDS - time.monotonic()))
        if self._park_settled is None:
            return
        while not self._park_settled(key):
            if time.monotonic() > deadline:
                raise AirflowWaitTimeout(
                    f"the scheduler never logged the end of {task_id}'s park in {dag_id}/{run_id} "
                    f'("TaskInstance Finished ... state=awaiting_input") within {timeout:.0f}s: '
                    "answering now could fail the task (shared/AIRFLOW-NOTES.md)"
                )
            time.sleep(self.poll_interval)

    # -- results --------------------------------------------------------------------------------

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = self._task_path(dag_id, run_id, task_id) + f"/xcomEntries/{quote(key, safe='')}"
        return self.request("GET", path, params={"map_index": map_index})["value"]

    def set_xcom(
        self, dag_id: str, run_id: str, task_id: str, value: Any, key: str = "return_value", map_index: int = -1
    ) -> dict[str, Any]:
        """Overwrite a task's XCom, as any account with the `user` role may."""
        path = self._task_path(dag_id, run_id, task_id) + f"/xcomEntries/{quote(key, safe='')}"
        return self.request("PATCH", path, json={"value": value, "map_index": map_index})

    # -- task states: what an operator in the UI can do with "Mark as" and "Clear" ----------------

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        """Mark a task instance success, failed or skipped."""
        return self.request("PATCH", self._task_path(dag_id, run_id, task_id), json={"new_state": state})

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str], *, include_downstream: bool = False) -> Any:
        """Clear task instances of a run so the scheduler runs them again."""
        return self.request(
            "POST",
            f"/dags/{quote(dag_id, safe='')}/clearTaskInstances",
            json={"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False,
                  "include_downstream": include_downstream, "reset_dag_runs": True},
        )

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The task's log for one try, one event a line."""
        path = f"{self._task_path(dag_id, run_id, task_id)}/logs/{try_number}"
        body = self.request(
            "GET",
            path,
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        lines = []
        for entry in body["content"]:
            if isinstance(entry, str):
                lines.append(entry)
                continue
            level = entry.get("level", "")
            lines.append(f"{entry.get('timestamp') or '':32} {level:8} {entry.get('event', '')}")
            lines.extend(_format_error_detail(entry.get("error_detail")))
        return "\n".join(lines)

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """Every task's state, then the log tail of each failed task: for assertion messages."""
        try:
            instances = self.task_instances(dag_id, run_id)
        except (AirflowApiError, requests.RequestException) as error:
            return f"(task states unavailable: {error})"
        text = ["task states:"] + [f"  {_task_label(ti):40} {ti['state']}" for ti in instances]
        for ti in instances:
            if ti["state"] not in ("failed", "up_for_retry"):
                continue
            try:
                log = self.task_log(
                    dag_id, run_id, ti["task_id"], max(ti["try_number"], 1), ti.get("map_index", -1)
                )
            except (AirflowApiError, requests.RequestException) as error:
                log = f"(log unavailable: {error})"
            tail = "\n".join(log.splitlines()[-LOG_TAIL_LINES:])
            header = f"--- last {LOG_TAIL_LINES} log lines of {_task_label(ti)} (try {ti['try_number']}) ---"
            text.append(f"{header}\n{tail}")
        return "\n".join(text)
