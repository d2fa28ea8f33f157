"""Start, inspect and stop a whole sandbox: the sandbox server, a real Prometheus and a real Pushgateway."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox import processes
from sandbox.configs import TARGETS_FILE, kubeconfig, prometheus_config, write_yaml

if TYPE_CHECKING:
    from sandbox.api_faults import ApiFaults

STATE_FILE = "sandbox.json"
SERVER, PROMETHEUS, PUSHGATEWAY = "sandbox-server", "prometheus", "pushgateway"


class SandboxError(RuntimeError):
    """The sandbox could not be started, or is not in the state a command needs."""


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (Path("/usr/bin", name).exists() and f"/usr/bin/{name}")
        if found:
            return str(found)
    raise SandboxError(f"none of {', '.join(names)} is installed: install Debian's prometheus and "
                       "prometheus-pushgateway packages (see .ci/run)")


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body; 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


@dataclass
class Sandbox:
    """A running sandbox. `Sandbox.start(dir)` brings one up; `stop()` tears it all down."""

    state_dir: Path
    kube_port: int
    prometheus_port: int
    pushgateway_port: int
    metrics_port: int
    scrape_interval: str = "5s"
    rate: float = 20.0
    restart_delay: float = 3.0
    seed: int | None = None
    rule_files: list[str] = field(default_factory=list)
    # Unix time the sandbox became healthy (Prometheus has data from about then on).
    started_at: float = 0.0

    # -- addresses ------------------------------------------------------------------------

    @property
    def kube_url(self) -> str:
        return f"http://127.0.0.1:{self.kube_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def pushgateway_url(self) -> str:
        return f"http://127.0.0.1:{self.pushgateway_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def api_faults(self) -> ApiFaults:
        """The emulated Kubernetes API's fault table: make it fail, hang or slow down on purpose."""
        from sandbox.api_faults import ApiFaults  # the API server's modules, only when asked for

        return ApiFaults(self.kube_url)

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        state_dir: str | Path = ".sandbox",
        *,
        scrape_interval: str = "5s",
        rate: float = 20.0,
        restart_delay: float = 3.0,
        seed: int | None = None,
        rule_files: Sequence[str | Path] = (),
        kube_port: int | None = None,
        prometheus_port: int | None = None,
        pushgateway_port: int | None = None,
        metrics_port: int | None = None,
        timeout: float = 60.0,
    ) -> Sandbox:
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        running = [process.name for process in processes.tracked(state_dir) if process.alive()]
        if running:
            raise SandboxError(f"a sandbox already runs from {state_dir} ({', '.join(running)}): "
                               "run `chaos-sandbox down` first, or use another --state-dir")
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        sandbox = cls(
            state_dir=state_dir,
            kube_port=kube_port or processes.free_port(),
            prometheus_port=prometheus_port or processes.free_port(),
            pushgateway_port=pushgateway_port or processes.free_port(),
            metrics_port=metrics_port or processes.free_port(),
            scrape_interval=scrape_interval,
            rate=rate,
            restart_delay=restart_delay,
            seed=seed,
            rule_files=[str(Path(path).resolve()) for path in rule_files],
        )
        for missing in (path for path in sandbox.rule_files if not Path(path).is_file()):
            raise SandboxError(f"rule file {missing} does not exist")
        # Prometheus watches the file_sd directory: it must exist before Prometheus starts.
        (state_dir / TARGETS_FILE).parent.mkdir(parents=True, exist_ok=True)
        write_yaml(state_dir / "prometheus.yml", prometheus_config(
            state_dir, interval=scrape_interval, metrics_port=sandbox.metrics_port,
            pushgateway_port=sandbox.pushgateway_port, rule_files=[Path(p) for p in sandbox.rule_files],
        ))
        try:
            processes.spawn(SERVER, sandbox._server_argv(), state_dir)
            processes.spawn(PUSHGATEWAY, sandbox._pushgateway_argv(), state_dir)
            processes.spawn(PROMETHEUS, sandbox._prometheus_argv(), state_dir)
            sandbox.wait_until_healthy(timeout)
        except BaseException:
            sandbox.stop()
            raise
        write_yaml(sandbox.kubeconfig_path, kubeconfig(sandbox.kube_url))
        sandbox.started_at = time.time()
        sandbox._write_state()
        return sandbox

    def stop(self) -> None:
        """Stop every process this state directory started. Safe to call again."""
        for process in processes.tracked(self.state_dir):
            processes.stop(process, self.state_dir)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def stop_prometheus(self) -> None:
        """Take the metrics away (tests of the fail-safe); the TSDB stays on disk."""
        for process in processes.tracked(self.state_dir):
            if process.name == PROMETHEUS:
                processes.stop(process, self.state_dir)
        self._write_state()

    def start_prometheus(self, timeout: float = 60.0) -> None:
        """Bring Prometheus back on the same port and data; returns once it scrapes again."""
        if any(p.name == PROMETHEUS and p.alive() for p in processes.tracked(self.state_dir)):
            return
        processes.spawn(PROMETHEUS, self._prometheus_argv(), self.state_dir)
        self._write_state()
        self.wait_until_healthy(timeout, every_pod_up=False)

    @classmethod
    def load(cls, state_dir: str | Path = ".sandbox") -> Sandbox | None:
        """The sandbox recorded in `state_dir`, whether or not its processes still run."""
        path = Path(state_dir).resolve() / STATE_FILE
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(state_dir=Path(recorded["state_dir"]), **recorded["options"])

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, tuple[bool, str]]:
        """Each part: (healthy, detail)."""
        alive = {process.name: process for process in processes.tracked(self.state_dir) if process.alive()}

        def part(name: str, url: str, check=lambda status, body: status == 200) -> tuple[bool, str]:
            if name not in alive:
                return False, "not running"
            status, body = _get(url)
            return (True, f"pid {alive[name].pid}, {url}") if check(status, body) else (
                False, f"pid {alive[name].pid}, {url} answered {status or 'nothing'}")

        return {
            "kubernetes-api": part(SERVER, self.kube_url + "/readyz"),
            "platform-metrics": part(SERVER, self.metrics_url + "/healthz"),
            PUSHGATEWAY: part(PUSHGATEWAY, self.pushgateway_url + "/-/ready"),
            PROMETHEUS: part(PROMETHEUS, self.prometheus_url + "/-/ready"),
        }

    def scrape_healthy(self, *, every_pod_up: bool = True) -> bool:
        """Prometheus has scraped every platform target, kube-state-metrics and the Pushgateway.

        every_pod_up=False accepts platform targets that are down (a fault may be active when
        Prometheus is restarted) as long as each has been scraped once.
        """
        status, body = _get(self.prometheus_url + "/api/v1/targets?state=active")
        if status != 200:
            return False
        try:
            expected = len(json.loads((self.state_dir / TARGETS_FILE).read_text()))
        except (OSError, ValueError):
            return False
        scraped: dict[str, int] = {}
        up: dict[str, int] = {}
        for target in json.loads(body)["data"]["activeTargets"]:
            job = target["labels"].get("job", "")
            if target.get("health") != "unknown":
                scraped[job] = scraped.get(job, 0) + 1
            if target.get("health") == "up":
                up[job] = up.get(job, 0) + 1
        platform = up if every_pod_up else scraped
        return platform.get("booking-platform", 0) >= expected and up.get("kube-state-metrics") == 1 \
            and up.get("pushgateway") == 1

    def wait_until_healthy(self, timeout: float, *, every_pod_up: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while True:
            parts = self.health()
            dead = [name for name, (ok, detail) in parts.items() if detail == "not running"]
            if dead:
                raise SandboxError(f"{', '.join(dead)} exited during start-up; see {self.state_dir / 'logs'}:\n"
                                   + self._log_tails())
            if all(ok for ok, _ in parts.values()) and self.scrape_healthy(every_pod_up=every_pod_up):
                return
            if time.monotonic() > deadline:
                raise SandboxError(f"the sandbox was not healthy within {timeout:.0f}s: "
                                   f"{ {name: detail for name, (ok, detail) in parts.items() if not ok} }\n"
                                   + self._log_tails())
            time.sleep(0.2)

    def _log_tails(self, lines: int = 15) -> str:
        out = []
        for log in sorted((self.state_dir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # -- files and command lines ----------------------------------------------------------

    def _write_state(self) -> None:
        options = asdict(self)
        options.pop("state_dir")
        state = {
            "state_dir": str(self.state_dir),
            "kube_url": self.kube_url,
            "prometheus_url": self.prometheus_url,
            "pushgateway_url": self.pushgateway_url,
            "metrics_url": self.metrics_url,
            "kubeconfig": str(self.kubeconfig_path),
            "ports": {"kube": self.kube_port, "prometheus": self.prometheus_port,
                      "pushgateway": self.pushgateway_port, "metrics": self.metrics_port},
            "pids": {process.name: process.pid for process in processes.tracked(self.state_dir)},
            "options": options,
        }
        partial = self.state_dir / f".{STATE_FILE}.tmp"
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_dir / STATE_FILE)

    def _server_argv(self) -> list[str]:
        argv = [sys.executable, "-m", "sandbox.server", "--state-dir", str(self.state_dir),
                "--kube-port", str(self.kube_port), "--metrics-port", str(self.metrics_port),
                "--rate", str(self.rate), "--restart-delay", str(self.restart_delay)]
        return argv + (["--seed", str(self.seed)] if self.seed is not None else [])

    def _prometheus_argv(self) -> list[str]:
        return [
            _binary("prometheus"),
            f"--config.file={self.state_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.state_dir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
            "--log.level=warn",
        ]

    def _pushgateway_argv(self) -> list[str]:
        return [
            _binary("prometheus-pushgateway", "pushgateway"),
            f"--web.listen-address=127.0.0.1:{self.pushgateway_port}",
            f"--persistence.file={self.state_dir / 'pushgateway.data'}",
            "--log.level=warn",
        ]
