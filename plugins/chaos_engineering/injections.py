"""One injection per run, ever: a Lease per run that has injected, claimed before the create."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from chaos_engineering.hooks.chaos_mesh import LEASE_CONFLICT_ATTEMPTS, ChaosMeshHook
from chaos_engineering.render import (
    ANNOTATION_DAG_ID,
    ANNOTATION_DIGEST,
    ANNOTATION_RUN_ID,
    LABEL_EXPERIMENT,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    LABEL_RUN_KEY,
    MANAGED_BY,
)

RECORD_PREFIX = "chaos-injection-"
LABEL_RECORD = f"{LABEL_PREFIX}/record"
ANNOTATION_CLAIMED_AT = f"{LABEL_PREFIX}/claimed-at"


@dataclass(frozen=True)
class Injection:
    """A run's claim to its one injection: who, what, when."""

    dag_id: str
    run_id: str
    experiment: str
    digest: str
    claimed_at: str


def _injection(lease: V1Lease) -> Injection:
    annotations = lease.metadata.annotations or {}
    return Injection(
        dag_id=annotations.get(ANNOTATION_DAG_ID, ""),
        run_id=annotations.get(ANNOTATION_RUN_ID, ""),
        experiment=(lease.metadata.labels or {}).get(LABEL_EXPERIMENT, ""),
        digest=annotations.get(ANNOTATION_DIGEST, ""),
        claimed_at=annotations.get(ANNOTATION_CLAIMED_AT, ""),
    )


class InjectionRecord:
    """Kept in the cluster, where no Airflow user can edit or clear it: a cleared or retried inject
    task finds its run's claim and never creates a second fault. Creating the Lease is atomic: of
    two concurrent claims, one gets 409."""

    def __init__(self, hook: ChaosMeshHook, namespace: str, run_key: str) -> None:
        self.hook = hook
        self.namespace = namespace
        self.run_key = run_key
        self.name = f"{RECORD_PREFIX}{run_key}"

    def read(self) -> Injection | None:
        lease = self.hook.get_lease(self.name, self.namespace)
        return _injection(lease) if lease else None

    def claim(self, *, dag_id: str, run_id: str, experiment: str, digest: str) -> Injection | None:
        """Claim the run's injection; None when it was claimed before (by any try of this run). A
        409 with no claim there to read (an API server that said so wrongly) is tried again, up to
        LEASE_CONFLICT_ATTEMPTS times; then it raises: nothing may be injected without the claim."""
        now = dt.datetime.now(dt.timezone.utc)
        lease = V1Lease(
            metadata=V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_RECORD: "injection", LABEL_RUN_KEY: self.run_key, LABEL_EXPERIMENT: experiment},
                annotations={
                    ANNOTATION_DAG_ID: dag_id,
                    ANNOTATION_RUN_ID: run_id,
                    ANNOTATION_DIGEST: digest,
                    ANNOTATION_CLAIMED_AT: now.isoformat(),
                },
            ),
            spec=V1LeaseSpec(holder_identity=f"{dag_id}/{run_id}", acquire_time=now),
        )
        for _ in range(LEASE_CONFLICT_ATTEMPTS):
            try:
                return _injection(self.hook.create_lease(lease))
            except ApiException as exc:
                if exc.status != 409:
                    raise
            if self.read() is not None:
                return None
        raise RuntimeError(
            f"the injection record {self.namespace}/{self.name} could not be created: the API server answered 409 (already "
            f"exists) {LEASE_CONFLICT_ATTEMPTS} times, yet no record is there; nothing was injected"
        )
