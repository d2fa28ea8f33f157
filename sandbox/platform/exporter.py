"""The sandbox's metrics server: every pod's /metrics, kube-state-metrics, and a read-only state view."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.platform.platform import Platform, PodNotFound, PodNotServing, WriteFailed

#: Where the booking platform answers a disaster-recovery drill's probe (docs/RUNBOOK.md).
PROBE_PREFIX = "/dr-probe"


def create_exporter_app(
    platform: Platform,
    health: Callable[[], dict[str, bool]] | None = None,
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """`health` adds the state of the other parts of the sandbox process to /healthz. With a
    `clock` (the wall clock, in the server), every scrape first brings the simulation up to it:
    counters are those of the scrape's moment even when the simulation's own loop lags behind on
    a loaded machine (a real process counts as it serves, not when it gets scheduled)."""

    def current() -> None:
        if clock is not None:
            platform.step(clock())

    async def pod_metrics(request: Request) -> Response:
        current()
        try:
            body = platform.render_pod_metrics(request.path_params["namespace"], request.path_params["pod"])
        except PodNotFound as error:
            return PlainTextResponse(str(error), status_code=404)
        except PodNotServing as error:
            # Prometheus records up == 0 for the target, as for a crashed container.
            return PlainTextResponse(str(error), status_code=503)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def kube_state_metrics(request: Request) -> Response:
        current()
        return Response(platform.render_kube_state_metrics(), media_type=CONTENT_TYPE_LATEST)

    async def state(request: Request) -> Response:
        return JSONResponse(platform.state())

    async def write_canary(request: Request) -> Response:
        try:
            return JSONResponse(platform.write_canary(), status_code=201)
        except WriteFailed as error:
            return JSONResponse({"error": str(error)}, status_code=503)

    async def read_canary(request: Request) -> Response:
        try:
            status = platform.read_canary(request.path_params["canary_id"])
        except WriteFailed as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        return JSONResponse({"id": request.path_params["canary_id"], "status": status}, status_code=200 if status == "present" else 404)

    async def healthz(request: Request) -> Response:
        parts = {"platform": True, **(health() if health else {})}
        return JSONResponse(parts, status_code=200 if all(parts.values()) else 503)

    return Starlette(
        routes=[
            Route("/pods/{namespace}/{pod}/metrics", pod_metrics),
            Route("/kube-state-metrics/metrics", kube_state_metrics),
            Route("/sandbox/state", state),
            Route(f"{PROBE_PREFIX}/canaries", write_canary, methods=["POST"]),
            Route(PROBE_PREFIX + "/canaries/{canary_id:int}", read_canary),
            Route("/healthz", healthz),
        ]
    )
