"""Monthly trends across every run report: per tier and per service, with month-over-month deltas."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
from typing import Any

import pandas as pd

from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

METRICS = ("runs", "held", "broken", "pass_rate", "breaches", "ttd_mean_s", "ttd_p95_s", "ttr_mean_s", "ttr_p95_s", "safety_violations")
#: Deltas are reported for these (counts and the means; a p95 of a few runs moves too much to compare).
DELTA_METRICS = ("runs", "pass_rate", "breaches", "ttd_mean_s", "ttr_mean_s", "safety_violations")
TRENDS_FOLDER = "trends"


def previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _read_json(path: ObjectStoragePath) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def _from_report(report: dict[str, Any]) -> dict[str, Any]:
    experiment = report.get("experiment") or {}
    return {
        "tier": experiment.get("tier") or report.get("tier") or "unknown",
        "service": experiment.get("target_service") or "unknown",
        "verdict": (report.get("verdict") or {}).get("value"),
        "breaches": len(report.get("breaches") or []),
        "ttd": [b["time_to_detect_s"] for b in report.get("breaches") or [] if b.get("time_to_detect_s") is not None],
        "ttr": [r["time_to_recover_s"] for r in report.get("recovery") or [] if r.get("time_to_recover_s") is not None],
        "safety_violations": sum(1 for c in report.get("safety_checks") or [] if c.get("decision") == "fail"),
        "source": "report",
    }


def _from_result(result: dict[str, Any]) -> dict[str, Any]:
    """A run without a report (its report step failed): what result.json says, no timings of detection."""
    experiment = result.get("experiment") or {}
    monitor = result.get("monitor") or {}
    recovery = [r for r in (result.get("recovery") or {}).values() if r]
    return {
        "tier": experiment.get("tier") or "unknown",
        "service": experiment.get("target_service") or "unknown",
        "verdict": result.get("verdict"),
        "breaches": 1 if monitor.get("status") == "breach" else 0,
        "ttd": [],
        "ttr": [r["time_to_recover_s"] for r in recovery if r.get("time_to_recover_s") is not None],
        "safety_violations": 0,
        "source": "result",
    }


def collect_runs(base: ObjectStoragePath, year: int, month: int) -> pd.DataFrame:
    """One row per run folder `<dag_id>/<YYYY>/<MM>/<run_id>/` of that month: report.json, else result.json."""
    rows = []
    if base.exists():
        for dag in sorted((p for p in base.iterdir() if p.is_dir() and p.name != TRENDS_FOLDER), key=str):
            month_dir = dag / f"{year:04d}" / f"{month:02d}"
            if not month_dir.is_dir():
                continue
            for run in sorted((p for p in month_dir.iterdir() if p.is_dir()), key=str):
                if (doc := _read_json(run / "report.json")) is not None:
                    row = _from_report(doc)
                elif (doc := _read_json(run / "result.json")) is not None:
                    row = _from_result(doc)
                else:
                    continue
                rows.append({"dag_id": dag.name, "run_id": run.name, **row})
    columns = ["dag_id", "run_id", "tier", "service", "verdict", "breaches", "ttd", "ttr", "safety_violations", "source"]
    return pd.DataFrame(rows, columns=columns)


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 3)


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    series = pd.Series(values, dtype=float)
    return (_number(series.mean()), _number(series.quantile(0.95))) if len(series) else (None, None)


def _aggregate_group(runs: pd.DataFrame) -> dict[str, Any]:
    held, broken = int((runs["verdict"] == "held").sum()), int((runs["verdict"] == "broken").sum())
    ttd_mean, ttd_p95 = _stats([v for vs in runs["ttd"] for v in vs])
    ttr_mean, ttr_p95 = _stats([v for vs in runs["ttr"] for v in vs])
    return {
        "runs": len(runs),
        "held": held,
        "broken": broken,
        # Aborted and dry runs tested nothing: they count as runs, not in the pass rate.
        "pass_rate": _number(held / (held + broken)) if held + broken else None,
        "breaches": int(runs["breaches"].sum()),
        "ttd_mean_s": ttd_mean,
        "ttd_p95_s": ttd_p95,
        "ttr_mean_s": ttr_mean,
        "ttr_p95_s": ttr_p95,
        "safety_violations": int(runs["safety_violations"].sum()),
    }


def aggregate(runs: pd.DataFrame, by: str) -> dict[str, dict[str, Any]]:
    """`by` is `tier` or `service`: {value: metrics}, sorted by value."""
    return {str(key): _aggregate_group(group) for key, group in sorted(runs.groupby(by), key=lambda kv: str(kv[0]))}


def _deltas(current: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, now in current.items():
        before = previous.get(key)
        out[key] = {
            m: (_number(now[m] - before[m]) if before is not None and now[m] is not None and before[m] is not None else None)
            for m in DELTA_METRICS
        }
    return out


def monthly_trends(base: ObjectStoragePath, year: int, month: int) -> dict[str, Any]:
    current, previous = collect_runs(base, year, month), collect_runs(base, *previous_month(year, month))
    out: dict[str, Any] = {
        "month": f"{year:04d}-{month:02d}",
        "previous_month": "{:04d}-{:02d}".format(*previous_month(year, month)),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "total": _aggregate_group(current) if len(current) else None,
        "previous_total": _aggregate_group(previous) if len(previous) else None,
    }
    for by in ("tier", "service"):
        now, before = aggregate(current, by), aggregate(previous, by)
        out[f"by_{by}"] = now
        out[f"previous_by_{by}"] = before
        out[f"delta_by_{by}"] = _deltas(now, before)
    return out


def _plot(trends: dict[str, Any], by: str) -> str:
    """A base64 PNG: runs (held / broken / other) and mean times per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = trends[f"by_{by}"]
    names = list(groups)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    held = [groups[n]["held"] for n in names]
    broken = [groups[n]["broken"] for n in names]
    other = [groups[n]["runs"] - groups[n]["held"] - groups[n]["broken"] for n in names]
    left.bar(names, held, color="#34a853", label="held")
    left.bar(names, broken, bottom=held, color="#ea4335", label="broken")
    left.bar(names, other, bottom=[h + b for h, b in zip(held, broken)], color="#9aa0a6", label="aborted / dry run")
    left.set_title(f"Runs per {by}")
    left.legend(fontsize=8)
    width = 0.4
    xs = range(len(names))
    right.bar([x - width / 2 for x in xs], [groups[n]["ttd_mean_s"] or 0 for n in names], width, label="mean time to detect (s)")
    right.bar([x + width / 2 for x in xs], [groups[n]["ttr_mean_s"] or 0 for n in names], width, label="mean time to recover (s)")
    right.set_xticks(list(xs), names)
    right.set_title(f"Detection and recovery per {by}")
    right.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(groups: dict[str, dict[str, Any]], deltas: dict[str, dict[str, Any]], by: str) -> str:
    def cell(value: Any, delta: Any = None) -> str:
        text = "—" if value is None else str(value)
        return f"<td>{html.escape(text)}" + (f" <small>({delta:+g})</small>" if delta is not None else "") + "</td>"

    head = "".join(f"<th>{html.escape(m)}</th>" for m in METRICS)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(cell(g[m], deltas.get(name, {}).get(m)) for m in METRICS) + "</tr>" for name, g in groups.items()
    )
    return f"<table><tr><th>{html.escape(by)}</th>{head}</tr>{rows}</table>"


def render_html(trends: dict[str, Any]) -> str:
    """Self-contained: the plots are inline PNGs, no external asset."""
    sections = []
    for by in ("tier", "service"):
        plot = f'<img alt="{by} plot" src="data:image/png;base64,{_plot(trends, by)}">' if trends[f"by_{by}"] else "<p>No runs.</p>"
        sections.append(f"<h2>Per {by}</h2>{_table(trends[f'by_{by}'], trends[f'delta_by_{by}'], by)}{plot}")
    title = f"Chaos experiments, {trends['month']}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>Deltas in brackets are against {html.escape(trends['previous_month'])}. "
        "Pass rate = held / (held + broken).</p>" + "".join(sections) + "</body></html>"
    )


def write_trends(base: ObjectStoragePath, year: int, month: int) -> dict[str, Any]:
    """Compute and write `<base>/trends/<YYYY>-<MM>/trends.json|trends.html`; returns the trends with their paths."""
    trends = monthly_trends(base, year, month)
    folder = base / TRENDS_FOLDER / f"{year:04d}-{month:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trends.json").write_text(json.dumps(trends, indent=2, allow_nan=False))
    (folder / "trends.html").write_text(render_html(trends))
    return {**trends, "json_path": str(folder / "trends.json"), "html_path": str(folder / "trends.html")}


def summary(trends: dict[str, Any]) -> str:
    """A few lines for a chat message or the task log."""
    total = trends["total"]
    if total is None:
        return f"chaos trends {trends['month']}: no runs"
    rate = "n/a" if total["pass_rate"] is None else f"{total['pass_rate']:.0%}"
    lines = [f"chaos trends {trends['month']}: {total['runs']} runs, pass rate {rate}, {total['breaches']} breaches, {total['safety_violations']} safety violations"]
    lines += [f"  {tier}: {g['runs']} runs, {g['held']} held, {g['broken']} broken" for tier, g in trends["by_tier"].items()]
    return "\n".join(lines)
