"""A scenario's inject (every step verified at the point of no return, the first steps created)
and its one monitor (later steps created when due, every step removed on a breach)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from chaos_engineering.catalogue import load_scenarios
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import KubernetesApiError, KubernetesRequestError
from chaos_engineering.operators.common import catalogue_or_fail, is_dry_run, is_manual, run_identity
from chaos_engineering.operators.fault import InjectFaultOperator, fault_ref
from chaos_engineering.operators.monitor import FaultMonitorSensor, recorded_baseline
from chaos_engineering.policy import SafetyPolicy
from chaos_engineering.render import (
    ANNOTATION_APPROVALS,
    ANNOTATION_BASELINE,
    ANNOTATION_DIGEST,
    ANNOTATION_SCENARIO_DIGESTS,
    ANNOTATION_SCENARIO_STARTED,
    ANNOTATION_WINDOW,
    LABEL_RUN_KEY,
    LABEL_SCENARIO,
    LABEL_STEP,
    render_scenario_objects,
    run_key,
)
from chaos_engineering.scenario import Scenario
from chaos_engineering.scenario_monitor import ScenarioMonitorTrigger
from chaos_engineering.triggers import created_at
from chaos_engineering.operators.verify import recorded_approvals, steady_baseline, unresolved_targets, verification_record, window_problems
from chaos_engineering.verification import VerificationFailed, VerifiedApproval, object_digest, run_id_problem, scenario_thresholds
from chaos_engineering.windows import WindowVerdict, span_verdict


def scenario_digest(digests: Mapping[str, str]) -> str:
    """One digest for the run's claim: of every step's object digest, by step."""
    return "sha256:" + hashlib.sha256(json.dumps(dict(digests), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class VerifiedScenario:
    """Everything inject checked of a scenario, and every step's object it may create (now or later)."""

    scenario: Scenario
    manifests: dict[str, dict[str, Any]]
    digests: dict[str, str]
    approvals: list[VerifiedApproval]
    window: WindowVerdict
    baseline: dict[str, float]
    started_at: float
    targets: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def digest(self) -> str:
        return scenario_digest(self.digests)

    def body(self, step: str) -> dict[str, Any]:
        """One step's manifest with the annotations naming what was verified: its own digest, every
        step's digest, the scenario's start, the approvals, the baseline and the window. The monitor
        rebuilds each later step from the scenario file and these, never from XCom."""
        return step_body(self.manifests[step], self.digests, self.started_at, {
            ANNOTATION_APPROVALS: json.dumps([a.as_dict() for a in self.approvals], sort_keys=True),
            ANNOTATION_BASELINE: json.dumps(self.baseline, sort_keys=True),
            ANNOTATION_WINDOW: self.window.reason[:1000],
        })

    def first_steps(self, policy: SafetyPolicy) -> list[str]:
        """The steps planned to start first (at the scenario's start): inject creates these."""
        timeline = self.scenario.timeline(policy)
        first = min(w.start for w in timeline.values())
        return [name for name, w in timeline.items() if w.start == first]

    def record(self) -> dict[str, Any]:
        return verification_record(self) | {"scenario": self.scenario.name, "digests": self.digests}

    def summary(self) -> str:
        who = ", ".join(f"{a.role} {a.user}" for a in self.approvals)
        steps = ", ".join(f"{s} {d}" for s, d in self.digests.items())
        return f"scenario {self.scenario.name} ({steps}); approvals: {who}; {self.window.reason}; targets {', '.join(self.targets) or 'none'}"


def step_body(manifest: dict[str, Any], digests: Mapping[str, str], started_at: float, verified: Mapping[str, str]) -> dict[str, Any]:
    metadata = dict(manifest["metadata"])
    metadata["annotations"] = dict(metadata.get("annotations") or {}) | dict(verified) | {
        ANNOTATION_DIGEST: object_digest(manifest),
        ANNOTATION_SCENARIO_DIGESTS: json.dumps(dict(digests), sort_keys=True),
        ANNOTATION_SCENARIO_STARTED: repr(started_at),
    }
    return dict(manifest, metadata=metadata)


def scenario_of_run(catalogue: Any, name: str) -> Scenario:
    """The DAG's scenario as its file says now; fails naming why it is not valid."""
    book = load_scenarios(catalogue)
    scenario = book.scenarios.get(name)
    if scenario is None:
        issues = [str(i) for i in book.issues if i.file.endswith(f"/{name}.yaml") or f"'{name}'" in i.message]
        raise VerificationFailed([f"no valid scenario {name!r} in include/scenarios now (run `chaosctl validate`)", *issues])
    return scenario


def verify_scenario_injection(
    context: Any,
    catalogue: Any,
    name: str,
    *,
    planned: Any,
    cluster: Any,
    prometheus: Any,
    airflow_api: Any,
    now: dt.datetime | None = None,
) -> VerifiedScenario:
    """Re-derive every step's object and check everything that allows the scenario, now, for its
    whole span: each step's digest among those every approver was shown, the window, the pods
    every step resolves to, the steady state. Raise `VerificationFailed` listing every problem."""
    from chaos_engineering.targets import verify_scenario_targets

    policy = catalogue.policy
    now = now or dt.datetime.now(dt.timezone.utc)
    dag_id, run_id = run_identity(context)
    problems: list[str] = []
    if problem := run_id_problem(run_id):
        problems.append(problem)
    if is_dry_run((context.get("params") or {}).get("dry_run")):
        problems.append("this run was triggered as a dry run: it never injects")
    planned_name = str(planned.get("scenario") or "") if isinstance(planned, Mapping) else ""
    if planned_name and planned_name != name:
        problems.append(f"this DAG runs scenario {name!r}, but its plan now names {planned_name!r} (the plan's XCom was changed)")
    scenario = scenario_of_run(catalogue, name)
    tier = scenario.tier
    manifests = render_scenario_objects(scenario, policy, dag_id=dag_id, run_id=run_id)
    digests = {step: object_digest(m) for step, m in manifests.items()}

    approvals, refused = recorded_approvals(policy, tier, airflow_api, dag_id, run_id, digests, now)
    problems += refused
    problems += window_problems(window := span_verdict(
        policy, tier, now, now + dt.timedelta(seconds=scenario.span(policy)), manual=is_manual(context)
    ))

    targets: list[str] = []
    peers: list[str] = []
    try:
        check = verify_scenario_targets(cluster, policy, scenario)
    except Exception as exc:
        problems.append(unresolved_targets(exc))
    else:
        problems += check.problems
        targets = sorted({t.ref for c in check.steps.values() for t in c.targets})
        peers = sorted({p.ref for c in check.steps.values() for p in c.peers})

    baseline, unsteady = steady_baseline(prometheus, scenario_thresholds(scenario, policy), policy, now)
    problems += unsteady

    if problems:
        raise VerificationFailed(problems)
    return VerifiedScenario(scenario, manifests, digests, approvals, window, baseline, time.time(), targets, peers)


class InjectScenarioOperator(InjectFaultOperator):
    """A scenario's point of no return: verifies every step (as inject verifies one experiment:
    re-rendered from the scenario file, each digest among those approved, the approvals in
    Airflow's records, the window for the whole span, every step's pods, the steady state, the
    lock, the halt), claims the run's one injection, and creates the steps planned first. The
    monitor creates the later ones when due. A retry adopts what the run created."""

    def __init__(self, *, scenario: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def _verify(self, context: Any, catalogue: Any, dag_id: str, run_id: str) -> VerifiedScenario:
        try:
            return verify_scenario_injection(
                context, catalogue, self.scenario, planned=self.plan, cluster=self.hook, prometheus=self.prometheus, airflow_api=self.airflow_api
            )
        except VerificationFailed as exc:
            raise AirflowFailException(str(exc)) from None

    def _create_verified(self, verified: VerifiedScenario, namespace: str, key: str) -> list[dict[str, Any]]:
        created = []
        for step in verified.first_steps(catalogue_or_fail().policy):
            body = verified.body(step)
            try:
                created.append(self.hook.create(body))
            except (KubernetesRequestError, KubernetesApiError) as failed:
                # Landed all the same (its reply lost, a 409)? Adopt it; else nothing more starts.
                try:
                    landed = self.hook.get(ChaosKind(body["kind"]), body["metadata"]["name"], namespace)
                except Exception:
                    landed = None
                if landed is None:
                    made = ", ".join(c["metadata"]["name"] for c in created) or "nothing"
                    raise AirflowFailException(
                        f"{failed}; step {step} is not on the cluster (created before it: {made}; the teardown removes it). "
                        "The run's one injection is claimed: trigger a new run"
                    ) from failed
                self.log.warning("the create of step %s failed (%s) but it landed: adopting it", step, failed)
                created.append(landed | {"kind": landed.get("kind") or body["kind"]})
        return created

    def _fault_record(self, created: list[dict[str, Any]], injected_at: float, verified: Any) -> dict[str, Any]:
        annotations = created[0]["metadata"].get("annotations") or {}
        started = float(annotations.get(ANNOTATION_SCENARIO_STARTED) or injected_at)
        return {
            "kind": "Scenario",
            "name": created[0]["metadata"]["name"],
            "namespace": created[0]["metadata"]["namespace"],
            "injected_at": started,
            "started_at": started,
            "objects": [fault_ref(c) | {"step": (c["metadata"].get("labels") or {}).get(LABEL_STEP)} for c in created],
        } | (verified.record() if verified is not None else {})


class ScenarioMonitorSensor(FaultMonitorSensor):
    """The scenario's one kill switch (deferred: it never needs a worker slot). What it watches
    comes from the cluster and the scenario file: the run's objects by its key, the digests and
    baseline inject verified and wrote on them, every step re-rendered from the file and compared
    with those digests (a difference fails the run: the teardown removes what stands). The
    trigger (`ScenarioMonitorTrigger`) starts the later steps and removes every one on a breach."""

    def __init__(self, *, scenario: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def execute(self, context: Any) -> None:
        catalogue = catalogue_or_fail()
        policy = catalogue.policy
        dag_id, run_id = run_identity(context)
        key = run_key(dag_id, run_id)
        objects = [o for kind in ChaosKind for o in self._hook().list(kind, policy.chaos_namespace, f"{LABEL_RUN_KEY}={key}")]
        if not objects:
            raise AirflowSkipException("no fault of this run is on the cluster: nothing to watch")
        first = objects[0]
        annotations = first["metadata"].get("annotations") or {}
        if (first["metadata"].get("labels") or {}).get(LABEL_SCENARIO) != self.scenario:
            raise AirflowFailException(f"{first['metadata']['name']} is not an object of scenario {self.scenario!r}: not watching it, removing it")
        try:
            scenario = scenario_of_run(catalogue, self.scenario)
            approved = json.loads(annotations.get(ANNOTATION_SCENARIO_DIGESTS) or "{}")
            started_at = float(annotations[ANNOTATION_SCENARIO_STARTED])
        except (VerificationFailed, ValueError, KeyError) as exc:
            raise AirflowFailException(f"cannot tell what inject verified of scenario {self.scenario!r} ({exc}): removing every step") from exc
        manifests = render_scenario_objects(scenario, policy, dag_id=dag_id, run_id=run_id)
        changed = [s for s, m in manifests.items() if approved.get(s) != object_digest(m)]
        if changed or set(approved) != set(manifests):
            raise AirflowFailException(
                f"scenario {self.scenario!r} differs from what inject verified (steps {', '.join(changed) or 'added or removed'}): "
                "no later step starts; removing every step"
            )
        verified = {k: annotations.get(k, "") for k in (ANNOTATION_APPROVALS, ANNOTATION_BASELINE, ANNOTATION_WINDOW)}
        standing = {o["metadata"]["name"]: created_at(o) or started_at for o in objects}
        timeline = scenario.timeline(policy)
        offset = min(w.start for w in timeline.values())
        steps = []
        for name, window in timeline.items():
            step = scenario.step(name)
            steps.append({
                "step": name,
                "body": step_body(manifests[name], approved, started_at, verified),
                "start_at": started_at + window.start - offset,
                "duration_s": window.end - window.start,
                "after": step.after,
                "when": step.when.value if step.after else None,
                "action": manifests[name]["spec"].get("action"),
                # Created already (by inject): when; None for a step the trigger creates when due.
                "created_at": standing.get(manifests[name]["metadata"]["name"]),
            })
        span_end = started_at + scenario.span(policy) - offset
        self.defer(
            trigger=ScenarioMonitorTrigger(
                prometheus_conn_id=self.prometheus_conn_id,
                kubernetes_conn_id=self.kubernetes_conn_id,
                steps=steps,
                started_at=started_at,
                span_end=span_end,
                namespace=policy.chaos_namespace,
                thresholds=scenario_thresholds(scenario, policy),
                baseline=recorded_baseline(first),
                interval_s=policy.safety.check_interval,
                max_failed_reads=policy.safety.max_failed_reads,
                deletion_timeout_s=policy.safety.deletion_timeout,
                chaos_namespace=policy.chaos_namespace,
                query_timeout_s=policy.safety.query_timeout,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=max(0.0, span_end - time.time()) + 300 + 2 * policy.safety.deletion_timeout),
        )

    def _hook(self) -> Any:
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook

        return ChaosMeshHook(self.kubernetes_conn_id)

