"""The Grafana dashboard: it parses, and every query parses in a real Prometheus that also loads our rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
import yaml

from sandbox.runner import Sandbox
from tests.monitoring.metric_names import DASHBOARD_FILE, RULES_FILE, known, metric_names

REQUIRED_SECTIONS = {"Experiment status", "Business impact", "System health", "Recovery timeline", "Safety violations"}


def _dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def _queries() -> list[tuple[str, str]]:
    dashboard = _dashboard()
    found = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [(a["name"], a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    return found


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sandbox of our own: its Prometheus loads chaos-rules.yml, proving the file loads for real."""
    sandbox = Sandbox.start(tmp_path_factory.mktemp("grafana-sandbox"), scrape_interval="1s", rule_files=[RULES_FILE])
    try:
        yield sandbox.prometheus_url
    finally:
        sandbox.stop()


def test_dashboard_has_every_section_and_unique_panel_ids() -> None:
    dashboard = _dashboard()
    rows = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert REQUIRED_SECTIONS <= rows
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "chaos-engineering"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"
            assert panel["datasource"]["uid"] == "prometheus"


def test_every_query_names_only_metrics_we_export_or_record() -> None:
    allowed = known()
    for title, expr in _queries():
        unknown = metric_names(expr) - allowed
        assert not unknown, f"panel {title!r}: {expr} uses unknown metrics {unknown}"


def test_every_query_parses_in_prometheus(prometheus: str) -> None:
    for title, expr in _queries():
        response = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        assert response.status_code == 200, f"panel {title!r}: {expr}: {response.text}"


def test_prometheus_rejects_a_broken_query(prometheus: str) -> None:
    """The parse check above can fail: a syntax error is a 400."""
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": "sum(rate(bookings_total[1m])"}, timeout=10)
    assert response.status_code == 400


def test_our_rules_load_and_evaluate_without_errors(prometheus: str) -> None:
    """Every rule of chaos-rules.yml is loaded and, once evaluated, healthy (no matching errors)."""
    declared = yaml.safe_load(RULES_FILE.read_text())["groups"]
    names = {rule.get("alert") or rule.get("record") for group in declared for rule in group["rules"]}
    deadline = time.monotonic() + 30
    while True:
        groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups if group["file"] == str(RULES_FILE) for rule in group["rules"]]
        pending = [r["name"] for r in rules if r["health"] != "ok"]
        if rules and not pending:
            break
        assert time.monotonic() < deadline, f"rules not healthy: {[(r['name'], r['health'], r.get('lastError')) for r in rules if r['health'] != 'ok']}"
        time.sleep(1)
    assert names <= {rule["name"] for rule in rules}
    assert len(rules) == sum(len(group["rules"]) for group in declared)
