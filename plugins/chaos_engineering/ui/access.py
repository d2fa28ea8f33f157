"""Who may see and press what on the Chaos page: Airflow's own user and auth manager, nothing else.

A plugin's FastAPI app is mounted on the api-server outside Airflow's own routers, so none of
their authentication applies to it: every route here depends on one of these functions. The user
comes from `get_user` (the Bearer token, else the UI's `_token` cookie), the decision from the
configured auth manager, exactly as Airflow's REST API takes both.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.models.dag import DagModel

STOP_DAG_ID = "chaos_emergency_stop"
RESUME_DAG_ID = "chaos_resume"


def may_access_runs(user: BaseUser, method: ResourceMethod, dag_id: str | None = None) -> bool:
    """Whether the auth manager lets `user` read (GET) or trigger (POST) runs of `dag_id` (of any
    DAG when None). Any error answering is a refusal."""
    try:
        details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)) if dag_id else None
        return bool(get_auth_manager().is_authorized_dag(method=method, access_entity=DagAccessEntity.RUN, details=details, user=user))
    except Exception:
        return False


def readable_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs whose runs `user` may read (pending approvals and last runs are filtered by it)."""
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def reader(user: GetUserDep) -> BaseUser:
    """The page, its status and reports need a user who may read DAG runs."""
    if not may_access_runs(user, "GET"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you may not read DAG runs: the Chaos page needs read access to DAGs")
    return user


def trigger_of(dag_id: str):
    """A dependency: the user, who must be allowed to trigger `dag_id` (POST on its runs)."""

    def allowed(user: GetUserDep) -> BaseUser:
        if not may_access_runs(user, "POST", dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not trigger {dag_id}: only users allowed to trigger it may press this")
        return user

    return allowed


def json_only(request: Request) -> None:
    """State-changing requests take a JSON body only: an HTML form cannot send one, and a
    cross-site script must pass a CORS preflight first, so no other site can post for a user."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send a JSON body (Content-Type: application/json)")


Reader = Annotated[BaseUser, Depends(reader)]
Stopper = Annotated[BaseUser, Depends(trigger_of(STOP_DAG_ID))]
Resumer = Annotated[BaseUser, Depends(trigger_of(RESUME_DAG_ID))]
