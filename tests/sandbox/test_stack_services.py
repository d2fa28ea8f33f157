"""The campaign's own servers (tests/e2e/stack_services.py) and the e2e stack's `restart: always`
(AirflowStack.restart_exited): what the own-stack rows postgres-restart, redis-restart and the
component kills stand on."""

from __future__ import annotations

import threading
import time

import pytest
import redis
import sqlalchemy

import sandbox.airflow_stack as airflow_stack
from sandbox.airflow_stack import AirflowStack
from tests.e2e.stack_services import PostgresServer, RedisServer


def test_a_restarted_postgres_cuts_open_connections_and_keeps_its_data() -> None:
    with PostgresServer() as server:
        engine = sqlalchemy.create_engine(server.url, pool_pre_ping=False)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE runs (id text)"))
            connection.execute(sqlalchemy.text("INSERT INTO runs VALUES ('kept')"))
        held = engine.connect()

        server.restart()

        with pytest.raises(sqlalchemy.exc.OperationalError):
            held.execute(sqlalchemy.text("SELECT 1"))  # the restart closed it
        held.invalidate()
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT id FROM runs")).scalars().all() == ["kept"]
        assert server.running()
        engine.dispose()
    assert not server.folder.exists()


def test_a_restarted_redis_keeps_its_keys_as_the_compose_file_s_redis_does() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        client.rpush("default", "a queued task")

        server.restart()
        server.start()  # nothing: it is up

        assert redis.Redis.from_url(server.url, socket_timeout=5).lrange("default", 0, -1) == [b"a queued task"]
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2).ping()


@pytest.fixture
def stack(tmp_path, monkeypatch) -> AirflowStack:
    """An AirflowStack whose `airflow` is a shell script that sleeps: its processes start, die and
    are started again like Airflow's, in their own process groups."""
    fake = tmp_path / "bin" / "airflow"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setattr(airflow_stack, "_airflow_executable", lambda: str(fake))
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / airflow_stack.OWNER_FILE).write_text("0\n")
    made = AirflowStack(home, {"AIRFLOW__API__PORT": "1", "AIRFLOW__API__BASE_URL": "http://127.0.0.1:1"}, {}, {})
    spawned = []
    spawn = made._spawn

    def counting_spawn(name: str, arguments: list[str]) -> None:
        spawn(name, arguments)
        spawned.append(made.processes[name])

    monkeypatch.setattr(made, "_spawn", counting_spawn)
    made.spawned = spawned
    for name in ("scheduler", "triggerer"):
        made._spawn(name, [name])
    yield made
    made.stop(grace=2)


def test_restart_exited_starts_again_only_what_has_exited(stack: AirflowStack) -> None:
    triggerer = stack.processes["triggerer"]
    stack.processes["scheduler"].kill()
    stack.processes["scheduler"].wait(10)

    assert stack.restart_exited() == ["scheduler"]
    assert stack.restart_exited() == []
    assert stack.processes["scheduler"].poll() is None and stack.processes["triggerer"] is triggerer


def test_a_deliberate_restart_beside_the_supervisor_leaves_exactly_one_process(stack: AirflowStack) -> None:
    # Without one lock over both, the supervisor sees the killed process exited and starts one,
    # and restart() starts another: two schedulers on one database.
    stop = threading.Event()

    def supervise() -> None:
        while not stop.is_set():
            stack.restart_exited()

    supervisor = threading.Thread(target=supervise)
    supervisor.start()
    try:
        for _ in range(20):
            stack.restart("scheduler", down_s=0.05)  # down a while: the supervisor sees it exited
    finally:
        stop.set()
        supervisor.join(30)

    alive = [p for p in stack.spawned if p.poll() is None]
    assert sorted(id(p) for p in alive) == sorted(id(p) for p in stack.processes.values())


def test_nothing_is_started_again_once_the_stack_is_stopped(stack: AirflowStack) -> None:
    stack.stop(grace=2)
    time.sleep(0.2)

    assert stack.restart_exited() == []
    assert all(p.poll() is not None for p in stack.processes.values())


# --- the proxy in front of Prometheus ---------------------------------------------------------------

import json  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import requests  # noqa: E402

from tests.e2e.stack_services import PrometheusProxy  # noqa: E402
from tests.integration.receivers import free_port  # noqa: E402

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "20"]}]}}
MATRIX = {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "20"], [2.0, "21"]]}]}}
RUNTIME = {"status": "success", "data": {"startTime": "2026-12-06T00:00:00Z"}}


@pytest.fixture
def proxy():
    """The proxy in front of a server answering as Prometheus does."""

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body = json.dumps({"/api/v1/query": VECTOR, "/api/v1/query_range": MATRIX}.get(path, RUNTIME)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", free_port()), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with PrometheusProxy(f"http://127.0.0.1:{upstream.server_address[1]}", seconds=3) as made:
        yield made
    upstream.shutdown()
    upstream.server_close()


def get(proxy: PrometheusProxy, path: str, timeout: float = 5) -> dict:
    return requests.get(proxy.url + path, timeout=timeout).json()


def test_the_proxy_passes_prometheus_through_and_answers_each_failure_mode(proxy: PrometheusProxy) -> None:
    assert get(proxy, "/api/v1/query?query=up") == VECTOR
    proxy.set("empty")
    assert get(proxy, "/api/v1/query?query=up")["data"] == {"resultType": "vector", "result": []}
    assert get(proxy, "/api/v1/query_range?query=up")["data"] == {"resultType": "matrix", "result": []}
    assert get(proxy, "/api/v1/status/runtimeinfo") == RUNTIME  # never affected
    proxy.set("nan")
    assert get(proxy, "/api/v1/query?query=up")["data"]["result"][0]["value"] == [1.0, "NaN"]
    assert [v for _, v in get(proxy, "/api/v1/query_range?query=up")["data"]["result"][0]["values"]] == ["NaN", "NaN"]
    proxy.set("slow")
    with pytest.raises(requests.ReadTimeout):
        get(proxy, "/api/v1/query?query=up", timeout=1)
    proxy.set("trickle")
    with requests.get(proxy.url + "/api/v1/query?query=up", timeout=2, stream=True) as answer:
        # A byte every 0.5 s: no per-read timeout fires, the announced body never completes.
        started, received = time.monotonic(), b""
        for chunk in answer.iter_content(1):
            received += chunk
            if time.monotonic() - started > 2.5:
                break
        assert answer.headers["Content-Length"] == "1000000" and 3 <= len(received) <= 7
        proxy.set("pass")  # ends the trickle
    proxy.set("pass")
    assert get(proxy, "/api/v1/query?query=up") == VECTOR
    with pytest.raises(ValueError):
        proxy.set("down")
