"""Where Airflow finds the `chaos_engineering` plugin in the plugins folder.

Airflow's plugins manager walks the plugins folder recursively and runs every `.py` file it finds
as a top-level module named after the file, registering each `AirflowPlugin` subclass in it. This
file is the only one it should run: `.airflowignore` beside it keeps the walk out of the
`chaos_engineering/` package, whose modules would otherwise run a second time under bare names
(`policy`, `cli`, ...) and could register this plugin twice. The package itself is imported the
normal way (the plugins folder is on `sys.path`), so the timetable's import path is
`chaos_engineering.timetables.SafeWindowTimetable` in DAG files and in the plugin alike.
"""

from chaos_engineering.plugin import ChaosEngineeringPlugin

__all__ = ["ChaosEngineeringPlugin"]
