"""One chart per threshold metric (the series, its baseline and bound, the fault window, the breach and each
recovery stage; for a scenario, each step's planned and actual window in a strip below), drawn once: the same
pixels become the HTML page's PNG and the PDF's image."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from chaos_engineering.report.analysis import moment, series_times

SIZE_IN, DPI = (10.0, 3.2), 100
#: Buckets a long series is drawn as: one per pixel column of the figure (the plot area is narrower),
#: so nothing is drawn that the image could not show.
COLUMNS = round(SIZE_IN[0] * DPI)
#: Legend labels are wrapped at this many characters, so the plot area keeps most of the width.
LEGEND_CHARS = 34
LEGEND_PAD_PX = 6
LEGEND_STYLE = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0), "fontsize": 7, "frameon": False}
STAGE_COLOURS = {"immediate": "#1e8e3e", "short_term": "#188038", "business": "#0d652d"}
SECONDS_PER_DAY = 86400.0
#: Breach and recovery-stage lines lie over the series and the baseline and bound lines (z-order 2).
MARK_ZORDER = 2.1
BAND_ZORDER = 1.6
#: A scenario's steps: one lane each in a strip under the plot, in these colours (none of them the series' blue,
#: the fault's amber, the breach's red or the recovery stages' greens); the plot keeps its own height.
STEP_COLOURS = ("#8430ce", "#129eaf", "#b06000", "#d01884", "#3c4043", "#7b5e57")
LANE_IN, STRIP_PAD_IN, STRIP_GAP_IN = 0.22, 0.08, 0.08
#: Each step's start is drawn across the plot too, under everything else (the fault window's z-order is 1).
STEP_LINE_ZORDER = 0.9
STRIP_LEGEND = ("planned", "stood")


@dataclass(frozen=True)
class Chart:
    """A chart drawn once: `png` for the HTML page, `pixels` (height x width x RGB) for the PDF page."""

    png: bytes
    pixels: np.ndarray


def _days(unix: np.ndarray | float) -> np.ndarray | float:
    """Matplotlib's date numbers (days since its default 1970 epoch) from unix seconds."""
    return unix / SECONDS_PER_DAY


def downsample(times: np.ndarray, values: np.ndarray, columns: int = COLUMNS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bucket start, mean, min, max) of `columns` equal time buckets, so a one-sample spike survives as its
    bucket's min or max; a bucket without a finite sample is NaN (drawn as a gap). The samples themselves
    when there are no more than `columns`."""
    if times.size <= columns:
        return times, values, values, values
    starts = times[0] + (times[-1] - times[0]) / columns * np.arange(columns)
    bucket = np.searchsorted(starts, times, side="right") - 1  # the same edges decide, here and for a reader
    stats = pd.Series(values).groupby(bucket).agg(["mean", "min", "max"]).reindex(range(columns))
    return starts, stats["mean"].to_numpy(), stats["min"].to_numpy(), stats["max"].to_numpy()


def _wrap(label: str) -> str:
    return "\n".join(textwrap.wrap(label, LEGEND_CHARS, subsequent_indent="  ")) or label


class MetricCharts:
    """The charts of one run, drawn on one figure. What they share (the time axis, the fault window, the breach
    and recovery-stage marks) is drawn once and kept as pixels; each chart restores those pixels and draws only
    its own artists (y axis, series, baseline, bound, breach marker, title, legend) and the marks that lie over
    the series, in the z-order a full draw would use. Text drawing is most of a chart's cost: the shared time
    axis is a third of its text.

    Every chart has the same plot area, narrowed once so the widest legend of the run ends inside the image."""

    def __init__(self, document: dict[str, Any], times: np.ndarray, samples: dict[str, tuple[np.ndarray, ...]]) -> None:
        self.document = document
        self.samples = samples  # metric name -> downsample()'s (x, mean, low, high)
        self.steps = (document.get("scenario") or {}).get("steps") or []
        strip_in = len(self.steps) * LANE_IN + STRIP_PAD_IN + STRIP_GAP_IN if self.steps else 0.0
        self.figure = Figure(figsize=(SIZE_IN[0], SIZE_IN[1] + strip_in), dpi=DPI, facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        # Fixed margins (no layout engine: it costs a third of a chart's time); the right one is set from the
        # legends' measured width.
        self.strip = None  # a scenario's lanes of steps, under the plot, on the plot's time axis
        if self.steps:
            self.axes = axes = self._with_strip(strip_in)
        else:
            self.figure.subplots_adjust(left=0.07, right=0.79, top=0.9, bottom=0.17)
            self.axes = axes = self.figure.add_subplot()
        self.fault, self.overlay = self._marks(times)
        # The x range: the series and every mark, with matplotlib's margins; then fixed, as every chart shares it.
        axes.update_datalim(np.column_stack([_days(times[[0, -1]]), [0.0, 0.0]]), updatey=False)
        axes.autoscale_view(scaley=False)
        axes.set_xlim(axes.get_xlim())
        locator = AutoDateLocator(tz="UTC", maxticks=10)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz="UTC"))
        # Plain y labels: no offset text above the axis, so the title needs no placing around it (y=1).
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
        (self.strip or axes).set_xlabel("UTC", fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        self.title = axes.set_title("", loc="left", fontsize=10, y=1.0)
        self._fit_legends()
        if self.strip is not None:
            self._draw_steps()
        self.own: list[Artist] = []
        self.background = self._background()

    def _with_strip(self, strip_in: float) -> Any:
        """The plot (as tall as a single experiment's) over a strip of one lane per step; the time axis's labels
        go under the strip."""
        height = self.figure.get_figheight()
        plot_in = SIZE_IN[1] * (0.9 - 0.17)
        lanes_in = strip_in - STRIP_GAP_IN
        self.figure.subplots_adjust(
            left=0.07, right=0.79, top=1 - 0.1 * SIZE_IN[1] / height, bottom=0.17 * SIZE_IN[1] / height,
            hspace=STRIP_GAP_IN / ((plot_in + lanes_in) / 2),
        )
        grid = self.figure.add_gridspec(2, 1, height_ratios=[plot_in, lanes_in])
        axes = self.figure.add_subplot(grid[0])
        self.strip = strip = self.figure.add_subplot(grid[1], sharex=axes)
        axes.tick_params(labelbottom=False)
        axes.xaxis.offsetText.set_visible(False)
        strip.tick_params(labelsize=8)
        strip.set_yticks([])
        strip.set_ylim(len(self.steps) - 0.5, -0.5)  # the first step on top
        strip.grid(axis="x", alpha=0.3)
        return axes

    def _step_windows(self) -> list[tuple[str, str, tuple[float, float] | None, tuple[float, float] | None]]:
        """(name, colour, planned window, actual window) of each step, in date numbers; a window not known is None."""
        scenario = self.document["scenario"]
        start = moment(scenario["start"]) if scenario["start"] else None
        right = self.axes.get_xlim()[1] * SECONDS_PER_DAY
        windows = []
        for i, step in enumerate(self.steps):
            planned = step["planned"]
            due = None
            if start is not None and planned["start_s"] is not None:
                end_s = planned["end_s"] if planned["end_s"] is not None else planned["start_s"]
                due = (_days(start + planned["start_s"]), _days(start + end_s))
            stood = None
            if step["started"] is not None:
                end = step["end"]["at"] if step["end"] else None
                stood = (_days(moment(step["started"]["at"])), _days(moment(end) if end else right))
            windows.append((step["step"], STEP_COLOURS[i % len(STEP_COLOURS)], due, stood))
        return windows

    def _draw_steps(self) -> None:
        """Each step's lane: its planned window outlined, the window it stood filled, its name beside them (after
        them, or before them when that would leave the strip); a line across the plot where it started."""
        strip, renderer = self.strip, self.canvas.get_renderer()
        for lane, (name, colour, due, stood) in enumerate(self._step_windows()):
            if due is not None:
                strip.barh(lane, max(due[1] - due[0], 0.0), left=due[0], height=0.74, fill=False, edgecolor=colour, linestyle=(0, (3, 2)), linewidth=0.9)
            if stood is not None:
                strip.barh(lane, max(stood[1] - stood[0], 0.0), left=stood[0], height=0.42, color=colour, linewidth=0)
                self.axes.axvline(stood[0], color=colour, linestyle=(0, (4, 3)), linewidth=0.9, alpha=0.8, zorder=STEP_LINE_ZORDER)
            edges = [x for window in (due, stood) if window for x in window]
            if not edges:
                continue
            label = name if stood is not None else f"{name} (not started)"
            low, high = strip.get_xlim()
            pad = 4 * (high - low) / strip.bbox.width  # 4 pixels
            text = strip.text(min(max(edges), high) + pad, lane, label, va="center", ha="left", fontsize=7, color=colour, clip_on=False)
            if text.get_window_extent(renderer).x1 > strip.bbox.x1:
                text.set(x=min(max(min(edges), low), high) - pad, ha="right")
                if text.get_window_extent(renderer).x0 < strip.bbox.x0:  # the step spans the whole time axis: over its bars
                    text.set(x=low + pad, ha="left", bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1})
        for breach in self.document["breaches"]:
            strip.axvline(_days(moment(breach["at"])), color="#d93025", linestyle=":", linewidth=1.2)
        handles = [Patch(fill=False, edgecolor="#5f6368", linestyle=(0, (3, 2))), Patch(color="#5f6368")]
        strip.legend(handles, STRIP_LEGEND, **LEGEND_STYLE)

    def _marks(self, times: np.ndarray) -> tuple[Artist | None, list[Artist]]:
        """The fault window (under the series) and the breach and recovery-stage marks (over it)."""
        axes, document = self.axes, self.document
        fault, overlay = None, []
        if document.get("fault"):
            end = moment(document["fault"]["end"]) if document["fault"]["end"] else times[-1]
            fault = axes.axvspan(_days(moment(document["fault"]["start"])), _days(end), color="#f9ab00", alpha=0.18, label="fault")
        for breach in document["breaches"]:
            overlay.append(axes.axvline(_days(moment(breach["at"])), color="#d93025", linestyle=":", linewidth=1.2, zorder=MARK_ZORDER))
        for stage in document["recovery"]:
            if stage["at"]:
                colour = STAGE_COLOURS.get(stage["stage"], "#188038") if stage["met_deadline"] else "#d93025"
                at = _days(moment(stage["at"]))
                overlay.append(axes.axvline(at, color=colour, linestyle="-.", linewidth=1, zorder=MARK_ZORDER))
                # Labelled at the foot of the plot: the top is where breaches and spikes are.
                overlay.append(axes.annotate(
                    stage["stage"], (at, 0.02), xycoords=("data", "axes fraction"), rotation=90, va="bottom", ha="right",
                    fontsize=7, color=colour, bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1}, zorder=4,
                ))
        return fault, overlay

    def _entries(self, metric: dict[str, Any]) -> list[tuple[Callable[[], Artist], str]]:
        """The metric's own data artists, each as what adds it to the axes and its legend label."""
        axes = self.axes
        x, mean, low, high = self.samples[metric["name"]]
        entries: list[tuple[Callable[[], Artist], str]] = []
        if low is not mean:  # downsampled: each pixel column's min-max band
            # Over the grid (z-order 1.5), as the shared background draws it: at z-order 1 a full draw would put the
            # x grid over the band and the background under it, and the two differ where the band crosses a grid line.
            band = {"color": "#1a73e8", "alpha": 0.2, "linewidth": 0, "zorder": BAND_ZORDER}
            entries.append((lambda: axes.fill_between(_days(x), low, high, **band), "min-max per pixel column"))
        entries.append((lambda: axes.plot(_days(x), mean, color="#1a73e8", linewidth=1.0)[0], metric["name"]))
        unit = f" {metric['unit']}" if metric["unit"] else ""
        if metric["baseline"] is not None:
            entries.append((lambda: axes.axhline(metric["baseline"], color="#5f6368", linestyle="--", linewidth=1), f"baseline {metric['baseline']:.4g}{unit}"))
        if metric["bound"] is not None:
            label = f"bound {metric['bound']:.4g}{unit} ({metric['rule']} {metric['limit']:g})"
            entries.append((lambda: axes.axhline(metric["bound"], color="#d93025", linewidth=1.2), label))
        if self.fault is not None:
            entries.append((lambda: self.fault, "fault"))
        for breach in self.document["breaches"]:
            if breach["threshold"] == metric["name"] and breach["value"] is not None:
                at, value = _days(moment(breach["at"])), breach["value"]
                marker = {"marker": "X", "color": "#d93025", "markersize": 9, "linestyle": "none", "zorder": 6}
                entries.append((lambda: axes.plot([at], [value], **marker)[0], "breach"))
        return entries

    def _fit_legends(self) -> None:
        """Narrows the plot area so the widest legend of the run (anchored at its right edge) ends inside the figure.
        A legend is as wide as its longest label (every handle is as wide), so one legend of every label is measured."""
        labels = {_wrap(label) for metric in self.document["metrics"] if metric["name"] in self.samples for _, label in self._entries(metric)}
        labels |= set(STRIP_LEGEND) if self.strip is not None else set()
        legend = self.axes.legend([Line2D([], [])] * len(labels), sorted(labels), **LEGEND_STYLE)
        width = legend.get_window_extent(self.canvas.get_renderer()).width + LEGEND_PAD_PX
        legend.remove()
        left = self.axes.get_position().x0
        self.figure.subplots_adjust(right=max(left + 0.3, 1.0 - width / self.figure.bbox.width))

    def _background(self) -> Any:
        """Draws what every chart shares and keeps its pixels."""
        hidden = [self.axes.yaxis, *self.axes.spines.values(), *self.overlay]
        for artist in hidden:
            artist.set_visible(False)
        self.canvas.draw()
        for artist in hidden:
            artist.set_visible(True)
        return self.canvas.copy_from_bbox(self.figure.bbox)

    def chart(self, metric: dict[str, Any]) -> Chart:
        """The metric's chart: the shared pixels with its own artists drawn over them."""
        axes = self.axes
        for artist in self.own:
            artist.remove()
        self.canvas.restore_region(self.background)
        axes.ignore_existing_data_limits = True  # the y range is this metric's alone
        drawn = [(add(), label) for add, label in self._entries(metric)]
        axes.autoscale_view(scalex=False)
        self.title.set_text(metric["name"] + (f" ({metric['unit']})" if metric["unit"] else ""))
        legend = axes.legend([artist for artist, _ in drawn], [_wrap(label) for _, label in drawn], **LEGEND_STYLE)
        self.own = [artist for artist, _ in drawn if artist is not self.fault] + [legend]
        # Figure.draw's order (by z-order, ties in the order added): the y axis and its grid under the series,
        # the spines over it, then the marks added before the series, the breach marker, the title and legend.
        layers = [axes.yaxis, *(artist for artist in self.own if artist is not legend), *axes.spines.values(), *self.overlay, self.title, legend]
        for artist in sorted(layers, key=lambda artist: artist.get_zorder()):
            axes.draw_artist(artist)
        rgba = np.asarray(self.canvas.buffer_rgba())
        buffer = io.BytesIO()
        # zlib level 1: a tenth of the default's encoding time, a slightly larger file.
        imsave(buffer, rgba, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
        return Chart(png=buffer.getvalue(), pixels=rgba[..., :3].copy())


def metric_plots(document: dict[str, Any], series: pd.DataFrame) -> dict[str, Chart]:
    """A chart per metric that has at least one finite sample, in the document's metric order."""
    if not len(series):
        return {}
    series = series.sort_index()
    times = series_times(series)
    samples = {}
    for metric in document["metrics"]:
        if metric["name"] in series.columns:
            values = series[metric["name"]].to_numpy(dtype=float)
            if np.isfinite(values).any():
                samples[metric["name"]] = downsample(times, values)
    if not samples:
        return {}
    charts = MetricCharts(document, times, samples)
    return {metric["name"]: charts.chart(metric) for metric in document["metrics"] if metric["name"] in samples}
