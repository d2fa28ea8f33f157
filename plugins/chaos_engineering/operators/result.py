"""The run's structured result: everything each step recorded, a verdict, written to object storage."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.operators.common import policy_or_fail, run_identity
from chaos_engineering.operators.recovery import STAGES

RESULT_SCHEMA_VERSION = 1
APPROVAL_TASKS = ("approve_by_policy", "approve_sre", "approve_executive")


def run_folder(base_url: str, conn_id: str | None, dag_id: str, run_id: str, when: dt.datetime) -> ObjectStoragePath:
    """`<base>/<dag_id>/<YYYY>/<MM>/<run_id>/`: one folder per run, browsable by month."""
    return ObjectStoragePath(base_url.rstrip("/") + "/", conn_id=conn_id) / dag_id / f"{when:%Y}" / f"{when:%m}" / run_id


def verdict(result: dict[str, Any]) -> tuple[str, str]:
    """held / broken / aborted / dry_run, with the reason, from what the steps recorded."""
    states = result["task_states"]
    plan = result["experiment"]
    if plan is None:
        return "aborted", "the plan step failed: nothing was injected"
    if plan.get("dry_run"):
        return "dry_run", "dry run: validated and dry-run by the API server, nothing injected"
    monitor = result["monitor"] or {}
    if monitor.get("status") == "breach":
        return "broken", f"safety breach: {monitor['breach']['message']}"
    if monitor.get("status") == "gone":
        return "aborted", "the fault was removed from outside the run (emergency stop or watchdog)"
    if result["fault"] is None:
        rejected = [a for a in result["approvals"] if "Reject" in (a.get("chosen_options") or [])]
        if rejected:
            user = rejected[0].get("responded_by_user") or {}
            return "aborted", f"rejected by {user.get('name') or user.get('id') or 'an approver'}"
        failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
        return "aborted", "nothing was injected" + (f" ({', '.join(sorted(failed))} did not pass)" if failed else "")
    missed = [s for s, r in result["recovery"].items() if r is not None and r["status"] != "recovered"]
    if missed or any(states.get(f"recovery_{s}") == "failed" for s in STAGES):
        return "broken", f"recovery missed its deadline: {', '.join(missed) or 'see task states'}"
    if monitor.get("status") == "completed" and all(r and r["status"] == "recovered" for r in result["recovery"].values()):
        return "held", "no threshold breached and every recovery stage met its deadline"
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    return "aborted", "the run did not complete every step" + (f" ({', '.join(failed)} did not pass)" if failed else "")


class WriteResultOperator(BaseOperator):
    """Collects every step's record (runs whatever failed before) and writes `result.json`."""

    ui_color = "#f1f3f4"

    def execute(self, context: Any) -> str:
        ti = context["ti"]
        dag_id, run_id = run_identity(context)

        def pull(task_id: str, key: str = "return_value") -> Any:
            return ti.xcom_pull(task_ids=task_id, key=key)

        states = ti.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
        plan = pull("plan")
        result: dict[str, Any] = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "dag_id": dag_id,
            "run_id": run_id,
            "run_type": str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type)),
            "experiment": {k: v for k, v in plan.items() if k != "manifest"} if plan else None,
            "manifest": plan["manifest"] if plan else None,
            "approvals": [dict(a, task_id=t) for t in APPROVAL_TASKS if (a := pull(t))],
            "window": pull("window_guard", key="window"),
            "preflight": pull("preflight"),
            "fault": pull("inject"),
            "monitor": pull("monitor", key="monitor"),
            "removal": pull("remove_fault"),
            "recovery": {s: pull(f"recovery_{s}", key="recovery") for s in STAGES},
            "task_states": {t: s for t, s in states.items() if t != context["task"].task_id},
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        result["verdict"], result["verdict_reason"] = verdict(result)
        policy = policy_or_fail()
        folder = run_folder(policy.reports.base_url, policy.reports.conn_id, dag_id, run_id, context["dag_run"].run_after)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "result.json"
            path.write_text(json.dumps(result, indent=2, default=str))
        except OSError as exc:
            raise AirflowFailException(f"cannot write the result to {folder}: {exc}") from exc
        self.log.info("verdict %s (%s); result at %s", result["verdict"], result["verdict_reason"], path)
        # The result is written last and always, so Airflow would call the run a success whatever
        # failed before it: say it here, or a breach would look green in the UI.
        failed = sorted(t for t, s in result["task_states"].items() if s in ("failed", "upstream_failed"))
        if failed:
            raise AirflowFailException(f"run {result['verdict']}: {result['verdict_reason']} (failed: {', '.join(failed)}); result at {path}")
        return str(path)
