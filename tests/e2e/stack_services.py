"""A PostgreSQL server and a Redis server of the campaign's own, which its rows may restart.

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
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

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
