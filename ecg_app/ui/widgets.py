"""Small HTML fragments shared by the tabs (result card, risk badge, guidance), all text escaped.

Kept apart from the tabs so the Analyze and History tabs show a result in exactly the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from ecg_app.clinical.guidance import RISK_COLORS, load_guidance
from ecg_app.clinical.measurements import Measurements, measurement_rows, measurements_note
from ecg_app.labels import COLORS, DISPLAY_NAMES, NON_ECG
from ecg_app.serving.mi_flag import WARNING_CODE as MI_FLAG_WARNING

RISK_WORDS = {
    "NONE": "Not assessed",
    "LOW": "Low risk",
    "MEDIUM": "Medium risk",
    "HIGH": "High risk",
}


def risk_badge(risk_level: str) -> str:
    color = RISK_COLORS.get(risk_level, "#7f8c8d")
    word = RISK_WORDS.get(risk_level, risk_level)
    return f'<span class="ecg-badge" style="background:{color}">{escape(word)}</span>'


def is_diagnostic(result: Mapping) -> bool:
    """A result is shown as a finding only when it is an ECG class and the model is confident."""
    return result.get("label") != NON_ECG and result.get("status", "ok") == "ok"


def result_card(result: Mapping) -> str:
    """Headline of one analysis: class, confidence and risk, or a plain 'not a diagnosis' notice."""
    label = str(result.get("label", ""))
    confidence = float(result.get("confidence") or 0.0)
    book = load_guidance()
    if label == NON_ECG:
        return _notice(
            "Not an ECG image",
            "This picture does not look like a 12-lead ECG printout, so no cardiac assessment is given. "
            "Please upload a valid ECG image: a clear, flat, complete photo or scan of the printout.",
            f"Model output: {DISPLAY_NAMES[NON_ECG]} ({confidence:.0%}).",
        )
    name = DISPLAY_NAMES.get(label, label)
    if mi_flag(result):
        p_mi = float((result.get("probabilities") or {}).get("MI") or 0.0)
        return _notice(
            "Needs review: infarction not ruled out",
            f"The most likely class is {name} ({confidence:.0%}), but the probability of myocardial "
            f"infarction ({p_mi:.1%}) is too high to rule one out.",
            "This is not a diagnosis: see the warning below.",
        )
    if result.get("status", "ok") != "ok":
        return _notice(
            "Inconclusive result: needs review",
            book.low_confidence_message + " Please upload a valid, clearer ECG image or ask a clinician.",
            f"Highest model output: {name} ({confidence:.0%}), below the confidence needed to report it. "
            "This is not a diagnosis.",
        )
    color = COLORS.get(label, "#1f6f8b")
    return (
        f'<div class="ecg-card" style="border-left-color:{color}">'
        f'<div class="ecg-card-kicker">Predicted class</div>'
        f'<div class="ecg-card-title" data-testid="predicted-class">{escape(name)}</div>'
        f'<div class="ecg-card-meta"><span class="ecg-confidence">Confidence '
        f"<b>{confidence:.1%}</b></span>{risk_badge(str(result.get('risk_level', '')))}</div>"
        "</div>"
    )


def _notice(title: str, message: str, detail: str) -> str:
    return (
        '<div class="ecg-card ecg-card-notice">'
        f'<div class="ecg-card-title" data-testid="predicted-class">{escape(title)}</div>'
        f"<p>{escape(message)}</p>"
        f'<p class="ecg-muted">{escape(detail)}</p>'
        "</div>"
    )


def mi_flag(result: Mapping) -> Mapping | None:
    """The "infarction not ruled out" warning of a result (`mi_flag`), or None."""
    flags = [w for w in result.get("quality_warnings") or () if w.get("code") == MI_FLAG_WARNING]
    return flags[0] if flags else None


def emergency_banner(result: Mapping) -> str:
    """Red banner with the class's emergency advice, only for a confident HIGH-risk result; or with the
    infarction flag's advice, for a result that carries it."""
    flag = mi_flag(result)
    if flag:
        return (
            '<div class="ecg-emergency" role="alert"><b>Infarction not ruled out.</b> '
            f"{escape(str(flag.get('message', '')))}</div>"
        )
    label = str(result.get("label", ""))
    if not is_diagnostic(result) or label not in DISPLAY_NAMES:
        return ""
    guidance = load_guidance().for_label(label)
    if not guidance.is_high_risk or not guidance.emergency:
        return ""
    return (
        '<div class="ecg-emergency" role="alert"><b>Emergency warning.</b> '
        f"{escape(guidance.emergency)}</div>"
    )


def guidance_html(result: Mapping) -> str:
    """Interpretation, suggested tests, monitoring and lifestyle advice for a diagnostic result."""
    label = str(result.get("label", ""))
    if not is_diagnostic(result) or label not in DISPLAY_NAMES:
        return ""
    g = load_guidance().for_label(label)
    parts = [
        '<div class="ecg-guidance">',
        _section("Interpretation", f"<p>{escape(g.interpretation)}</p>", wide=True),
        _section("Monitoring", f"<p>{escape(g.monitoring)}</p>", wide=True),
        _section("Suggested tests", _list(g.suggested_tests)),
        _section("Lifestyle advice", _list(g.lifestyle)),
        "</div>",
    ]
    return "".join(parts)


def _section(title: str, body: str, wide: bool = False) -> str:
    css = "ecg-section ecg-wide" if wide else "ecg-section"
    return f'<div class="{css}"><h4>{escape(title)}</h4>{body}</div>'


def _list(items: Iterable[str]) -> str:
    items = list(items)
    if not items:
        return '<p class="ecg-muted">None.</p>'
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def quality_notice(warnings: Iterable[Mapping] | None) -> str:
    """Amber notice listing the image-quality and ECG-gate warnings of a result ("" when there are none);
    the infarction flag has its own banner (`emergency_banner`)."""
    messages = [
        str(w.get("message", ""))
        for w in warnings or ()
        if w.get("message") and w.get("code") != MI_FLAG_WARNING
    ]
    if not messages:
        return ""
    items = "".join(f"<li>{escape(m)}</li>" for m in messages)
    return (
        '<div class="ecg-quality" role="status" data-testid="quality-warnings">'
        "<b>Image quality and familiarity: the result may be less reliable.</b>"
        f"<ul>{items}</ul></div>"
    )


def measurements_html(measurements: Measurements | None, sex: str | None) -> str:
    """The measurements table: value, normal range and the out-of-range finding (its row marked
    `out-of-range`), QTc judged for the patient's sex; or why nothing was measured."""
    rows = []
    for row in measurement_rows(measurements, sex):
        marked = ' class="out-of-range"' if row.flag else ""
        rows.append(
            f"<tr{marked}><th>{escape(row.label)}</th><td>{escape(row.value)}</td>"
            f"<td>{escape(row.normal_range)}</td><td>{escape(row.flag)}</td></tr>"
        )
    table = (
        '<table class="ecg-measurements-table"><thead><tr><th>Measurement</th><th>Value</th>'
        f"<th>Normal range</th><th>Finding</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else ""
    )
    note = measurements_note(measurements)
    shown = f'<p class="ecg-muted" data-testid="measurements-note">{escape(note)}</p>' if note else ""
    return f'<div class="ecg-measurements"><h4>Measurements</h4>{table}{shown}</div>'


def explanation_caption(text: str, note: bool = False) -> str:
    """The line under the Grad-CAM picture, or the note that stands in for a missing picture."""
    css = "ecg-caption ecg-explanation-note" if note else "ecg-caption"
    return f'<div class="{css}" data-testid="explanation-caption">{escape(text)}</div>'


def disclaimer_html() -> str:
    return f'<div class="ecg-disclaimer"><b>Disclaimer.</b> {escape(load_guidance().disclaimer)}</div>'


def stat_card(title: str, value: str, detail: str = "") -> str:
    sub = f'<div class="ecg-stat-detail">{escape(detail)}</div>' if detail else ""
    size = " ecg-small" if len(value) > 10 else ""  # e.g. a model version string
    return (
        f'<div class="ecg-stat"><div class="ecg-stat-title">{escape(title)}</div>'
        f'<div class="ecg-stat-value{size}">{escape(value)}</div>{sub}</div>'
    )


def stat_row(cards: Iterable[str]) -> str:
    return '<div class="ecg-stats">' + "".join(cards) + "</div>"


def placeholder(text: str) -> str:
    return f'<div class="ecg-placeholder">{escape(text)}</div>'
