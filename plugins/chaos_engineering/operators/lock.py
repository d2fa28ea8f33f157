"""The lock as setup and teardown: acquire (waiting a bounded time for another run) and release."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock, LockHeld
from chaos_engineering.operators.common import lock_holder, policy_or_fail, run_identity
from chaos_engineering.render import LABEL_RUN_KEY, run_key


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
    """Releases the lock if, and only if, this run holds it and no object of this run is left.

    While the run's fault (or its deletion) is still on the cluster, the lock stays: the next run
    must not inject beside it. The task fails, saying which objects remain; the lock then frees
    itself when its lease expires, by which time the watchdog and Chaos Mesh's duration have
    ended the fault, or an operator has (emergency stop).
    """

    template_fields = ("plan",)
    ui_color = "#fef7e0"

    def __init__(self, *, plan: Any = None, kubernetes_conn_id: str = ChaosMeshHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> bool:
        policy = policy_or_fail()
        dag_id, run_id = run_identity(context)
        key = run_key(dag_id, run_id)
        # Every namespace and kind, by the run's key, whatever the plan's XCom says.
        left = [
            f"{kind.value} {o['metadata']['namespace']}/{o['metadata']['name']}" + (" (deleting)" if o["metadata"].get("deletionTimestamp") else "")
            for kind in ChaosKind
            for o in self.hook.list(kind, None, f"{LABEL_RUN_KEY}={key}")
        ]
        if left:
            raise AirflowFailException(
                f"not releasing the experiment lock: this run's fault is still on the cluster ({', '.join(left)}); "
                "it is kept until the object is gone (`chaosctl status`; `chaosctl stop` removes it)"
            )
        released = ExperimentLock(self.hook, policy.chaos_namespace).release(lock_holder(context))
        self.log.info("lock released" if released else "lock was not ours (or already gone): left as it is")
        return released
