"""Runs caused by deploys: one Airflow asset per service the catalogue's `on_deploy` names, and
the tier runs a deploy's asset event asks for (the `chaos_on_deploy` DAG)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos_engineering.catalogue import Catalogue
from chaos_engineering.experiment import NAME_PATTERN

#: A deploy's asset: `chaos://deploys/<service>`, named `deploy:<service>`. Airflow keeps the URI
#: of a scheme it has no normaliser for as written (only `airflow` is reserved).
ASSET_URI_PREFIX = "chaos://deploys/"
ASSET_NAME_PREFIX = "deploy:"
#: The DAG that maps deploys to experiments; its task ids, for the tests and the e2e test.
DAG_ID = "chaos_on_deploy"
MAP_TASK, TRIGGER_TASK = "map_deploys", "trigger_experiments"
#: What a version may be (semver, a git SHA, a build number): it ends up in a run id and in the
#: conf of a templated operator, so nothing that could be read as a template or a path.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
VERSION_WORDS = "1 to 64 of letters, digits and . _ + -, starting with a letter or digit (e.g. 1.2.3 or a git SHA)"


def asset_uri(service: str) -> str:
    return ASSET_URI_PREFIX + service


def asset_name(service: str) -> str:
    return ASSET_NAME_PREFIX + service


def service_of(name: str, uri: str) -> str | None:
    """The service of a deploy asset (by its name, then its URI), or None for any other asset."""
    for value, prefix in ((name, ASSET_NAME_PREFIX), (uri, ASSET_URI_PREFIX)):
        if value.startswith(prefix) and re.fullmatch(NAME_PATTERN, service := value.removeprefix(prefix)):
            return service
    return None


def version_problem(version: object) -> str | None:
    """Why `version` cannot name a deploy, or None."""
    if not isinstance(version, str) or not re.fullmatch(VERSION_PATTERN, version) or ".." in version:
        return f"version {version!r} is not a version: use {VERSION_WORDS}"
    return None


def declarations(catalogue: Catalogue) -> dict[str, list[str]]:
    """Each service some valid experiment declares in `on_deploy`, with those experiments' names
    (sorted); services in name order. Only what is declared: the DAG schedules on nothing else."""
    found: dict[str, list[str]] = {}
    for experiment in sorted(catalogue.experiments.values(), key=lambda e: e.name):
        for service in experiment.on_deploy:
            found.setdefault(service, []).append(experiment.name)
    return dict(sorted(found.items()))


def deploy_assets(catalogue: Catalogue) -> list[Any]:
    """One `Asset` per declared service."""
    from airflow.sdk import Asset

    return [Asset(uri=asset_uri(service), name=asset_name(service)) for service in declarations(catalogue)]


def deploy_schedule(catalogue: Catalogue) -> Any:
    """Any declared service's deploy (`AssetAny`), or None when no experiment declares one."""
    from airflow.sdk import AssetAny

    assets = deploy_assets(catalogue)
    return AssetAny(*assets) if assets else None


@dataclass(frozen=True)
class Deploy:
    """One deploy as its asset event announced it; `plain()` is what a tier run's conf, its plan,
    its result and its report hold under `deploy`."""

    service: str
    version: str | None
    event_at: str
    asset_uri: str
    deploy_run: str | None = None  # the chaos_on_deploy run that asked, dag_id/run_id

    def plain(self) -> dict[str, Any]:
        return {"service": self.service, "version": self.version, "event_at": self.event_at, "asset_uri": self.asset_uri,
                "deploy_run": self.deploy_run}


def deploys_from_events(events: Mapping[Any, Iterable[Any]], deploy_run: str | None = None) -> tuple[list[Deploy], list[str]]:
    """The deploys in a run's triggering asset events (`triggering_asset_events`: asset to its
    events, each with `.asset.name`/`.asset.uri`, `.extra` and `.timestamp`), the newest event of
    each service only (the version now deployed), and why any event was refused."""
    newest: dict[str, tuple[dt.datetime, Deploy]] = {}
    problems: list[str] = []
    for evts in events.values():
        for event in evts:
            service = service_of(event.asset.name, event.asset.uri)
            if service is None:
                continue
            version = (event.extra or {}).get("version")
            if version is not None and (problem := version_problem(version)):
                problems.append(f"the deploy of {service} at {event.timestamp.isoformat()}: {problem}")
                continue
            at = event.timestamp.astimezone(dt.timezone.utc)
            if service not in newest or at > newest[service][0]:
                newest[service] = (at, Deploy(service, version, at.isoformat(), event.asset.uri, deploy_run))
    return [newest[s][1] for s in sorted(newest)], problems


def tier_dag_id(tier: str) -> str:
    return f"chaos_{tier}_risk"


def triggered_run_id(deploy: Deploy, experiment: str) -> str:
    """The tier run's id, the same for the same deploy and experiment: a retried trigger finds the
    run it made (`skip_when_already_exists`) instead of starting a second one."""
    at = dt.datetime.fromisoformat(deploy.event_at).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"deploy__{deploy.service}__{deploy.version or 'unversioned'}__{experiment}__{at}"


def runs_for(deploys: Iterable[Deploy], catalogue: Catalogue) -> list[dict[str, Any]]:
    """One tier run per (deploy, experiment declaring its service): the keyword arguments of one
    mapped `TriggerDagRunOperator`. The conf is an ordinary run's, plus the deploy."""
    declared = declarations(catalogue)
    return [
        {
            "trigger_dag_id": tier_dag_id(catalogue.get(name).tier.value),
            "trigger_run_id": triggered_run_id(deploy, name),
            "conf": {"experiment": name, "dry_run": False, "deploy": deploy.plain()},
        }
        for deploy in deploys
        for name in declared.get(deploy.service, [])
    ]


def map_deploys(triggering_asset_events: Mapping[Any, Iterable[Any]], dag_run: Any) -> list[dict[str, Any]]:
    """The mapping task: the run's deploys to the tier runs they ask for, under the catalogue as it
    is now (an experiment that became invalid since the DAG was parsed is not run)."""
    from airflow.sdk.exceptions import AirflowFailException

    from chaos_engineering.operators.common import catalogue_or_fail

    log = logging.getLogger(__name__)
    deploys, problems = deploys_from_events(triggering_asset_events, f"{dag_run.dag_id}/{dag_run.run_id}")
    if problems:
        raise AirflowFailException("refused, nothing triggered: " + "; ".join(problems))
    catalogue = catalogue_or_fail()
    runs = runs_for(deploys, catalogue)
    for deploy in deploys:
        names = [r["conf"]["experiment"] for r in runs if r["conf"]["deploy"]["service"] == deploy.service]
        log.info("deploy of %s %s at %s: %s", deploy.service, deploy.version or "(no version)", deploy.event_at,
                 ", ".join(names) or "no valid experiment of the catalogue declares it now")
    return runs


def wire_on_deploy() -> None:
    """The two tasks of `chaos_on_deploy` in the current DAG context: map the deploys, then trigger
    each tier run and leave it (no waiting: the tier run keeps its own approvals, window, lock and
    deadlines)."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    mapped = PythonOperator(task_id=MAP_TASK, python_callable=map_deploys, retries=1)
    # Retrying is safe: the run id is fixed per deploy and experiment, and an existing run is skipped.
    TriggerDagRunOperator.partial(
        task_id=TRIGGER_TASK,
        wait_for_completion=False,
        skip_when_already_exists=True,
        fail_when_dag_is_paused=True,
        openlineage_inject_parent_info=False,
        retries=1,
    ).expand_kwargs(mapped.output)


def run_deploy(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The deploy that caused a run (its conf's `deploy`, as chaos_on_deploy sets it), or None."""
    deploy = (getattr(context["dag_run"], "conf", None) or {}).get("deploy")
    return deploy if isinstance(deploy, dict) else None


def deploy_params_schema() -> dict[str, Any]:
    """The JSON Schema of the tier DAGs' `deploy` param: null, or a deploy as `Deploy.plain()`."""
    return {
        "type": ["object", "null"],
        "properties": {
            "service": {"type": "string", "pattern": NAME_PATTERN},
            "version": {"type": ["string", "null"], "pattern": VERSION_PATTERN},
            "event_at": {"type": "string"},
            "asset_uri": {"type": "string"},
            "deploy_run": {"type": ["string", "null"]},
        },
        "required": ["service"],
    }


# -- chaosctl deployed ---------------------------------------------------------------------------

#: How `chaosctl deployed` ends (exit code, what it means); the codes are `chaosctl run`'s.
DEPLOYED_ENDINGS: dict[str, tuple[int, str]] = {
    "posted": (0, "the deploy's asset event was posted"),
    "unknown_service": (2, "not a service name or version, or Airflow has no active deploy asset of the service "
                           "(no experiment of the deployed catalogue declares it in on_deploy)"),
    "unreachable": (3, "Airflow unreachable or answering 5xx after retries, credentials missing or refused (401/403)"),
}


def find_deploy_asset(client: Any, service: str) -> dict[str, Any] | None:
    """The active asset `deploy:<service>` (`GET /api/v2/assets`, a substring search narrowed to
    the exact name and URI here), or None."""
    found = client.request("GET", "/assets", params={"name_pattern": asset_name(service), "limit": 100})["assets"]
    return next((a for a in found if a["name"] == asset_name(service) and a["uri"] == asset_uri(service)), None)


def _deployed(args: Any) -> int:
    import json
    import sys

    import requests

    from chaos_engineering.airflow_rest import AirflowApiError
    from chaos_engineering.catalogue import load_catalogue
    from chaos_engineering.cli_run import RunEnded, _api_failure, airflow_access

    service, version = args.service, args.version
    local = declarations(load_catalogue(None, args.policy)).get(service, [])
    event: dict[str, Any] = {}
    try:
        if not re.fullmatch(NAME_PATTERN, service):
            raise RunEnded("unknown_service", f"{service!r} is not a service name (a DNS-1123 label such as booking-api)")
        if problem := version_problem(version):
            raise RunEnded("unknown_service", problem)
        access = airflow_access(args.conn_id)
        client = access.client()
        try:
            asset = find_deploy_asset(client, service)
        except (AirflowApiError, requests.RequestException) as error:
            raise _api_failure(error, access, f"looking up the asset {asset_name(service)}") from error
        if asset is None:
            raise RunEnded("unknown_service", f"Airflow has no active asset {asset_name(service)} ({asset_uri(service)}): no experiment of "
                                              f"the deployed catalogue declares `on_deploy: [{service}]`, or {DAG_ID} is not deployed")
        try:
            event = client.request("POST", "/assets/events", json={"asset_id": asset["id"], "extra": {"version": version}}, expect=(200, 201))
        except AirflowApiError as error:
            if error.status_code == 404:
                raise RunEnded("unknown_service", f"the asset {asset_name(service)} went away before its event was posted: {error.detail}") from error
            raise _api_failure(error, access, f"posting the deploy of {service} {version}") from error
        except requests.RequestException as error:
            # Never retried: the event may have been recorded although its answer was lost.
            ended = _api_failure(error, access, f"posting the deploy of {service} {version}")
            raise RunEnded(ended.ending, f"{ended}; the event may have been posted anyway: see {access.link('/dags/' + DAG_ID)}") from error
    except RunEnded as ended:
        code = DEPLOYED_ENDINGS[ended.ending][0]
        print(f"chaosctl deployed: {ended} (exit {code}: {ended.ending})", file=sys.stderr)
        return code
    if args.format == "json":
        print(json.dumps({"event": event, "experiments": local}, indent=2))
        return 0
    print(f"posted the deploy of {service} {version}: asset event {event.get('id')} on {asset_name(service)} at {event.get('timestamp')}")
    print(f"{DAG_ID} starts the experiments declaring {service}; in the local catalogue: {', '.join(local) or 'none'}")
    return 0


def add_deployed_command(commands: Any) -> None:
    """Register `deployed` on chaosctl's subcommands (the Airflow options are `chaosctl run`'s)."""
    import argparse

    from chaos_engineering.cli_run import RUN_EPILOG, airflow_options

    codes = "\n".join(f"  {code}  {name:16} {meaning}" for name, (code, meaning) in DEPLOYED_ENDINGS.items())
    deployed = commands.add_parser(
        "deployed", parents=[airflow_options()], help="announce a deploy (an Airflow asset event): the experiments declaring the service run",
        epilog=RUN_EPILOG.partition("exit codes:")[0] + "exit codes:\n" + codes, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deployed.add_argument("service", help="the deployed service, as experiments name it in on_deploy")
    deployed.add_argument("--version", required=True, help=f"the deployed version: {VERSION_WORDS}")
    deployed.set_defaults(run=_deployed)
