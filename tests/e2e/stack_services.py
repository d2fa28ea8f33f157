"""A PostgreSQL server and a Redis server of the campaign's own, which its rows may restart, and a
proxy in front of Prometheus that its rows make slow, trickling, empty or NaN.

The machine's PostgreSQL and Redis serve everyone on it (the test suite, a developer's Airflow);
restarting them would break far more than the run under test. These are started from the
machine's own binaries (Debian's postgresql and redis-server) on free ports with their data in a
folder of their own, and restarted the way the compose file's `restart` of a service does it:
PostgreSQL stopped in its "fast" mode (the postgres image's stop signal), Redis with SIGTERM, which
saves its data to disk as the compose file's redis (a volume on /data) keeps it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import requests

from tests.integration.receivers import free_port


class ServiceError(RuntimeError):
    """A server of the campaign's own could not be started or stopped."""


def _postgres_bin(program: str) -> str:
    """`program` of the newest PostgreSQL installed (Debian keeps them out of PATH)."""
    found = shutil.which(program) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), reverse=True)), None)
    if found is None:
        raise ServiceError(f"{program} not found: install PostgreSQL's server (Debian's postgresql)")
    return found


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1, trust auth, user postgres.

    PostgreSQL refuses to run as root: as root, the folder belongs to the `postgres` user and every
    command runs as it (runuser)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="chaos-campaign-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        """The server's admin database, as SQLAlchemy (and the e2e harness) takes it."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        result = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        return ""

    def running(self) -> bool:
        status = subprocess.run([*self._as, _postgres_bin("pg_ctl"), "-D", str(self.data), "status"], capture_output=True, check=False)
        return status.returncode == 0

    def start(self) -> None:
        """Start it (created on first start); nothing if it is running."""
        if self.running():
            return
        if not self.data.exists():
            self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c max_connections=200 -c fsync=off"
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: `fast` rolls back open transactions and closes every connection (what a
        restart of the postgres container does); `immediate` is a crash."""
        if (self.data / "postmaster.pid").exists():
            self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(ServiceError):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class RedisServer:
    """A redis-server on a free port of 127.0.0.1 with its data in a temporary folder (saved on
    SIGTERM and read back on start, as the compose file's redis with its volume)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="chaos-campaign-redis-"))
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it; nothing if it is running."""
        if self._process is not None and self._process.poll() is None:
            return
        program = shutil.which("redis-server")
        if program is None:
            raise ServiceError("redis-server not found: install Debian's redis-server")
        log = (self.folder / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [program, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "60 1", "--appendonly", "no", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2) as client:
                    client.ping()
                return
            except redis.RedisError as error:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise ServiceError(f"redis-server on port {self.port} not answering: {error}") from error
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM: Redis saves its data (dump.rdb) and exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class PrometheusProxy:
    """Between Airflow and Prometheus (the connection points here): passes every request through,
    or, while `mode` says so, answers the queries (/api/v1/query and query_range) as a failing
    Prometheus would: `slow` (each answer held `seconds`, past the reads' deadline), `trickle` (the
    status line and headers, then one body byte per 0.5 s for as long as the mode lasts), `empty`
    (a successful query with no series), `nan` (Prometheus's own answer with every sample NaN).
    Everything else (runtime information, targets) always passes through."""

    MODES = ("pass", "slow", "trickle", "empty", "nan")
    QUERIES = ("/api/v1/query", "/api/v1/query_range")

    def __init__(self, upstream: str, seconds: float = 10.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.seconds = seconds
        self.mode = "pass"
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode {mode!r} is not one of {self.MODES}")
        self.mode = mode

    def _upstream(self, handler: BaseHTTPRequestHandler, body: bytes) -> requests.Response:
        return requests.request(handler.command, self.upstream + handler.path, data=body or None, timeout=30,
                                headers={k: v for k, v in handler.headers.items() if k.lower() == "content-type"})

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        mode = self.mode if handler.path.split("?")[0] in self.QUERIES else "pass"
        if mode == "trickle":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "1000000")
            handler.end_headers()
            while self.mode == "trickle":
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.5)
            return  # the announced body never completes: the client's deadline ends it
        if mode == "empty":
            kind = "matrix" if handler.path.startswith("/api/v1/query_range") else "vector"
            return self._answer(handler, 200, json.dumps({"status": "success", "data": {"resultType": kind, "result": []}}).encode())
        if mode == "slow":
            time.sleep(self.seconds)
        answer = self._upstream(handler, body)
        if mode == "nan" and answer.ok:
            document = answer.json()
            for series in document.get("data", {}).get("result", []):
                if "value" in series:
                    series["value"][1] = "NaN"
                for sample in series.get("values", []):
                    sample[1] = "NaN"
            return self._answer(handler, answer.status_code, json.dumps(document).encode())
        self._answer(handler, answer.status_code, answer.content)

    def start(self) -> None:
        if self._server is not None:
            return
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with contextlib.suppress(OSError):  # a client that gave up (trickle, slow)
                    proxy._handle(self)

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self.mode = "pass"  # ends any trickle
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> PrometheusProxy:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
