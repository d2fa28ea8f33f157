"""The resources the emulated server serves, with the Chaos Mesh kinds' spec schemas (from the CRDs)."""

# Discovery, routing and admission all read this one table, so a resource is either fully served
# or absent (404), never half there.

from __future__ import annotations

from dataclasses import dataclass

from sandbox.kubeapi.schema import ANY, Node, array, boolean, integer, map_of, obj, string

CHAOS_GROUP = "chaos-mesh.org"
CHAOS_VERSION = "v1alpha1"
CHAOS_API_VERSION = f"{CHAOS_GROUP}/{CHAOS_VERSION}"
RECORDS_FINALIZER = "chaos-mesh/records"
PAUSE_ANNOTATION = "experiment.chaos-mesh.org/pause"
# Chaos Mesh's documented forced clean-up: on a deleting object, its controller drops every
# finalizer without waiting for the recovery (controllers/common/finalizers).
CLEAN_FINALIZER_ANNOTATION = "chaos-mesh.chaos-mesh.org/cleanFinalizer"
CLEAN_FINALIZER_FORCED = "forced"
# The sandbox's own switch (not Chaos Mesh's): every recovery of the annotated object fails, as
# when chaos-daemon cannot reach the target's node, so the records finalizer is never released.
FAIL_RECOVERY_ANNOTATION = "sandbox.airflow-chaos.dev/fail-recovery"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    spec: Node | None = None  # the CRD's spec schema, for the chaos kinds

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def discovery(self) -> dict:
        entry = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        return entry


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False, ("get", "list"), ("ns",))
PODS = Resource("", "v1", "pods", "Pod", True, ("delete", "get", "list", "patch"), ("po",))
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", True, ("get", "list"), ("deploy",))
LEASES = Resource(
    "coordination.k8s.io", "v1", "leases", "Lease", True, ("create", "delete", "get", "list", "patch", "update")
)

# --- Chaos Mesh spec schemas, field for field as the v1alpha1 CRDs declare them -----------------

_MODES = ("one", "all", "fixed", "fixed-percent", "random-max-percent")
_DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$"

SELECTOR = obj(
    namespaces=array(string()),
    nodes=array(string()),
    pods=map_of(array(string())),
    nodeSelectors=map_of(string()),
    fieldSelectors=map_of(string()),
    labelSelectors=map_of(string()),
    annotationSelectors=map_of(string()),
    expressionSelectors=array(
        obj(required=("key", "operator"), key=string(), operator=string(), values=array(string()))
    ),
    podPhaseSelectors=array(string()),
)

_COMMON = {
    "selector": SELECTOR,
    "mode": string(*_MODES),
    "value": string(),
    "duration": string(),
    "remoteCluster": string(),
}
_CONTAINER_NAMES = array(string())
_TIMESPEC = obj(required=("nsec", "sec"), nsec=integer(), sec=integer())

POD_CHAOS_SPEC = obj(
    required=("action", "mode", "selector"),
    action=string("pod-kill", "pod-failure", "container-kill"),
    containerNames=_CONTAINER_NAMES,
    gracePeriod=integer(minimum=0),
    **_COMMON,
)

_CORRELATED = {"correlation": string()}
NETWORK_CHAOS_SPEC = obj(
    required=("action", "mode", "selector"),
    action=string("netem", "delay", "loss", "duplicate", "corrupt", "partition", "bandwidth"),
    bandwidth=obj(
        required=("buffer", "limit", "rate"),
        buffer=integer(minimum=1),
        limit=integer(minimum=1),
        minburst=integer(minimum=0),
        peakrate=integer(minimum=0),
        rate=string(),
    ),
    corrupt=obj(required=("corrupt",), corrupt=string(), **_CORRELATED),
    delay=obj(
        required=("latency",),
        latency=string(pattern=_DURATION_PATTERN),
        jitter=string(pattern=_DURATION_PATTERN),
        reorder=obj(required=("gap", "reorder"), gap=integer(), reorder=string(), **_CORRELATED),
        **_CORRELATED,
    ),
    device=string(),
    direction=string("to", "from", "both", default="to"),
    duplicate=obj(required=("duplicate",), duplicate=string(), **_CORRELATED),
    externalTargets=array(string()),
    loss=obj(required=("loss",), loss=string(), **_CORRELATED),
    rate=obj(required=("rate",), rate=string()),
    target=obj(required=("mode", "selector"), mode=string(*_MODES), selector=SELECTOR, value=string()),
    targetDevice=string(),
    **_COMMON,
)

_STRESSOR = {"workers": integer(maximum=8192), "options": array(string())}
STRESS_CHAOS_SPEC = obj(
    required=("mode", "selector"),
    containerNames=_CONTAINER_NAMES,
    stressngStressors=string(),
    stressors=obj(
        cpu=obj(required=("workers",), load=integer(0, 100), **_STRESSOR),
        memory=obj(
            required=("workers",), size=string(), oomScoreAdj=integer(-1000, 1000, default=0), **_STRESSOR
        ),
    ),
    **_COMMON,
)

IO_CHAOS_SPEC = obj(
    required=("action", "mode", "selector", "volumePath"),
    action=string("latency", "fault", "attrOverride", "mistake"),
    attr=obj(
        atime=_TIMESPEC, ctime=_TIMESPEC, mtime=_TIMESPEC, blocks=integer(), gid=integer(), ino=integer(),
        kind=string(), nlink=integer(), perm=integer(), rdev=integer(), size=integer(), uid=integer(),
    ),
    containerNames=_CONTAINER_NAMES,
    delay=string(),
    errno=integer(),
    methods=array(string()),
    mistake=obj(filling=string("zero", "random"), maxLength=integer(minimum=1), maxOccurrences=integer(minimum=1)),
    path=string(),
    percent=integer(default=100),
    volumePath=string(),
    **_COMMON,
)

HTTP_CHAOS_SPEC = obj(
    required=("mode", "selector", "target"),
    target=string("Request", "Response"),
    abort=boolean(),
    code=integer(),
    delay=string(),
    method=string(),
    path=string(),
    port=integer(),
    patch=obj(
        body=obj(required=("type", "value"), type=string(), value=string()),
        headers=array(array(string())),
        queries=array(array(string())),
    ),
    replace=obj(
        body=string(), code=integer(), headers=map_of(string()), method=string(), path=string(),
        queries=map_of(string()),
    ),
    request_headers=map_of(string()),
    response_headers=map_of(string()),
    tls=obj(
        required=("certName", "keyName", "secretName", "secretNamespace"),
        caName=string(), certName=string(), keyName=string(), secretName=string(), secretNamespace=string(),
    ),
    **_COMMON,
)

_CHAOS_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update")


def _chaos(plural: str, kind: str, spec: Node) -> Resource:
    return Resource(CHAOS_GROUP, CHAOS_VERSION, plural, kind, True, _CHAOS_VERBS, spec=spec)


CHAOS_KINDS = {
    r.plural: r
    for r in (
        _chaos("podchaos", "PodChaos", POD_CHAOS_SPEC),
        _chaos("networkchaos", "NetworkChaos", NETWORK_CHAOS_SPEC),
        _chaos("stresschaos", "StressChaos", STRESS_CHAOS_SPEC),
        _chaos("iochaos", "IOChaos", IO_CHAOS_SPEC),
        _chaos("httpchaos", "HTTPChaos", HTTP_CHAOS_SPEC),
    )
}


def chaos_object_schema(resource: Resource) -> Node:
    """The whole object: status is the controller's (ignored on write), metadata is checked apart."""
    return obj(
        required=("spec",), apiVersion=string(), kind=string(), metadata=ANY, spec=resource.spec, status=ANY
    )
