"""The `spec` of a StressChaos: CPU and memory stressors run by stress-ng inside the containers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chaos_engineering.chaosmesh.scalars import ByteSize
from chaos_engineering.chaosmesh.selectors import ChaosMeshModel, ContainerChaosSpec
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, child

# The CRD caps workers at 8192 (stress-ng's limit); the webhook rejects 0 ("workers should
# always be positive").
Workers = Annotated[int, Field(ge=1, le=8192)]


class CPUStressor(ChaosMeshModel):
    workers: Workers
    load: Annotated[int, Field(ge=0, le=100)] | None = None  # percent of each worker's CPU
    options: list[str] | None = None  # extra stress-ng options


class MemoryStressor(ChaosMeshModel):
    workers: Workers
    size: ByteSize | None = None  # per worker: "256MB" or a share of memory such as "50%"
    oomScoreAdj: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    options: list[str] | None = None


class Stressors(ChaosMeshModel):
    cpu: CPUStressor | None = None
    memory: MemoryStressor | None = None


class StressChaosSpec(ContainerChaosSpec):
    stressors: Stressors | None = None
    # stress-ng's own option syntax; Chaos Mesh calls it experimental, and it wins over stressors.
    stressngStressors: str | None = None

    @classmethod
    def cross_field_issues(cls, raw: dict[str, Any]) -> list[SpecIssue]:
        issues = super().cross_field_issues(raw)
        stressors = raw.get("stressors")
        where = child(SPEC_ROOT, "stressors")
        # Chaos Mesh's webhook: "missing stressors", for the spec and for an empty stressors.
        if stressors is None and not raw.get("stressngStressors"):
            issues.append(
                SpecIssue(
                    where,
                    Rule.ACTION_REQUIRES,
                    "StressChaos needs a stressor: add stressors.cpu or stressors.memory (or stressngStressors).",
                )
            )
        elif isinstance(stressors, dict) and stressors.get("cpu") is None and stressors.get("memory") is None:
            issues.append(SpecIssue(where, Rule.ACTION_REQUIRES, "stressors needs cpu or memory (or both)."))
        return issues
