"""Model Performance tab: the held-out test results in model/metrics.json, as figures and tables, with
the recipe's out-of-fold figures from cross-validation when metrics.json has them.

metrics.json is written by the evaluation module and may be missing or partial (a provisional model, an
older file): every section is read defensively and a missing one is hidden, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ecg_app.clinical import charts
from ecg_app.labels import CLASSES, DISPLAY_NAMES
from ecg_app.ui.context import AppContext
from ecg_app.ui.widgets import placeholder, stat_card, stat_row

METRICS_FILE = "metrics.json"
DATASET_NAMES = {"OtherECG": "Other-layout ECGs (no diagnosis label)"}
CV_MATRIX_TITLE = "Out of fold (cross-validation): confusion matrix (counts)"


def load_metrics(model_dir: Path) -> dict | None:
    """The parsed metrics file, or None if it is absent or unreadable."""
    path = Path(model_dir) / METRICS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _value_ci(section: Any) -> tuple[float | None, list | None]:
    if isinstance(section, Mapping):
        value = section.get("value")
        ci = section.get("ci95")
        return (
            float(value) if isinstance(value, int | float) else None,
            ci if isinstance(ci, list) else None,
        )
    if isinstance(section, int | float):
        return float(section), None
    return None, None


def _metric_card(title: str, section: Any) -> str | None:
    value, ci = _value_ci(section)
    if value is None:
        return None
    detail = f"95% CI {ci[0]:.3f} – {ci[1]:.3f}" if ci and len(ci) == 2 else ""
    return stat_card(title, f"{value:.3f}", detail)


def summary_html(metrics: Mapping) -> str:
    """Headline figures with 95% CIs, calibration error, test size, model version, then safety figures."""
    test = metrics.get("test") or {}
    cards = [
        _metric_card("Accuracy (test)", test.get("accuracy")),
        _metric_card("Macro-F1 (test)", test.get("macro_f1")),
    ]
    if isinstance(test.get("ece"), int | float):
        cards.append(stat_card("Calibration error (ECE)", f"{test['ece']:.3f}", "lower is better"))
    if test.get("n") is not None:
        cards.append(stat_card("Test images", str(test["n"]), "held out, duplicate-free"))
    if metrics.get("model_version"):
        cards.append(stat_card("Model version", str(metrics["model_version"])))
    safety = [
        _metric_card("4-class ECG accuracy", test.get("ecg_accuracy")),
        _recall_card("MI recall", test.get("mi_recall"), test.get("per_class") or {}, "MI"),
        _metric_card("Non-ECG recall", test.get("non_ecg_recall")),
    ]
    flag = test.get("mi_flag") or {}
    if isinstance(flag.get("threshold"), int | float):
        how = f'"infarction not ruled out" at P(MI) ≥ {flag["threshold"]:.1%}'
        safety.append(_mi_flag_card("MI called or flagged", flag, how))
    other = test.get("other_layout_called_non_ecg") or {}
    if isinstance(other.get("rate"), int | float):
        detail = f"of {other.get('n', '?')} ECGs of other layouts (lower is better)"
        safety.append(stat_card("Other-layout ECGs called non-ECG", f"{other['rate']:.1%}", detail))
    gate_card = _gate_card(test.get("ecg_gate") or {})
    if gate_card:
        safety.append(gate_card)
    review = test.get("needs_review") or {}
    if isinstance(review.get("coverage"), int | float):
        accuracy = review.get("accuracy_on_covered")
        detail = f"accuracy on those {accuracy:.3f}" if isinstance(accuracy, int | float) else ""
        safety.append(stat_card("Confident results (not needs-review)", f"{review['coverage']:.1%}", detail))
    html = stat_row(c for c in cards if c)
    if any(safety):
        html += stat_row(c for c in safety if c)
    return html


def _recall_card(title: str, section: Any, per_class: Mapping, label: str) -> str | None:
    """A recall card whose detail also says how many images it counts (4 test infarctions is few)."""
    card_value, ci = _value_ci(section)
    row = per_class.get(label) or {}
    recall = card_value if card_value is not None else row.get("recall")
    support = row.get("support")
    if not isinstance(recall, int | float):
        return None
    parts = [f"{round(recall * support)} of {support} images"] if isinstance(support, int) else []
    if ci and len(ci) == 2:
        parts.append(f"95% CI {ci[0]:.3f} – {ci[1]:.3f}")
    return stat_card(title, f"{recall:.3f}", "; ".join(parts))


def _mi_flag_card(title: str, figures: Any, how: str) -> str | None:
    """Infarctions called MI or flagged "not ruled out" (`mi_flag`), and the false alarms it costs."""
    if not isinstance(figures, Mapping) or not isinstance(figures.get("mi"), int):
        return None
    detail = (
        f"{how}; {figures.get('flagged_without_mi', '?')} of {figures.get('without_mi', '?')} ECGs "
        "without an infarction flagged"
    )
    return stat_card(title, f"{figures.get('mi_called_or_flagged')} of {figures['mi']}", detail)


def cross_validation_html(metrics: Mapping) -> str:
    """The recipe's out-of-fold figures (metrics.json "cross_validation"), or "" when there are none.

    Why beside the test split's: with 4 infarctions and 10 History-of-MI printouts in the test split,
    one image moves a class's recall by 10 to 25 points; out of fold, five times as many images count."""
    cv = metrics.get("cross_validation")
    if not isinstance(cv, Mapping) or not isinstance(cv.get("n"), int):
        return ""
    per_class = cv.get("per_class") or {}
    cards = [
        _metric_card("Macro-F1 (out of fold)", cv.get("macro_f1")),
        _metric_card("4-class ECG accuracy", cv.get("ecg_accuracy")),
        _recall_card("MI recall", cv.get("mi_recall"), per_class, "MI"),
        _recall_card("History of MI recall", None, per_class, "HMI"),
        _recall_card("Non-ECG recall", cv.get("non_ecg_recall"), per_class, "NonECG"),
        _mi_flag_card(
            "MI called or flagged",
            (metrics.get("mi_flag") or {}).get("nested"),
            "flag threshold fitted on the other folds",
        ),
    ]
    networks = cv.get("networks_per_fold") or {}
    diagnosis = networks.get("diagnosis") or 0
    read_by = "one page network" + (f" and {diagnosis} diagnosis networks" if diagnosis else "")
    folds = [f for f in cv.get("per_fold_macro_f1") or [] if isinstance(f, int | float)]
    per_fold = f" Macro-F1 fold by fold: {', '.join(f'{f:.3f}' for f in folds)}." if folds else ""
    text = (
        f"<b>Cross-validation of the recipe: {cv['n']} train + validation images, out of fold.</b> "
        f"The images are split into {cv.get('folds', '?')} folds of whole duplicate groups, and each "
        f"fold is scored by {read_by} trained on the other folds (the shipped model averages three of "
        "each), taking the most probable class without the ECG gate or detector. The test split is small, "
        f"so these figures say more about how the recipe does on new printouts.{per_fold}"
    )
    return f'<p class="ecg-caption">{text}</p>' + stat_row(c for c in cards if c)


def _gate_card(gate: Mapping) -> str:
    """The ECG gate: how many template ECGs it marks unfamiliar, and what it changes for other layouts."""
    unfamiliar = (gate.get("marked_unfamiliar") or {}).get("template_ecgs") or {}
    other = gate.get("other_layout_called_non_ecg") or {}
    alone, gated = (other.get("softmax_only") or {}).get("rate"), (other.get("with_gate") or {}).get("rate")
    detected = (other.get("with_gate_and_detector") or {}).get("rate")
    if not gate.get("fitted") or not isinstance(unfamiliar.get("rate"), int | float):
        return ""
    detail = "of test ECGs marked unfamiliar"
    if isinstance(alone, int | float) and isinstance(gated, int | float):
        detail += f"; other layouts called non-ECG: {alone:.1%} (softmax alone), {gated:.1%} (with the gate)"
        if isinstance(detected, int | float):
            detail += f", {detected:.1%} (with the gate and the ECG detector)"
    return stat_card("ECG gate (embedding distance)", f"{unfamiliar['rate']:.1%}", detail)


def per_class_table(metrics: Mapping) -> pd.DataFrame | None:
    per_class = (metrics.get("test") or {}).get("per_class") or {}
    if not per_class:
        return None
    rows = []
    for label in [c for c in CLASSES if c in per_class] + [c for c in per_class if c not in CLASSES]:
        m = per_class[label] or {}
        rows.append(
            {
                "Class": DISPLAY_NAMES.get(label, label),
                "Precision": _fmt(m.get("precision")),
                "Recall": _fmt(m.get("recall")),
                "F1": _fmt(m.get("f1")),
                "Support": m.get("support", ""),
            }
        )
    return pd.DataFrame(rows)


def dataset_table(metrics: Mapping) -> pd.DataFrame | None:
    """Images per class, duplicates removed, and the group-aware split sizes."""
    dataset = metrics.get("dataset") or {}
    counts = dataset.get("counts") or {}
    splits = dataset.get("split_sizes") or {}
    present = set(counts) | {label for sizes in splits.values() for label in (sizes or {})}
    labels = [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))
    if not labels:
        return None
    rows = []
    for label in labels:
        c = counts.get(label) or {}
        files, unique = c.get("files"), c.get("unique")
        row = {
            "Class": DATASET_NAMES.get(label) or DISPLAY_NAMES.get(label, label),
            "Files": files if files is not None else "",
            "Unique images": unique if unique is not None else "",
            "Duplicates removed": files - unique
            if isinstance(files, int) and isinstance(unique, int)
            else "",
        }
        for split in ("train", "val", "test"):
            row[split.capitalize() if split != "val" else "Validation"] = (splits.get(split) or {}).get(
                label, ""
            )
        rows.append(row)
    return pd.DataFrame(rows)


def extra_markdown(metrics: Mapping) -> str:
    """Calibration and robustness sections, whatever their shape, as readable tables."""
    parts = []
    for key, title in (("calibration", "Calibration"), ("robustness", "Robustness")):
        section = metrics.get(key)
        if section:
            parts.append(f"### {title}\n\n{_to_markdown(section)}")
    return "\n\n".join(parts)


def _to_markdown(section: Any) -> str:
    if not isinstance(section, Mapping):
        return f"{_fmt(section)}"
    nested = {k: v for k, v in section.items() if isinstance(v, Mapping)}
    scalars = {k: v for k, v in section.items() if not isinstance(v, Mapping | list)}
    lines = []
    if scalars:
        lines += ["| Item | Value |", "|---|---|"]
        lines += [f"| {_words(k)} | {_fmt(v)} |" for k, v in scalars.items()]
    if nested:
        columns: list[str] = []
        for v in nested.values():
            columns += [k for k, x in v.items() if k not in columns and not isinstance(x, Mapping | list)]
        if columns:
            lines.append("")
            lines.append("| Condition | " + " | ".join(_words(c) for c in columns) + " |")
            lines.append("|---" * (len(columns) + 1) + "|")
            for name, v in nested.items():
                lines.append(f"| {_words(name)} | " + " | ".join(_fmt(v.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) if lines else "_No details._"


ACRONYMS = {"ece": "ECE", "auc": "AUC", "f1": "F1", "jpeg": "JPEG", "ecg": "ECG", "mi": "MI"}


def _words(key: Any) -> str:
    words = str(key).replace("non_ecg", "Non-ECG").replace("_", " ").split()
    text = " ".join(ACRONYMS.get(w.lower(), w) for w in words)
    return text[:1].upper() + text[1:]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


MEASUREMENTS_FILE = "measurements.json"


def measurement_markdown(model_dir: Path) -> str:
    """The measurements' validation (model/measurements.json, from benchmarks/validate_measurements.py)
    as tables, or "" when the file is missing."""
    try:
        figures = json.loads((Path(model_dir) / MEASUREMENTS_FILE).read_text())
    except (OSError, ValueError):
        return ""
    lines = [
        "### Measurements, validated",
        "Heart rate against the rate the ECG machine printed on each Mendeley printout (95% intervals):",
        "",
        "| copy | measured | mean abs. error (bpm) | within 5 bpm |",
        "|---|---|---|---|",
    ]
    for name, f in (figures.get("heart_rate_vs_printed") or {}).items():
        mae, within = f.get("mae_bpm"), f.get("within_5_bpm")
        low, high = f.get("within_5_ci95") or [None, None]
        lines.append(
            f"| {name} | {f['measured']}/{f['n']} | {_fmt(mae)} | {_fmt(within)} ({_fmt(low)}–{_fmt(high)}) |"
        )
    lines += [
        "",
        "Intervals and axis against the known timings of rendered printouts (measured, mean abs. error):",
        "",
        "| copy | PR (ms) | QRS (ms) | QT (ms) | QRS axis (deg) |",
        "|---|---|---|---|---|",
    ]
    for name, f in (figures.get("intervals_vs_rendered") or {}).items():
        keys = ("pr_ms", "qrs_ms", "qt_ms", "qrs_axis_deg")
        cells = [f"{f[k]['measured']}/{f[k]['n']}, {_fmt(f[k]['mae'])}" if k in f else "–" for k in keys]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    layouts = {
        "Mendeley printouts read as an unknown layout": figures.get("printouts_without_the_template"),
        **{f"rendered, {name}": f for name, f in (figures.get("other_layout_renders") or {}).items()},
    }
    if any(layouts.values()):
        lines += [
            "",
            "Other layouts: heart rate only, timed by the printed grid (reported only where its 1 mm and"
            " 5 mm lines are both seen), against the printed or the drawn rate:",
            "",
            "| pages | measured | mean abs. error (bpm) | within 5 bpm, of those measured |",
            "|---|---|---|---|",
        ]
        for name, f in layouts.items():
            if not f:
                continue
            mae, within = f.get("mae_bpm"), f.get("within_5_of_measured")
            lines.append(f"| {name} | {f['measured']}/{f['n']} | {_fmt(mae)} | {_fmt(within)} |")
        real = figures.get("other_layouts")
        if real:
            lines.append(
                "| pictures of other layouts in the data (no reference rate)"
                f" | {real['measured']}/{real['n']} | – | – |"
            )
    axis = figures.get("qrs_axis_consistency")
    if axis:
        lines += [
            "",
            "QRS axis on the printouts (no reference exists): from I and aVF against from I, II and III, "
            f"median gap {_fmt(axis['median_gap_deg'])} degrees, within 20 degrees on "
            f"{_fmt(axis['within_20_deg'])} of {axis['n']} (only those are reported).",
        ]
    return "\n".join(lines)


def performance_outputs(model_dir: Path) -> tuple:
    """Everything the tab shows, in the order of its output components."""
    metrics = load_metrics(model_dir)
    hidden = gr.update(visible=False)
    if metrics is None:
        message = placeholder(
            "No evaluation results yet: model/metrics.json is missing. "
            "Run `ecg-app model evaluate` after training."
        )
        return (message, *[hidden] * 9, None, hidden, hidden)
    test = metrics.get("test") or {}
    classes = metrics.get("classes") or list(CLASSES)
    matrix = test.get("confusion_matrix")
    roc = test.get("roc") or {}
    history = metrics.get("history") or {}
    reliability = charts.reliability_figure(test.get("reliability") or metrics.get("reliability") or {})
    per_class = per_class_table(metrics)
    dataset = dataset_table(metrics)
    extra = extra_markdown(metrics)
    measured = measurement_markdown(model_dir)
    cross_validation = cross_validation_html(metrics)
    cv_matrix = (metrics.get("cross_validation") or {}).get("confusion_matrix") if cross_validation else None

    def plot(figure):
        return gr.update(value=figure, visible=figure is not None)

    return (
        summary_html(metrics),
        plot(charts.confusion_matrix_figure(matrix, classes) if matrix else None),
        plot(charts.confusion_matrix_figure(matrix, classes, normalize=True) if matrix else None),
        gr.update(value=per_class, visible=per_class is not None),
        gr.update(value=cross_validation, visible=bool(cross_validation)),
        plot(
            charts.confusion_matrix_figure(cv_matrix, classes, title=CV_MATRIX_TITLE) if cv_matrix else None
        ),
        plot(charts.roc_figure(roc) if roc else None),
        plot(reliability),
        plot(charts.training_curves_figure(history) if history else None),
        gr.update(visible=dataset is not None),
        dataset,
        gr.update(value=extra, visible=bool(extra)),
        gr.update(value=measured, visible=bool(measured)),
    )


def build_performance_tab(ctx: AppContext) -> gr.Tab:
    """Lay out the tab; its content is (re)loaded from metrics.json each time the tab is opened."""
    with gr.Tab("Model Performance", id="performance", elem_id="tab-performance") as tab:
        gr.Markdown(
            "Results of the shipped model on the **held-out test split** (images never seen in training; "
            "duplicate copies of one image are kept on one side of the split), then the training "
            "recipe's **cross-validation** on the train and validation images, which counts five times "
            "as many.",
            elem_classes="ecg-intro",
        )
        summary = gr.HTML(placeholder("Loading…"))
        with gr.Row(equal_height=True):
            cm_counts = gr.Plot(show_label=False, elem_id="cm-counts", visible=False)
            cm_norm = gr.Plot(show_label=False, elem_id="cm-normalised", visible=False)
        per_class = gr.Dataframe(
            label="Per-class precision, recall and F1 (test)",
            interactive=False,
            visible=False,
            elem_id="per-class-table",
        )
        cv_summary = gr.HTML(visible=False, elem_id="cross-validation")
        cv_matrix = gr.Plot(show_label=False, elem_id="cm-cross-validation", visible=False)
        with gr.Row(equal_height=True):
            roc = gr.Plot(show_label=False, elem_id="roc-curves", visible=False)
            reliability = gr.Plot(show_label=False, elem_id="reliability", visible=False)
        curves = gr.Plot(show_label=False, elem_id="training-curves", visible=False)
        with gr.Column(visible=False, elem_id="dataset-summary") as dataset_box:
            dataset = gr.Dataframe(
                label="Dataset: images per class, duplicates removed, split sizes",
                interactive=False,
                elem_id="dataset-table",
            )
            gr.Markdown(
                "Duplicates removed = files minus distinct images. Copies of one image form a group, and "
                "every group stays on one side of the train / validation / test split, so test images "
                "were never seen in training.",
                elem_classes="ecg-caption",
            )
        extra = gr.Markdown(visible=False, elem_id="calibration-robustness")
        measured = gr.Markdown(visible=False, elem_id="measurement-validation")
    tab.select(
        lambda: performance_outputs(ctx.settings.model_dir),
        outputs=[
            summary,
            cm_counts,
            cm_norm,
            per_class,
            cv_summary,
            cv_matrix,
            roc,
            reliability,
            curves,
            dataset_box,
            dataset,
            extra,
            measured,
        ],
        api_visibility="private",
        queue=False,
    )
    return tab
