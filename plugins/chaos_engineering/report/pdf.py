"""report.pdf: the report's content on A4 pages drawn with matplotlib alone (text, tables and the plot images)."""

from __future__ import annotations

import datetime as dt
import io
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from chaos_engineering.report.document import deploy_sentence
from chaos_engineering.report.html import (
    DECISION_LABELS, STAGE_LABELS, STEP_ENDINGS, VERDICT_COLOURS, change, clock, fault_duration, moment_of, no_series, number, offset, planned_window,
    seconds, share, started_when, steps_started, title_of,
)
from chaos_engineering.report.plots import Chart

PAGE_IN = (8.27, 11.69)  # A4 portrait
MARGIN_IN = 0.6
#: (font size pt, line height in, characters per line, font family) of each kind of line.
STYLES = {
    "title": (16, 0.34, 70, "sans-serif"),
    "heading": (12.5, 0.32, 80, "sans-serif"),
    "body": (9.5, 0.18, 88, "sans-serif"),
    "mono": (6.6, 0.125, 110, "monospace"),
}
DECISION_COLOURS = {"pass": "#202124", "fail": "#d93025", "not_run": "#5f6368"}


@dataclass(frozen=True)
class PdfFonts:
    """The fonts of the PDF's text (rcParams) and the name of their regular weight."""

    rc: dict[str, Any]
    regular: str


#: The 14 standard PDF fonts (Helvetica, Courier): nothing embedded and no glyph layout, a third of the PDF's
#: cost; used when every string of the document encodes in their encoding, Windows-1252. (Their AFM metrics
#: name the regular weight "medium": asking for "normal" makes matplotlib warn that it found only "medium".)
CORE_FONTS = PdfFonts({"pdf.use14corefonts": True, "font.sans-serif": ["Helvetica"], "font.monospace": ["Courier"]}, "medium")
#: Any other document: DejaVu (shipped with matplotlib) embedded as TrueType subsets, so nothing a user wrote
#: becomes "?". A character DejaVu has no glyph for (CJK, say) is drawn from matplotlib's Last Resort font,
#: which shows its Unicode block; the text still extracts as written.
UNICODE_FONTS = PdfFonts({"pdf.use14corefonts": False, "pdf.fonttype": 42, "font.sans-serif": ["DejaVu Sans"], "font.monospace": ["DejaVu Sans Mono"]}, "normal")
CORE_ENCODING = "cp1252"
#: The report's own few characters outside Windows-1252, spelled out whatever the fonts.
SPELLED_OUT = str.maketrans({"δ": "d", "→": "->", "≤": "<=", "≥": ">=", "−": "-", "…": "..."})


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def fonts_for(document: dict[str, Any]) -> PdfFonts:
    """The core fonts when every string of the document (all the PDF prints comes from them) encodes in theirs."""
    try:
        for text in _strings(document):
            core_text(text).encode(CORE_ENCODING)
    except UnicodeEncodeError:
        return UNICODE_FONTS
    return CORE_FONTS


def core_text(text: str) -> str:
    return text.translate(SPELLED_OUT)


class PageFlow:
    """Flows lines and images down A4 pages, starting a new page when the next item does not fit."""

    def __init__(self, fonts: PdfFonts = CORE_FONTS) -> None:
        self.fonts = fonts
        self.pages: list[Figure] = []
        self.figure: Figure | None = None
        self.y = 0.0  # inches from the bottom of the page
        self.images: Any = None  # the page's axes of images

    def _room(self, height: float) -> None:
        if self.figure is None or self.y - height < MARGIN_IN:
            self.figure = Figure(figsize=PAGE_IN, facecolor="white")
            self.pages.append(self.figure)
            self.y = PAGE_IN[1] - MARGIN_IN

    def line(self, text: str, style: str = "body", colour: str = "#202124", bold: bool = False) -> None:
        size, height, _, family = STYLES[style]
        self._room(height)
        x, y = MARGIN_IN / PAGE_IN[0], self.y / PAGE_IN[1]
        # parse_math=False: a "$" in a message must print as itself, never as mathtext.
        self.figure.text(x, y, core_text(text), fontsize=size, family=family, color=colour, weight="bold" if bold else self.fonts.regular, va="top", parse_math=False)
        self.y -= height

    def paragraph(self, text: str, style: str = "body", **kwargs: Any) -> None:
        for piece in textwrap.wrap(text, STYLES[style][2], subsequent_indent="  ") or [""]:
            self.line(piece, style, **kwargs)

    def heading(self, text: str) -> None:
        self._room(STYLES["heading"][1] + 4 * STYLES["body"][1])  # never a heading alone at a page's foot
        self.y -= 0.08
        self.line(text, "heading", bold=True)

    def table(self, header: list[str], rows: list[list[str]], widths: list[int]) -> None:
        """Fixed-width columns; a cell longer than its column wraps onto the row's next lines (never cut)."""
        for cells, bold in [(header, True), *((row, False) for row in rows)]:
            wrapped = [textwrap.wrap(str(cell), width) or [""] for cell, width in zip(cells, widths)]
            for i in range(max(len(lines) for lines in wrapped)):
                text = " ".join((lines[i] if i < len(lines) else "").ljust(width) for lines, width in zip(wrapped, widths))
                self.line(text.rstrip(), "mono", bold=bold)

    def image(self, pixels: np.ndarray) -> None:
        """A chart's pixels (opaque RGB: no soft mask beside each image) at the text width."""
        width = PAGE_IN[0] - 2 * MARGIN_IN
        height = width * pixels.shape[0] / pixels.shape[1]
        self._room(height + 0.1)
        if self.images is None or self.images.figure is not self.figure:
            # One invisible axes per page, in inches, holds its images: an axes per image costs more than the image.
            self.images = self.figure.add_axes((0, 0, 1, 1))
            self.images.set(xlim=(0, PAGE_IN[0]), ylim=(0, PAGE_IN[1]))
            self.images.set_axis_off()
        # "none": written to the PDF as they are, never resampled (images are not composited: see render_pdf).
        extent = (MARGIN_IN, MARGIN_IN + width, self.y - height, self.y)
        self.images.imshow(pixels, extent=extent, interpolation="none", aspect="auto")
        self.y -= height + 0.1


def _summary(flow: PageFlow, doc: dict[str, Any]) -> None:
    exp, run, verdict = doc.get("experiment") or {}, doc["run"], doc["verdict"]
    flow.line(title_of(doc), "title", bold=True)
    what = f" - {exp.get('kind')} on {exp.get('target_service')}" if exp else ""
    flow.paragraph(f"{run.get('dag_id') or ''} - run {run.get('run_id') or ''} - {doc.get('tier') or 'unknown'} tier{what}", colour="#5f6368")
    flow.paragraph(f"Verdict: {verdict['label']} - {verdict['reason']}", colour=VERDICT_COLOURS.get(verdict["value"], "#202124"), bold=True)
    if deploy := deploy_sentence(doc):
        flow.paragraph(f"{deploy}.")
    if doc.get("hypothesis"):
        flow.paragraph(f"Hypothesis: {doc['hypothesis']}")
    for label, key in (("Impact score", "impact_score"), ("System health score", "system_health_score")):
        flow.paragraph(f"{label}: {number(doc[key]['value'], 3)} ({doc[key]['basis']})")
    fault, scenario = doc.get("fault"), doc.get("scenario")
    if fault and scenario:
        flow.paragraph(f"Scenario {scenario['name']}: {steps_started(scenario)} steps started, from {clock(fault['start'])} to {clock(fault['end'])}.")
        flow.paragraph(f"Duration: {fault_duration(fault)}.")
    elif fault:
        obj = fault["object"]
        flow.paragraph(f"Fault: {obj['kind']} {obj['namespace']}/{obj['name']} from {clock(fault['start'])} to {clock(fault['end'])}.")
        flow.paragraph(f"Duration: {fault_duration(fault)}.")
    else:
        flow.paragraph("No fault was injected.")
    for b in doc["breaches"]:
        flow.paragraph(
            f"Breach: {b['message']}. Time to detect {seconds(b['time_to_detect_s'])}, time to remove {seconds(b['time_to_remove_s'])}, "
            f"removal confirmed after {seconds(b['time_to_removed_s'])}.",
            colour=VERDICT_COLOURS["broken"],
        )
    if scenario and scenario["breach"]:
        flow.paragraph(scenario["breach"]["sentence"], colour=VERDICT_COLOURS["broken"], bold=True)
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
            [s["stage"], STAGE_LABELS[s["status"]], seconds(s["deadline_s"]), seconds(s["time_to_recover_s"]), seconds(s["series_time_to_recover_s"]), ", ".join(s["thresholds"])]
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
        when = f" {clock(c['at'])}" if c["at"] else ""
        flow.paragraph(f"{c['check']}: {DECISION_LABELS[c['decision']].upper()}{when} - {c['detail']}", "mono", colour=DECISION_COLOURS[c["decision"]])


def _timeline(flow: PageFlow, doc: dict[str, Any]) -> None:
    flow.heading("Timeline")
    rows = [[clock(e["at"]), offset(e["offset_s"]), e["label"], e["detail"]] for e in doc["timeline"]]
    flow.table(["when", "from injection", "event", "detail"], rows, [23, 11, 24, 48])


def _scenario(flow: PageFlow, doc: dict[str, Any]) -> None:
    """The scenario's steps: what each is, when it was planned, started, ended and removed, and its impact."""
    scenario = doc.get("scenario")
    if not scenario:
        return
    flow.heading("Scenario steps")
    since = f" ({clock(scenario['start'])})" if scenario["start"] else ""
    flow.paragraph(f"{len(scenario['steps'])} steps of scenario {scenario['name']}, in planned start order; times from the scenario's start{since}.")
    rows = [[s["step"], s["kind"] or "", ", ".join(s["actions"]), s["target_service"] or "", (s["object"] or {}).get("name", "-")] for s in scenario["steps"]]
    flow.table(["step", "kind", "actions", "target", "object"], rows, [16, 12, 20, 20, 34])
    flow.line("")
    rows = []
    for s in scenario["steps"]:
        if s["started"] is None:
            rows.append([s["step"], planned_window(s), "not started", "–", "–", "–", s["not_started"] or ""])
        else:
            rows.append([s["step"], planned_window(s), started_when(s), moment_of(s["ended"]), moment_of(s["removal_requested"]), seconds(s["stood_s"]), STEP_ENDINGS[s["end"]["by"]]])
    flow.table(["step", "planned", "started", "ended", "removal req.", "stood", "until"], rows, [16, 22, 21, 10, 12, 9, 24])
    flow.line("")
    flow.paragraph("Impact while each step stood: the worst reading from its creation to its end, against the run's baseline.")
    rows = []
    for s in scenario["steps"]:
        if s["started"] is None:
            rows.append([s["step"], "not started: no impact"])
        for name, i in s["impact"].items():
            rows.append([s["step"], name, number(i["baseline"]), number(i["bound"]), number(i["worst"]), change(i["change"]), share(i["headroom_used"]),
                         f"{i['samples_beyond_bound']}/{i['samples']}"])
    flow.table(["step", "metric", "baseline", "bound", "worst", "change", "headroom", "beyond"], rows, [16, 22, 9, 9, 9, 10, 8, 9])


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


def _metrics(flow: PageFlow, doc: dict[str, Any], plots: dict[str, Chart]) -> None:
    flow.heading("Metrics")
    if not doc["series"]["samples"]:
        flow.paragraph(no_series(doc), colour="#5f6368")
        return
    for metric in doc["metrics"]:
        if metric["name"] in plots:
            flow.image(plots[metric["name"]].pixels)
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


def layout_pages(document: dict[str, Any], plots: dict[str, Chart], fonts: PdfFonts = CORE_FONTS) -> list[Figure]:
    """The report's A4 pages, in order, for `fonts` (the weight of their regular text differs)."""
    flow = PageFlow(fonts)
    _summary(flow, document)
    _approvals(flow, document)
    _timeline(flow, document)
    _scenario(flow, document)
    _analysis(flow, document)
    _findings(flow, document)
    _metrics(flow, document, plots)
    return flow.pages


def render_pdf(document: dict[str, Any], plots: dict[str, Chart]) -> bytes:
    buffer = io.BytesIO()
    created = dt.datetime.fromisoformat(document["generated_at"])
    metadata = {
        "Title": title_of(document),
        "Subject": f"verdict: {document['verdict']['label']}",
        "Creator": "airflow-chaos-engineering report",
        "CreationDate": created,
    }
    fonts = fonts_for(document)
    # Each image written as it is: a page's images composited into one would be resampled.
    with matplotlib.rc_context({**fonts.rc, "image.composite_image": False}), PdfPages(buffer, metadata=metadata) as pdf:
        for page in layout_pages(document, plots, fonts):
            pdf.savefig(page)
    return buffer.getvalue()
