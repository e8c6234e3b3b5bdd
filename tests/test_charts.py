"""Plotly figures: fixed class order and colours, correct normalisation, tolerant of partial metrics."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from ecg_app.clinical import charts
from ecg_app.clinical.measurements import RhythmStrip
from ecg_app.labels import CLASSES, COLORS, DISPLAY_NAMES
from ecg_app.ui import performance_tab
from tests.conftest import MODEL_DIR

PROBS = {"Normal": 0.1, "MI": 0.6, "NonECG": 0.05, "AHB": 0.15, "HMI": 0.1}  # deliberately unordered
MATRIX = [[5, 1, 0, 0, 0], [1, 12, 3, 1, 0], [0, 2, 40, 5, 0], [0, 3, 2, 23, 0], [0, 0, 0, 0, 0]]


def test_probability_bars_keep_class_order_and_colours():
    fig = charts.probability_figure(PROBS)
    bar = fig.data[0]
    assert isinstance(fig, go.Figure) and bar.type == "bar" and bar.orientation == "h"
    assert list(bar.y) == [DISPLAY_NAMES[c] for c in CLASSES]
    assert list(bar.x) == [PROBS[c] for c in CLASSES]
    assert list(bar.marker.color) == [COLORS[c] for c in CLASSES]
    assert list(bar.text)[0] == "60.0%"
    assert fig.layout.yaxis.autorange == "reversed"  # first class on top


def test_probability_bars_fill_missing_classes_with_zero():
    bar = charts.probability_figure({"MI": 1.0}).data[0]
    assert list(bar.x) == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_confusion_matrix_counts_and_row_normalised():
    counts = charts.confusion_matrix_figure(MATRIX).data[0]
    assert counts.type == "heatmap"
    assert np.array(counts.z).tolist() == MATRIX
    assert list(counts.x) == list(CLASSES) and list(counts.y) == list(CLASSES)

    normalised = np.array(charts.confusion_matrix_figure(MATRIX, normalize=True).data[0].z)
    assert normalised[:4].sum(axis=1) == pytest.approx([1, 1, 1, 1])
    assert normalised[4].tolist() == [0, 0, 0, 0, 0]  # an empty row stays 0, no division by zero
    assert normalised[0, 0] == pytest.approx(5 / 6)


def test_roc_curves_one_per_class_with_auc_and_colour():
    roc = {c: {"fpr": [0, 0.2, 1], "tpr": [0, 0.8, 1], "auc": 0.8} for c in CLASSES}
    roc["MI"] = {"fpr": [], "tpr": []}  # unusable curve is skipped
    fig = charts.roc_figure(roc)
    curves = [trace for trace in fig.data if trace.name != "Chance"]
    assert [trace.name for trace in curves] == [f"{c} (AUC 0.800)" for c in CLASSES[1:]]
    assert curves[0].line.color == COLORS["HMI"]


def test_training_curves_show_available_series():
    fig = charts.training_curves_figure({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]})
    assert len(fig.data) == 3
    assert list(fig.data[0].x) == [1, 2]


def test_reliability_figure_reads_known_key_names_and_gives_none_otherwise():
    fig = charts.reliability_figure({"confidence": [0.3, 0.9], "accuracy": [0.2, 0.95], "count": [4, 40]})
    assert fig is not None and list(fig.data[1].x) == [0.3, 0.9]
    assert charts.reliability_figure({"bins": 10}) is None
    assert charts.reliability_figure({"confidence": [0.1], "accuracy": [0.1, 0.2]}) is None


def test_reliability_figure_draws_a_bar_per_bin_labelled_with_its_images():
    """Bars span their bins (edges from the evaluation module) and say how many images each holds:
    a bin of one image must not read as part of a trend."""
    bins = [
        {"lower": 0.0, "upper": 0.5, "count": 0, "confidence": None, "accuracy": None},
        {"lower": 0.5, "upper": 0.8, "count": 5, "confidence": 0.7, "accuracy": 0.6},
        {"lower": 0.8, "upper": 1.0, "count": 20, "confidence": 0.93, "accuracy": 0.95},
    ]
    model = charts.reliability_figure(bins).data[1]
    assert model.type == "bar"
    assert list(model.x) == pytest.approx([0.65, 0.9]) and list(model.y) == [0.6, 0.95]  # empty bin left out
    assert list(model.width) == pytest.approx([0.27, 0.18])
    assert list(model.text) == ["n=5", "n=20"]
    assert [list(c) for c in model.customdata] == [[0.7, 5], [0.93, 20]]


def test_training_curves_include_validation_macro_f1():
    fig = charts.training_curves_figure({"loss": [1.0], "val_loss": [1.2], "val_macro_f1": [0.4]})
    assert [trace.name for trace in fig.data] == ["Training", "Validation", "Validation macro-F1"]


def test_rhythm_strip_marks_each_detected_beat_on_the_trace():
    seconds = np.linspace(0, 10, 5001)
    strip = RhythmStrip(seconds, np.sin(2 * np.pi * seconds), np.array([0.25, 1.25, 2.25]))
    fig = charts.rhythm_strip_figure(strip)
    trace, beats = fig.data
    assert np.array_equal(trace.x, seconds) and np.array_equal(trace.y, strip.millivolts)
    assert list(beats.x) == [0.25, 1.25, 2.25] and list(beats.y) == pytest.approx([1, 1, 1], abs=1e-4)
    assert beats.mode == "markers"
    assert fig.layout.xaxis.title.text == "time (s)" and fig.layout.yaxis.title.text == "mV"
    assert (fig.layout.xaxis.dtick, fig.layout.yaxis.dtick) == (0.2, 0.5)  # ECG paper's large squares
    no_beats = charts.rhythm_strip_figure(RhythmStrip(seconds, strip.millivolts, np.array([])))
    assert len(no_beats.data) == 1


def test_performance_tab_tolerates_missing_metrics(tmp_path):
    outputs = performance_tab.performance_outputs(tmp_path)
    assert "metrics.json is missing" in outputs[0]
    assert all(update.get("visible") is False for update in outputs[1:] if update is not None)


def test_performance_tab_tolerates_partial_metrics(tmp_path):
    (tmp_path / "metrics.json").write_text(
        '{"model_version": "v1", "test": {"n": 10, "accuracy": {"value": 0.9, "ci95": [0.8, 0.95]},'
        ' "confusion_matrix": ' + str(MATRIX) + "}}"
    )
    summary, cm_counts, cm_norm, *others = performance_tab.performance_outputs(tmp_path)
    assert "0.900" in summary and "0.800" in summary and "v1" in summary
    assert cm_counts["visible"] and cm_norm["visible"]
    assert cm_counts["value"].data[0].type == "heatmap"
    dataset = others.pop(-3)  # the dataset table's value; its box is hidden
    assert dataset is None
    # Per-class table, cross-validation text and matrix, ROC, reliability, curves, dataset box, extra,
    # measurement validation (no model/measurements.json here).
    assert len(others) == 9 and all(hidden["visible"] is False for hidden in others)


def test_performance_tab_shows_the_measurements_validation(tmp_path):
    (tmp_path / "metrics.json").write_text('{"model_version": "v1", "test": {"n": 10}}')
    (tmp_path / "measurements.json").write_text(
        json.dumps(
            {
                "heart_rate_vs_printed": {
                    "as uploaded": {
                        "n": 393,
                        "measured": 390,
                        "mae_bpm": 1.53,
                        "within_5_bpm": 0.952,
                        "within_5_ci95": [0.929, 0.969],
                    }
                },
                "intervals_vs_rendered": {
                    "clean": {k: {"n": 60, "measured": 50, "mae": 12.5} for k in ("pr_ms", "qrs_ms", "qt_ms")}
                },
            }
        )
    )
    shown = performance_tab.performance_outputs(tmp_path)[-1]
    assert shown["visible"]
    assert "| as uploaded | 390/393 | 1.530" in shown["value"] and "0.952 (0.929–0.969)" in shown["value"]
    assert "| clean | 50/60, 12.500 | 50/60, 12.500 | 50/60, 12.500 | – |" in shown["value"]
    assert "Other layouts" not in shown["value"]  # older files have no such section


def test_performance_tab_shows_the_other_layouts_rate_figures(tmp_path):
    (tmp_path / "metrics.json").write_text('{"model_version": "v1", "test": {"n": 10}}')
    rate = {"n": 90, "measured": 20, "mae_bpm": 1.25, "within_5_of_measured": 0.95}
    (tmp_path / "measurements.json").write_text(
        json.dumps(
            {
                "printouts_without_the_template": {**rate, "n": 393, "measured": 350},
                "other_layout_renders": {"12lead_6x2": rate},
                "other_layouts": {"n": 39, "measured": 9},
            }
        )
    )
    shown = performance_tab.performance_outputs(tmp_path)[-1]["value"]
    assert "| Mendeley printouts read as an unknown layout | 350/393 | 1.250 | 0.950 |" in shown
    assert "| rendered, 12lead_6x2 | 20/90 | 1.250 | 0.950 |" in shown
    assert "| pictures of other layouts in the data (no reference rate) | 9/39 | – | – |" in shown


def test_performance_tab_shows_the_recipes_out_of_fold_figures_beside_the_test_splits(tmp_path):
    """The shipped metrics.json's cross-validation section (see test_cross_validation for where it comes
    from): its counts, intervals and fold-by-fold figures on the tab, and its confusion matrix."""
    metrics = json.loads((MODEL_DIR / "metrics.json").read_text())
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    outputs = performance_tab.performance_outputs(tmp_path)
    cv, matrix = metrics["cross_validation"], outputs[5]["value"]
    html = outputs[4]["value"]
    assert outputs[4]["visible"] and f"{cv['n']} train + validation images, out of fold" in html
    mi = cv["per_class"]["MI"]
    assert f"{round(mi['recall'] * mi['support'])} of {mi['support']} images" in html
    assert f"{cv['macro_f1']['value']:.3f}" in html and f"{cv['macro_f1']['ci95'][0]:.3f}" in html
    assert all(f"{f:.3f}" in html for f in cv["per_fold_macro_f1"])
    assert "2 diagnosis networks" in html
    assert np.array(matrix.data[0].z).tolist() == cv["confusion_matrix"]
    assert "Out of fold" in matrix.layout.title.text
    # The test split's own MI card says how few images its recall counts.
    test_mi = metrics["test"]["per_class"]["MI"]
    assert f"{round(test_mi['recall'] * test_mi['support'])} of {test_mi['support']} images" in outputs[0]
    # Infarctions named or flagged "not ruled out", on test and nested out of fold, with the false alarms.
    for html_of, flag in ((outputs[0], metrics["test"]["mi_flag"]), (html, metrics["mi_flag"]["nested"])):
        assert f"{flag['mi_called_or_flagged']} of {flag['mi']}" in html_of
        assert f"{flag['flagged_without_mi']} of {flag['without_mi']} ECGs without an infarction" in html_of


def test_dataset_table_counts_duplicates_removed():
    metrics = {
        "dataset": {
            "counts": {"OtherECG": {"files": 40, "unique": 40}, "MI": {"files": 240, "unique": 30}},
            "split_sizes": {"train": {"MI": 20, "OtherECG": 30}, "val": {"MI": 4}, "test": {"MI": 6}},
        }
    }
    table = performance_tab.dataset_table(metrics)
    row = table.iloc[0].to_dict()
    assert row["Class"] == DISPLAY_NAMES["MI"]
    assert row["Duplicates removed"] == 210
    assert (row["Train"], row["Validation"], row["Test"]) == (20, 4, 6)
    assert table.iloc[1]["Class"].startswith("Other-layout ECGs")
