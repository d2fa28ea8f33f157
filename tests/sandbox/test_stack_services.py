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
