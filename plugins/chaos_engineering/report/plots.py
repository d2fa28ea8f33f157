"""One PNG per threshold metric: the series, its baseline and bound, the fault window, the breach and each recovery stage."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from chaos_engineering.report.analysis import moment, series_times

#: Points drawn per plot. Longer series are drawn as per-bucket mean with a min-max band, so a
#: one-sample spike stays visible; the statistics always use every sample.
MAX_POINTS = 1500
SIZE_IN, DPI = (10.0, 3.2), 100
STAGE_COLOURS = {"immediate": "#1e8e3e", "short_term": "#188038", "business": "#0d652d"}
SECONDS_PER_DAY = 86400.0


def _days(unix: np.ndarray | float) -> np.ndarray | float:
    """Matplotlib's date numbers (days since its default 1970 epoch) from unix seconds."""
    return unix / SECONDS_PER_DAY


def downsample(times: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, low, high) per bucket of consecutive samples; the samples themselves when few."""
    if times.size <= max_points:
        return times, values, values, values
    size = -(-times.size // max_points)
    buckets = np.concatenate((values, np.full(-times.size % size, np.nan))).reshape(-1, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing bucket is NaN: drawn as a gap
        return times[::size], np.nanmean(buckets, axis=1), np.nanmin(buckets, axis=1), np.nanmax(buckets, axis=1)


def metric_plot(metric: dict[str, Any], times: np.ndarray, values: np.ndarray, document: dict[str, Any]) -> bytes:
    figure = Figure(figsize=SIZE_IN, dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    # Fixed margins (room for the legend on the right): a layout engine costs a third of the plot's time.
    figure.subplots_adjust(left=0.07, right=0.79, top=0.9, bottom=0.17)
    axes = figure.add_subplot()
    x, mean, low, high = downsample(times, values)
    if x is not times:
        axes.fill_between(_days(x), low, high, color="#1a73e8", alpha=0.2, linewidth=0, label="min-max per bucket")
    axes.plot(_days(x), mean, color="#1a73e8", linewidth=1.0, label=metric["name"])
    unit = f" {metric['unit']}" if metric["unit"] else ""
    if metric["baseline"] is not None:
        axes.axhline(metric["baseline"], color="#5f6368", linestyle="--", linewidth=1, label=f"baseline {metric['baseline']:.4g}{unit}")
    if metric["bound"] is not None:
        axes.axhline(metric["bound"], color="#d93025", linewidth=1.2, label=f"bound {metric['bound']:.4g}{unit} ({metric['rule']} {metric['limit']:g})")
    fault = document.get("fault")
    if fault:
        end = moment(fault["end"]) if fault["end"] else times[-1]
        axes.axvspan(_days(moment(fault["start"])), _days(end), color="#f9ab00", alpha=0.18, label="fault")
    for breach in document["breaches"]:
        at = _days(moment(breach["at"]))
        axes.axvline(at, color="#d93025", linestyle=":", linewidth=1.2)
        if breach["threshold"] == metric["name"] and breach["value"] is not None:
            axes.plot([at], [breach["value"]], marker="X", color="#d93025", markersize=9, linestyle="none", label="breach", zorder=6)
    for stage in document["recovery"]:
        if stage["at"]:
            colour = STAGE_COLOURS.get(stage["stage"], "#188038") if stage["met_deadline"] else "#d93025"
            axes.axvline(_days(moment(stage["at"])), color=colour, linestyle="-.", linewidth=1)
            # Labelled at the foot of the plot: the top is where breaches and spikes are.
            axes.annotate(
                stage["stage"],
                (_days(moment(stage["at"])), 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="bottom",
                ha="right",
                fontsize=7,
                color=colour,
                bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1},
                zorder=4,
            )
    axes.set_title(metric["name"] + (f" ({metric['unit']})" if metric["unit"] else ""), loc="left", fontsize=10)
    locator = AutoDateLocator(tz="UTC", maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz="UTC"))
    axes.set_xlabel("UTC", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def metric_plots(document: dict[str, Any], series: pd.DataFrame) -> dict[str, bytes]:
    """PNG bytes per metric that has at least one finite sample, in the document's metric order."""
    if not len(series):
        return {}
    series = series.sort_index()
    times = series_times(series)
    plots = {}
    for metric in document["metrics"]:
        if metric["name"] not in series.columns:
            continue
        values = series[metric["name"]].to_numpy(dtype=float)
        if np.isfinite(values).any():
            plots[metric["name"]] = metric_plot(metric, times, values, document)
    return plots

