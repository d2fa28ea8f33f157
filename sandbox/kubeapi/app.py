"""The emulated Kubernetes API server: `create_app(platform)` builds it, its lifespan runs the controller."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException

from sandbox.kubeapi import routes_apps, routes_chaos, routes_core, routes_discovery, routes_faults, routes_leases
from sandbox.kubeapi.controller import ChaosController
from sandbox.kubeapi.errors import ApiError, method_not_allowed, path_not_found, unauthorized
from sandbox.kubeapi.faults import ApiFaultMiddleware, FaultTable
from sandbox.kubeapi.pods import PodView
from sandbox.kubeapi.state import ServerState
from sandbox.kubeapi.store import ObjectStore
from sandbox.kubeapi.wire import status_response
from sandbox.platform.effects import PlatformControl

_OPEN_PATHS = ("/healthz", "/livez", "/readyz")


def create_app(
    platform: PlatformControl,
    *,
    clock: Callable[[], float] = time.time,
    token: str | None = None,
    allow_anonymous: bool = True,
    reconcile_interval: float = 0.2,
    rng: random.Random | None = None,
) -> FastAPI:
    """An ASGI app serving the documented Kubernetes surface (sandbox/kubeapi/README.md) for `platform`.

    token: when given, a request's `Authorization: Bearer ...` must carry it (401 otherwise), as a
    kubeconfig user with a token does. allow_anonymous: whether a request without credentials is
    served; kubectl (client-go) never sends a token over plain http, so without it kubectl cannot
    talk to the sandbox, while the Python clients always send theirs.
    """
    store = ObjectStore(clock)
    controller = ChaosController(
        store, platform, clock=clock, rng=rng or random.Random(), interval=reconcile_interval
    )
    state = ServerState(platform, store, controller, PodView(store.next_rv), clock, started=clock())
    faults = FaultTable()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = asyncio.create_task(controller.run(), name="chaos-controller")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # No /docs or /openapi.json: any path outside the Kubernetes surface must be a 404 Status.
    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None, title="sandbox kube-apiserver")
    app.state.kube = state
    app.state.api_faults = faults

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if token is not None and request.url.path not in _OPEN_PATHS:
            given = request.headers.get("authorization")
            anonymous_ok = given is None and allow_anonymous
            if not anonymous_ok and not secrets.compare_digest(given or "", f"Bearer {token}"):
                return status_response(unauthorized())
        return await call_next(request)

    # Added last, so outermost: a faulted request is failed, held or slowed before it is authenticated.
    app.add_middleware(ApiFaultMiddleware, table=faults)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError):
        return status_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException):
        if error.status_code == 405:
            return status_response(method_not_allowed())
        if error.status_code == 404:
            return status_response(path_not_found())
        return status_response(ApiError(error.status_code, "Unknown", str(error.detail)))

    app.include_router(routes_discovery.router())
    app.include_router(routes_core.router(state))
    app.include_router(routes_apps.router(state))
    app.include_router(routes_leases.router(state))
    app.include_router(routes_chaos.router(state))
    app.include_router(routes_faults.router(faults))
    return app
