"""report.pdf: the report's content on A4 pages drawn with matplotlib alone (text, tables and the plot images)."""

from __future__ import annotations

import datetime as dt
import io
import textwrap
from typing import Any

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.image import imread

from chaos_engineering.report.document import ENDING_LABELS
from chaos_engineering.report.html import VERDICT_COLOURS, clock, no_series, number, offset, seconds, share, title_of

PAGE_IN = (8.27, 11.69)  # A4 portrait
MARGIN_IN = 0.6
#: (font size pt, line height in, characters per line, font family) of each kind of line.
STYLES = {
    "title": (16, 0.34, 70, "sans-serif"),
    "heading": (12.5, 0.32, 80, "sans-serif"),
    "body": (9.5, 0.18, 88, "sans-serif"),
    "mono": (6.6, 0.125, 110, "monospace"),
}


class PageFlow:
    """Flows lines and images down A4 pages, starting a new page when the next item does not fit."""

    def __init__(self, pdf: PdfPages) -> None:
        self.pdf = pdf
        self.figure: Figure | None = None
        self.y = 0.0  # inches from the bottom of the page

    def _room(self, height: float) -> None:
        if self.figure is None or self.y - height < MARGIN_IN:
            self.flush()
            self.figure = Figure(figsize=PAGE_IN, facecolor="white")
            self.y = PAGE_IN[1] - MARGIN_IN

    def line(self, text: str, style: str = "body", colour: str = "#202124", bold: bool = False) -> None:
        size, height, _, family = STYLES[style]
        self._room(height)
        x, y = MARGIN_IN / PAGE_IN[0], self.y / PAGE_IN[1]
        # parse_math=False: a "$" in a message must print as itself, never as mathtext.
        self.figure.text(x, y, text, fontsize=size, family=family, color=colour, weight="bold" if bold else "normal", va="top", parse_math=False)
        self.y -= height

    def paragraph(self, text: str, style: str = "body", **kwargs: Any) -> None:
        for piece in textwrap.wrap(text, STYLES[style][2], subsequent_indent="  ") or [""]:
            self.line(piece, style, **kwargs)

    def heading(self, text: str) -> None:
        self._room(STYLES["heading"][1] + 4 * STYLES["body"][1])  # never a heading alone at a page's foot
        self.y -= 0.08
        self.line(text, "heading", bold=True)

    def table(self, header: list[str], rows: list[list[str]], widths: list[int]) -> None:
        def fmt(cells: list[str]) -> str:
            return " ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths)).rstrip()

        self.line(fmt(header), "mono", bold=True)
        for row in rows:
            self.line(fmt(row), "mono")

    def image(self, png: bytes) -> None:
        pixels = imread(io.BytesIO(png))[..., :3]  # opaque plots: no alpha, so no soft mask beside each image
        width = PAGE_IN[0] - 2 * MARGIN_IN
        height = width * pixels.shape[0] / pixels.shape[1]
        self._room(height + 0.1)
        axes = self.figure.add_axes((MARGIN_IN / PAGE_IN[0], (self.y - height) / PAGE_IN[1], width / PAGE_IN[0], height / PAGE_IN[1]))
        axes.imshow(pixels, interpolation="none")
        axes.set_axis_off()
        self.y -= height + 0.1

    def flush(self) -> None:
        if self.figure is not None:
            self.pdf.savefig(self.figure)
            self.figure = None


def _summary(flow: PageFlow, doc: dict[str, Any]) -> None:
    exp, run, verdict = doc.get("experiment") or {}, doc["run"], doc["verdict"]
    flow.line(title_of(doc), "title", bold=True)
    what = f" - {exp.get('kind')} on {exp.get('target_service')}" if exp else ""
    flow.paragraph(f"{run.get('dag_id') or ''} - run {run.get('run_id') or ''} - {doc.get('tier') or 'unknown'} tier{what}", colour="#5f6368")
    flow.paragraph(f"Verdict: {verdict['label']} - {verdict['reason']}", colour=VERDICT_COLOURS.get(verdict["value"], "#202124"), bold=True)
    if doc.get("hypothesis"):
        flow.paragraph(f"Hypothesis: {doc['hypothesis']}")
    for label, key in (("Impact score", "impact_score"), ("System health score", "system_health_score")):
        flow.paragraph(f"{label}: {number(doc[key]['value'], 3)} ({doc[key]['basis']})")
    fault = doc.get("fault")
    if fault:
        obj = fault["object"]
        flow.paragraph(
            f"Fault: {obj['kind']} {obj['namespace']}/{obj['name']} from {clock(fault['start'])} to {clock(fault['end'])} "
            f"({seconds(fault['duration_s'])}, planned {seconds(fault['planned_duration_s'])}), ended by {ENDING_LABELS[fault['ended_by']]}."
        )
    else:
        flow.paragraph("No fault was injected.")
    for b in doc["breaches"]:
        flow.paragraph(
            f"Breach: {b['message']}. Time to detect {seconds(b['time_to_detect_s'])}, time to remove {seconds(b['time_to_remove_s'])}, "
            f"removal confirmed after {seconds(b['time_to_removed_s'])}.",
            colour=VERDICT_COLOURS["broken"],
        )
    dr = doc.get("disaster_recovery")
    if dr:
        flow.heading("Disaster recovery")
        flow.paragraph(
            f"Targets {dr['status']}: RTO {seconds(dr['rto_s'])} (target {seconds(dr['targets']['rto_s'])}), RPO {seconds(dr['rpo_s'])} "
            f"(target {seconds(dr['targets']['rpo_s'])}); {dr['canaries']['lost']} of {dr['canaries']['acknowledged']} acknowledged canaries lost; "
            f"primary {dr['primary_before'] or 'unknown'} -> {dr['primary_after'] or 'unknown'}." + "".join(f" {r}." for r in dr["reasons"]),
            colour="#202124" if dr["status"] == "met" else VERDICT_COLOURS["broken"],
        )
    if doc["recovery"]:
        flow.heading("Recovery")
        rows = [
            [s["stage"], s["status"], seconds(s["deadline_s"]), seconds(s["time_to_recover_s"]), seconds(s["series_time_to_recover_s"]), ", ".join(s["thresholds"])]
            for s in doc["recovery"]
        ]
        flow.table(["stage", "status", "deadline", "time to recover", "in the series", "thresholds"], rows, [10, 15, 9, 15, 13, 42])


def _approvals(flow: PageFlow, doc: dict[str, Any]) -> None:
    flow.heading("Approvals and safety checks")
    if doc["approvals"]:
        rows = [[a["role"], a["decision"], (a["by"] or {}).get("name") or "-", clock(a["at"])] for a in doc["approvals"]]
        flow.table(["role", "decision", "by", "when"], rows, [12, 10, 40, 26])
    else:
        flow.paragraph("No approval was recorded.")
    flow.line("")
    for c in doc["safety_checks"]:
        flow.paragraph(f"{c['check']}: {c['decision'].upper()} {clock(c['at']) if c['at'] else ''} - {c['detail']}", "mono")


def _timeline(flow: PageFlow, doc: dict[str, Any]) -> None:
    flow.heading("Timeline")
    rows = [[clock(e["at"]), offset(e["offset_s"]), e["label"], e["detail"]] for e in doc["timeline"]]
    flow.table(["when", "from injection", "event", "detail"], rows, [23, 11, 24, 48])


def _analysis(flow: PageFlow, doc: dict[str, Any]) -> None:
    method = doc["analysis"]
    flow.heading("Analysis")
    if not doc["series"]["samples"]:
        flow.paragraph(no_series(doc), colour="#5f6368")
        return
    flow.paragraph(
        f"{method['test']}; effect size {method['effect_size']}. "
        f"A change is a finding when p < {method['alpha']} and |delta| >= {method['min_effect']}."
    )
    header = ["metric", "baseline", "bound", "med before", "med during", "med after", "headroom", "in bound", "to baseline", "missing"]
    rows = []
    for m in doc["metrics"]:
        medians = [number(m["windows"][w]["median"]) for w in ("baseline", "fault", "recovery")]
        times = [seconds(m["time_to_bound_s"]), seconds(m["time_to_baseline_s"])]
        rows.append([m["name"], number(m["baseline"]), number(m["bound"]), *medians, share(m["headroom_used"]), *times, share(m["data"]["missing_share"])])
    flow.table(header, rows, [20, 8, 8, 10, 10, 10, 8, 9, 11, 7])
    flow.line("")

    def test(t: dict[str, Any]) -> str:
        return t["judgement"] + (f" p={t['p_value']:.2g} d={t['cliffs_delta']:+.2f}" if t["p_value"] is not None else "")

    rows = [[m["name"], test(m["tests"]["fault"]), test(m["tests"]["recovery"])] for m in doc["metrics"]]
    flow.table(["metric", "during the fault vs baseline", "after removal vs baseline"], rows, [20, 44, 44])


def _metrics(flow: PageFlow, doc: dict[str, Any], plots: dict[str, bytes]) -> None:
    flow.heading("Metrics")
    if not doc["series"]["samples"]:
        flow.paragraph(no_series(doc), colour="#5f6368")
        return
    for metric in doc["metrics"]:
        if metric["name"] in plots:
            flow.image(plots[metric["name"]])
        else:
            flow.paragraph(f"No samples of {metric['name']} to plot.", colour="#5f6368")


def _findings(flow: PageFlow, doc: dict[str, Any]) -> None:
    flow.heading("Findings")
    colours = {"critical": "#d93025", "warning": "#e37400", "info": "#1a73e8"}
    for f in doc["findings"]:
        flow.paragraph(f"{f['id']} [{f['severity']}] {f['title']} (rule {f['rule']})", colour=colours[f["severity"]], bold=True)
        flow.paragraph(f["detail"])
    if not doc["findings"]:
        flow.paragraph("No rule found anything to report.")
    flow.heading("Recommendations")
    for r in doc["recommendations"]:
        flow.paragraph(f"{r['id']}. {r['text']} ({', '.join(r['findings'])})")
    if not doc["recommendations"]:
        flow.paragraph("None.")


def render_pdf(document: dict[str, Any], plots: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    created = dt.datetime.fromisoformat(document["generated_at"])
    metadata = {
        "Title": title_of(document),
        "Subject": f"verdict: {document['verdict']['label']}",
        "Creator": "airflow-chaos-engineering report",
        "CreationDate": created,
    }
    with PdfPages(buffer, metadata=metadata) as pdf:
        flow = PageFlow(pdf)
        _summary(flow, document)
        _approvals(flow, document)
        _timeline(flow, document)
        _analysis(flow, document)
        _findings(flow, document)
        _metrics(flow, document, plots)
        flow.flush()
    return buffer.getvalue()
