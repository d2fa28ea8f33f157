"""Server-side printing: pods and Deployments as a meta.k8s.io Table when the client asks (kubectl get)."""

# kubectl get sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...,application/json` and
# prints whatever columns the server returns. The chaos kinds and Leases are answered as plain
# lists: kubectl then prints NAME and AGE, as it does for a custom resource without printer columns.

from __future__ import annotations

import calendar
import time
from collections.abc import Callable

from fastapi import Request

from sandbox.kubeapi.wire import respond

Row = Callable[[dict, float], list]


def human_age(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, as kubectl's AGE column shows it."""
    s = int(seconds)
    if s < -1:  # up to a second of clock skew is "now"
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _age(obj: dict, now: float) -> str:
    created = calendar.timegm(time.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
    return human_age(now - created)


def _columns(*names: str, wide: tuple[str, ...] = ()) -> list[dict]:
    """Column definitions; `wide` ones have priority 1 (kubectl shows them with `-o wide`)."""
    return [
        {"name": name, "type": "string", "format": "name" if name == "Name" else "", "description": "", "priority": int(name in wide)}
        for name in (*names, *wide)
    ]


POD_COLUMNS = _columns("Name", "Ready", "Status", "Restarts", "Age", wide=("IP", "Node"))
DEPLOYMENT_COLUMNS = _columns("Name", "Ready", "Up-to-date", "Available", "Age", wide=("Containers", "Images", "Selector"))


def _pod_status(pod: dict) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for container in pod["status"].get("containerStatuses", []):
        state = container.get("state", {})
        for waiting_or_terminated in ("waiting", "terminated"):
            reason = (state.get(waiting_or_terminated) or {}).get("reason")
            if reason:
                return reason
    return pod["status"]["phase"]


def pod_row(pod: dict, now: float) -> list:
    statuses = pod["status"].get("containerStatuses", [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(c.get("restartCount", 0) for c in statuses)
    return [pod["metadata"]["name"], f"{ready}/{len(pod['spec']['containers'])}", _pod_status(pod), str(restarts),
            _age(pod, now), pod["status"].get("podIP") or "<none>", pod["spec"].get("nodeName") or "<none>"]


def deployment_row(deployment: dict, now: float) -> list:
    spec, status = deployment["spec"], deployment["status"]
    containers = spec["template"]["spec"]["containers"]
    selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
    return [deployment["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec['replicas']}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(deployment, now),
            ",".join(c["name"] for c in containers), ",".join(c["image"] for c in containers), selector]


def table_version(request: Request) -> str | None:
    """`v1` or `v1beta1` when the Accept header asks for a meta.k8s.io Table first; else None."""
    for media_type in request.headers.get("accept", "").split(","):
        params = dict(p.strip().partition("=")[::2] for p in media_type.split(";")[1:])
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
        if media_type.split(";")[0].strip() in ("application/json", "*/*"):
            return None  # the client prefers plain JSON to any Table that follows
    return None


def _row_object(request: Request, obj: dict, version: str) -> dict | None:
    include = request.query_params.get("includeObject", "Metadata")
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": obj["metadata"]}


def respond_printed(request: Request, body: dict, columns: list[dict], row: Row, now: float):
    """`body` (one object or a List) as the client asked: a Table of `columns`, or itself."""
    version = table_version(request)
    if version is None:
        return respond(body)
    items = body["items"] if "items" in body else [body]
    rows = []
    for item in items:
        entry = {"cells": row(item, now)}
        included = _row_object(request, item, version)
        if included is not None:
            entry["object"] = included
        rows.append(entry)
    metadata = body["metadata"] if "items" in body else {"resourceVersion": body["metadata"]["resourceVersion"]}
    return respond({"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": metadata,
                    "columnDefinitions": columns, "rows": rows})
