"""AirflowClient against a local server that fails first: reads retried (and logged), writes never,
waits that outlive a failed poll, and errors that name the request and how long it was tried."""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from urllib3.util.retry import RequestHistory

from sandbox.airflow_client import (
    BACKOFF_MAX_S,
    RETRY_AFTER_MAX_S,
    AirflowApiError,
    AirflowClient,
    AirflowUnavailable,
    AirflowWaitTimeout,
    read_retry,
)

TIMEOUT_S = 0.3  # the client's request timeout; a "timeout" answer comes after HANG_S
HANG_S = 0.8
BACKOFF_S = 0.05  # waits of 0, 0.1, 0.2, 0.4 s between the five attempts of a read
RUN = "/api/v2/dags/d/dagRuns/r"
TASK = f"{RUN}/taskInstances/t"
TRIGGER = "/api/v2/dags/d/dagRuns"


class FlakyAirflow:
    """Answers the few routes a client following one run reads, after failing as told:
    `fail(method, path, *how)` makes the next requests to that route fail, one `how` each:
    "timeout" (no answer within the client's timeout), "reset" (connection reset, no answer), or
    an HTTP status ("503", or "429:2" for a 429 with `Retry-After: 2`)."""

    def __init__(self, dag_id: str = "d", run_id: str = "r") -> None:
        self.dag = f"/api/v2/dags/{dag_id}"
        self.run = f"{self.dag}/dagRuns/{run_id}"
        self.run_id = run_id
        self.run_state = "running"
        self.result: Any = {"verdict": "passed", "reason": "steady state held"}
        self.task_state: str | None = "scheduled"
        self.requests: list[tuple[str, str]] = []
        self.failures: dict[tuple[str, str], deque[str]] = defaultdict(deque)
        self.lock = threading.Lock()
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                flaky.handle(self, "GET")

            def do_POST(self) -> None:
                flaky.handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, method: str, path: str, *how: str) -> None:
        self.failures[(method, path)].extend(how)

    def count(self, method: str, path: str) -> int:
        return sum(1 for seen in self.requests if seen == (method, path))

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.partition("?")[0]
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self.lock:
            self.requests.append((method, path))
            queue = self.failures[(method, path)]
            how = queue.popleft() if queue else None
        if how == "timeout":
            time.sleep(HANG_S)
            handler.close_connection = True
            return
        if how == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            return
        if how is not None:
            status, _, retry_after = how.partition(":")
            headers = {"Retry-After": retry_after} if retry_after else {}
            self.send(handler, int(status), {"detail": "the api-server is overloaded"}, headers)
            return
        self.send(handler, *self.answer(method, path))

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        if (method, path) == ("POST", "/auth/token"):
            return 201, {"access_token": "token"}
        if (method, path) == ("GET", self.dag):
            return 200, {"dag_id": self.dag.rpartition("/")[2], "is_paused": False}
        if (method, path) == ("POST", f"{self.dag}/dagRuns"):
            return 200, {"dag_run_id": self.run_id}
        if (method, path) == ("GET", self.run):
            return 200, {"dag_run_id": self.run_id, "state": self.run_state}
        if (method, path) == ("GET", f"{self.run}/taskInstances"):
            return 200, {"task_instances": [self.task()], "total_entries": 1}
        if (method, path) == ("GET", f"{self.run}/taskInstances/t"):
            return 200, self.task()
        if (method, path) == ("GET", f"{self.run}/taskInstances/write_result/xcomEntries/return_value"):
            return 200, {"value": self.result}
        return 404, {"detail": f"no route {method} {path}"}

    def task(self) -> dict[str, Any]:
        return {"task_id": "t", "map_index": -1, "try_number": 1, "state": self.task_state}

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:  # the client gave up first
            pass


@pytest.fixture
def airflow() -> Iterator[FlakyAirflow]:
    flaky = FlakyAirflow()
    threading.Thread(target=flaky.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield flaky
    flaky.server.shutdown()
    flaky.server.server_close()


def client_of(url: str, **kwargs: Any) -> AirflowClient:
    return AirflowClient(url, "admin", "secret", poll_interval=0.05, request_timeout=TIMEOUT_S, backoff_factor=BACKOFF_S, **kwargs)


@pytest.fixture
def client(airflow: FlakyAirflow) -> AirflowClient:
    return client_of(airflow.url)


@pytest.fixture
def retries(caplog) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="chaos_engineering.airflow_rest")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "chaos_engineering.airflow_rest"]


FAILURES = {
    "timeout": f"timed out after {TIMEOUT_S:g} s",
    "reset": "lost the connection: ",
    "502": "answered HTTP 502",
    "503": "answered HTTP 503",
    "504": "answered HTTP 504",
}


@pytest.mark.parametrize("how", FAILURES)
def test_a_read_is_retried_with_backoff_until_it_answers(airflow, client, retries, how):
    airflow.fail("GET", RUN, how, how)
    assert client.run_state("d", "r") == "running"
    assert airflow.count("GET", RUN) == 3
    logged = retries()
    assert len(logged) == 2, logged
    assert logged[0].startswith(f"GET {RUN} {FAILURES[how]}")
    assert logged[0].endswith("; retrying now (attempt 2 of 5)")
    assert logged[1].startswith(f"GET {RUN} {FAILURES[how]}")
    assert logged[1].endswith(f"; retrying in {2 * BACKOFF_S:g} s (attempt 3 of 5)")


def test_the_retry_log_line_says_what_it_waits_for(airflow, client, retries):
    airflow.fail("GET", RUN, "timeout")
    client.run_state("d", "r")
    assert retries() == [f"GET {RUN} timed out after {TIMEOUT_S:g} s; retrying now (attempt 2 of 5)"]


def test_a_429_waits_as_long_as_its_retry_after_says(airflow, client, retries):
    airflow.fail("GET", RUN, "429:1")
    started = time.monotonic()
    assert client.run_state("d", "r") == "running"
    assert time.monotonic() - started >= 1.0
    assert retries() == [f"GET {RUN} answered HTTP 429; retrying in 1 s (attempt 2 of 5)"]


def test_a_read_that_never_gets_an_answer_names_the_request_and_how_long_it_tried(airflow, client, retries):
    airflow.fail("GET", RUN, *["503"] * 5)
    started = time.monotonic()
    with pytest.raises(AirflowUnavailable) as caught:
        client.run_state("d", "r")
    took = time.monotonic() - started
    error = caught.value
    assert (error.method, error.path, error.status_code, error.attempts) == ("GET", RUN, 503, 5)
    assert abs(error.elapsed - took) < 0.1
    assert str(error) == (
        f"GET {RUN} as 'admin': HTTP 503: the api-server is overloaded (gave up after 5 attempts over {error.elapsed:.0f} s)"
    )
    assert isinstance(error, AirflowApiError)  # callers that catch the API's errors catch this too
    assert airflow.count("GET", RUN) == 5
    assert [line.rpartition("(")[2] for line in retries()] == [f"attempt {n} of 5)" for n in (2, 3, 4, 5)]


def test_timeouts_until_the_last_attempt_give_up_with_the_timeout_named(airflow, client):
    airflow.fail("GET", RUN, *["timeout"] * 5)
    with pytest.raises(AirflowUnavailable) as caught:
        client.run_state("d", "r")
    error = caught.value
    assert error.status_code is None and error.attempts == 5
    assert error.elapsed >= 5 * TIMEOUT_S
    assert re.fullmatch(
        rf"GET {RUN} as 'admin': timed out after {TIMEOUT_S:g} s \(gave up after 5 attempts over \d+ s\)", str(error)
    )


def test_a_server_that_is_not_there_is_tried_as_often_then_named(retries):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(AirflowUnavailable) as caught:
        client_of(url).run_state("d", "r")
    assert caught.value.path == "/auth/token"  # the first call of a new client is its login
    assert caught.value.attempts == 5
    assert "could not connect: " in str(caught.value) and "Connection refused" in str(caught.value)
    assert len(retries()) == 4


@pytest.mark.parametrize(
    ("how", "raised"),
    [("timeout", requests.ReadTimeout), ("reset", requests.ConnectionError), ("503", AirflowApiError)],
    ids=["timeout", "reset", "503"],
)
def test_a_trigger_is_never_sent_twice(airflow, client, retries, how, raised):
    airflow.fail("POST", TRIGGER, how)
    with pytest.raises(raised) as caught:
        client.trigger("d", conf={"experiment": "x"})
    assert not isinstance(caught.value, AirflowUnavailable)
    assert airflow.count("POST", TRIGGER) == 1
    assert retries() == []


def test_the_login_is_retried_because_a_token_changes_nothing(airflow, client, retries):
    airflow.fail("POST", "/auth/token", "503", "timeout")
    assert client.run_state("d", "r") == "running"
    assert airflow.count("POST", "/auth/token") == 3
    assert [line.partition(";")[0] for line in retries()] == [
        "POST /auth/token answered HTTP 503", f"POST /auth/token timed out after {TIMEOUT_S:g} s"
    ]


def test_wait_for_run_outlives_a_failed_poll(airflow, retries):
    client = client_of(airflow.url, read_attempts=2)
    airflow.fail("GET", RUN, "503", "503")  # the first poll fails, every attempt of it
    airflow.fail("GET", f"{RUN}/taskInstances", "503", "503")
    changes = []

    def finish_soon() -> None:
        time.sleep(0.3)
        airflow.task_state = airflow.run_state = "success"

    threading.Thread(target=finish_soon, daemon=True).start()
    assert client.wait_for_run("d", "r", timeout=10, on_change=changes.append) == "success"
    waits = [line for line in retries() if "still waiting" in line]
    assert len(waits) == 2
    assert re.fullmatch(
        rf"GET {RUN} as 'admin': HTTP 503: the api-server is overloaded \(gave up after 2 attempts over 0 s\); "
        r"still waiting for run d/r to finish \(\d+ s left\)",
        waits[0],
    )
    assert [(c.task, c.current) for c in changes][-1] == ("t", "success")


def test_wait_for_task_state_outlives_a_failed_poll(airflow, retries):
    client = client_of(airflow.url, read_attempts=2)
    airflow.fail("GET", TASK, "timeout", "reset")

    def park_soon() -> None:
        time.sleep(0.2)
        airflow.task_state = "awaiting_input"

    threading.Thread(target=park_soon, daemon=True).start()
    assert client.wait_for_task_state("d", "r", "t", "awaiting_input", timeout=10)["state"] == "awaiting_input"
    waits = [line for line in retries() if "still waiting" in line]
    assert len(waits) == 1
    assert waits[0].startswith(f"GET {TASK} as 'admin': lost the connection: ")
    assert re.search(r"still waiting for task t of d/r to be awaiting_input \(\d+ s left\)$", waits[0])


def test_a_wait_whose_polls_all_fail_times_out_saying_what_it_waited_for(airflow):
    client = client_of(airflow.url, read_attempts=1)
    airflow.fail("GET", RUN, *["503"] * 1000)
    with pytest.raises(AirflowWaitTimeout) as caught:
        client.wait_for_run("d", "r", timeout=0.5)
    message = str(caught.value)
    assert message.startswith("run d/r still unknown (no poll answered) after 0s\n")
    assert "task states:\n  t" in message  # what could be read still is
    assert airflow.count("GET", RUN) > 2  # polled again and again until the deadline


def test_a_real_error_still_ends_a_wait_at_once(airflow, client):
    with pytest.raises(AirflowApiError) as caught:
        client.wait_for_run("d", "no-such-run", timeout=10)
    assert caught.value.status_code == 404 and not isinstance(caught.value, AirflowUnavailable)


@given(
    failures=st.integers(min_value=1, max_value=200),
    factor=st.floats(min_value=0, max_value=1000, allow_nan=False),
    retry_after=st.integers(min_value=0, max_value=10**9),
)
def test_backoff_and_retry_after_are_bounded_for_any_attempt(failures, factor, retry_after):
    history = tuple(RequestHistory("GET", RUN, None, 503, None) for _ in range(failures))
    policy = read_retry(backoff_factor=factor).new(history=history)
    assert 0 <= policy.get_backoff_time() <= BACKOFF_MAX_S
    assert policy.parse_retry_after(str(retry_after)) <= RETRY_AFTER_MAX_S
