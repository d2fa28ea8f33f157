"""A real Airflow 3.3 (scheduler, triggerer, dag-processor, api-server; a Celery worker with CeleryExecutor) started for the demo and the end-to-end tests."""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import psutil
import requests
import sqlalchemy

from sandbox.airflow_client import (
    AirflowApiError,
    AirflowClient,
    AirflowWaitTimeout,
    TaskKey,
    TaskStateChange,
)
from chaos_engineering.deployment import REQUIRED_AIRFLOW_SETTINGS
from sandbox.celery_broker import REDIS_URL, CeleryBroker, CeleryBrokerError

__all__ = [
    "AirflowApiError",
    "AirflowClient",
    "AirflowStack",
    "AirflowStackError",
    "AirflowWaitTimeout",
    "TaskKey",
    "TaskStateChange",
]

# The account inject reads approval records with (connection `airflow_api_default`): read-only,
# never an approver. `mallory` has Airflow's ordinary `user` role and approves nothing.
VERIFIER = "chaos-verifier"
#: The account the DAGs write run notes with (`airflow_api_notes`): may edit runs, approves nothing.
NOTE_WRITER = "chaos-notes"

# The simple auth manager's roles, lowest first: viewer, user, op, admin. Answering a HITL task
# needs PUT on the DAG's HITL detail, which `user` already has; the task's `assigned_users` then
# decides who may answer (even an admin gets 403 when not assigned).
DEFAULT_USERS = {"admin": "admin", "sre-oncall": "user", "cto": "user", "mallory": "user", VERIFIER: "viewer", NOTE_WRITER: "user"}
COMPONENTS = ("scheduler", "triggerer", "dag-processor", "api-server")
CELERY_WORKER = "celery-worker"  # the fifth process with CeleryExecutor (its log: logs/celery-worker.log)
EXECUTORS = ("LocalExecutor", "CeleryExecutor")
ADMIN_POSTGRES_URL = os.environ.get(
    "CHAOS_E2E_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
# How stop() and reap_orphans() find every process of a stack, task processes included (Airflow
# puts those in process groups of their own): all of them run with the stack's home as their
# working directory, where this file names the pytest process that owns the stack. The environment
# cannot serve: setproctitle overwrites /proc/<pid>/environ of the api-server and the workers.
OWNER_FILE = ".chaos-e2e-owner"
DATABASE_PREFIX = "chaos_e2e_"


_OURSELVES = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}


class AirflowStackError(RuntimeError):
    """Airflow could not be started (or one of its processes died)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _airflow_executable() -> str:
    """The `airflow` script of the interpreter running the tests (the project's venv)."""
    candidate = Path(sys.executable).with_name("airflow")
    if not candidate.exists():
        raise AirflowStackError(
            f"no `airflow` beside {sys.executable}: run the tests with the project's venv"
        )
    return str(candidate)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if pytest dies without running stop() (Linux only)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _owner_home(process: psutil.Process) -> Path | None:
    """The stack home that `process` runs in, if it runs in one and is one of Airflow's processes
    (not, say, the shell of someone reading the logs there)."""
    # Celery's pool processes retitle themselves ("celeryd: celery@host:ForkPoolWorker-1").
    if process.pid in _OURSELVES or not any(
        word in part for part in process.cmdline() for word in ("airflow", "celery")
    ):
        return None
    cwd = Path(process.cwd())
    for folder in (cwd, *cwd.parents):
        if (folder / OWNER_FILE).is_file():
            return folder
    return None


def _processes_in(home: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if _owner_home(process) == home:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (this machine's init may never reap what it inherits)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs([process for process in processes if _alive(process)], timeout=10)


def reap_orphans() -> list[int]:
    """Kill, by pid, the processes, and drop the databases, of stacks whose pytest died unstopped."""
    orphans = []
    for process in psutil.process_iter():
        try:
            home = _owner_home(process)
            if home is not None and not psutil.pid_exists(int((home / OWNER_FILE).read_text().split()[0])):
                orphans.append(process)
        except (
            psutil.NoSuchProcess,
            psutil.AccessDenied,
            psutil.ZombieProcess,
            OSError,
            ValueError,
            IndexError,
        ):
            continue
    _kill(orphans)
    _drop_orphan_databases()
    return [process.pid for process in orphans]


def _drop_orphan_databases() -> None:
    # Database names carry the owner's pid: chaos_e2e_<pid>_<random>.
    try:
        engine = sqlalchemy.create_engine(ADMIN_POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            names = connection.execute(
                sqlalchemy.text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
                {"prefix": DATABASE_PREFIX + "%"},
            ).scalars()
            for name in list(names):
                match = re.fullmatch(rf"{DATABASE_PREFIX}(\d+)_[a-z0-9]+", name)
                if match and not psutil.pid_exists(int(match.group(1))):
                    connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError:
        pass  # no PostgreSQL here: start() reports that itself


class AirflowStack:
    """Airflow's four long-running processes on a fresh PostgreSQL database, for one test session;
    with CeleryExecutor a Celery worker too, on a Redis database of the stack's own.

    Use `AirflowStack.start(...)`, then `client(user)`; always `stop()` (it is idempotent, and also
    registered with atexit). Everything Airflow writes goes under `home`, except the database.
    """

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        users: Mapping[str, str],
        passwords: Mapping[str, str],
        broker: CeleryBroker | None = None,
    ):
        self.home = home
        self.broker = broker
        self.env = env
        self.users = dict(users)
        self.passwords = dict(passwords)
        self.port = int(env["AIRFLOW__API__PORT"])
        self.base_url = env["AIRFLOW__API__BASE_URL"]
        self.processes: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        self.startup_seconds: float | None = None
        self._database_to_drop: str | None = None
        self._stopped = False
        self._restarting = threading.Lock()  # restart() and restart_exited() never both spawn one process

    # -- start ----------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        home: Path,
        *,
        dags_folder: Path,
        plugins_folder: Path,
        env: Mapping[str, str] | None = None,
        executor: str = "LocalExecutor",
        database_url: str | None = None,
        broker_url: str | None = None,
        users: Mapping[str, str] = DEFAULT_USERS,
        healthy_timeout: float = 240.0,
    ) -> AirflowStack:
        """Create the database (unless given), migrate it, start the processes, wait until healthy.

        `executor` is LocalExecutor or CeleryExecutor; the latter also claims a Redis database as
        broker (on `broker_url`'s Redis server, else CHAOS_E2E_REDIS_URL, default
        redis://127.0.0.1:6379) and starts a Celery worker.
        `env` is added last (connections as AIRFLOW_CONN_*, extra AIRFLOW__* settings). On any
        failure everything started so far is stopped before the error propagates.
        """
        if executor not in EXECUTORS:
            # Others need processes (Kubernetes pods, Edge workers) this harness does not start.
            raise ValueError(
                f"executor {executor!r} is not supported by the e2e harness: use one of {', '.join(EXECUTORS)}"
            )
        if executor == "CeleryExecutor" and importlib.util.find_spec("airflow.providers.celery") is None:
            raise AirflowStackError(
                f"CeleryExecutor needs apache-airflow-providers-celery in {sys.prefix}: "
                "requirements.txt installs it (make install)"
            )
        missing = [driver for driver in ("psycopg2", "asyncpg") if importlib.util.find_spec(driver) is None]
        if missing and (database_url is None or database_url.startswith("postgresql")):
            # Airflow reaches PostgreSQL through psycopg2 and, in the api-server, asyncpg.
            raise AirflowStackError(
                f"PostgreSQL drivers missing from {sys.prefix}: {missing}; "
                "requirements.txt must install psycopg2-binary and asyncpg"
            )
        began = time.monotonic()
        home = Path(home).resolve()
        (home / "logs").mkdir(parents=True, exist_ok=True)
        reap_orphans()

        stack_id = secrets.token_hex(4)
        database_name = None
        if database_url is None:
            database_name = f"{DATABASE_PREFIX}{os.getpid()}_{stack_id}"
            database_url = (
                sqlalchemy.engine.make_url(ADMIN_POSTGRES_URL)
                .set(database=database_name)
                .render_as_string(hide_password=False)
            )
        # Written first: from here on, reap_orphans() knows this stack's processes by their cwd.
        (home / OWNER_FILE).write_text(f"{os.getpid()}\n")
        passwords = {name: secrets.token_urlsafe(12) for name in users}
        password_file = home / "simple_auth_manager_passwords.json.generated"
        password_file.write_text(json.dumps(passwords) + "\n")
        password_file.chmod(0o600)

        port = _free_port()
        process_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        process_env.update(
            {
                "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into dags/ or plugins/
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(plugins_folder).resolve()),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__CORE__PARALLELISM": "4",  # each slot is a pre-forked worker
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__WORKERS": "1",
                **REQUIRED_AIRFLOW_SETTINGS,  # as every deployment carries them
                # One secret for all four processes: the scheduler signs the tokens that the
                # api-server's execution API checks.
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in users.items()),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
                # Log servers on free ports: two stacks (or a developer's Airflow) must not collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            }
        )
        broker = None
        if executor == "CeleryExecutor":
            try:
                broker = CeleryBroker.claim(stack_id, broker_url or REDIS_URL)
            except CeleryBrokerError as error:
                raise AirflowStackError(str(error)) from error
            process_env.update(broker.settings(database_url))
        if VERIFIER in passwords:
            process_env["AIRFLOW_CONN_AIRFLOW_API_DEFAULT"] = json.dumps(
                {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "login": VERIFIER, "password": passwords[VERIFIER]}
            )
        if NOTE_WRITER in passwords:
            process_env["AIRFLOW_CONN_AIRFLOW_API_NOTES"] = json.dumps(
                {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "login": NOTE_WRITER, "password": passwords[NOTE_WRITER]}
            )
        process_env.update(env or {})
        stack = cls(home, process_env, users, passwords, broker)
        atexit.register(stack.stop)
        try:
            if database_name is not None:
                stack._create_database(database_name)
            stack.timings["database"] = time.monotonic() - began
            stack._migrate()
            stack.timings["migrate"] = time.monotonic() - began
            for name in COMPONENTS:
                stack._spawn(name, [name])
            if broker is not None:
                stack._spawn(CELERY_WORKER, broker.worker_command())
            stack._wait_healthy(healthy_timeout)
            stack.timings["healthy"] = time.monotonic() - began
        except BaseException:
            stack.stop()
            raise
        stack.startup_seconds = time.monotonic() - began
        return stack

    def _create_database(self, name: str) -> None:
        try:
            engine = sqlalchemy.create_engine(ADMIN_POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
            engine.dispose()
        except sqlalchemy.exc.SQLAlchemyError as error:
            raise AirflowStackError(
                f"cannot create database {name!r} through {ADMIN_POSTGRES_URL} "
                f"(set CHAOS_E2E_POSTGRES_URL to a PostgreSQL admin URL): {error}"
            ) from error
        self._database_to_drop = name

    def _migrate(self) -> None:
        log_path = self.home / "logs" / "db-migrate.log"
        with log_path.open("wb") as log:
            result = subprocess.run(
                [_airflow_executable(), "db", "migrate"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                timeout=300,
            )
        if result.returncode != 0:
            raise AirflowStackError(f"`airflow db migrate` exited {result.returncode}:\n{_tail(log_path)}")

    def _spawn(self, name: str, arguments: list[str]) -> None:
        log_path = self.log_path(name)
        with log_path.open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [_airflow_executable(), *arguments],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # its own process group, so stop() can signal all of it
            )

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health: object = "no answer yet"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                health = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            except (requests.RequestException, ValueError) as error:
                health = f"api-server not answering: {error}"
            else:
                statuses = {
                    part: (health.get(part) or {}).get("status")
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                }
                if self.broker is not None:
                    # The api-server knows nothing of workers; the worker's log says when it consumes.
                    ready = self.broker.worker_ready(self.log_path(CELERY_WORKER))
                    statuses["celery_worker"] = health["celery_worker"] = "healthy" if ready else "not ready"
                if all(status == "healthy" for status in statuses.values()):
                    return
            time.sleep(1)
        raise AirflowStackError(f"Airflow not healthy after {timeout:.0f}s: {health}\n{self.log_tails()}")

    # -- while running --------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {name}.log ---\n{_tail(self.log_path(name), lines)}" for name in self.processes
        )

    def check_alive(self) -> None:
        """Raise if one of Airflow's processes has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AirflowStackError(
                    f"airflow {name} exited with {process.returncode}:\n{_tail(self.log_path(name), 60)}"
                )

    def client(self, username: str = "admin", *, poll_interval: float = 0.5) -> AirflowClient:
        """A REST client logged in as one of the stack's users."""
        if username not in self.passwords:
            raise KeyError(f"no user {username!r}; the stack has {sorted(self.passwords)}")
        return AirflowClient(
            self.base_url,
            username,
            self.passwords[username],
            poll_interval=poll_interval,
            park_settled=self.scheduler_processed_park,
        )

    def scheduler_processed_park(self, task: TaskKey) -> bool:
        """Has the scheduler handled the executor's report of the worker exiting after the park?

        Until it has, a HITL response can fail the task (the race in shared/AIRFLOW-NOTES.md): the
        scheduler would see the old "success" exit of a task it has already re-queued. Only the
        scheduler's own log says when that report was handled.
        """
        needle = (
            f"TaskInstance Finished: dag_id={task.dag_id}, task_id={task.task_id}, "
            f"run_id={task.run_id}, map_index={task.map_index},"
        )
        try_tag = f"try_number={task.try_number},"
        with self.log_path("scheduler").open(errors="replace") as log:
            return any(needle in line and "state=awaiting_input" in line and try_tag in line for line in log)

    def stack_processes(self) -> list[psutil.Process]:
        """Every live process of the stack: those started here, their descendants, and any
        process (a task's, in a process group of its own) still working in the stack's home."""
        found = {process.pid: process for process in _processes_in(self.home)}
        for leader in self.processes.values():
            try:
                root = psutil.Process(leader.pid)
                for process in (root, *root.children(recursive=True)):
                    found.setdefault(process.pid, process)
            except psutil.NoSuchProcess:
                continue
        return [process for process in found.values() if _alive(process)]

    def memory(self) -> dict[str, int]:
        """{"rss": bytes, "pss": bytes, "processes": n} summed over the stack's processes.

        RSS counts pages shared between forks once per process; PSS shares them out, so it is the
        stack's real footprint.
        """
        rss = pss = count = 0
        for process in self.stack_processes():
            try:
                info = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            rss, pss, count = rss + info.rss, pss + getattr(info, "pss", info.rss), count + 1
        return {"rss": rss, "pss": pss, "processes": count}

    def rss_bytes(self) -> int:
        return self.memory()["rss"]

    def restart(self, name: str, *, down_s: float = 0.0) -> None:
        """SIGKILL one component's process group (a crash: no clean shutdown; its forked children go
        with it: with LocalExecutor the scheduler's workers and the task they run), wait `down_s`,
        start it again."""
        with self._restarting:
            self._restart(name, down_s)

    def restart_exited(self) -> list[str]:
        """What the compose file's `restart: always` does: start again every process that has
        exited (what is left of its group killed first); returns their names."""
        with self._restarting:
            exited = [] if self._stopped else [n for n, p in self.processes.items() if p.poll() is not None]
            for name in exited:
                self._restart(name, 0.0)
        return exited

    def _restart(self, name: str, down_s: float) -> None:
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        time.sleep(down_s)
        arguments = self.broker.worker_command() if name == CELERY_WORKER and self.broker else [name]
        self._spawn(name, arguments)

    # -- stop -----------------------------------------------------------------------------------

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every process group, SIGKILL what is left after `grace`, drop the database (and
        flush the broker's)."""
        with self._restarting:  # no process started again from here on (restart_exited)
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        # Taken before any signal: once a parent is gone its children cannot be found through it.
        started = self.stack_processes()
        leaders = [process for process in self.processes.values() if process.poll() is None]
        self._signal_groups(leaders, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in leaders:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        self._signal_groups(leaders, signal.SIGKILL)
        _kill([process for process in started if _alive(process)] + self.stack_processes())
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        leftovers = [process.pid for process in self.stack_processes()]
        if not leftovers:
            (self.home / OWNER_FILE).unlink(missing_ok=True)
        try:
            if self.broker is not None:
                self.broker.release()
        finally:
            if self._database_to_drop:
                self._drop_database(self._database_to_drop)
        if leftovers:
            raise AirflowStackError(f"processes of the stack in {self.home} survived SIGKILL: {leftovers}")

    @staticmethod
    def _signal_groups(leaders: list[subprocess.Popen], signum: int) -> None:
        for process in leaders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)

    def _drop_database(self, name: str) -> None:
        engine = sqlalchemy.create_engine(ADMIN_POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
        self._database_to_drop = None
