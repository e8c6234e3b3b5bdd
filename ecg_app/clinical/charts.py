"""Every Plotly figure the app shows, built from plain data, so the UI only places them.

Classes always appear in `CLASSES` order with their `COLORS`, so a class looks the same in every chart,
in the PDF and in the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ecg_app.clinical.measurements import RhythmStrip
from ecg_app.labels import CLASSES, COLORS, DISPLAY_NAMES

FONT = dict(family="Inter, 'Segoe UI', 'Helvetica Neue', Arial, sans-serif", size=13, color="#1f2d3d")
GRID = "#e5e9f0"
ACCENT = "#1f6f8b"
# ECG paper: large squares 0.2 s x 0.5 mV, small ones 0.04 s x 0.1 mV (25 mm/s, 10 mm/mV).
PAPER_MAJOR, PAPER_MINOR = "#f0b4b4", "#fae3e3"


def _style(fig: go.Figure, height: int, title: str | None = None) -> go.Figure:
    """One clinical look for all figures: white, thin grid, small margins, no Plotly logo clutter."""
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        height=height,
        margin=dict(l=10, r=20, t=50 if title else 20, b=10),
        paper_bgcolor="white",
        plot_bgcolor="white",
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)) if title else None,
    )
    fig.update_xaxes(gridcolor=GRID, zerolinecolor=GRID)
    fig.update_yaxes(gridcolor=GRID, zerolinecolor=GRID)
    return fig


def probability_figure(probabilities: Mapping[str, float], title: str | None = None) -> go.Figure:
    """Horizontal bars of the five class probabilities, top class first in reading order."""
    values = [float(probabilities.get(label, 0.0)) for label in CLASSES]
    names = [DISPLAY_NAMES[label] for label in CLASSES]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker=dict(color=[COLORS[label] for label in CLASSES], line=dict(width=0)),
            text=[f"{v:.1%}" for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, 1.12], tickformat=".0%", title=None, dtick=0.25)
    # First class at the top: plotly draws categories bottom-up, so reverse the axis.
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=names, title=None)
    fig.update_layout(bargap=0.35, showlegend=False)
    return _style(fig, height=260, title=title)


def confusion_matrix_figure(
    matrix: Sequence[Sequence[float]],
    classes: Sequence[str] = CLASSES,
    normalize: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Heatmap, rows = true class, columns = predicted; `normalize` divides each row by its total."""
    counts = np.asarray(matrix, dtype=float)
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        text = [[f"{v:.0%}" for v in row] for row in values]
        colorbar = dict(title="Row share", tickformat=".0%")
        hover = "True %{y}<br>Predicted %{x}<br>%{z:.1%} of the row<extra></extra>"
    else:
        values = counts
        text = [[f"{int(v)}" for v in row] for row in values]
        colorbar = dict(title="Images")
        hover = "True %{y}<br>Predicted %{x}<br>%{z:.0f} images<extra></extra>"
    names = [str(c) for c in classes]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=14),
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalize else None,
            colorbar=colorbar,
            hovertemplate=hover,
        )
    )
    fig.update_xaxes(title="Predicted class", side="bottom", showgrid=False)
    fig.update_yaxes(title="True class", autorange="reversed", showgrid=False)
    title = title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix (counts)")
    return _style(fig, height=420, title=title)


def _diagonal(name: str) -> go.Scatter:
    """The y = x reference line (chance for ROC, perfect calibration for reliability)."""
    return go.Scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        line=dict(color="#b0b7c3", dash="dash", width=1),
        name=name,
        hoverinfo="skip",
    )


def roc_figure(roc: Mapping[str, Mapping]) -> go.Figure:
    """One-vs-rest ROC curve per class with its AUC in the legend, and the chance diagonal."""
    fig = go.Figure()
    fig.add_trace(_diagonal("Chance"))
    for label in [c for c in CLASSES if c in roc] + [c for c in roc if c not in CLASSES]:
        curve = roc[label] or {}
        fpr, tpr = curve.get("fpr") or [], curve.get("tpr") or []
        if not fpr or len(fpr) != len(tpr):
            continue
        auc = curve.get("auc")
        name = f"{label} (AUC {auc:.3f})" if isinstance(auc, int | float) else str(label)
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=name,
                line=dict(color=COLORS.get(label, ACCENT), width=2, shape="hv"),
                hovertemplate=f"{label}<br>FPR %{{x:.2f}}<br>TPR %{{y:.2f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title="False positive rate", range=[0, 1], constrain="domain")
    fig.update_yaxes(title="True positive rate", range=[0, 1.02], scaleanchor="x", scaleratio=1)
    fig.update_layout(
        legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom", bgcolor="rgba(255,255,255,0.8)")
    )
    return _style(fig, height=420, title="ROC curves (one class vs rest)")


def training_curves_figure(history: Mapping[str, Sequence[float]]) -> go.Figure:
    """Loss, and accuracy / macro-F1, per epoch: training vs validation, side by side."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Loss", "Accuracy and macro-F1"), horizontal_spacing=0.1
    )
    series = (
        ("loss", 1, "Training", ACCENT, "solid"),
        ("val_loss", 1, "Validation", "#e67e22", "dash"),
        ("accuracy", 2, "Training", ACCENT, "solid"),
        ("val_accuracy", 2, "Validation", "#e67e22", "dash"),
        ("val_macro_f1", 2, "Validation macro-F1", "#27ae60", "dot"),
    )
    shown: set[str] = set()
    for key, col, name, color, dash in series:
        values = list(history.get(key) or [])
        if not values:
            continue
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)),
                y=values,
                mode="lines",
                name=name,
                line=dict(color=color, dash=dash, width=2),
                legendgroup=name,
                showlegend=name not in shown,
            ),
            row=1,
            col=col,
        )
        shown.add(name)
    fig.update_xaxes(title="Epoch")
    fig.update_layout(legend=dict(orientation="h", x=0, y=-0.25))
    return _style(fig, height=340, title="Training curves")


def reliability_figure(reliability: Sequence[Mapping] | Mapping) -> go.Figure | None:
    """Reliability diagram: a bar per confidence bin, as high as the bin's accuracy and labelled with
    how many images it holds, or None when the data is not usable.

    Bars, not a line: most images sit in the top bin, and a line through bins of one or two images
    reads as a trend that is not there. Takes the evaluation module's list of bins ({"lower",
    "upper", "confidence", "accuracy", "count"}; empty bins have None) or a mapping of per-bin lists;
    anything else means no chart, never a dashboard error.
    """
    if isinstance(reliability, Sequence) and not isinstance(reliability, str):
        bins = [b for b in reliability if isinstance(b, Mapping)]
        conf = [b.get("confidence") for b in bins]
        acc = [b.get("accuracy") for b in bins]
        counts = [b.get("count") for b in bins]
        edges = [(b.get("lower"), b.get("upper")) for b in bins]
    else:
        conf = _first(reliability, ("confidence", "mean_confidence", "bin_confidence", "avg_confidence"))
        acc = _first(reliability, ("accuracy", "bin_accuracy", "avg_accuracy", "fraction_correct"))
        counts = _first(reliability, ("count", "counts", "bin_count", "bin_counts", "n"))
        edges = None
    if not conf or not acc or len(conf) != len(acc):
        return None
    sizes = counts if counts and len(counts) == len(conf) else [None] * len(conf)
    spans = edges or [(None, None)] * len(conf)
    points = [
        (c, a, n, span)
        for c, a, n, span in zip(conf, acc, sizes, spans, strict=True)
        if c is not None and a is not None
    ]
    if not points:
        return None
    # Each bar spans its bin when the bins' edges are known, else a narrow bar at the bin's confidence.
    centres, widths = [], []
    for confidence, _, _, (lower, upper) in points:
        known = isinstance(lower, int | float) and isinstance(upper, int | float)
        centres.append((lower + upper) / 2 if known else confidence)
        widths.append(0.9 * (upper - lower) if known else 0.04)
    fig = go.Figure()
    fig.add_trace(_diagonal("Perfect calibration"))
    fig.add_trace(
        go.Bar(
            x=centres,
            y=[p[1] for p in points],
            width=widths,
            name="Accuracy in bin",
            marker=dict(color=ACCENT, opacity=0.75),
            text=[f"n={p[2]}" if p[2] is not None else "" for p in points],
            textposition="outside",
            customdata=[[p[0], p[2]] for p in points],
            hovertemplate="Mean confidence %{customdata[0]:.2f}<br>Accuracy %{y:.2f}<br>"
            "%{customdata[1]} images<extra></extra>",
        )
    )
    fig.update_xaxes(title="Confidence (top probability)", range=[0, 1.02])
    fig.update_yaxes(title="Accuracy in bin", range=[0, 1.15])
    fig.update_layout(legend=dict(x=0.02, y=0.98))
    return _style(fig, height=380, title="Reliability (calibration)")


def _first(mapping: Mapping, keys: Sequence[str]) -> list | None:
    for key in keys:
        value = mapping.get(key) if isinstance(mapping, Mapping) else None
        if isinstance(value, list | tuple) and value:
            return list(value)
    return None


def rhythm_strip_figure(strip: RhythmStrip) -> go.Figure:
    """The digitised rhythm strip on ECG paper with its detected beats marked at the trace, so a reader
    can check what the measurements were read from against the printout."""
    seconds, millivolts = np.asarray(strip.seconds, float), np.asarray(strip.millivolts, float)
    beats = np.asarray(strip.beats, float)
    fig = go.Figure(
        go.Scatter(
            x=seconds,
            y=millivolts,
            mode="lines",
            name="Rhythm strip",
            line=dict(color="#1f2d3d", width=1.2),
            hovertemplate="%{x:.2f} s, %{y:.2f} mV<extra></extra>",
        )
    )
    if beats.size and seconds.size:
        fig.add_trace(
            go.Scatter(
                x=beats,
                y=np.interp(beats, seconds, millivolts),
                mode="markers",
                name="Detected beats",
                marker=dict(color=ACCENT, symbol="triangle-down", size=9),
                hovertemplate="Beat at %{x:.2f} s<extra></extra>",
            )
        )
    fig.update_layout(showlegend=False)
    _style(fig, height=260, title="Rhythm strip (detected beats marked)")
    paper = dict(showgrid=True, zeroline=False, gridcolor=PAPER_MAJOR)
    fig.update_xaxes(
        title="time (s)",
        dtick=0.2,
        ticklabelstep=5,
        minor=dict(dtick=0.04, showgrid=True, gridcolor=PAPER_MINOR),
        **paper,
    )
    fig.update_yaxes(
        title="mV", dtick=0.5, minor=dict(dtick=0.1, showgrid=True, gridcolor=PAPER_MINOR), **paper
    )
    return fig
