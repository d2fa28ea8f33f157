"""Which run a notification is about, and its pages in the Airflow UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from chaos_engineering.render import ANNOTATION_DAG_ID, ANNOTATION_RUN_ID, LABEL_EXPERIMENT, LABEL_TARGET, LABEL_TIER

#: Airflow's own fallback when `[api] base_url` is not set (the task SDK's log_url uses it too).
DEFAULT_BASE_URL = "http://localhost:8080/"


def ui_base_url() -> str:
    """`[api] base_url`, the address people open the UI at (set it behind a proxy)."""
    try:
        from airflow.configuration import conf

        return conf.get("api", "base_url", fallback=DEFAULT_BASE_URL) or DEFAULT_BASE_URL
    except Exception:  # a notification never fails on configuration
        return DEFAULT_BASE_URL


@dataclass(frozen=True)
class RunRef:
    """A DAG run as the UI shows it. `run_id` holds `:` and `+`: every URL quotes it."""

    dag_id: str | None
    run_id: str | None
    base_url: str = DEFAULT_BASE_URL

    @property
    def name(self) -> str:
        if not self.dag_id:
            return "unknown run"
        return f"{self.dag_id} / {self.run_id}" if self.run_id else self.dag_id

    @property
    def url(self) -> str | None:
        """The run's page (the UI route `/dags/{dag_id}/runs/{run_id}`)."""
        if not self.dag_id or not self.run_id:
            return None
        return f"{self.base_url.rstrip('/')}/dags/{quote(self.dag_id, safe='')}/runs/{quote(self.run_id, safe='')}"

    def required_actions_url(self, task_id: str, map_index: int = -1) -> str | None:
        """The page where an approver answers a human-in-the-loop task.

        The same route as `HITLOperator.generate_link_to_ui`, which however drops a base URL's
        path (a UI served under `/airflow`) and does not quote the run id.
        """
        if self.url is None:
            return None
        return f"{self.url}/tasks/{quote(task_id, safe='')}/required_actions?{urlencode({'map_index': map_index})}"


def run_ref(context: Any = None, *, plan: dict | None = None, result: dict | None = None, base_url: str | None = None) -> RunRef:
    """From the task context, else result.json, else the annotations the plan's manifest carries."""
    base_url = base_url or ui_base_url()
    dag_run = (context or {}).get("dag_run") if context is not None else None
    if dag_run is not None:
        return RunRef(getattr(dag_run, "dag_id", None), getattr(dag_run, "run_id", None), base_url)
    if result and result.get("dag_id"):
        return RunRef(result["dag_id"], result.get("run_id"), base_url)
    annotations = ((plan or {}).get("manifest") or {}).get("metadata", {}).get("annotations", {})
    return RunRef(annotations.get(ANNOTATION_DAG_ID), annotations.get(ANNOTATION_RUN_ID), base_url)


def approval_task(context: Any) -> tuple[str, int] | None:
    """The human-in-the-loop task the context belongs to, if it is one (a HITL notifier's context)."""
    if not context:
        return None
    task = context.get("task")
    try:
        from airflow.providers.standard.operators.hitl import HITLOperator
    except ImportError:  # the standard provider is always there with Airflow 3; stay safe anyway
        return None
    if isinstance(task, HITLOperator):
        ti = context.get("ti") or context.get("task_instance")
        map_index = getattr(ti, "map_index", -1)
        return task.task_id, map_index if isinstance(map_index, int) else -1
    return None


def experiment_of_object(obj: dict[str, Any]) -> dict[str, Any]:
    """What a Chaos Mesh object this system created says about itself (its labels and
    annotations): the plan-like dict an emergency stop reports and pushes metrics for."""
    metadata = obj.get("metadata") or {}
    labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    return {
        "kind": obj.get("kind"),
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "tier": labels.get(LABEL_TIER),
        "experiment": labels.get(LABEL_EXPERIMENT),
        "target_service": labels.get(LABEL_TARGET),
        "dag_id": annotations.get(ANNOTATION_DAG_ID),
        "run_id": annotations.get(ANNOTATION_RUN_ID),
    }


def plan_from_context(context: Any, plan_task_id: str = "plan") -> dict[str, Any] | None:
    """The plan XCom of the run, for a notifier that only gets the context; None when unreadable."""
    ti = (context or {}).get("ti") or (context or {}).get("task_instance")
    if ti is None:
        return None
    try:
        plan = ti.xcom_pull(task_ids=plan_task_id)
    except Exception:  # a callback context without XCom access: the message says "unknown"
        return None
    return plan if isinstance(plan, dict) else None
