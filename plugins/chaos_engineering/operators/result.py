"""The run's structured result: everything each step recorded, a verdict, written to object storage."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from chaos_engineering.deploys import run_deploy
from chaos_engineering.notify import announce
from chaos_engineering.operators.approval import APPROVAL_KEY
from chaos_engineering.operators.common import policy_or_fail, run_identity, write_run_note
from chaos_engineering.operators.drill import DRILL_KEY
from chaos_engineering.operators.fault import REMOVAL_KEY
from chaos_engineering.operators.recovery import STAGES
from chaos_engineering.ui.links import report_url
from chaos_engineering.verification import run_id_problem

RESULT_SCHEMA_VERSION = 1
#: The XCom key of the whole result, pushed before storage is touched: storage may be down.
RESULT_KEY = "result"
#: How long one task waits for object storage (retrying with backoff) before going on without it.
#: One attempt may take longer by itself: the storage client's own retries and timeouts.
STORAGE_DEADLINE_S = 120.0
PENDING_SENTENCE = "report pending: object storage unavailable; the maintenance DAG writes it when storage returns"
APPROVAL_TASKS = ("approve_by_policy", "approve_sre", "approve_executive")
STEP_ORDER = ("plan", *APPROVAL_TASKS, "window_guard", "preflight", "acquire_lock", "dr_probe", "dr_probe_ready", "inject")


T = TypeVar("T")


class StorageUnavailable(RuntimeError):
    """Object storage did not answer within the deadline (the message names what and why)."""


def with_storage_retries(action: Callable[[], T], what: str, *, deadline_s: float = STORAGE_DEADLINE_S, log: logging.Logger | None = None) -> T:
    """`action()`, retried with exponential backoff (1 s to 15 s) until `deadline_s` while it
    fails as storage fails (`is_storage_error`); any other error (a bug) is raised at once."""
    import tenacity

    log = log or logging.getLogger(__name__)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("%s failed (attempt %d): %s; retrying", what, state.attempt_number, state.outcome.exception() if state.outcome else "?")

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(deadline_s),
        wait=tenacity.wait_exponential(multiplier=1, min=1, max=15),
        retry=tenacity.retry_if_exception(is_storage_error),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(action)
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc} (gave up after {deadline_s:g} s)") from exc


#: Packages whose errors mean "the storage did not answer": each filesystem raises its own (s3fs
#: lets botocore's EndpointConnectionError through, not an OSError).
STORAGE_PACKAGES = frozenset({"botocore", "aiobotocore", "s3fs", "fsspec", "aiohttp", "gcsfs", "adlfs", "azure"})


def is_storage_error(exc: BaseException) -> bool:
    """An OSError, or an error of a storage client's own package (not Airflow's, not a bug of ours)."""
    if isinstance(exc, AirflowException):
        return False
    return isinstance(exc, OSError) or any(c.__module__.split(".")[0] in STORAGE_PACKAGES for c in type(exc).__mro__)


def as_json(value: Any) -> Any:
    """The value exactly as result.json holds it: plain JSON, the same through XCom and REST."""
    return json.loads(json.dumps(value, default=str))


def run_folder(base_url: str, conn_id: str | None, dag_id: str, run_id: str, when: dt.datetime) -> ObjectStoragePath:
    """`<base>/<dag_id>/<YYYY>/<MM>/<run_id>/`: one folder per run, browsable by month. A run id
    that is not one path segment ('.', '..', 'a/b') would write beside other runs: refused."""
    if problem := run_id_problem(run_id):
        raise AirflowFailException(problem)
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
    if monitor.get("status") in ("halted", "deletion_stuck"):
        # The monitor's event says who stopped it, or which object outlived its deletion.
        return "aborted", monitor.get("message") or f"the monitor ended with {monitor['status']}"
    if result["fault"] is None:
        rejected = [a for a in result["approvals"] if "Reject" in (a.get("chosen_options") or [])]
        if rejected:
            user = rejected[0].get("responded_by_user") or {}
            return "aborted", f"rejected by {user.get('name') or user.get('id') or 'an approver'}"
        window = result["window"] or {}
        if window and not window.get("allowed"):
            return "aborted", f"nothing was injected: {window.get('reason')}"
        first_failed = next((t for t in STEP_ORDER if states.get(t) == "failed"), None)
        if first_failed:
            return "aborted", f"nothing was injected: {first_failed} failed"
        return "aborted", "nothing was injected"
    drill = result.get("drill") or {}
    if drill.get("status") == "missed":
        return "broken", "disaster-recovery targets missed: " + "; ".join(drill["reasons"])
    recovery = result["recovery"]
    missed = [s for s, r in recovery.items() if r is not None and r["status"] == "deadline_missed"]
    if missed:
        return "broken", f"recovery missed its deadline: {', '.join(missed)}"
    # Neither held nor missed: a stage first looked at after its deadline, or whose task failed
    # before it measured anything (its worker died): the hypothesis was not judged.
    unjudged = [f"{s} (first checked after its deadline)" for s, r in recovery.items() if r is not None and r["status"] == "unobserved"]
    unjudged += [f"{s} (recovery_{s} failed before measuring)" for s in STAGES
                 if recovery.get(s) is None and states.get(f"recovery_{s}") == "failed"]
    if unjudged:
        return "aborted", f"recovery not observed in time, so not judged: {', '.join(unjudged)}"
    if monitor.get("status") == "completed" and all(r and r["status"] == "recovered" for r in result["recovery"].values()):
        return "held", "no threshold breached and every recovery stage met its deadline"
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    return "aborted", "the run did not complete every step" + (f" ({', '.join(failed)} did not pass)" if failed else "")


def still_on_cluster(result: dict[str, Any]) -> str | None:
    """The sentence naming what the teardown gave up on, if it did: the fault may still be applied."""
    removal = result.get("removal") or {}
    if not removal.get("failed"):
        return None
    names = ", ".join(f"{o.get('kind')} {o.get('namespace')}/{o.get('name')}" for o in removal.get("still_on_cluster") or []) or "the run's objects"
    return f"THE FAULT MAY STILL BE APPLIED: the teardown could not remove {names} ({removal.get('error') or 'deletion not finished'}); run `chaosctl stop`"


def final_note(plan: dict[str, Any] | None, verdict_: str, reason: str, dag_id: str, run_id: str) -> str:
    """The run's note once it has ended: what ran (the plan's note), the verdict sentence, the report
    (the links the report task's extra links give, under `[api] base_url`)."""
    what = f"{plan['note']} · " if plan and plan.get("note") else ""
    html, pdf = report_url(dag_id, run_id, "report.html"), report_url(dag_id, run_id, "report.pdf")
    return f"{what}{verdict_}: {reason}\n\nReport: [HTML]({html}) · [PDF]({pdf})"


class WriteResultOperator(BaseOperator):
    """Collects every step's record (runs whatever failed before) and writes `result.json`."""

    ui_color = "#f1f3f4"

    def __init__(self, *, storage_deadline_s: float = STORAGE_DEADLINE_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage_deadline_s = storage_deadline_s

    def execute(self, context: Any) -> dict[str, Any]:
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
            # The deploy that caused the run ({service, version, event_at, ...}), or None; from the
            # run's conf, so it is recorded even when the plan failed.
            "deploy": run_deploy(context),
            "experiment": {k: v for k, v in plan.items() if k != "manifest"} if plan else None,
            "manifest": plan.get("manifest") if plan else None,
            "approvals": [dict(a, task_id=t) for t in APPROVAL_TASKS if (a := pull(t, key=APPROVAL_KEY))],
            "window": pull("window_guard", key="window"),
            "preflight": pull("preflight"),
            "fault": pull("inject"),
            "monitor": pull("monitor", key="monitor"),
            # The teardown's return value, or the record it pushed before giving up.
            "removal": pull("remove_fault") or pull("remove_fault", key=REMOVAL_KEY),
            "recovery": {s: pull(f"recovery_{s}", key="recovery") for s in STAGES},
            "drill": pull("dr_probe", key=DRILL_KEY),
            "task_states": {t: s for t, s in states.items() if t != context["task"].task_id},
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        result["verdict"], result["verdict_reason"] = verdict(result)
        if left := still_on_cluster(result):
            result["verdict_reason"] += f"; {left}"
        result = as_json(result)
        # First the result where nothing can lose it: storage may be down for hours.
        ti.xcom_push(key=RESULT_KEY, value=result)
        policy = policy_or_fail()
        folder = run_folder(policy.reports.base_url, policy.reports.conn_id, dag_id, run_id, context["dag_run"].run_after)
        path = folder / "result.json"
        storage_error = None
        try:
            with_storage_retries(lambda: write_result(folder, result), f"writing {path}", deadline_s=self.storage_deadline_s, log=self.log)
            self.log.info("verdict %s (%s); result at %s", result["verdict"], result["verdict_reason"], path)
        except StorageUnavailable as exc:
            storage_error = str(exc)
            self.log.error("%s; the result is kept in XCom (key %r): %s", storage_error, RESULT_KEY, PENDING_SENTENCE)
        if result["fault"]:
            announce("recovery_verdict", context=context, plan=plan, result=result)
        failed = sorted(t for t, s in result["task_states"].items() if s in ("failed", "upstream_failed"))
        note = final_note(plan, result["verdict"], result["verdict_reason"], dag_id, run_id)
        if storage_error:
            note += f"\n\n{PENDING_SENTENCE[0].upper()}{PENDING_SENTENCE[1:]}."
        write_run_note(context, note)
        return {
            "path": str(path),
            "verdict": result["verdict"],
            "reason": result["verdict_reason"],
            "failed_steps": failed,
            "note": note,
            "stored": storage_error is None,
            "storage_error": storage_error,
        }


def write_result(folder: ObjectStoragePath, result: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result, indent=2, default=str))


def pending_result(result: dict[str, Any], storage_error: str | None) -> dict[str, Any]:
    """The result as the final message shows it when its report could not be written."""
    why = f" ({storage_error})" if storage_error else ""
    return dict(result, verdict_reason=f"{result.get('verdict_reason') or ''}; {PENDING_SENTENCE}{why}".lstrip("; "))


class RunVerdictOperator(BaseOperator):
    """The run's last task: fails when any step failed, naming the verdict.

    The result and the report are written whatever happened, so without this the run would end
    green after a breach: Airflow judges a run by its last tasks.
    """

    template_fields = ("outcome",)
    ui_color = "#f1f3f4"

    def __init__(self, *, outcome: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outcome = outcome

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.outcome:
            raise AirflowFailException("the run's result could not be written; see write_result")
        self._announce(context)
        if self.outcome["failed_steps"]:
            raise AirflowFailException(
                f"run {self.outcome['verdict']}: {self.outcome['reason']} "
                f"(failed: {', '.join(self.outcome['failed_steps'])}); result at {self.outcome['path']}"
            )
        self.log.info("run %s: %s", self.outcome["verdict"], self.outcome["reason"])
        return self.outcome

    def _announce(self, context: Any) -> None:
        """`finished`, with the report when the report step wrote one (and the result alone if not).

        When storage is unavailable the message is built from the result write_result kept in
        XCom, and says the report is pending: the run's end is announced whatever storage does."""
        policy = policy_or_fail()
        folder = ObjectStoragePath(self.outcome["path"], conn_id=policy.reports.conn_id).parent
        extra: dict[str, Any] = {}
        problem = None if self.outcome.get("stored", True) else self.outcome.get("storage_error") or "result.json was not written"
        result = None
        if problem is None:
            try:
                result = json.loads((folder / "result.json").read_text())
                if (folder / "report.json").exists():
                    extra = {
                        "report": json.loads((folder / "report.json").read_text()),
                        "report_url": str(folder / "report.html"),
                        "report_pdf": (folder / "report.pdf").read_bytes(),
                    }
            except Exception as exc:
                problem = f"cannot read the run's files: {type(exc).__name__}: {exc}"
                result, extra = None, {}
        if problem is not None:
            kept = context["ti"].xcom_pull(task_ids="write_result", key=RESULT_KEY)
            if not kept:
                raise AirflowFailException(f"{problem}, and write_result kept no result in XCom (key {RESULT_KEY!r}): nothing to announce")
            self.log.error("%s: announcing from the result kept in XCom; %s", problem, PENDING_SENTENCE)
            result = pending_result(kept, problem)
        announce("finished", context=context, result=result, extra=extra)
