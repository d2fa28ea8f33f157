"""The e2e stack's executor argument, and its Celery broker on the machine's Redis: claim, settings, release."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from sandbox.airflow_stack import AirflowStack
from sandbox.celery_broker import OWNER_KEY, CeleryBroker, CeleryBrokerError

NO_SUCH_PID = 2**22 + 1  # above Linux's PID_MAX_LIMIT: never a live process


def test_an_unknown_executor_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(ValueError) as refused:
        AirflowStack.start(tmp_path, dags_folder=tmp_path, plugins_folder=tmp_path, executor="KubernetesExecutor")

    assert str(refused.value) == (
        "executor 'KubernetesExecutor' is not supported by the e2e harness: use one of LocalExecutor, CeleryExecutor"
    )
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.fixture
def broker() -> Iterator[CeleryBroker]:
    claimed = CeleryBroker.claim("test")
    yield claimed
    claimed.release()


def test_a_claimed_database_is_the_stack_s_own_broker_and_result_backend(broker: CeleryBroker) -> None:
    number = int(broker.url.rsplit("/", 1)[1])
    settings = broker.settings("postgresql+psycopg2://postgres@127.0.0.1:5432/chaos_e2e_1_x")

    assert 1 <= number <= 15  # 0 is left to anyone's default
    assert settings == {
        "AIRFLOW__CELERY__BROKER_URL": broker.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql+psycopg2://postgres@127.0.0.1:5432/chaos_e2e_1_x",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    }
    other = CeleryBroker.claim("other")
    other.release()
    assert other.url != broker.url


def test_release_flushes_the_database_only_while_it_is_ours(broker: CeleryBroker) -> None:
    database = redis.Redis.from_url(broker.url)
    database.lpush("default", "a task message")
    broker.release()
    assert database.dbsize() == 0

    database.set(OWNER_KEY, "someone else")
    database.lpush("default", "their message")
    broker.release()
    assert database.dbsize() == 2
    database.flushdb()


def test_a_database_whose_owner_died_is_flushed_and_claimed_again(broker: CeleryBroker) -> None:
    database = redis.Redis.from_url(broker.url)
    database.set(OWNER_KEY, f"{NO_SUCH_PID} dead")
    database.lpush("default", "an orphaned task message")

    again = CeleryBroker.claim("again")

    assert again.url == broker.url
    assert database.lrange("default", 0, -1) == []
    assert database.get(OWNER_KEY).decode() == again.owner
    again.release()


def test_an_unreachable_redis_names_the_variable_to_set() -> None:
    with pytest.raises(CeleryBrokerError, match="set CHAOS_E2E_REDIS_URL to a reachable Redis URL"):
        CeleryBroker.claim("test", server_url="redis://127.0.0.1:1")
