"""The Chaos page's FastAPI app (mounted at `/chaos`): the page, its status, stop, resume and reports.

Every route authenticates itself (chaos_engineering.ui.access): the api-server mounts a plugin's
app outside its own routers and their authentication.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, field_validator

from airflow.api_fastapi.common.db.common import SessionDep
from chaos_engineering.catalogue import Catalogue, load_catalogue
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.policy import SafetyPolicy, load_policy
from chaos_engineering.ui import actions
from chaos_engineering.ui.access import RESUME_DAG_ID, STOP_DAG_ID, Reader, Resumer, Stopper, json_only, may_access_runs, readable_dag_ids
from chaos_engineering.ui.reports import ReportNotFound, report_file
from chaos_engineering.ui.status import chaos_status

#: How often the page asks for the status again.
REFRESH_S = 3

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


class ReasonBody(BaseModel):
    """What a person pressing stop or resume sends: why (recorded with the halt or the run)."""

    model_config = {"extra": "forbid"}
    reason: str = Field(max_length=500)

    @field_validator("reason")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if len(value) < 3:
            raise ValueError("say why in at least 3 characters (it is recorded with the halt)")
        return value


def policy() -> SafetyPolicy:
    loaded, issues = load_policy()
    if loaded is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the safety policy is invalid: " + "; ".join(map(str, issues)))
    return loaded


def catalogue() -> Catalogue:
    loaded = load_catalogue()
    if loaded.policy is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the safety policy is invalid: " + "; ".join(map(str, loaded.issues)))
    return loaded


JsonOnly = Annotated[None, Depends(json_only)]
app = FastAPI(title="Chaos engineering", description="The Chaos page of the Airflow UI", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/", response_class=HTMLResponse)
def page(request: Request, user: Reader) -> Any:
    return templates.TemplateResponse(
        request,
        "chaos.html",
        {"user": user.get_name(), "refresh_ms": REFRESH_S * 1000, "may_stop": may_access_runs(user, "POST", STOP_DAG_ID),
         "may_resume": may_access_runs(user, "POST", RESUME_DAG_ID)},
        headers={"Cache-Control": "no-store"},
    )


@app.get("/api/status")
def api_status(user: Reader, session: SessionDep) -> dict[str, Any]:
    return chaos_status(session, catalogue(), readable_dag_ids(user), hook=ChaosMeshHook(), prometheus=PrometheusHook())


@app.post("/api/stop")
def api_stop(user: Stopper, _: JsonOnly, body: ReasonBody, response: Response) -> dict[str, Any]:
    outcome = actions.stop(ChaosMeshHook(), policy(), user.get_name(), body.reason)
    if outcome["halt"] is None:
        response.status_code = status.HTTP_502_BAD_GATEWAY
    return outcome


@app.post("/api/resume")
def api_resume(user: Resumer, _: JsonOnly, body: ReasonBody) -> dict[str, Any]:
    try:
        return actions.request_resume(user.get_name(), body.reason)
    except Exception as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"could not trigger {RESUME_DAG_ID}: {exc}") from None


@app.get("/reports/{dag_id}/{run_id}/{name}")
def report(dag_id: str, run_id: str, name: str, user: Reader, session: SessionDep) -> Response:
    if not may_access_runs(user, "GET", dag_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not read runs of {dag_id}")
    try:
        content, media_type = report_file(session, policy(), dag_id, run_id, name)
    except ReportNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(content, media_type=media_type, headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})
