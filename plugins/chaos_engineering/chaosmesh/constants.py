"""Chaos Mesh API constants: group, version, kinds with their plurals, conditions, phases, finalizer."""

from __future__ import annotations

import enum

GROUP = "chaos-mesh.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class ChaosKind(str, enum.Enum):
    """The Chaos Mesh kinds this project creates; the value is the manifest's `kind`."""

    POD_CHAOS = "PodChaos"
    NETWORK_CHAOS = "NetworkChaos"
    STRESS_CHAOS = "StressChaos"
    IO_CHAOS = "IOChaos"
    HTTP_CHAOS = "HTTPChaos"

    @property
    def plural(self) -> str:
        return PLURALS[self]


# Spelled out because generic Kubernetes clients guess plurals wrongly ("podchaoss"); these are
# the `names.plural` of the CRDs.
PLURALS: dict[ChaosKind, str] = {
    ChaosKind.POD_CHAOS: "podchaos",
    ChaosKind.NETWORK_CHAOS: "networkchaos",
    ChaosKind.STRESS_CHAOS: "stresschaos",
    ChaosKind.IO_CHAOS: "iochaos",
    ChaosKind.HTTP_CHAOS: "httpchaos",
}


class ConditionType(str, enum.Enum):
    """`status.conditions[].type` of a Chaos Mesh experiment (each with status "True"/"False")."""

    SELECTED = "Selected"
    ALL_INJECTED = "AllInjected"
    ALL_RECOVERED = "AllRecovered"
    PAUSED = "Paused"


class DesiredPhase(str, enum.Enum):
    """`status.experiment.desiredPhase`: Stop once the duration elapsed, the object is paused or deleted."""

    RUN = "Run"
    STOP = "Stop"


# Chaos Mesh keeps this finalizer until every injected record is recovered; an object stuck in
# deletion with it still present means a fault may still be active.
FINALIZER = "chaos-mesh/records"

# Setting this annotation to "true" pauses an experiment (Chaos Mesh recovers the fault).
PAUSE_ANNOTATION = "experiment.chaos-mesh.org/pause"
