"""PDF report of one stored analysis: Jinja2 template (autoescaped) rendered by WeasyPrint.

Kept fast by avoiding anything that needs a network or a browser: system fonts only, the thumbnail and
the Grad-CAM overlay embedded as data URIs, probability bars drawn with HTML/CSS, the stylesheet read
once, and tables with a fixed layout (WeasyPrint does not measure every cell first). The measurements
are the stored numbers only: the digitised strip is not kept, so the PDF has no plot of it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ecg_app.analysis import EXPLANATION_CAPTION, EXPLANATION_TITLE, explanation_note
from ecg_app.clinical.guidance import RISK_COLORS, load_guidance
from ecg_app.clinical.measurements import measurement_rows, measurements_note
from ecg_app.config import DEFAULT_MODEL_DIR, TEMPLATES_DIR
from ecg_app.labels import CLASSES, COLORS, display_name
from ecg_app.serving.mi_flag import WARNING_CODE as MI_FLAG_WARNING
from ecg_app.store import StoredAnalysis

TEMPLATE_NAME = "report.html"
STYLESHEET = TEMPLATES_DIR / "report.css"
NOT_AN_ECG_TITLE = "Not an ECG — no interpretation"
METRICS_FILE = "metrics.json"
MODEL_INFO_FILE = "model.json"


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _ci(block: dict, fmt) -> str:
    value = fmt(block["value"])
    low_high = block.get("ci95")
    if low_high and len(low_high) == 2:
        return f"{value} (95% CI {fmt(low_high[0])}–{fmt(low_high[1])})"
    return value


def model_metrics_summary(model_dir: str | Path | None, model_version: str) -> list[str]:
    """Test-set figures from `<model_dir>/metrics.json`, if that is the model this analysis used.

    Returns no lines when the file is missing or unreadable, or belongs to another model version, so a
    report never quotes another model's performance.
    """
    folder = Path(model_dir or DEFAULT_MODEL_DIR)
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
        test = metrics["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    try:
        installed = json.loads((folder / MODEL_INFO_FILE).read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        installed = None
    version = metrics.get("model_version") or metrics.get("version") or installed
    if version is not None and version != model_version:
        return []
    lines = []
    try:
        if "n" in test:
            lines.append(f"Held-out test set: {int(test['n'])} images")
        if "accuracy" in test:
            lines.append(f"Accuracy {_ci(test['accuracy'], _percent)}")
        if "macro_f1" in test:
            lines.append(f"Macro-F1 {_ci(test['macro_f1'], lambda v: f'{v:.3f}')}")
        if isinstance(test.get("ece"), int | float):
            lines.append(f"Expected calibration error {test['ece']:.3f}")
    except (KeyError, TypeError, ValueError, IndexError):
        return []
    return lines


def _data_uri(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None
    return f"data:image/jpeg;base64,{encoded}"


def report_context(
    analysis: StoredAnalysis,
    *,
    model_dir: str | Path | None = None,
    generated_at: datetime | None = None,
) -> dict:
    """Everything the template shows, already worded and formatted (the template only lays it out)."""
    book = load_guidance()
    guidance = book.for_label(analysis.label)
    patient = analysis.patient
    top = analysis.label
    warnings = analysis.quality_warnings or ()
    return {
        "report_id": str(analysis.id),
        "analysed_at": _format_time(analysis.created_at),
        "generated_at": _format_time(generated_at or datetime.now(UTC)),
        "patient": {
            "Name / ID": patient.name or "Not recorded",
            "Age": f"{patient.age} years" if patient.age is not None else "Not recorded",
            "Sex": patient.sex.capitalize() if patient.sex else "Not recorded",
        },
        "notes": patient.notes,
        "file_name": analysis.original_filename,
        "image_sha256": analysis.image_sha256,
        "thumbnail_uri": _data_uri(analysis.thumbnail_path),
        **explanation_context(analysis),
        # The infarction flag is said apart (`mi_flag`), where the review status is explained.
        "quality_warnings": [w.message for w in warnings if w.code != MI_FLAG_WARNING],
        "mi_flag": next((w.message for w in warnings if w.code == MI_FLAG_WARNING), ""),
        "is_ecg": analysis.is_ecg,
        "result_title": analysis.display_name if analysis.is_ecg else NOT_AN_ECG_TITLE,
        "confidence": _percent(analysis.confidence),
        "probabilities": [
            {
                "name": display_name(label),
                "percent": _percent(analysis.probabilities[label]),
                "width": round(max(0.0, min(1.0, analysis.probabilities[label])) * 100, 2),
                "color": COLORS[label],
                "top": label == top,
            }
            for label in CLASSES
        ],
        "measurements": measurement_rows(analysis.measurements, patient.sex),
        "measurements_note": measurements_note(analysis.measurements),
        "risk_level": analysis.risk_level,
        "risk_color": RISK_COLORS.get(analysis.risk_level, RISK_COLORS["NONE"]),
        "needs_review": analysis.needs_review,
        "status_text": "Needs review" if analysis.needs_review else "OK",
        "review_message": book.low_confidence_message,
        "interpretation": guidance.interpretation,
        "suggested_tests": guidance.suggested_tests,
        "monitoring": guidance.monitoring,
        "lifestyle": guidance.lifestyle,
        "emergency": guidance.emergency if analysis.risk_level == "HIGH" else "",
        "model_version": analysis.model_version,
        "metrics": model_metrics_summary(model_dir, analysis.model_version),
        "disclaimer": book.disclaimer,
        "stylesheet": _stylesheet_text(),
    }


def explanation_context(analysis: StoredAnalysis) -> dict:
    """The Grad-CAM figure (title, image, caption), or a one-line note saying why there is none."""
    uri = _data_uri(analysis.explanation_path) if analysis.is_ecg else None
    return {
        "explanation_uri": uri,
        "explanation_title": EXPLANATION_TITLE,
        "explanation_caption": EXPLANATION_CAPTION,
        "explanation_note": explanation_note(analysis.label, uri is not None),
    }


@cache
def _stylesheet_text() -> str:
    return STYLESHEET.read_text(encoding="utf-8")


def render_report_html(
    analysis: StoredAnalysis,
    *,
    model_dir: str | Path | None = None,
    generated_at: datetime | None = None,
) -> str:
    """Self-contained HTML of the report (stylesheet inlined, image as data URI)."""
    context = report_context(analysis, model_dir=model_dir, generated_at=generated_at)
    return _environment().get_template(TEMPLATE_NAME).render(**context)


def render_report_pdf(
    analysis: StoredAnalysis,
    *,
    model_dir: str | Path | None = None,
    generated_at: datetime | None = None,
) -> bytes:
    """The A4 PDF report as bytes."""
    from weasyprint import HTML

    html = render_report_html(analysis, model_dir=model_dir, generated_at=generated_at)
    return HTML(string=html, base_url=str(TEMPLATES_DIR)).write_pdf()
