"""The disaster-recovery drill's tasks: the canary probe around the injection, and the gate that
keeps the injection waiting until the probe has its baseline."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.drill import CanaryProbe, DrillAborted, assess
from chaos_engineering.hooks.dr_probe import DrProbeHook
from chaos_engineering.operators.common import policy_or_fail, run_identity

#: XCom keys: the probe's baseline is done (inject may go), and the drill's measurement.
READY_KEY = "ready"
DRILL_KEY = "drill"
#: Task states after which a task will not run (again) in this try of the run.
ENDED = ("success", "failed", "upstream_failed", "skipped", "removed")


def _task_state(context: Any, task_id: str) -> str | None:
    dag_id, run_id = run_identity(context)
    return context["ti"].get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {}).get(task_id)


class DrillProbeOperator(BaseOperator):
    """Writes canary bookings before, during and after the failover that `inject_task_id` causes,
    then reads every acknowledged one back and measures RTO and RPO against the policy's targets.

    Fails closed: a failed write during the baseline fails this task before it says "ready", so
    the injection never starts. Fails the run when a target is missed or unmeasured.
    """

    ui_color = "#e6f4ea"

    def __init__(self, *, inject_task_id: str = "inject", wait_for_injection_s: float = 300, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inject_task_id = inject_task_id
        self.wait_for_injection_s = wait_for_injection_s

    @cached_property
    def drill(self) -> Any:
        drill = policy_or_fail().disaster_recovery
        if drill is None:
            raise AirflowFailException("the safety policy has no disaster_recovery section")
        return drill

    def execute(self, context: Any) -> dict[str, Any]:
        ti = context["ti"]
        probe = CanaryProbe(DrProbeHook(self.drill.probe.conn_id), self.drill.probe)
        try:
            probe.baseline()
        except DrillAborted as exc:
            raise AirflowFailException(f"{exc}; not injecting") from exc
        ti.xcom_push(key=READY_KEY, value={"at": time.time(), "acknowledged": len(probe.writes)})
        self.log.info("baseline: %d canaries acknowledged; waiting for the injection", len(probe.writes))

        def injected_at() -> float | None:
            fault = ti.xcom_pull(task_ids=self.inject_task_id)
            return fault.get("injected_at") if fault else None

        def stop_waiting() -> str | None:
            state = _task_state(context, self.inject_task_id)
            return f"{self.inject_task_id} ended {state}" if state in ENDED else None

        injected = probe.observe(injected_at, stop_waiting, self.wait_for_injection_s)
        if injected is None:
            record = {"status": "not_injected", "reasons": [f"{self.inject_task_id} injected nothing"], "canaries": {"sent": len(probe.writes)}}
            ti.xcom_push(key=DRILL_KEY, value=record)
            self.log.warning("nothing was injected; no measurement")
            return record
        record = assess(probe.writes, injected, probe.verify(), self.drill.probe, self.drill.targets)
        ti.xcom_push(key=DRILL_KEY, value=record)
        self.log.info(
            "RTO %s s, RPO %s s (%d of %d acknowledged canaries lost), primary %s -> %s: targets %s",
            record["rto_s"], record["rpo_s"], record["canaries"]["lost"], record["canaries"]["acknowledged"],
            record["primary_before"], record["primary_after"], record["status"],
        )
        if record["status"] != "met":
            raise AirflowFailException("disaster-recovery targets missed: " + "; ".join(record["reasons"]))
        return record


class DrillProbeReadySensor(BaseSensorOperator):
    """Holds the injection until the probe has its baseline; fails if the probe ended first."""

    ui_color = "#e6f4ea"

    def __init__(self, *, probe_task_id: str = "dr_probe", **kwargs: Any) -> None:
        kwargs.setdefault("mode", "poke")
        kwargs.setdefault("poke_interval", 1)
        kwargs.setdefault("timeout", 300)
        super().__init__(**kwargs)
        self.probe_task_id = probe_task_id

    def poke(self, context: Any) -> bool:
        if context["ti"].xcom_pull(task_ids=self.probe_task_id, key=READY_KEY):
            return True
        state = _task_state(context, self.probe_task_id)
        if state in ENDED:
            raise AirflowFailException(f"the drill's probe ended ({state}) before its baseline: not injecting")
        return False
