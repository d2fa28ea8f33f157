"""The pipeline examples of docs/PIPELINES.md, executed: each workflow file is parsed and its shape
asserted, and every shell step that runs chaosctl runs in bash, in a folder laid out like a
checkout, with the environment the CI gives it, against the session's Airflow on the sandbox."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.deploys import declarations
from tests.e2e import test_tier_runs
from tests.e2e.test_chaosctl_run import new_run, run_ids
from tests.e2e.test_on_deploy import DECLARING, OPEN_WINDOW, runs_of, wait_for_new_run
from tests.e2e.test_tier_runs import Chaos, FaultWatch, chaos_on_airflow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory, sandbox, connections) -> Iterator[Chaos]:
    """An Airflow of this module's own: the pipelines' runs go beside the shared one's modules, on
    the other pytest worker (tests/conftest.py `OWN_AIRFLOW`), to keep the suite's wall time."""
    with chaos_on_airflow(tmp_path_factory, sandbox, connections) as chaos:
        yield chaos

# Autouse here too: each test starts and must end with nothing of ours in the cluster, the lock free.
clean_cluster = test_tier_runs.clean_cluster

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "docs" / "pipelines"
GITHUB_VALIDATE = PIPELINES / "github" / "chaos-validate.yml"
GITHUB_AFTER_DEPLOY = PIPELINES / "github" / "chaos-after-deploy.yml"
GITLAB = PIPELINES / "gitlab" / ".gitlab-ci.yml"
CIS = ["github", "gitlab"]

BASH = shutil.which("bash") or "/bin/bash"
VENV_BIN = Path(sys.executable).parent
INSTALL = "pip install -r requirements.txt -e ."
SETUP = ["actions/checkout@v4", "actions/setup-python@v5", INSTALL]
#: The GitHub steps not run here, per (file, job): the runner's setup (checkout, Python, the install
#: this virtualenv stands for) and the artifact upload. Every other step runs: a step added to an
#: example is executed, or this table changes with it.
GITHUB_NOT_RUN = {
    (GITHUB_VALIDATE.name, "validate"): [*SETUP, "actions/upload-artifact@v4"],
    (GITHUB_AFTER_DEPLOY.name, "announce"): SETUP,
    (GITHUB_AFTER_DEPLOY.name, "experiment"): SETUP,
}
#: GitLab: the install (every chaos job's before_script) and the user's own deploy job are not run.
GITLAB_BEFORE_SCRIPT = [INSTALL]
GITLAB_NOT_RUN_JOBS = {"deploy"}
GITLAB_KEYWORDS = {"stages", "default", "variables", "workflow", "include"}
#: Which job of each file is which example.
JOBS = {
    "github": {"validate": (GITHUB_VALIDATE, "validate"), "announce": (GITHUB_AFTER_DEPLOY, "announce"),
               "experiment": (GITHUB_AFTER_DEPLOY, "experiment")},
    "gitlab": {"validate": (GITLAB, "chaos-validate"), "announce": (GITLAB, "chaos-announce-deploy"),
               "experiment": (GITLAB, "chaos-after-deploy")},
}

#: The examples name booking-api-pod-kill of the shipped catalogue; the e2e include's short low-tier
#: experiment (tests/e2e/test_include.py EXTRA) runs in its place.
QUICK = "booking-api-quick-kill"
HEAD_SHA = "3f2a9c1e" * 5  # github.event.workflow_run.head_sha
SHORT_SHA = HEAD_SHA[:8]  # CI_COMMIT_SHORT_SHA
VERSIONS = {"github": HEAD_SHA, "gitlab": SHORT_SHA}


@dataclass(frozen=True)
class Step:
    """One shell step of an example: its script, and the environment its file declares for it (the
    workflow's, job's and step's `env` on GitHub; the global and job `variables` on GitLab)."""

    file: str
    job: str
    name: str
    script: str
    declared: dict[str, str]


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def github_triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true; GitHub reads it as "on".
    return workflow["on"] if "on" in workflow else workflow[True]


def github_steps(path: Path) -> dict[str, list[Step]]:
    """Each job's steps that run chaosctl; the others must be exactly `GITHUB_NOT_RUN`'s."""
    workflow = load(path)
    found: dict[str, list[Step]] = {}
    for job_id, job in workflow["jobs"].items():
        not_run, steps = [], []
        for step in job["steps"]:
            if "chaosctl" in step.get("run", ""):
                declared = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                steps.append(Step(path.name, job_id, step.get("name", step["run"]), step["run"], declared))
            else:
                not_run.append(step.get("uses") or step["run"])
        assert not_run == GITHUB_NOT_RUN[(path.name, job_id)], f"{path.name} job {job_id}: steps not run here: {not_run}"
        found[job_id] = steps
    return found


def gitlab_jobs(ci: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each job with its `extends` template's keys under its own (the templates here hold no map a
    job also sets, so GitLab's deep merge comes to the same)."""
    return {name: {**(ci[job["extends"]] if "extends" in job else {}), **job}
            for name, job in ci.items() if name not in GITLAB_KEYWORDS and not name.startswith(".")}


def gitlab_steps(path: Path) -> dict[str, list[Step]]:
    """Each job's script as one step (GitLab runs its lines in one shell and stops at the first
    failure); the deploy job and the before_script install are the only parts not run."""
    ci = load(path)
    found: dict[str, list[Step]] = {}
    for name, job in gitlab_jobs(ci).items():
        if name in GITLAB_NOT_RUN_JOBS:
            assert not any("chaosctl" in line for line in job["script"]), f"{name} runs chaosctl: run it here"
            continue
        assert job.get("before_script") == GITLAB_BEFORE_SCRIPT, f"{path.name} job {name}: before_script not run here: {job.get('before_script')}"
        found[name] = [Step(path.name, name, name, "\n".join(job["script"]), {**ci.get("variables", {}), **job.get("variables", {})})]
    return found


def example(ci: str, which: str) -> Step:
    path, job = JOBS[ci][which]
    steps = (github_steps if ci == "github" else gitlab_steps)(path)[job]
    assert len(steps) == 1, steps
    return steps[0]


def validate_steps(ci: str) -> list[Step]:
    path, job = JOBS[ci]["validate"]
    return (github_steps if ci == "github" else gitlab_steps)(path)[job]


# -- the environment a runner gives a step -------------------------------------------------------


def runner_environment(home: Path) -> dict[str, str]:
    """What every runner has: a PATH on which the install put chaosctl (this virtualenv's bin), a HOME."""
    return {"PATH": os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]), "HOME": str(home), "LANG": "C.UTF-8"}


def github_env(step: Step, evaluated: dict[str, str]) -> dict[str, str]:
    """The step's declared `env`, each `${{ ... }}` replaced by what `evaluated` says GitHub makes of it."""
    env = {}
    for key, value in step.declared.items():
        value = str(value)
        if "${{" in value:
            assert value in evaluated, f"{step.file} {step.job}: {key}: {value} is none the test provides"
            value = evaluated[value]
        env[key] = value
    return env


def gitlab_env(step: Step, predefined: dict[str, str]) -> dict[str, str]:
    """The job's variables as GitLab expands them (`$NAME`, `${NAME}`) from its predefined ones."""
    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in predefined, f"{step.file} {step.job}: ${name} is no variable the test provides"
        return predefined[name]

    return {key: re.sub(r"\$(?:\{(\w+)\}|(\w+))", expand, str(value)) for key, value in step.declared.items()}


def environment(ci: str, step: Step, chaos: Chaos, checkout: Path, **overrides: str) -> dict[str, str]:
    """The step's environment on `ci`: the repository's secrets (CI/CD variables on GitLab) are the
    shared stack's URL and an admin token; `overrides` stand for a change a test makes."""
    home = checkout.parent / "home"
    home.mkdir(exist_ok=True)
    secrets = {"AIRFLOW_API_URL": chaos.stack.base_url, "AIRFLOW_CLI_TOKEN": chaos.admin.token()}
    if ci == "github":
        evaluated = {f"${{{{ secrets.{name} }}}}": value for name, value in secrets.items()}
        evaluated["${{ github.event.workflow_run.head_sha }}"] = HEAD_SHA
        summary = checkout.parent / "step-summary.md"
        github = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(checkout), "GITHUB_STEP_SUMMARY": str(summary)}
        return runner_environment(home) | github | github_env(step, evaluated) | overrides
    predefined = {"CI": "true", "CI_PROJECT_DIR": str(checkout), "CI_COMMIT_SHORT_SHA": SHORT_SHA, "CI_COMMIT_BRANCH": "main",
                  "CI_DEFAULT_BRANCH": "main"}
    return runner_environment(home) | predefined | secrets | gitlab_env(step, predefined) | overrides


def checkout_of(chaos: Chaos, tmp_path: Path) -> Path:
    """A folder laid out like the repository's checkout, its include/ the e2e catalogue."""
    folder = tmp_path / "checkout"
    shutil.copytree(chaos.include, folder / "include")
    return folder


def execute(step: Step, env: dict[str, str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([BASH, "-euo", "pipefail", "-c", step.script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"--- {step.file} {step.job}: {step.name} (exit {done.returncode})\n{done.stdout}\n{done.stderr}")
    return done


def junit_cases(path: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(path).getroot().iter("testcase")}


def summary_of(checkout: Path) -> str:
    path = checkout.parent / "step-summary.md"
    return path.read_text() if path.exists() else ""


# -- the files -----------------------------------------------------------------------------------


@pytest.mark.no_preflight
def test_the_workflow_files_have_the_triggers_reports_and_branches_the_docs_describe() -> None:
    docs = (ROOT / "docs" / "PIPELINES.md").read_text()
    for path in (GITHUB_VALIDATE, GITHUB_AFTER_DEPLOY, GITLAB):
        assert str(path.relative_to(ROOT)) in docs, f"docs/PIPELINES.md does not name {path.relative_to(ROOT)}"
    shipped = load_catalogue([ROOT / "include" / "experiments"], ROOT / "include" / "safety_policy.yaml")
    assert "booking-api" in declarations(shipped)  # what the announce jobs deploy is declared

    # GitHub, validate: on a push or pull request touching include/; no Airflow, no secret.
    validate = load(GITHUB_VALIDATE)
    triggers = github_triggers(validate)
    assert set(triggers) == {"push", "pull_request"} and all(t["paths"] == ["include/**"] for t in triggers.values()), triggers
    assert "secrets." not in GITHUB_VALIDATE.read_text()
    assert validate["env"]["CHAOS_INCLUDE_DIR"] == "include" and validate["defaults"]["run"]["shell"] == "bash"
    steps = validate["jobs"]["validate"]["steps"]
    assert steps[1]["with"]["python-version"] == "3.11"
    assert [s.script for s in validate_steps("github")] == ["chaosctl validate --format github",
                                                           "chaosctl validate --format junit > chaos-validate.xml"]
    upload = steps[-1]
    assert upload["with"]["path"] == "chaos-validate.xml" and "!cancelled()" in upload["if"]  # kept when validation fails

    # GitHub, after a deploy: a successful run of the deploy workflow; the secrets only where chaosctl runs.
    after = load(GITHUB_AFTER_DEPLOY)
    assert set(github_triggers(after)) == {"workflow_run"} and github_triggers(after)["workflow_run"]["types"] == ["completed"]
    assert after["env"]["VERSION"] == "${{ github.event.workflow_run.head_sha }}" and after["defaults"]["run"]["shell"] == "bash"
    assert after["concurrency"]["cancel-in-progress"] is False
    for job_id, job in after["jobs"].items():
        assert job["if"] == "github.event.workflow_run.conclusion == 'success'", job_id
        assert "secrets." not in yaml.safe_dump(job.get("env", {})), job_id
        for step in job["steps"]:
            holds_secrets = "secrets." in yaml.safe_dump(step.get("env", {}))
            assert holds_secrets == ("chaosctl" in step.get("run", "")), (job_id, step)
    assert "secrets." not in yaml.safe_dump(after["env"])
    for steps in (*github_steps(GITHUB_VALIDATE).values(), *github_steps(GITHUB_AFTER_DEPLOY).values()):
        for step in steps:
            assert "${{" not in step.script, f"{step.name}: an expression in a script is injected unquoted; pass it in env"
    assert example("github", "announce").script == 'chaosctl deployed booking-api --version "$VERSION"'
    assert 'chaosctl run "$CHAOS_EXPERIMENT" --wait --timeout 15m || status=$?' in example("github", "experiment").script

    # GitLab: validate on changes to include/ with the JUnit report; both chaos jobs after the deploy job.
    ci = load(GITLAB)
    jobs = gitlab_jobs(ci)
    assert ci["variables"]["CHAOS_INCLUDE_DIR"] == "include" and ci["default"]["image"].startswith("python:3.11")
    assert jobs["chaos-validate"]["rules"] == [{"changes": ["include/**/*"]}]
    assert jobs["chaos-validate"]["artifacts"] == {"when": "always", "reports": {"junit": "chaos-validate.xml"}}
    stages = ci["stages"]
    for name in ("chaos-announce-deploy", "chaos-after-deploy"):
        assert jobs[name]["needs"] == ["deploy"] and stages.index(jobs[name]["stage"]) > stages.index(jobs["deploy"]["stage"])
        assert jobs[name]["rules"] == jobs["deploy"]["rules"]  # `needs` a job the pipeline always has with it
        assert jobs[name]["retry"] == {"max": 1, "exit_codes": [3]}
    assert jobs["chaos-after-deploy"]["allow_failure"] == {"exit_codes": [2]}
    assert "allow_failure" not in jobs["chaos-announce-deploy"]
    assert jobs["chaos-announce-deploy"]["variables"]["VERSION"] == "$CI_COMMIT_SHORT_SHA"

    # Both run a low-tier experiment of the shipped catalogue.
    for name in (after["jobs"]["experiment"]["env"]["CHAOS_EXPERIMENT"], jobs["chaos-after-deploy"]["variables"]["CHAOS_EXPERIMENT"]):
        experiment = shipped.get(name)
        assert experiment is not None and experiment.tier.value == "low", name


# -- validate ------------------------------------------------------------------------------------


@pytest.mark.no_preflight
@pytest.mark.parametrize("ci", CIS)
def test_the_validate_steps_pass_on_the_catalogue_and_write_junit(chaos: Chaos, tmp_path: Path, ci: str) -> None:
    checkout = checkout_of(chaos, tmp_path)
    for step in validate_steps(ci):
        done = execute(step, environment(ci, step, chaos, checkout), checkout, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "::error" not in done.stdout
    cases = junit_cases(checkout / "chaos-validate.xml")
    # The policy, every experiment and every scenario (chaosctl validate reads include/scenarios too).
    checked = sorted(p.relative_to(checkout).as_posix() for folder in ("experiments", "scenarios") for p in (checkout / "include" / folder).rglob("*.yaml"))
    assert sorted(cases) == sorted(["include/safety_policy.yaml", *checked])
    assert any(case.startswith("include/scenarios/") for case in cases)
    assert f"include/experiments/low/{QUICK}.yaml" in cases
    assert not [case for case in cases.values() if case.find("failure") is not None]


@pytest.mark.no_preflight
@pytest.mark.parametrize("ci", CIS)
def test_the_validate_steps_fail_on_a_broken_experiment_naming_its_line(chaos: Chaos, tmp_path: Path, ci: str) -> None:
    checkout = checkout_of(chaos, tmp_path)
    broken = f"include/experiments/low/{QUICK}.yaml"
    document = yaml.safe_load((checkout / broken).read_text())
    document["chaos"]["spec"]["mode"] = "everything"
    text = yaml.safe_dump(document, sort_keys=False)
    (checkout / broken).write_text(text)
    line = next(n for n, source in enumerate(text.splitlines(), 1) if source.strip() == "mode: everything")
    outputs = {}
    for step in validate_steps(ci):
        done = execute(step, environment(ci, step, chaos, checkout), checkout, timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr
        outputs[step.name] = done.stdout
    if ci == "github":
        annotations = [out for out in outputs["Validate (annotations)"].splitlines() if out.startswith("::error file=")]
        assert annotations == [f"::error file={broken},line={line},title=enum::chaos.spec.mode: 'everything' is not a valid mode; "
                               "use one of: one, all, fixed, fixed-percent, random-max-percent."], annotations
    else:  # the readable issues in the job's log
        assert f"{broken}:{line}: chaos.spec.mode: [enum] 'everything' is not a valid mode" in outputs["chaos-validate"]
    cases = junit_cases(checkout / "chaos-validate.xml")
    failed = {name: case.find("failure") for name, case in cases.items() if case.find("failure") is not None}
    assert list(failed) == [broken] and failed[broken].get("type") == "enum", failed


# -- after a deploy ------------------------------------------------------------------------------


@pytest.mark.parametrize("ci", CIS)
def test_the_after_deploy_experiment_step_passes_on_a_held_run(chaos: Chaos, tmp_path: Path, ci: str) -> None:
    step = example(ci, "experiment")
    checkout = checkout_of(chaos, tmp_path)
    env = environment(ci, step, chaos, checkout, CHAOS_EXPERIMENT=QUICK)
    before = run_ids(chaos, "chaos_low_risk")
    with FaultWatch(chaos) as watch:
        done = execute(step, env, checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict held: " in done.stdout, done.stdout
    assert watch.most == 1 and chaos.objects() == []
    run_id = new_run(chaos, "chaos_low_risk", before)
    assert runs_of(chaos, "chaos_low_risk")[run_id]["conf"]["experiment"] == QUICK
    assert chaos.result("chaos_low_risk", run_id)["verdict"] == "held"
    if ci == "github":
        assert summary_of(checkout) == f"{QUICK} held after the deploy of {HEAD_SHA}\n"


@pytest.mark.parametrize("ci", CIS)
def test_the_announce_step_posts_the_deploy_and_the_declared_run_ends(chaos: Chaos, tmp_path: Path, ci: str) -> None:
    chaos.policy(**OPEN_WINDOW)  # a deploy's run keeps to its window
    chaos.admin.wait_for_dag("chaos_on_deploy", timeout=180, unpause=False)
    step = example(ci, "announce")
    checkout = checkout_of(chaos, tmp_path)
    env = environment(ci, step, chaos, checkout)
    before_deploy, before_low = set(runs_of(chaos, "chaos_on_deploy")), set(runs_of(chaos, "chaos_low_risk"))
    with FaultWatch(chaos) as watch:
        done = execute(step, env, checkout, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"posted the deploy of booking-api {VERSIONS[ci]}: asset event " in done.stdout, done.stdout
        assert f"in the local catalogue: {DECLARING}" in done.stdout, done.stdout
        # What the step started ends before the test does: the deploy's run, then the tier run it triggered.
        on_deploy = wait_for_new_run(chaos, "chaos_on_deploy", before_deploy, timeout=120)
        chaos.admin.wait_for_run("chaos_on_deploy", on_deploy["dag_run_id"], timeout=180, expect="success")
        low = wait_for_new_run(chaos, "chaos_low_risk", before_low, timeout=60)
        chaos.admin.wait_for_run("chaos_low_risk", low["dag_run_id"], timeout=600, expect="success")
    assert low["conf"]["experiment"] == DECLARING and low["conf"]["deploy"]["version"] == VERSIONS[ci]
    assert watch.most == 1 and chaos.objects() == []


def stand_in_chaosctl(folder: Path, code: int) -> Path:
    """A chaosctl that records its arguments and exits `code`."""
    folder.mkdir()
    script = folder / "chaosctl"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/arguments"\nexit {code}\n')
    script.chmod(0o755)
    return folder


@pytest.mark.no_preflight
@pytest.mark.parametrize(("ending", "code", "annotation", "summary"), [
    pytest.param("refused", 0, "::warning title=chaos run refused::", "refused, nothing injected", id="2-refused-warns"),
    pytest.param("infrastructure", 3, "::error title=chaos infrastructure::no verdict (exit 3)", "no verdict (exit 3)",
                 id="3-infrastructure-fails"),
    pytest.param("breach", 1, "::error title=chaos breach::", "did NOT hold", id="1-breach-fails"),
])
def test_the_github_experiment_step_branches_on_the_exit_code(chaos: Chaos, tmp_path: Path, ending: str, code: int,
                                                               annotation: str, summary: str) -> None:
    step = example("github", "experiment")
    checkout = checkout_of(chaos, tmp_path)
    env = environment("github", step, chaos, checkout, CHAOS_EXPERIMENT=QUICK)
    if ending == "refused":  # not in the catalogue: chaosctl's exit 2, before it asks Airflow anything
        env["CHAOS_EXPERIMENT"] = "no-such-experiment"
    elif ending == "infrastructure":  # Airflow on a closed port: exit 3
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            env["AIRFLOW_API_URL"] = f"http://127.0.0.1:{s.getsockname()[1]}"
    else:
        # A real breach is a medium-tier run an SRE approves (test_chaosctl_run.test_a_breaching_run_exits_1
        # covers chaosctl's exit 1); the step's branch is what is under test here.
        fake = stand_in_chaosctl(tmp_path / "fake-bin", 1)
        env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    before = run_ids(chaos, "chaos_low_risk")
    done = execute(step, env, checkout, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    assert any(line.startswith(annotation) for line in done.stdout.splitlines()), done.stdout
    assert summary in summary_of(checkout), summary_of(checkout)
    if ending == "refused":
        assert "(exit 2: not_triggered)" in done.stderr, done.stderr
    elif ending == "infrastructure":
        assert "(exit 3: unreachable)" in done.stderr and env["AIRFLOW_CLI_TOKEN"] not in done.stdout + done.stderr
    else:
        assert (tmp_path / "fake-bin" / "arguments").read_text() == f"run {QUICK} --wait --timeout 15m\n"
    assert run_ids(chaos, "chaos_low_risk") == before and chaos.objects() == []
