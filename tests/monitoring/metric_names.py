"""The metric names monitoring assets may use, and a conservative parser of names out of PromQL."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from chaos_engineering.notify.metrics import METRICS

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = REPO_ROOT / "include" / "prometheus" / "chaos-rules.yml"
RULE_TESTS_FILE = REPO_ROOT / "include" / "prometheus" / "chaos-rules.test.yml"
DASHBOARD_FILE = REPO_ROOT / "include" / "grafana" / "dashboards" / "chaos-engineering.json"

# sandbox/CONTRACT.md, and Prometheus' own series.
PLATFORM = {
    "http_requests_total", "http_request_duration_seconds_bucket", "http_request_duration_seconds_sum",
    "http_request_duration_seconds_count", "bookings_total", "payments_total", "process_cpu_utilisation_ratio",
    "process_memory_working_set_bytes", "kube_pod_status_ready", "kube_pod_container_status_restarts_total",
    "up", "ALERTS",
}
PUSHGATEWAY = {"push_time_seconds", "push_failure_time_seconds"}
# The exposition adds `_total` to a counter's name.
CHAOS = {name + ("_total" if spec.kind == "counter" else "") for name, spec in METRICS.items()}


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES_FILE.read_text())["groups"]


def recorded() -> set[str]:
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def known() -> set[str]:
    return PLATFORM | PUSHGATEWAY | CHAOS | recorded()


_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
    "bool", "inf", "nan", "atan2",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Every metric name in `expr`: strings, label matchers, ranges and label lists removed first,
    then each identifier that is not a function call, keyword or number. Over-reports rather than
    misses (a stray identifier fails the check, it never hides a name)."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}
