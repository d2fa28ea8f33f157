"""Every command of docs/RUNBOOK.md, run as the SRE would run it against the session's sandbox."""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chaos_engineering.emergency import resume
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import Heartbeat
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.policy import load_policy
from tests.conftest import REPO_ROOT
from tests.integration.chaos_support import NAMESPACE, create_fault, get, remove, wait_injected

RUNBOOK = REPO_ROOT / "docs" / "RUNBOOK.md"
CHAOSCTL = str(Path(sys.executable).with_name("chaosctl"))
OWNED = "app.kubernetes.io/managed-by=airflow-chaos-engineering"
LOCK_HOLDER = "chaos_low_risk/manual__runbook"

# Each runbook command (as extracted: whitespace collapsed) -> the command line the test runs, its
# placeholders filled with `{value}`s the test passes. One table per test; that test runs every
# command of its table. A command in the runbook and in no table fails the suite.
EMERGENCY = {
    'chaosctl stop --reason "bookings failing after experiment X"': 'chaosctl stop --reason "bookings failing after experiment X"',
    "chaosctl status": "chaosctl status",
    f"kubectl get podchaos,networkchaos,stresschaos,iochaos,httpchaos -A -l {OWNED}":
        f"kubectl get podchaos,networkchaos,stresschaos,iochaos,httpchaos -A -l {OWNED}",
    # <namespace>, <selector>: the fault's selector.namespaces and labelSelectors
    "kubectl get pods -n <namespace> -l <selector>": "kubectl get pods -n {namespace} -l {selector}",
    'chaosctl resume --reason "incident INC-123 closed"': 'chaosctl resume --reason "incident INC-123 closed"',
}
ALERTS = {
    # <kind>: the fault's plural, <name>: its name
    "kubectl describe <kind> -n chaos-engineering <name>": "kubectl describe {plural} -n chaos-engineering {name}",
    "kubectl get lease -n chaos-engineering chaos-experiment-lock -o yaml":
        "kubectl get lease -n chaos-engineering chaos-experiment-lock -o yaml",
    "chaosctl stop --reason ...": 'chaosctl stop --reason "{reason}"',
    "chaosctl resume --reason ...": 'chaosctl resume --reason "{reason}"',
}
CATALOGUE = {
    "chaosctl validate": "chaosctl validate",
    # NAME, <tier>, <name>: the first experiment of include/experiments
    "chaosctl render NAME": "chaosctl render {name}",
    "chaosctl validate include/experiments/<tier>/<name>.yaml": "chaosctl validate include/experiments/{tier}/{name}.yaml",
    "chaosctl render <name>": "chaosctl render {name}",
}
WATCHDOG = {
    "chaosctl watchdog": "chaosctl watchdog",
    "kubectl get deploy -n chaos-engineering": "kubectl get deploy -n chaos-engineering",
}
COMMANDS = EMERGENCY | ALERTS | CATALOGUE | WATCHDOG


def runbook_commands(markdown: str) -> list[str]:
    """Each line of a fenced block, and each inline code span starting with `chaosctl ` or
    `kubectl `, in the order they appear. A span may wrap across lines, as Markdown allows."""
    found: list[str] = []
    paragraph: list[str] = []

    def end_paragraph() -> None:
        for span in re.findall(r"`([^`]+)`", "\n".join(paragraph)):
            command = " ".join(span.split())
            if command.startswith(("chaosctl ", "kubectl ")):
                found.append(command)
        paragraph.clear()

    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            end_paragraph()
            fenced = not fenced
        elif fenced:
            found += [line.strip()] if line.strip() else []
        elif line.strip():
            paragraph.append(line)
        else:
            end_paragraph()
    end_paragraph()
    return list(dict.fromkeys(found))


def test_every_runbook_command_is_run_by_a_test():
    commands = runbook_commands(RUNBOOK.read_text())
    untested = [c for c in commands if c not in COMMANDS]
    assert not untested, f"{RUNBOOK.name} has commands no test runs: {untested}; add each to a table of {__name__}"
    stale = [c for c in COMMANDS if c not in commands]
    assert not stale, f"{__name__} runs commands {RUNBOOK.name} no longer has: {stale}; remove them"


# --- running them --------------------------------------------------------------------------


class Runbook:
    """Runs one table's commands as subprocesses, with the sandbox as the cluster: chaosctl through
    the `kubernetes_default` connection, kubectl through KUBECONFIG, as the runbook's intro says."""

    def __init__(self, table: dict[str, str], env: dict[str, str]) -> None:
        self.table = table
        self.env = env
        self.ran: set[str] = set()

    def argv(self, command: str, values: dict[str, str]) -> list[str]:
        argv = shlex.split(self.table[command].format(**values))
        if argv[0] == "chaosctl":
            return [CHAOSCTL, *argv[1:]]
        kubectl = shutil.which("kubectl")
        assert kubectl, "kubectl is not installed: `make test` installs it (sandbox/system-packages.sh --tests)"
        return [kubectl, *argv[1:]]

    def __call__(self, command: str, *, cwd: Path = REPO_ROOT, **values: str) -> subprocess.CompletedProcess:
        self.ran.add(command)
        return subprocess.run(self.argv(command, values), capture_output=True, text=True, timeout=120, cwd=cwd, env=self.env)

    def start(self, command: str, **values: str) -> subprocess.Popen:
        self.ran.add(command)
        return subprocess.Popen(self.argv(command, values), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO_ROOT, env=self.env)

    def assert_every_command_ran(self) -> None:
        assert self.ran == set(self.table), f"not run: {sorted(set(self.table) - self.ran)}"


@pytest.fixture
def runbook_env(connections, sandbox, tmp_path) -> dict[str, str]:
    # A discovery cache of the test's own where kubectl reads KUBECACHEDIR (1.32 does, 1.20 does not:
    # it caches under ~/.kube/cache by server address, and each sandbox has a port of its own).
    return {**os.environ, **connections, "KUBECONFIG": str(sandbox.kubeconfig_path), "KUBECACHEDIR": str(tmp_path / "kube-cache")}


@pytest.fixture
def cluster(runbook_env) -> Iterator[tuple[ChaosMeshHook, list[dict]]]:
    """Leaves the shared cluster as found: our objects and heartbeats gone, lock free, halt cleared."""
    hook = ChaosMeshHook()
    created: list[dict] = []
    yield hook, created
    for obj in created:
        Heartbeat(hook, obj["kind"], obj["metadata"]["name"], NAMESPACE).delete()
        if get(obj) is not None:
            remove(obj)
    ExperimentLock(hook, NAMESPACE).release(LOCK_HOLDER)
    if HaltFlag(hook, NAMESPACE).state().halted:
        resume(hook, load_policy()[0], "test-cleanup", "end of test")


def planted(cluster: tuple[ChaosMeshHook, list[dict]], prefix: str) -> dict:
    """A fault of ours, injected, as a run would leave it."""
    _, created = cluster
    fault = create_fault(prefix)
    created.append(fault)
    wait_injected(fault)
    return fault


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def test_emergency_procedure_in_runbook_order(cluster, runbook_env):
    hook, _ = cluster
    run = Runbook(EMERGENCY, runbook_env)
    fault = planted(cluster, "runbook-estop")
    name = fault["metadata"]["name"]
    selector = fault["spec"]["selector"]
    ExperimentLock(hook, NAMESPACE).acquire(LOCK_HOLDER, 600)
    list_ours = f"kubectl get podchaos,networkchaos,stresschaos,iochaos,httpchaos -A -l {OWNED}"

    # Before the stop both lists show the fault: their empty lists afterwards mean something.
    before = run(list_ours)
    assert before.returncode == 0 and re.search(rf"^{NAMESPACE}\s+{name}\s", before.stdout, re.M), output(before)
    before = run("chaosctl status")
    assert before.returncode == 0 and f"NetworkChaos {NAMESPACE}/{name} [active]" in before.stdout, output(before)

    stop = run('chaosctl stop --reason "bookings failing after experiment X"')
    assert stop.returncode == 0, output(stop)
    assert f"NetworkChaos {NAMESPACE}/{name}" in stop.stdout and f"lock: released (held by {LOCK_HOLDER})" in stop.stdout
    assert get(fault) is None
    halt = HaltFlag(hook, NAMESPACE).state()
    assert halt.halted and halt.halted_reason == "bookings failing after experiment X" and halt.halted_by.endswith("(chaosctl)")

    status = run("chaosctl status")
    assert status.returncode == 0, output(status)
    assert f"halt:   HALTED by {halt.halted_by}" in status.stdout and "bookings failing after experiment X" in status.stdout
    assert "lock:   free" in status.stdout and "faults: 0 of ours in the cluster" in status.stdout

    after = run(list_ours)
    assert after.returncode == 0 and name not in after.stdout and "No resources found" in after.stderr, output(after)

    # The fault's own targets, as the runbook says to check them after a forced finalizer.
    namespace, labels = selector["namespaces"][0], ",".join(f"{k}={v}" for k, v in selector["labelSelectors"].items())
    pods = run("kubectl get pods -n <namespace> -l <selector>", namespace=namespace, selector=labels)
    expected = sorted(p.metadata.name for p in hook.list_pods(namespace, labels))
    assert pods.returncode == 0 and expected, output(pods)
    header, *rows = [line.split() for line in pods.stdout.splitlines()]
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], pods.stdout
    assert sorted(row[0] for row in rows) == expected and {row[2] for row in rows} == {"Running"}, pods.stdout

    resumed = run('chaosctl resume --reason "incident INC-123 closed"')
    assert resumed.returncode == 0, output(resumed)
    assert "not halted (resumed by" in resumed.stdout and "incident INC-123 closed" in resumed.stdout
    assert not HaltFlag(hook, NAMESPACE).state().halted
    run.assert_every_command_ran()


def test_alert_inspections(cluster, runbook_env):
    hook, _ = cluster
    run = Runbook(ALERTS, runbook_env)
    fault = planted(cluster, "runbook-alert")
    name = fault["metadata"]["name"]
    ExperimentLock(hook, NAMESPACE).acquire(LOCK_HOLDER, 600)

    described = run("kubectl describe <kind> -n chaos-engineering <name>", plural="networkchaos", name=name)
    assert described.returncode == 0, output(described)
    for line in (rf"Name:\s+{name}", rf"Namespace:\s+{NAMESPACE}", r"Kind:\s+NetworkChaos", r"Desired Phase:\s+Run",
                 r"Status:\s+True\s+Type:\s+Selected", r"Status:\s+True\s+Type:\s+AllInjected"):
        assert re.search(line, described.stdout), f"{line!r} not in:\n{described.stdout}"

    lease = run("kubectl get lease -n chaos-engineering chaos-experiment-lock -o yaml")
    assert lease.returncode == 0, output(lease)
    document = yaml.safe_load(lease.stdout)
    assert (document["kind"], document["metadata"]["name"]) == ("Lease", "chaos-experiment-lock")
    assert document["spec"]["holderIdentity"] == LOCK_HOLDER and document["spec"]["leaseDurationSeconds"] == 600

    stop = run("chaosctl stop --reason ...", reason="two faults at once")
    assert stop.returncode == 0 and f"lock: released (held by {LOCK_HOLDER})" in stop.stdout, output(stop)
    assert get(fault) is None
    # Why the runbook says to save the Lease first.
    gone = run("kubectl get lease -n chaos-engineering chaos-experiment-lock -o yaml")
    assert gone.returncode == 1 and '"chaos-experiment-lock" not found' in gone.stderr, output(gone)

    resumed = run("chaosctl resume --reason ...", reason="clean again")
    assert resumed.returncode == 0 and "clean again" in resumed.stdout, output(resumed)
    assert not HaltFlag(hook, NAMESPACE).state().halted
    run.assert_every_command_ran()


def test_catalogue_commands(tmp_path):
    run = Runbook(CATALOGUE, dict(os.environ))
    files = sorted((REPO_ROOT / "include" / "experiments").glob("*/*.yaml"))
    path = files[0]
    tier, name = path.parent.name, path.stem
    experiment = yaml.safe_load(path.read_text())
    assert experiment["name"] == name, "the runbook's <tier>/<name>.yaml layout"

    catalogue = run("chaosctl validate")
    assert catalogue.returncode == 0, output(catalogue)
    scenarios = sorted((REPO_ROOT / "include" / "scenarios").glob("*.yaml"))
    assert f"{len(files) + len(scenarios)} file(s), {len(files)} valid experiment(s), {len(scenarios)} valid scenario(s): valid" in catalogue.stdout
    one = run("chaosctl validate include/experiments/<tier>/<name>.yaml", tier=tier, name=name)
    assert one.returncode == 0 and "1 file(s), 1 valid experiment(s): valid" in one.stdout, output(one)

    # The same command in a checkout where that file is broken names file, field and rule.
    broken = tmp_path / "include" / "experiments" / tier / f"{name}.yaml"
    broken.parent.mkdir(parents=True)
    spoiled = copy.deepcopy(experiment)
    spoiled["chaos"]["spec"]["mode"] = "sometimes"
    broken.write_text(yaml.safe_dump(spoiled))
    invalid = run("chaosctl validate include/experiments/<tier>/<name>.yaml", cwd=tmp_path, tier=tier, name=name)
    assert invalid.returncode == 1, output(invalid)
    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1) if text.strip() == "mode: sometimes")
    assert f"include/experiments/{tier}/{name}.yaml:{line}: chaos.spec.mode: [enum] 'sometimes' is not a valid mode" in invalid.stdout

    for command in ("chaosctl render NAME", "chaosctl render <name>"):
        rendered = run(command, name=name)
        assert rendered.returncode == 0, output(rendered)
        manifest = yaml.safe_load(rendered.stdout)
        assert manifest["kind"] == experiment["chaos"]["kind"] and manifest["metadata"]["namespace"] == NAMESPACE
        assert manifest["metadata"]["labels"]["airflow-chaos.dev/experiment"] == name
        assert manifest["spec"]["mode"] == experiment["chaos"]["spec"]["mode"]
    run.assert_every_command_ran()


def test_watchdog_removes_an_unwatched_fault_and_its_deployment_answers(cluster, runbook_env):
    hook, _ = cluster
    run = Runbook(WATCHDOG, runbook_env)
    stale, watched = planted(cluster, "runbook-stale"), planted(cluster, "runbook-watched")
    # A monitor that died a minute ago, past the default 20 s grace; and one that is alive.
    Heartbeat(hook, "NetworkChaos", stale["metadata"]["name"], NAMESPACE).renew(
        "dead-monitor", 1, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=60))
    alive = threading.Event()

    def live_monitor() -> None:
        while not alive.wait(1):
            Heartbeat(hook, "NetworkChaos", watched["metadata"]["name"], NAMESPACE).renew("live-monitor", 1)

    Heartbeat(hook, "NetworkChaos", watched["metadata"]["name"], NAMESPACE).renew("live-monitor", 1)
    beats = threading.Thread(target=live_monitor)
    beats.start()
    # As the Deployment runs it: until stopped, sweeping every 5 s.
    watchdog = run.start("chaosctl watchdog")
    try:
        deadline = time.monotonic() + 90
        while get(stale) is not None and watchdog.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        removed, kept = get(stale) is None, get(watched) is not None
    finally:
        alive.set()
        beats.join()
        if watchdog.poll() is None:
            watchdog.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = watchdog.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            stdout, stderr = watchdog.communicate()
    log = stdout + stderr  # Airflow's logging configuration, once imported, writes to stdout
    assert removed, f"the stale fault outlived 90 s of the watchdog:\n{log}"
    assert kept and watchdog.returncode == 0, log
    assert f"watchdog removed NetworkChaos {NAMESPACE}/{stale['metadata']['name']}" in log
    assert f"removed NetworkChaos {NAMESPACE}/{watched['metadata']['name']}" not in log

    # The sandbox runs no watchdog Deployment: the namespace answers with an empty list (kubectl
    # says so only after a successful list; a missing resource type or endpoint is an error).
    deployments = run("kubectl get deploy -n chaos-engineering")
    assert deployments.returncode == 0 and f"No resources found in {NAMESPACE} namespace." in deployments.stderr, output(deployments)
    run.assert_every_command_ran()
