"""The Airflow plugin `chaos_engineering`: the timetable, the Chaos page and the report links."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from chaos_engineering.timetables import SafeWindowTimetable
from chaos_engineering.ui.links import ReportHtmlLink, ReportPdfLink


def _chaos_app():
    """The Chaos page's app, imported only where a plugin's `fastapi_apps` are read (the api-server)."""
    from chaos_engineering.ui.app import app

    return app


class ChaosEngineeringPlugin(AirflowPlugin):
    """Airflow serialises a DAG's timetable by import path and, for a class outside Airflow, only
    if a plugin registered it: without this plugin in the scheduler, api-server and dag-processor,
    every DAG on a `SafeWindowTimetable` fails to load. Airflow finds it through
    `plugins/chaos_engineering_plugin.py` (see there).

    The Chaos page (`chaos_engineering.ui`) is a FastAPI app the api-server mounts at `/chaos`,
    with an entry "Chaos" in the UI's navigation; the report task's extra links are registered
    here too, so the api-server can show the links the worker stored."""

    name = "chaos_engineering"
    timetables = [SafeWindowTimetable]
    operator_extra_links = [ReportHtmlLink(), ReportPdfLink()]
    external_views = [{"name": "Chaos", "href": "/chaos/", "destination": "nav", "url_route": "chaos", "category": None}]

    @property
    def fastapi_apps(self) -> list[dict]:  # type: ignore[override]
        return [{"name": "chaos", "app": _chaos_app(), "url_prefix": "/chaos"}]
