"""The Airflow plugin `chaos_engineering`: registers this package's timetable with Airflow."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from chaos_engineering.timetables import SafeWindowTimetable


class ChaosEngineeringPlugin(AirflowPlugin):
    """Airflow serialises a DAG's timetable by import path and, for a class outside Airflow, only
    if a plugin registered it: without this plugin in the scheduler, api-server and dag-processor,
    every DAG on a `SafeWindowTimetable` fails to load. Airflow finds it through
    `plugins/chaos_engineering_plugin.py` (see there)."""

    name = "chaos_engineering"
    timetables = [SafeWindowTimetable]
