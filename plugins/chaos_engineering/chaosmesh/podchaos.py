"""The `spec` of a PodChaos: kill pods, make them fail, or kill containers."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import Field, Strict

from chaos_engineering.chaosmesh.scalars import Int64
from chaos_engineering.chaosmesh.selectors import ContainerChaosSpec
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, child


class PodChaosAction(str, enum.Enum):
    POD_KILL = "pod-kill"
    POD_FAILURE = "pod-failure"
    CONTAINER_KILL = "container-kill"


class PodChaosSpec(ContainerChaosSpec):
    action: Annotated[PodChaosAction, Strict(False)]
    # Seconds before the pod is deleted by pod-kill; 0 deletes at once.
    gracePeriod: Annotated[Int64, Field(ge=0)] | None = None

    @classmethod
    def cross_field_issues(cls, raw: dict[str, Any]) -> list[SpecIssue]:
        issues = super().cross_field_issues(raw)
        # Chaos Mesh's webhook: "the name of container is required on container-kill action".
        if raw.get("action") == PodChaosAction.CONTAINER_KILL.value and not raw.get("containerNames"):
            issues.append(
                SpecIssue(
                    child(SPEC_ROOT, "containerNames"),
                    Rule.ACTION_REQUIRES,
                    "action 'container-kill' needs containerNames: the names of the containers to kill.",
                )
            )
        return issues
