"""report.html: one self-contained page (inline CSS, plots as inline PNG) rendered from the report document."""

from __future__ import annotations

import base64
from typing import Any

import jinja2

from chaos_engineering.report.document import ENDING_LABELS, deploy_sentence
from chaos_engineering.report.plots import Chart

VERDICT_COLOURS = {"held": "#188038", "broken": "#d93025", "aborted": "#e37400", "dry_run": "#5f6368"}
#: How a safety decision and a recovery stage read: a step the run never reached is neutral, not a failure.
DECISION_LABELS = {"pass": "pass", "fail": "fail", "not_run": "not reached"}
STAGE_LABELS = {"recovered": "recovered", "deadline_missed": "deadline missed", "unobserved": "not observed in time", "not_run": "not reached", "unknown": "unknown"}


def number(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def seconds(value: Any) -> str:
    return "–" if value is None else f"{value:.1f} s"


def share(value: Any) -> str:
    return "–" if value is None else f"{value:.0%}"


def clock(value: str | None) -> str:
    """`2026-05-06T02:00:01.250+00:00` -> `2026-05-06 02:00:01 UTC`."""
    return "–" if not value else f"{value[:10]} {value[11:19]} UTC"


def offset(value: Any) -> str:
    return "" if value is None else f"T{value:+.1f} s"


def fault_duration(fault: dict[str, Any]) -> str:
    """Actual against planned duration, and why the fault ended when it did."""
    actual, planned = fault["duration_s"], fault["planned_duration_s"]
    why = f"ended by {ENDING_LABELS[fault['ended_by']]}" + (f" ({fault['ended_detail']})" if fault.get("ended_detail") else "")
    if actual is None:
        return f"planned {seconds(planned)}, its end not recorded; {why}"
    if planned is None:
        return f"{seconds(actual)}, no planned duration recorded; {why}"
    gap = actual - planned
    compared = f"{seconds(-gap)} early" if gap <= -1 else f"{seconds(gap)} longer" if gap >= 1 else "as planned"
    return f"{seconds(actual)} of {seconds(planned)} planned ({compared}); {why}"


def stage_class(stage: dict[str, Any]) -> str:
    return "not_run" if stage["status"] == "not_run" else "pass" if stage["met_deadline"] else "fail"


#: What ended the window a scenario step stood (report.json `scenario.steps[].end.by`).
STEP_ENDINGS = {"chaos_mesh": "Chaos Mesh ended it", "removal_request": "its removal was requested", "run_removal": "the run's removal", "unknown": "no end recorded"}


def planned_window(step: dict[str, Any]) -> str:
    planned = step["planned"]
    if planned["start_s"] is None:
        return "–"
    # "to", not an arrow: the PDF spells an arrow out as two characters, after its table has measured the cell.
    return f"{offset(planned['start_s'])} to {offset(planned['end_s'])}" if planned["end_s"] is not None else offset(planned["start_s"])


def started_when(step: dict[str, Any]) -> str:
    """`T+30.4 s (0.4 s late)`: when the step was created, against when it was due."""
    point = step["started"]
    if point is None:
        return "not started"
    delay = point["delay_s"]
    late = f" ({seconds(abs(delay))} {'late' if delay > 0 else 'early'})" if delay is not None and abs(delay) >= 0.05 else ""
    return f"{offset(point['offset_s']) or clock(point['at'])}{late}"


def moment_of(point: dict[str, Any] | None) -> str:
    return "–" if point is None else offset(point["offset_s"]) or clock(point["at"])


def stood(step: dict[str, Any]) -> str:
    if step["started"] is None:
        return "–"
    return f"{seconds(step['stood_s'])} ({STEP_ENDINGS[step['end']['by']]})"


def change(value: Any) -> str:
    return "–" if value is None else f"{value:+.4g}"


def steps_started(scenario: dict[str, Any]) -> str:
    return f"{sum(s['started'] is not None for s in scenario['steps'])} of {len(scenario['steps'])}"


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #202124; margin: 0; background: #f8f9fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
section, header { background: #fff; border: 1px solid #dadce0; border-radius: 8px; padding: 16px 20px; margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 12px; } h3 { font-size: 14px; margin: 16px 0 4px; }
.verdict { display: inline-block; color: #fff; border-radius: 4px; padding: 2px 10px; font-weight: 600; background: {{ verdict_colour }}; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 8px; margin-top: 12px; }
.figure { border: 1px solid #e8eaed; border-radius: 6px; padding: 8px; } .figure b { display: block; font-size: 20px; }
.muted { color: #5f6368; } table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e8eaed; padding: 4px 6px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.critical { color: #d93025; } .warning { color: #e37400; } .info { color: #1a73e8; } .pass { color: #188038; } .fail { color: #d93025; } .not_run { color: #5f6368; }
img { max-width: 100%; height: auto; } .scroll { overflow-x: auto; } code { font-size: 12px; }
</style>
</head>
<body><main>
<header id="summary">
  <h1>{{ title }}</h1>
  <div class="muted">{{ doc.run.dag_id or "" }} · run {{ doc.run.run_id or "" }} · {{ doc.tier or "unknown" }} tier{% if exp %} · {{ exp.kind }} on {{ exp.target_service }}{% endif %}</div>
  <p><span class="verdict">{{ doc.verdict.label }}</span> {{ doc.verdict.reason }}</p>
  {% if deploy %}<p id="deploy">{{ deploy }}.</p>{% endif %}
  {% if doc.hypothesis %}<p><b>Hypothesis:</b> {{ doc.hypothesis }}</p>{% endif %}
  {% if sc and sc.breach %}<p id="breach-step" class="fail">{{ sc.breach.sentence }}</p>{% endif %}
  {% if doc.fault %}<p id="fault-duration"><b>Fault duration:</b> {{ fault_duration(doc.fault) }}.</p>{% endif %}
  <div class="figures">
    <div class="figure">Impact score<b>{{ number(doc.impact_score.value, 3) }}</b><span class="muted">{{ doc.impact_score.basis }}</span></div>
    <div class="figure">System health score<b>{{ number(doc.system_health_score.value, 3) }}</b><span class="muted">{{ doc.system_health_score.basis }}</span></div>
    {% if doc.fault %}<div class="figure">Fault<b>{{ seconds(doc.fault.duration_s) }}</b><span class="muted">planned {{ seconds(doc.fault.planned_duration_s) }}; ended by {{ endings[doc.fault.ended_by] }}</span></div>{% endif %}
    {% if sc %}<div class="figure">Steps started<b>{{ steps_started(sc) }}</b><span class="muted">planned span {{ seconds(sc.planned_duration_s) }}</span></div>{% endif %}
    {% for b in doc.breaches %}<div class="figure">Time to detect<b>{{ seconds(b.time_to_detect_s) }}</b><span class="muted">{{ b.threshold }}</span></div>
    <div class="figure">Time to remove<b>{{ seconds(b.time_to_remove_s) }}</b><span class="muted">breach to deletion</span></div>{% endfor %}
    {% set dr = doc.disaster_recovery %}{% if dr %}<div class="figure">RTO<b class="{{ 'pass' if dr.rto_s is not none and dr.rto_s <= dr.targets.rto_s else 'fail' }}">{{ seconds(dr.rto_s) }}</b><span class="muted">target {{ seconds(dr.targets.rto_s) }}</span></div>
    <div class="figure">RPO<b class="{{ 'pass' if dr.rpo_s is not none and dr.rpo_s <= dr.targets.rpo_s else 'fail' }}">{{ seconds(dr.rpo_s) }}</b><span class="muted">{{ dr.canaries.lost }} acknowledged canaries lost; target {{ seconds(dr.targets.rpo_s) }}</span></div>{% endif %}
    {% for s in doc.recovery if s.status != "not_run" %}<div class="figure">Recovery {{ s.stage }}<b class="{{ 'pass' if s.met_deadline else 'fail' }}">{{ seconds(s.time_to_recover_s) }}</b><span class="muted">deadline {{ seconds(s.deadline_s) }}</span></div>{% endfor %}
  </div>
</header>

{% if doc.disaster_recovery %}{% set dr = doc.disaster_recovery %}<section id="disaster-recovery">
  <h2>Disaster recovery</h2>
  <p>Targets <b class="{{ 'pass' if dr.status == 'met' else 'fail' }}">{{ dr.status }}</b>{% for r in dr.reasons %}; {{ r }}{% endfor %}.
  Primary {{ dr.primary_before or "unknown" }} → {{ dr.primary_after or "unknown" }}.</p>
  <table><tr><th>Canaries sent</th><th class="n">Acknowledged</th><th class="n">Failed writes</th><th class="n">Lost after failover</th><th class="n">Unverified</th><th>Outage</th></tr>
  <tr><td class="n">{{ dr.canaries.sent }}</td><td class="n">{{ dr.canaries.acknowledged }}</td><td class="n">{{ dr.canaries.failed }}</td><td class="n">{{ dr.canaries.lost }}</td><td class="n">{{ dr.canaries.unverified }}</td>
  <td>{% if dr.outage %}{{ clock(dr.outage.started_at) }} → {{ clock(dr.outage.recovered_at) if dr.outage.recovered_at else "not back" }}{% else %}none seen{% endif %}</td></tr></table>
</section>
{% endif %}
<section id="approvals">
  <h2>Approvals and safety checks</h2>
  {% if doc.approvals %}<table><tr><th>Role</th><th>Decision</th><th>By</th><th>When</th></tr>
  {% for a in doc.approvals %}<tr><td>{{ a.role }}</td><td class="{{ 'pass' if a.decision == 'approved' else 'fail' }}">{{ a.decision }}</td><td>{{ a.by.name if a.by and a.by.name else "–" }}</td><td>{{ clock(a.at) }}</td></tr>{% endfor %}
  </table>{% else %}<p class="muted">No approval was recorded.</p>{% endif %}
  <h3>Every safety decision</h3>
  <table><tr><th>Check</th><th>Decision</th><th>When</th><th>Detail</th></tr>
  {% for c in doc.safety_checks %}<tr><td>{{ c.check }}</td><td class="{{ c.decision }}">{{ decisions[c.decision] }}</td><td>{{ clock(c.at) }}</td><td>{{ c.detail }}</td></tr>{% endfor %}
  </table>
</section>

<section id="timeline">
  <h2>Timeline</h2>
  <table><tr><th>When</th><th class="n">From injection</th><th>Event</th><th>Detail</th></tr>
  {% for e in doc.timeline %}<tr><td>{{ clock(e.at) }}</td><td class="n">{{ offset(e.offset_s) }}</td><td>{{ e.label }}</td><td>{{ e.detail }}</td></tr>{% endfor %}
  </table>
  {% if doc.recovery %}<h3>Recovery stages</h3>
  <table><tr><th>Stage</th><th>Status</th><th class="n">Deadline</th><th class="n">Time to recover</th><th class="n">In the series</th><th>Thresholds</th></tr>
  {% for s in doc.recovery %}<tr>
    <td>{{ s.stage }}</td><td class="{{ stage_class(s) }}">{{ stages[s.status] }}</td><td class="n">{{ seconds(s.deadline_s) }}</td>
    <td class="n">{{ seconds(s.time_to_recover_s) }}</td><td class="n">{{ seconds(s.series_time_to_recover_s) }}</td><td>{{ s.thresholds | join(", ") }}</td>
  </tr>{% endfor %}
  </table>{% endif %}
</section>

{% if sc %}<section id="scenario">
  <h2>Scenario steps</h2>
  <p class="muted">{{ sc.steps | length }} steps of scenario {{ sc.name }}, in planned start order; times are from the scenario's start{% if sc.start %} ({{ clock(sc.start) }}){% endif %}.
  {% if sc.blast_radius and sc.blast_radius.peak is not none %}At most {{ sc.blast_radius.peak }} pods touched at once (limit {{ sc.blast_radius.max_pods if sc.blast_radius.max_pods is not none else "none" }}).{% endif %}</p>
  <div class="scroll"><table>
  <tr><th>Step</th><th>Fault</th><th class="n">Planned</th><th class="n">Started</th><th class="n">Ended by Chaos Mesh</th><th class="n">Removal requested</th><th>Stood</th></tr>
  {% for s in sc.steps %}<tr>
    <td>{{ s.step }}{% if s.title %}<br><span class="muted">{{ s.title }}</span>{% endif %}</td>
    <td>{{ s.kind or "" }}{% if s.actions %} ({{ s.actions | join(", ") }}){% endif %}{% if s.target_service %} on {{ s.target_service }}{% endif %}{% if s.object %}<br><span class="muted">{{ s.object.namespace }}/{{ s.object.name }}</span>{% endif %}</td>
    <td class="n">{{ planned_window(s) }}</td>
    {% if s.started %}<td class="n">{{ started_when(s) }}</td><td class="n">{{ moment_of(s.ended) }}</td><td class="n">{{ moment_of(s.removal_requested) }}</td><td>{{ stood(s) }}</td>
    {% else %}<td class="not_run">not started</td><td class="not_run" colspan="3">{{ s.not_started }}</td>{% endif %}
  </tr>{% endfor %}
  </table></div>
  <h3>Impact while each step stood</h3>
  <p class="muted">The worst reading of each metric from the step's creation to its end, against the baseline the run is judged by; headroom used = (worst − baseline) / (bound − baseline).</p>
  <div class="scroll"><table>
  <tr><th>Step</th><th>Metric</th><th class="n">Baseline</th><th class="n">Bound</th><th class="n">Worst</th><th class="n">Change</th><th class="n">Headroom used</th><th class="n">Beyond bound</th></tr>
  {% for s in sc.steps %}{% if not s.started %}<tr><td>{{ s.step }}</td><td class="not_run" colspan="7">not started: no impact</td></tr>
  {% else %}{% for name, i in s.impact.items() %}<tr>
    <td>{{ s.step }}</td><td>{{ name }}</td><td class="n">{{ number(i.baseline) }}</td><td class="n">{{ number(i.bound) }}</td>
    <td class="n{{ ' fail' if i.samples_beyond_bound else '' }}">{{ number(i.worst) }}</td><td class="n">{{ change(i.change) }}</td><td class="n">{{ share(i.headroom_used) }}</td>
    <td class="n">{{ i.samples_beyond_bound }} of {{ i.samples }}</td>
  </tr>{% endfor %}{% endif %}{% endfor %}
  </table></div>
</section>
{% endif %}
<section id="metrics">
  <h2>Metrics</h2>
  {% if not doc.series.samples %}<p class="muted">{{ no_series }}</p>
  {% else %}{% for m in doc.metrics %}
  <h3>{{ m.name }} <span class="muted">{{ m.description }}</span></h3>
  {% if m.name in plots %}<img alt="{{ m.name }} over the run, with baseline, bound, fault window, breach and recovery stages" src="data:image/png;base64,{{ plots[m.name] }}">
  {% else %}<p class="muted">No samples of {{ m.name }} to plot.</p>{% endif %}
  {% endfor %}{% endif %}
</section>

<section id="analysis">
  <h2>Analysis</h2>
  {% if not doc.series.samples %}<p class="muted">{{ no_series }}</p>{% else %}
  <p class="muted">{{ doc.analysis.test }}; effect size {{ doc.analysis.effect_size }}. A change is a finding when p &lt; {{ doc.analysis.alpha }} and |delta| &ge; {{ doc.analysis.min_effect }}.</p>
  <div class="scroll"><table>
  <tr>
    <th>Metric</th><th class="n">Baseline</th><th class="n">Bound</th><th class="n">Median before / during / after</th><th class="n">p95 during</th>
    <th>During the fault</th><th>After removal</th><th class="n">Headroom used</th><th class="n">Back in bound</th><th class="n">Back to baseline</th><th class="n">Missing</th>
  </tr>
  {% for m in doc.metrics %}<tr>
    <td>{{ m.name }}{% if m.unit %} <span class="muted">({{ m.unit }})</span>{% endif %}</td>
    <td class="n">{{ number(m.baseline) }}</td><td class="n">{{ number(m.bound) }}</td>
    <td class="n">{{ number(m.windows.baseline.median) }} / {{ number(m.windows.fault.median) }} / {{ number(m.windows.recovery.median) }}</td>
    <td class="n">{{ number(m.windows.fault.p95) }}</td>
    {% for w in ("fault", "recovery") %}{% set t = m.tests[w] %}<td>{{ t.judgement }}{% if t.p_value is not none %} <span class="muted">(p={{ number(t.p_value, 2) }}, δ={{ "%+.2f" | format(t.cliffs_delta) }})</span>{% endif %}</td>{% endfor %}
    <td class="n">{{ share(m.headroom_used) }}</td><td class="n">{{ seconds(m.time_to_bound_s) }}</td><td class="n">{{ seconds(m.time_to_baseline_s) }}</td><td class="n">{{ share(m.data.missing_share) }}</td>
  </tr>{% endfor %}
  </table></div>{% endif %}
</section>

<section id="findings">
  <h2>Findings</h2>
  {% if doc.findings %}<ol>{% for f in doc.findings %}<li><b class="{{ f.severity }}">[{{ f.severity }}] {{ f.title }}</b> <span class="muted">({{ f.id }}, rule <code>{{ f.rule }}</code>)</span><br>{{ f.detail }}</li>{% endfor %}</ol>
  {% else %}<p>No rule found anything to report.</p>{% endif %}
</section>

<section id="recommendations">
  <h2>Recommendations</h2>
  {% if doc.recommendations %}<ol>{% for r in doc.recommendations %}<li>{{ r.text }} <span class="muted">({{ r.findings | join(", ") }})</span></li>{% endfor %}</ol>
  {% else %}<p>None.</p>{% endif %}
</section>
<p class="muted">Report schema v{{ doc.schema_version }}, generated {{ clock(doc.generated_at) }}.</p>
</main></body>
</html>
"""

_ENVIRONMENT = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENVIRONMENT.globals.update(
    number=number, seconds=seconds, share=share, clock=clock, offset=offset, endings=ENDING_LABELS, decisions=DECISION_LABELS,
    stages=STAGE_LABELS, fault_duration=fault_duration, stage_class=stage_class,
    planned_window=planned_window, started_when=started_when, moment_of=moment_of, stood=stood, change=change, steps_started=steps_started,
)
_TEMPLATE = _ENVIRONMENT.from_string(TEMPLATE)


def no_series(document: dict[str, Any]) -> str:
    why = "no fault was injected" if document.get("fault") is None else "the metrics could not be read"
    return f"No series to show: {why}."


def title_of(document: dict[str, Any]) -> str:
    experiment = document.get("experiment") or {}
    return f"Chaos report: {experiment.get('title') or experiment.get('name') or document['run'].get('run_id') or 'run'}"


def render_html(document: dict[str, Any], plots: dict[str, Chart]) -> str:
    return _TEMPLATE.render(
        doc=document,
        exp=document.get("experiment"),
        sc=document.get("scenario"),
        title=title_of(document),
        deploy=deploy_sentence(document),
        verdict_colour=VERDICT_COLOURS.get(document["verdict"]["value"], "#5f6368"),
        no_series=no_series(document),
        plots={name: base64.b64encode(chart.png).decode("ascii") for name, chart in plots.items()},
    )
