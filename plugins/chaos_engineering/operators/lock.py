"""The lock as setup and teardown: acquire (waiting a bounded time for another run) and release."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock, LockHeld
from chaos_engineering.operators.common import lock_holder, policy_or_fail


def lock_duration_s(plan: dict[str, Any], policy: Any) -> int:
    """Long enough for the fault and every recovery stage, short enough that a dead holder's
    lock frees itself: the fault's duration + the last recovery deadline + 5 minutes."""
    return int(plan["duration_s"] + max(s.deadline for s in policy.recovery.stages().values()) + 300)


class AcquireLockSensor(BaseSensorOperator):
    """Pokes until this run holds the single-experiment lock; times out (fails) otherwise.

    Re-acquiring our own lock is a no-op, so a retried or rescheduled poke is safe."""

    template_fields = ("plan",)
    ui_color = "#fef7e0"

    def __init__(self, *, plan: Any, kubernetes_conn_id: str = ChaosMeshHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def poke(self, context: Any) -> bool:
        policy = policy_or_fail()
        lock = ExperimentLock(self.hook, policy.chaos_namespace)
        try:
            state = lock.acquire(lock_holder(context), lock_duration_s(self.plan, policy))
        except LockHeld as held:
            self.log.info("waiting: %s", held)
            return False
        self.log.info("lock %s/%s held by %s until %s", policy.chaos_namespace, lock.name, state.holder, state.expires())
        return True


class ReleaseLockOperator(BaseOperator):
    """Releases the lock if, and only if, this run holds it."""

    ui_color = "#fef7e0"

    def __init__(self, *, kubernetes_conn_id: str = ChaosMeshHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> bool:
        policy = policy_or_fail()
        released = ExperimentLock(ChaosMeshHook(self.kubernetes_conn_id), policy.chaos_namespace).release(lock_holder(context))
        self.log.info("lock released" if released else "lock was not ours (or already gone): left as it is")
        return released
