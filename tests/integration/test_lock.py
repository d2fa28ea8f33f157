"""The single-experiment lock on the sandbox's Lease API: one holder, idempotent, expiring."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest

from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock, LockHeld


@pytest.fixture
def lock(connections) -> ExperimentLock:
    lock = ExperimentLock(ChaosMeshHook(), "chaos-engineering", name=f"test-lock-{uuid.uuid4().hex[:8]}")
    yield lock
    lock.force_release()


def test_one_holder_at_a_time(lock):
    first = lock.acquire("dag_a/run_1", 60)
    assert first.holder == "dag_a/run_1" and first.duration_s == 60
    with pytest.raises(LockHeld, match="held by dag_a/run_1"):
        lock.acquire("dag_b/run_1", 60)
    assert lock.state().holder == "dag_a/run_1"


def test_acquire_is_idempotent_for_the_holder(lock):
    first = lock.acquire("dag_a/run_1", 60)
    again = lock.acquire("dag_a/run_1", 60)
    assert again.holder == first.holder and again.resource_version != first.resource_version


def test_release_only_frees_our_own_lock(lock):
    lock.acquire("dag_a/run_1", 60)
    assert lock.release("dag_b/run_9") is False
    assert lock.state().holder == "dag_a/run_1"
    assert lock.release("dag_a/run_1") is True
    assert lock.state() is None
    assert lock.release("dag_a/run_1") is False


def test_an_expired_lock_can_be_taken(lock):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=120)
    lock.acquire("dead/run", 60, now=past)
    taken = lock.acquire("alive/run", 60)
    assert taken.holder == "alive/run"
    assert lock.renew("dead/run") is False
    assert lock.renew("alive/run") is True


def test_racing_contenders_never_both_win(lock):
    winners, losers = [], []
    barrier = threading.Barrier(6)

    def contend(i: int) -> None:
        barrier.wait()
        try:
            lock.acquire(f"dag/run_{i}", 60)
            winners.append(i)
        except LockHeld:
            losers.append(i)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 5
    assert lock.state().holder == f"dag/run_{winners[0]}"


def test_force_release_reports_the_holder(lock):
    lock.acquire("dag_a/run_1", 60)
    assert lock.force_release().holder == "dag_a/run_1"
    assert lock.state() is None
