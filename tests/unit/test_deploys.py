"""Runs caused by deploys: the experiments' `on_deploy`, the mapping of deploys to tier runs, the
window rule for those runs, the deploy in the result and the report, `chaosctl deployed` against a
fake REST API, and the chaos_on_deploy DAG."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import strategies as st

from chaos_engineering import deploys
from chaos_engineering.catalogue import Catalogue, load_catalogue
from chaos_engineering.cli import main
from chaos_engineering.deploys import Deploy, declarations, deploys_from_events, runs_for
from chaos_engineering.experiment import parse_experiment
from chaos_engineering.operators import guard
from chaos_engineering.operators import result as result_module
from chaos_engineering.operators.common import is_manual
from chaos_engineering.policy import Tier, load_policy
from chaos_engineering.rules import check_experiment
from chaos_engineering.windows import window_verdict
from tests.unit.catalogue_support import base_experiment
from tests.integration.receivers import free_port
from tests.unit.test_chaosctl_run import TOKEN, serve
from tests.unit.test_report_synthetic import base_result

ROOT = Path(__file__).resolve().parents[2]
AT = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.timezone.utc)
DEPLOY = {"service": "booking-api", "version": "1.2.3", "event_at": AT.isoformat(), "asset_uri": "chaos://deploys/booking-api",
          "deploy_run": "chaos_on_deploy/asset_triggered__2026-12-04T15:00:00+00:00"}


# --- on_deploy in an experiment file ---------------------------------------------------------------

NAME_RULE = "use lowercase letters (a-z), digits and '-', starting and ending with a letter or digit"


@pytest.mark.parametrize(
    ("on_deploy", "expected"),
    [
        (["Booking_API"], [f"x.yaml: on_deploy[0]: [format] 'Booking_API' is not a valid service name: {NAME_RULE}"]),
        ([""], [f"x.yaml: on_deploy[0]: [format] '' is not a valid service name: {NAME_RULE}"]),
        (["booking-api", "cache", "booking-api"], ["x.yaml: on_deploy: [duplicate-service] 'booking-api' is listed more than once; list each service once"]),
        ("booking-api", ["x.yaml: on_deploy: [type] on_deploy must be a list, got str."]),
    ],
    ids=["format", "empty", "duplicate", "not-a-list"],
)
def test_on_deploy_rules(on_deploy, expected):
    experiment, issues = parse_experiment(Path("x.yaml"), base_experiment() | {"on_deploy": on_deploy})
    assert experiment is None
    assert [str(i) for i in issues] == expected


def test_on_deploy_is_optional_and_kept():
    assert parse_experiment(Path("x.yaml"), base_experiment())[0].on_deploy == ()
    assert parse_experiment(Path("x.yaml"), base_experiment() | {"on_deploy": ["booking-api", "cache"]})[0].on_deploy == ("booking-api", "cache")


def test_on_deploy_names_a_service_of_the_policy():
    policy, _ = load_policy()
    experiment, _ = parse_experiment(Path("x.yaml"), base_experiment() | {"on_deploy": ["booking-api", "bookings-api"]})
    known = ", ".join(sorted([*policy.services, *policy.protected_services]))
    assert [str(i) for i in check_experiment(experiment, policy) if i.field.startswith("on_deploy")] == [
        f"x.yaml: on_deploy[1]: [unknown-service] 'bookings-api' is not a service of the policy (known: {known})"
    ]


def test_the_shipped_catalogue_starts_one_low_tier_experiment_on_a_booking_api_deploy():
    catalogue = load_catalogue()
    assert catalogue.ok, catalogue.issues
    assert declarations(catalogue) == {"booking-api": ["booking-api-pod-kill"]}
    experiment = catalogue.get("booking-api-pod-kill")
    assert experiment.tier is Tier.LOW and experiment.target_service == "booking-api"


# --- deploys to runs -------------------------------------------------------------------------------

SERVICES = ["booking-api", "cache", "web-frontend", "email-service"]


def fake_catalogue(declared: dict[str, tuple[Tier, list[str]]]) -> Catalogue:
    experiments = {name: SimpleNamespace(name=name, tier=tier, on_deploy=tuple(on)) for name, (tier, on) in declared.items()}
    return Catalogue(policy=None, experiments=experiments)


catalogues = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True),
    st.tuples(st.sampled_from(list(Tier)), st.lists(st.sampled_from(SERVICES), unique=True, max_size=3)),
    max_size=8,
)


@given(catalogues)
def test_each_deploy_starts_exactly_the_experiments_declaring_its_service(declared):
    catalogue = fake_catalogue(declared)
    assert set(declarations(catalogue)) == {s for _, on in declared.values() for s in on}
    for service in SERVICES:
        deploy = Deploy(service, "1.0.0", AT.isoformat(), deploys.asset_uri(service))
        runs = runs_for([deploy], catalogue)
        assert sorted(r["conf"]["experiment"] for r in runs) == sorted(n for n, (_, on) in declared.items() if service in on)
        for run in runs:
            name = run["conf"]["experiment"]
            assert run["trigger_dag_id"] == f"chaos_{declared[name][0].value}_risk"
            assert run["conf"] == {"experiment": name, "dry_run": False, "deploy": deploy.plain()}
        # One run id per experiment, the same on a retry.
        assert len({r["trigger_run_id"] for r in runs}) == len(runs)
        assert runs == runs_for([deploy], catalogue)


def event(name: str, uri: str, at: dt.datetime, **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(asset=SimpleNamespace(name=name, uri=uri), extra=extra, timestamp=at)


def test_the_newest_event_of_each_service_is_its_deploy_and_other_assets_are_ignored():
    older = event("deploy:booking-api", "chaos://deploys/booking-api", AT, version="1.2.2", from_rest_api=True)
    newer = event("deploy:booking-api", "chaos://deploys/booking-api", AT + dt.timedelta(seconds=5), version="1.2.3")
    other = event("orders", "s3://bucket/orders", AT, version="9")
    found, problems = deploys_from_events({"a": [newer, older], "b": [other]}, "chaos_on_deploy/r1")
    assert problems == []
    assert [d.plain() for d in found] == [{"service": "booking-api", "version": "1.2.3", "event_at": "2026-12-04T15:00:05+00:00",
                                           "asset_uri": "chaos://deploys/booking-api", "deploy_run": "chaos_on_deploy/r1"}]
    run_id = deploys.triggered_run_id(found[0], "booking-api-pod-kill")
    assert run_id == "deploy__booking-api__1.2.3__booking-api-pod-kill__20261204T150005.000000Z"


def test_a_version_that_could_be_a_template_or_a_path_is_refused():
    found, problems = deploys_from_events({"a": [event("deploy:cache", "chaos://deploys/cache", AT, version="{{ var.value.x }}")]})
    assert found == []
    assert problems == [f"the deploy of cache at {AT.isoformat()}: version '{{{{ var.value.x }}}}' is not a version: use {deploys.VERSION_WORDS}"]
    assert deploys.version_problem("1..2") and deploys.version_problem("../x") and deploys.version_problem("1.2.3") is None


# --- the window: a deploy's run is never manual ------------------------------------------------------


def context(run_type: str, conf: dict | None = None) -> dict:
    return {"dag_run": SimpleNamespace(run_type=run_type, conf=conf or {})}


@pytest.mark.parametrize(
    ("run_type", "conf", "manual"),
    [("manual", {}, True), ("operator_triggered", {"deploy": DEPLOY}, False), ("manual", {"deploy": DEPLOY}, False), ("operator_triggered", {}, False)],
    ids=["person", "chaos_on_deploy", "person-claiming-a-deploy", "another-dag"],
)
def test_a_run_caused_by_a_deploy_is_not_manual(run_type, conf, manual):
    assert is_manual(context(run_type, conf)) is manual


def test_outside_its_window_a_deploys_low_tier_run_is_refused_where_a_manual_one_is_overridden():
    policy = load_policy()[0]
    business_hours = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    by_person = window_verdict(policy, "low", business_hours, manual=is_manual(context("manual")))
    by_deploy = window_verdict(policy, "low", business_hours, manual=is_manual(context("operator_triggered", {"deploy": DEPLOY})))
    assert by_person.allowed and by_person.override_used
    assert not by_deploy.allowed and "a scheduled run never overrides its window" in by_deploy.reason


def test_a_deploys_high_tier_run_injects_when_approved_not_at_a_planned_time():
    ctx = context("operator_triggered", {"deploy": DEPLOY}) | {"data_interval_end": AT}
    ctx["dag_run"].run_after = AT
    assert guard.planned_injection(ctx, Tier.HIGH) is None


# --- the result and the report ---------------------------------------------------------------------


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return None

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict:
        return {run_ids[0]: {"plan": "failed"}}


@pytest.mark.parametrize(("conf", "recorded"), [({"deploy": DEPLOY}, DEPLOY), ({}, None)], ids=["deploy", "no-deploy"])
def test_the_result_records_the_deploy_even_when_the_plan_failed(tmp_path, monkeypatch, conf, recorded):
    policy = SimpleNamespace(reports=SimpleNamespace(base_url=tmp_path.as_uri(), conn_id=None))
    monkeypatch.setattr(result_module, "policy_or_fail", lambda: policy)
    monkeypatch.setattr(result_module, "write_run_note", lambda context, note: None)
    ti = FakeTI()
    dag_run = SimpleNamespace(dag_id="chaos_low_risk", run_id="deploy__x", run_type="operator_triggered", conf=conf,
                              run_after=pendulum.datetime(2026, 12, 4, tz="UTC"))
    result_module.WriteResultOperator(task_id="write_result").execute({"ti": ti, "dag_run": dag_run, "task": SimpleNamespace(task_id="write_result")})
    assert ti.pushed[result_module.RESULT_KEY]["deploy"] == recorded


def report_of(result: dict):
    from chaos_engineering.report import build_report

    return build_report(result, None, None)


def test_the_report_says_which_deploy_triggered_the_run():
    files = report_of(base_result(deploy=DEPLOY))
    assert files.document["deploy"] == DEPLOY | {"event_at": "2026-12-04T15:00:00.000+00:00"}  # report times: to the millisecond
    assert '<p id="deploy">Triggered by the deploy of booking-api 1.2.3.</p>' in files.report_html
    from chaos_engineering.report.pdf import layout_pages

    texts = [t.get_text() for page in layout_pages(files.document, {}) for t in page.texts]
    assert "Triggered by the deploy of booking-api 1.2.3." in texts


def test_a_report_without_a_deploy_says_nothing_of_one_and_old_reports_still_validate():
    from chaos_engineering.report import ReportSchemaError, validate_report

    files = report_of(base_result())
    assert files.document["deploy"] is None and "Triggered by" not in files.report_html
    old = {k: v for k, v in files.document.items() if k != "deploy"}
    validate_report(old)
    with pytest.raises(ReportSchemaError, match="deploy: 'service' is a required property"):
        validate_report(files.document | {"deploy": {"version": "1"}})


# --- chaosctl deployed --------------------------------------------------------------------------------


class FakeAssets:
    """GET /api/v2/assets and POST /api/v2/assets/events as Airflow 3.3 answers them."""

    def __init__(self) -> None:
        self.assets = [{"id": 7, "name": "deploy:booking-api", "uri": "chaos://deploys/booking-api"},
                       {"id": 8, "name": "deploy:booking-api-old", "uri": "chaos://deploys/booking-api-old"}]
        self.posted: list[dict] = []
        self.queries: list[dict] = []

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def bearer(request: Request, call_next: Any) -> Any:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"detail": "Not authenticated"}, status_code=401)
            return await call_next(request)

        @app.get("/api/v2/assets")
        def assets(request: Request) -> Any:
            self.queries.append(dict(request.query_params))
            pattern = request.query_params.get("name_pattern", "")
            found = [a for a in self.assets if pattern.lower() in a["name"].lower()]  # ILIKE '%pattern%'
            return {"assets": found, "total_entries": len(found)}

        @app.post("/api/v2/assets/events")
        async def post_event(request: Request) -> Any:
            body = await request.json()
            self.posted.append(body)
            asset = next((a for a in self.assets if a["id"] == body["asset_id"]), None)
            if asset is None:
                return JSONResponse({"detail": f"Asset with ID: `{body['asset_id']}` was not found"}, status_code=404)
            return {"id": 41, "asset_id": asset["id"], "uri": asset["uri"], "name": asset["name"], "extra": body["extra"] | {"from_rest_api": True},
                    "source_map_index": -1, "created_dagruns": [], "timestamp": "2026-12-04T15:00:00Z"}

        return app


@pytest.fixture
def fake_airflow(monkeypatch):
    fake = FakeAssets()
    with serve(fake.app()) as url:
        for name in ("AIRFLOW_API_USERNAME", "AIRFLOW_API_PASSWORD", "AIRFLOW_CONN_AIRFLOW_API_CHAOSCTL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AIRFLOW_API_URL", url)
        monkeypatch.setenv("AIRFLOW_CLI_TOKEN", TOKEN)
        yield fake


def chaosctl(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_deployed_posts_the_event_with_the_version_and_names_the_declaring_experiments(fake_airflow, capsys):
    code, out, err = chaosctl(capsys, "deployed", "booking-api", "--version", "1.2.3")
    assert code == 0, out + err
    assert fake_airflow.queries == [{"name_pattern": "deploy:booking-api", "limit": "100"}]
    assert fake_airflow.posted == [{"asset_id": 7, "extra": {"version": "1.2.3"}}]
    assert out.splitlines() == [
        "posted the deploy of booking-api 1.2.3: asset event 41 on deploy:booking-api at 2026-12-04T15:00:00Z",
        "chaos_on_deploy starts the experiments declaring booking-api; in the local catalogue: booking-api-pod-kill",
    ]


def test_deployed_json(fake_airflow, capsys):
    code, out, _ = chaosctl(capsys, "deployed", "booking-api", "--version", "1.2.3", "--format", "json")
    assert code == 0
    printed = json.loads(out)
    assert printed["experiments"] == ["booking-api-pod-kill"] and printed["event"]["extra"]["version"] == "1.2.3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cache", "--version", "1"], "Airflow has no active asset deploy:cache (chaos://deploys/cache): no experiment of the deployed "
                                      "catalogue declares `on_deploy: [cache]`, or chaos_on_deploy is not deployed"),
        (["Booking", "--version", "1"], "'Booking' is not a service name (a DNS-1123 label such as booking-api)"),
        (["booking-api", "--version", "{{x}}"], f"version '{{{{x}}}}' is not a version: use {deploys.VERSION_WORDS}"),
    ],
    ids=["no-asset", "bad-service", "bad-version"],
)
def test_deployed_exits_2_for_an_unknown_service_and_posts_nothing(fake_airflow, capsys, args, message):
    code, out, err = chaosctl(capsys, "deployed", *args)
    assert code == 2
    assert err == f"chaosctl deployed: {message} (exit 2: unknown_service)\n"
    assert fake_airflow.posted == []


def test_deployed_exits_3_when_airflow_is_unreachable(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AIRFLOW_CLI_TOKEN", TOKEN)
    code, _, err = chaosctl(capsys, "deployed", "booking-api", "--version", "1.2.3")
    assert code == 3 and "Airflow unreachable" in err and "(exit 3: unreachable)" in err


# --- the DAG ----------------------------------------------------------------------------------------


def dagbag_of(tmp_path: Path):
    from airflow.dag_processing.dagbag import DagBag

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "chaos_on_deploy.py", dags)
    return DagBag(dag_folder=str(dags))


def test_the_dag_schedules_on_the_declared_deploys_and_triggers_without_waiting(tmp_path):
    bag = dagbag_of(tmp_path)
    assert bag.import_errors == {}
    dag = bag.dags[deploys.DAG_ID]
    assert "chaos-engineering" in dag.tags and dag.doc_md and all(t.owner == "sre" for t in dag.tasks)
    assert [a.uri for a in dag.timetable.asset_condition.objects] == ["chaos://deploys/booking-api"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["deploy:booking-api"]
    trigger = dag.get_task(deploys.TRIGGER_TASK)
    assert trigger.upstream_task_ids == {deploys.MAP_TASK}
    assert trigger.partial_kwargs["wait_for_completion"] is False and trigger.partial_kwargs["skip_when_already_exists"] is True


def test_a_catalogue_declaring_no_deploy_leaves_the_dag_unscheduled(tmp_path, monkeypatch):
    include = tmp_path / "include"
    shutil.copytree(ROOT / "include", include)
    target = include / "experiments" / "low" / "booking-api-pod-kill.yaml"
    target.write_text("\n".join(line for line in target.read_text().splitlines() if not line.startswith("on_deploy:")) + "\n")
    monkeypatch.setenv("CHAOS_INCLUDE_DIR", str(include))
    bag = dagbag_of(tmp_path)
    assert bag.import_errors == {}
    assert type(bag.dags[deploys.DAG_ID].timetable).__name__ == "NullTimetable"  # schedule=None
