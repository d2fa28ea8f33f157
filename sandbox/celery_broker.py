"""The Celery side of a test Airflow: a Redis database of its own as broker, and the worker's command."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

REDIS_URL = os.environ.get("CHAOS_E2E_REDIS_URL", "redis://127.0.0.1:6379")
# Written into the claimed database: "<pid of the owning pytest> <stack id>". A database is flushed
# only by its owner's release(), or by a claim once that pid is dead; one without the key never.
OWNER_KEY = "chaos-e2e:owner"
WORKER_CONCURRENCY = 4  # prefork pool processes; Airflow's parallelism is 4 as well
# Celery's own line once the worker consumes: "celery@<host> ready."
_READY = re.compile(r"celery@\S+ ready\.")


class CeleryBrokerError(RuntimeError):
    """No Redis database could be claimed for a stack's broker."""


def _database(url: str, number: int) -> redis.Redis:
    return redis.Redis.from_url(url, db=number, socket_timeout=5, socket_connect_timeout=5)


def _database_count(url: str) -> int:
    with _database(url, 0) as database:
        try:
            return int(database.config_get("databases").get("databases", 16))
        except redis.ResponseError:  # CONFIG disabled (a managed Redis): Redis's default
            return 16


def _url_with_database(url: str, number: int) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}/{number}"


def _flush_if_orphaned(database: redis.Redis) -> None:
    owner = re.match(rb"(\d+) ", database.get(OWNER_KEY) or b"")
    if owner and not psutil.pid_exists(int(owner.group(1))):
        database.flushdb()


@dataclass(frozen=True)
class CeleryBroker:
    """One Redis database claimed for one stack's broker; never database 0, anyone's default.

    A database per stack rather than a queue name: every key Celery and kombu write (task queues,
    bindings, unacknowledged messages, the workers' control mailboxes) stays in it, so two stacks
    or a developer's Airflow on the same Redis never take each other's tasks, and `release()` can
    drop all of it with FLUSHDB.
    """

    url: str
    owner: str

    @classmethod
    def claim(cls, stack_id: str, server_url: str = REDIS_URL) -> CeleryBroker:
        """Take the first empty database on `server_url` (any database number in it is ignored),
        flushing on the way those whose owning pytest has died."""
        owner = f"{os.getpid()} {stack_id}"
        try:
            databases = _database_count(server_url)
            for number in range(1, databases):
                with _database(server_url, number) as database:
                    _flush_if_orphaned(database)
                    # SET NX is the claim: of two stacks finding the same database empty, one wins.
                    if database.dbsize() == 0 and database.set(OWNER_KEY, owner, nx=True):
                        return cls(_url_with_database(server_url, number), owner)
        except (redis.RedisError, ValueError) as error:
            raise CeleryBrokerError(
                f"cannot use the Redis server at {server_url} as Celery broker "
                f"(set CHAOS_E2E_REDIS_URL to a reachable Redis URL): {error}"
            ) from error
        raise CeleryBrokerError(
            f"no free database on the Redis server at {server_url}: databases 1-{databases - 1} all "
            "hold data. Free one, or point CHAOS_E2E_REDIS_URL at another Redis"
        )

    def settings(self, database_url: str) -> dict[str, str]:
        """Airflow's [celery] settings, as the compose file sets them: the result backend is the
        stack's own metadata database."""
        return {
            "AIRFLOW__CELERY__BROKER_URL": self.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        }

    @staticmethod
    def worker_command() -> list[str]:
        """`airflow ...` arguments of the worker. Mingle and gossip only talk to other workers,
        and there are none on this broker."""
        return [
            "celery",
            "worker",
            "--concurrency",
            str(WORKER_CONCURRENCY),
            "--without-mingle",
            "--without-gossip",
        ]

    @staticmethod
    def worker_ready(log_path: Path) -> bool:
        try:
            return bool(_READY.search(log_path.read_text(errors="replace")))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Drop every key of the database, if the database is still this stack's."""
        with redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5) as database:
            if database.get(OWNER_KEY) == self.owner.encode():
                database.flushdb()
