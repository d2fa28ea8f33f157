"""Detached processes the sandbox starts, remembered in pid files so any later command can stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tracked:
    """A process we started: its pid and kernel start time (a recycled pid has another start time)."""

    name: str
    pid: int
    started: int

    def alive(self) -> bool:
        start, state = _stat(self.pid)
        # A zombie has exited: it only waits for its parent to reap it.
        return start == self.started and state not in ("Z", "X")


def _stat(pid: int) -> tuple[int | None, str | None]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    # The command name (field 2) may contain spaces and parentheses: split after its last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19]), fields[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pid_dir(state_dir: Path) -> Path:
    return state_dir / "pids"


def spawn(name: str, argv: list[str], state_dir: Path, env: dict[str, str] | None = None) -> Tracked:
    """Start `argv` in its own session (no terminal, survives the caller), logging to logs/<name>.log."""
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pid_dir(state_dir).mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=state_dir,
            env=env,
        )
    started, _ = _stat(process.pid)
    tracked = Tracked(name, process.pid, started or 0)
    (pid_dir(state_dir) / f"{name}.pid").write_text(f"{tracked.pid} {tracked.started}\n")
    # Keep the Popen so that this process reaps the child when it exits (no zombie left).
    _children[tracked.pid] = process
    return tracked


_children: dict[int, subprocess.Popen] = {}


def tracked(state_dir: Path) -> list[Tracked]:
    out = []
    for path in sorted(pid_dir(state_dir).glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pid, started = path.read_text().split()
            out.append(Tracked(path.stem, int(pid), int(started)))
    return out


def stop(process: Tracked, state_dir: Path, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; forget the pid file. Safe to call twice."""
    if process.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        if not _wait_gone(process, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            _wait_gone(process, 5.0)
    child = _children.pop(process.pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)
    with contextlib.suppress(FileNotFoundError):
        (pid_dir(state_dir) / f"{process.name}.pid").unlink()


def _wait_gone(process: Tracked, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(process.pid)
        if child is not None:
            child.poll()
        if not process.alive():
            return True
        time.sleep(0.05)
    return not process.alive()
