"""The versioned JSON Schema (draft 2020-12) of report.json, and its validation."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from chaos_engineering.report.analysis import AnalysisSettings

#: Bump on any change a reader of report.json could notice; docs/REPORT.md keeps the history.
REPORT_SCHEMA_VERSION = 1
REPORT_SCHEMA_ID = f"https://airflow-chaos.dev/schemas/report/v{REPORT_SCHEMA_VERSION}.json"

VERDICTS = ("held", "broken", "aborted", "dry_run")
JUDGEMENTS = ("rose", "fell", "no significant change", "insufficient data")
STAGE_STATUSES = ("recovered", "deadline_missed", "unobserved", "not_run", "unknown")
ENDINGS = ("duration", "breach", "emergency_stop", "watchdog", "outside", "teardown", "unknown")

_NUMBER = {"type": ["number", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT = {"type": ["string", "null"]}


def _object(properties: dict[str, Any], required: list[str] | None = None, nullable: bool = False) -> dict[str, Any]:
    """A closed object: every key listed, all required unless said otherwise."""
    return {
        "type": ["object", "null"] if nullable else "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


_STATS = _object({"n": {"type": "integer", "minimum": 0}, "mean": _NUMBER, "median": _NUMBER, "p95": _NUMBER})
_TEST = _object(
    {
        "u": _NUMBER,
        "p_value": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "cliffs_delta": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
        "judgement": {"enum": list(JUDGEMENTS)},
    }
)
_SCORE = _object(
    {
        "value": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "basis": {"type": "string"},
        "components": {"type": "object", "additionalProperties": _NUMBER},
    }
)
_PER_WINDOW = lambda item: _object({"baseline": item, "fault": item, "recovery": item})  # noqa: E731
#: A moment of a scenario: its time and its offset (s) from the scenario's start.
_POINT = {"at": _TIME, "offset_s": _NUMBER}
_STEP = _object(
    {
        "step": {"type": "string"},
        "experiment": _TEXT,
        "title": _TEXT,
        "kind": _TEXT,
        "actions": {"type": "array", "items": {"type": "string"}},
        "target_service": _TEXT,
        "starts": _TEXT,
        "digest": _TEXT,
        "object": _object({"kind": {"type": "string"}, "name": {"type": "string"}, "namespace": {"type": "string"}}, nullable=True),
        "planned": _object({"start_s": _NUMBER, "end_s": _NUMBER, "duration_s": _NUMBER}),
        "started": _object(_POINT | {"delay_s": _NUMBER}, nullable=True),
        "ended": _object(_POINT, nullable=True),
        "removal_requested": _object(_POINT, nullable=True),
        "end": _object(_POINT | {"by": {"enum": ["chaos_mesh", "removal_request", "run_removal", "unknown"]}}, nullable=True),
        "stood_s": _NUMBER,
        "not_started": _TEXT,
        "window": _object({"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}, nullable=True),
        "impact": {
            "type": "object",
            "additionalProperties": _object(
                {
                    "baseline": _NUMBER,
                    "bound": _NUMBER,
                    "worst": _NUMBER,
                    "worst_at": _TIME,
                    "change": _NUMBER,
                    "headroom_used": _NUMBER,
                    "samples": {"type": "integer", "minimum": 0},
                    "samples_beyond_bound": {"type": "integer", "minimum": 0},
                }
            ),
        },
    }
)
_SCENARIO = _object(
    {
        "name": {"type": "string"},
        "start": _TIME,
        "end": _TIME,
        "planned_duration_s": _NUMBER,
        "blast_radius": _object(
            {"peak": {"type": ["integer", "null"]}, "max_pods": {"type": ["integer", "null"]}, "problems": {"type": "array", "items": {"type": "string"}}},
            nullable=True,
        ),
        "steps": {"type": "array", "items": _STEP},
        "breach": _object(
            {
                "threshold": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "step": _TEXT,
                "after_step_s": _NUMBER,
                "standing": {"type": "array", "items": {"type": "string"}},
                "named_by": {"enum": ["monitor", "times"]},
                "sentence": {"type": "string"},
            },
            nullable=True,
        ),
    }
)

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": REPORT_SCHEMA_ID,
    "title": "Chaos experiment run report",
    **_object(
        {
            "schema_version": {"const": REPORT_SCHEMA_VERSION},
            "generated_at": {"type": "string", "format": "date-time"},
            "run": _object(
                {"dag_id": _TEXT, "run_id": _TEXT, "run_type": _TEXT, "result_schema_version": {"type": ["integer", "null"]}, "result_written_at": _TEXT}
            ),
            "deploy": _object(
                {"service": {"type": "string"}, "version": _TEXT, "event_at": _TIME, "asset_uri": _TEXT, "deploy_run": _TEXT},
                nullable=True,
            ),
            "experiment": _object(
                {
                    "name": {"type": "string"},
                    "title": _TEXT,
                    "tier": _TEXT,
                    "kind": _TEXT,
                    "target_service": _TEXT,
                    "hypothesis": _TEXT,
                    "description": _TEXT,
                    "source": _TEXT,
                    "duration_s": _NUMBER,
                    "dry_run": {"type": "boolean"},
                    "planned_at": _TIME,
                },
                nullable=True,
            ),
            "tier": _TEXT,
            "hypothesis": _TEXT,
            "approvals": {
                "type": "array",
                "items": _object(
                    {
                        "task_id": {"type": "string"},
                        "role": {"type": "string"},
                        "decision": {"enum": ["approved", "rejected", "other"]},
                        "options": {"type": "array", "items": {"type": "string"}},
                        "by": _object({"id": _TEXT, "name": _TEXT}, nullable=True),
                        "at": _TIME,
                    }
                ),
            },
            "window_check": _object(
                {
                    "allowed": {"type": "boolean"},
                    "reason": {"type": "string"},
                    "override_used": {"type": "boolean"},
                    "manual": {"type": ["boolean", "null"]},
                    "checked_at": _TIME,
                    "planned_injection": _TIME,
                    "next_allowed": _TIME,
                },
                nullable=True,
            ),
            "preflight": _object(
                {
                    "checked_at": _TIME,
                    "window": _object({"start": _TIME, "end": _TIME}, nullable=True),
                    "targets": {"type": "array", "items": {"type": "string"}},
                    "peers": {"type": "array", "items": {"type": "string"}},
                },
                nullable=True,
            ),
            "baseline": {
                "type": "object",
                "additionalProperties": _object({"value": _NUMBER, "source": {"enum": ["preflight", "series", None]}}),
            },
            "fault": _object(
                {
                    "object": _object({"kind": {"type": "string"}, "name": {"type": "string"}, "namespace": {"type": "string"}, "uid": _TEXT}),
                    "start": {"type": "string", "format": "date-time"},
                    "end": _TIME,
                    "duration_s": _NUMBER,
                    "planned_duration_s": _NUMBER,
                    "ended_by": {"enum": list(ENDINGS)},
                    "ended_detail": _TEXT,
                    "manifest": {"type": ["object", "null"]},
                },
                # ended_detail came after the first reports: theirs still validate.
                required=["object", "start", "end", "duration_s", "planned_duration_s", "ended_by", "manifest"],
                nullable=True,
            ),
            "safety_checks": {
                "type": "array",
                "items": _object(
                    {
                        "check": {"type": "string"},
                        "decision": {"enum": ["pass", "fail", "not_run"]},
                        "at": _TIME,
                        "detail": {"type": "string"},
                        "readings": {"type": "object", "additionalProperties": _NUMBER},
                    },
                    required=["check", "decision", "at", "detail"],
                ),
            },
            "breaches": {
                "type": "array",
                "items": _object(
                    {
                        "threshold": {"type": "string"},
                        "rule": {"type": "string"},
                        "value": _NUMBER,
                        "baseline": _NUMBER,
                        "limit": _NUMBER,
                        "bound": _NUMBER,
                        "at": {"type": "string", "format": "date-time"},
                        "message": {"type": "string"},
                        "first_beyond_at": _TIME,
                        "time_to_detect_s": _NUMBER,
                        "removal_requested_at": _TIME,
                        "time_to_remove_s": _NUMBER,
                        "removed_at": _TIME,
                        "time_to_removed_s": _NUMBER,
                    }
                ),
            },
            "recovery": {
                "type": "array",
                "items": _object(
                    {
                        "stage": {"type": "string"},
                        "status": {"enum": list(STAGE_STATUSES)},
                        "deadline_s": _NUMBER,
                        "at": _TIME,
                        "time_to_recover_s": _NUMBER,
                        "met_deadline": {"type": "boolean"},
                        "thresholds": {"type": "array", "items": {"type": "string"}},
                        "pending": {"type": "array", "items": {"type": "string"}},
                        "series_time_to_recover_s": _NUMBER,
                    }
                ),
            },
            "metrics": {
                "type": "array",
                "items": _object(
                    {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "unit": {"type": "string"},
                        "rule": {"enum": ["max_drop_percent", "max_increase", "at_most", "at_least"]},
                        "limit": {"type": "number"},
                        "worse": {"enum": ["higher", "lower"]},
                        "baseline": _NUMBER,
                        "baseline_source": {"enum": ["preflight", "series", None]},
                        "bound": _NUMBER,
                        "windows": _PER_WINDOW(_STATS),
                        "tests": _object({"fault": _TEST, "recovery": _TEST}),
                        "samples_beyond_bound": _PER_WINDOW({"type": "integer", "minimum": 0}),
                        "worst_in_fault": _NUMBER,
                        "worst_in_fault_at": _TIME,
                        "headroom_used": _NUMBER,
                        "time_to_bound_s": _NUMBER,
                        "baseline_band": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                        "end_median": _NUMBER,
                        "time_to_baseline_s": _NUMBER,
                        "data": _object(
                            {
                                "expected": {"type": "integer", "minimum": 0},
                                "present": {"type": "integer", "minimum": 0},
                                "missing": {"type": "integer", "minimum": 0},
                                "missing_share": {"type": "number", "minimum": 0, "maximum": 1},
                                "longest_gap_s": _NUMBER,
                            }
                        ),
                    }
                ),
            },
            "series": _object(
                {
                    "start": _TIME,
                    "end": _TIME,
                    "step_s": _NUMBER,
                    "samples": {"type": "integer", "minimum": 0},
                    "columns": {"type": "array", "items": {"type": "string"}},
                }
            ),
            "timeline": {
                "type": "array",
                "items": _object(
                    {
                        "at": {"type": "string", "format": "date-time"},
                        "offset_s": _NUMBER,
                        "event": {"type": "string"},
                        "label": {"type": "string"},
                        "detail": {"type": "string"},
                    }
                ),
            },
            "impact_score": _SCORE,
            "system_health_score": _SCORE,
            "verdict": _object({"value": {"enum": list(VERDICTS)}, "label": {"type": "string"}, "reason": {"type": "string"}}),
            "findings": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "string", "pattern": "^F[0-9]+$"},
                        "rule": {"type": "string"},
                        "severity": {"enum": ["critical", "warning", "info"]},
                        "title": {"type": "string"},
                        "detail": {"type": "string"},
                        "metric": _TEXT,
                        "stage": _TEXT,
                        "evidence": {"type": "object"},
                    }
                ),
            },
            "recommendations": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "string", "pattern": "^R[0-9]+$"},
                        "findings": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "text": {"type": "string"},
                    }
                ),
            },
            "analysis": _object(
                {"test": {"type": "string"}, "effect_size": {"type": "string"}, **{f.name: {"type": "number"} for f in fields(AnalysisSettings)}}
            ),
            "task_states": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
            "disaster_recovery": _object(
                {
                    "status": {"enum": ["met", "missed", "not_injected"]},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "rto_s": _NUMBER,
                    "rpo_s": _NUMBER,
                    "targets": _object({"rto_s": _NUMBER, "rpo_s": _NUMBER}),
                    "primary_before": _TEXT,
                    "primary_after": _TEXT,
                    "outage": _object(
                        {"started_at": _TIME, "first_failure_at": _TIME, "recovered_at": _TIME, "failed_writes": {"type": "integer", "minimum": 0}},
                        nullable=True,
                    ),
                    "canaries": _object(
                        {k: {"type": "integer", "minimum": 0} for k in ("sent", "acknowledged", "failed", "lost", "unverified")}
                        | {"interval_s": _NUMBER, "lost_ids": {"type": "array"}}
                    ),
                },
                nullable=True,
            ),
            "scenario": _SCENARIO,
        }
    ),
}
# deploy came after the first reports: theirs still validate. scenario is there for scenario runs only.
REPORT_SCHEMA["required"].remove("deploy")
REPORT_SCHEMA["required"].remove("scenario")


class ReportSchemaError(ValueError):
    """report.json does not match its schema; the message lists every problem at once."""


def validate_report(document: dict[str, Any]) -> None:
    """Raises ReportSchemaError naming each field that breaks the schema and the rule it breaks."""
    validator = Draft202012Validator(REPORT_SCHEMA, format_checker=FormatChecker())
    problems = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if problems:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message} ({e.validator})" for e in problems]
        raise ReportSchemaError(f"report.json breaks schema v{REPORT_SCHEMA_VERSION}:\n  " + "\n  ".join(lines))
