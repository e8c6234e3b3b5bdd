"""PDF report: every section and value is in the PDF's text, escaping, pages, and a rendered page 1.

The analyses are stored and read back through the history on each database backend (`store` fixture).
"""

import io
import json
import re
import shutil
import subprocess
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from ecg_app.analysis import (
    EXPLANATION_CAPTION,
    EXPLANATION_TITLE,
    NO_EXPLANATION_MISSING,
    NO_EXPLANATION_NON_ECG,
    NOT_AN_ECG_REASON,
)
from ecg_app.clinical.guidance import load_guidance
from ecg_app.clinical.measurements import NOT_MEASURED_BEFORE, PARTIAL, Measurements, not_measured
from ecg_app.clinical.report import (
    NOT_AN_ECG_TITLE,
    model_metrics_summary,
    render_report_html,
    render_report_pdf,
)
from ecg_app.labels import CLASSES, DISPLAY_NAMES
from ecg_app.serving.classifier import MI_NOT_RULED_OUT
from ecg_app.serving.quality import assess
from ecg_app.store import PatientInfo
from tests.conftest import encode, synthetic_printout
from tests.test_store import heat_overlay, make_prediction

GENERATED = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)
METRICS = {
    "model_version": "test-1.0",
    "test": {
        "n": 212,
        "accuracy": {"value": 0.91, "ci95": [0.88, 0.94]},
        "macro_f1": {"value": 0.873, "ci95": [0.83, 0.91]},
        "ece": 0.042,
    },
}
PARTLY_MEASURED = Measurements(
    heart_rate_bpm=112.3, rr_irregularity=0.046, qrs_ms=124.0, qt_ms=330.0, qtc_bazett_ms=460.2,
    qtc_fridericia_ms=412.0, qrs_axis_deg=45.0, quality=PARTIAL, not_measured_reason="no P waves found",
)  # fmt: skip


@pytest.fixture(scope="module")
def page():
    rgb = synthetic_printout(width=1106, height=786, seed=5)
    return rgb, encode(rgb)


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"version": "test-1.0"}))
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    return folder


def add(store, page, label="MI", confidence=0.8, status="ok", patient=None):
    rgb, data = page
    patient = patient or PatientInfo("Jane Example", 54, "female", "Chest pain for 2 hours.")
    return store.add(make_prediction(label, confidence, status), data, rgb, "ecg-scan.png", patient)


def norm(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).split())


def page_texts(pdf: bytes) -> list[str]:
    return [norm(p.extract_text() or "") for p in PdfReader(io.BytesIO(pdf)).pages]


def test_every_section_and_value_is_printed(store, page, model_dir):
    analysis = add(store, page)
    pdf = render_report_pdf(analysis, model_dir=model_dir, generated_at=GENERATED)
    assert pdf.startswith(b"%PDF")
    text = " ".join(page_texts(pdf))
    guidance = load_guidance().for_label("MI")
    expected = [
        "ECG Analysis Report",
        f"Report ID {analysis.id}",
        f"Analysed {analysis.created_at:%d %b %Y, %H:%M} UTC",
        "Generated 02 Mar 2025, 09:30 UTC",
        "Name / ID Jane Example",
        "Age 54 years",
        "Sex Female",
        "Image file ecg-scan.png",
        "Clinician notes Chest pain for 2 hours.",
        "Predicted class Myocardial Infarction",
        "Confidence 80.0%",
        "Risk level HIGH",
        "Status OK",
        "Class probabilities",
        "Emergency guidance",
        guidance.emergency,
        "Clinical interpretation",
        guidance.interpretation,
        "Suggested tests",
        *guidance.suggested_tests,
        "Monitoring frequency",
        guidance.monitoring,
        "Lifestyle advice",
        *guidance.lifestyle,
        "Model version test-1.0",
        "Held-out test set: 212 images",
        "Accuracy 91.0% (95% CI 88.0%–94.0%)",
        "Macro-F1 0.873 (95% CI 0.830–0.910)",
        "Expected calibration error 0.042",
        load_guidance().disclaimer,
    ]
    for label in CLASSES:
        expected.append(f"{DISPLAY_NAMES[label]} {analysis.probabilities[label] * 100:.1f}%")
    for item in expected:  # labels may be upper-cased by the stylesheet
        assert norm(item).casefold() in text.casefold(), item
    assert "Needs review" not in text
    assert analysis.image_sha256 in text.replace(" ", "")  # wrapped over two lines


def test_needs_review_is_shown_plainly_and_emergency_only_for_high_risk(store, page):
    analysis = add(store, page, label="AHB", confidence=0.41, status="needs_review")
    text = " ".join(page_texts(render_report_pdf(analysis)))
    assert "predicted class abnormal heartbeat" in text.casefold()
    assert "Risk level MEDIUM" in text and "Status Needs review" in text
    assert "Needs review: low model confidence." in text
    assert norm(load_guidance().low_confidence_message) in text
    assert "Emergency guidance" not in text
    assert norm(load_guidance().for_label("AHB").emergency) not in text
    assert "Suggested tests" in text and "Monitoring frequency" in text


def test_infarction_not_ruled_out_is_printed_as_the_reason_for_review(store, page):
    rgb, data = page
    warnings = [MI_NOT_RULED_OUT, *assess(cv2.GaussianBlur(rgb, (0, 0), 4))]
    prediction = replace(make_prediction("Normal", 0.93, "needs_review"), warnings=(MI_NOT_RULED_OUT,))
    analysis = store.add(prediction, data, rgb, "ecg.png", None, quality_warnings=warnings)
    assert analysis.risk_level == "HIGH"  # stored as the prediction says, not the class's LOW
    text = " ".join(page_texts(render_report_pdf(analysis)))
    assert "Risk level HIGH" in text and norm(load_guidance().for_label("Normal").emergency) in text
    assert "Needs review: infarction not ruled out." in text and norm(MI_NOT_RULED_OUT.message) in text
    assert "low model confidence" not in text
    assert text.count(norm(MI_NOT_RULED_OUT.message)) == 1  # not repeated among the image-quality notes
    assert "Image quality" in text and norm(warnings[1].message) in text


def test_non_ecg_is_not_printed_as_a_diagnosis(store, page):
    analysis = add(store, page, label="NonECG", confidence=0.97)
    html = render_report_html(analysis)
    text = " ".join(page_texts(render_report_pdf(analysis)))
    assert NOT_AN_ECG_TITLE in text and "Not an ECG — no interpretation" in text
    assert "predicted class" not in text.casefold()
    for section in ("Suggested tests", "Monitoring frequency", "Lifestyle advice", "Emergency guidance"):
        assert section not in text
    assert norm(load_guidance().for_label("NonECG").interpretation) in text
    assert "Risk level NONE" in text
    assert "result-nonecg" in html


def test_patient_text_is_escaped(store, page):
    evil = "<script>alert(1)</script> & <b>bold</b>"
    analysis = add(store, page, patient=PatientInfo(name=evil, notes="<img src=x onerror=alert(2)>"))
    html = render_report_html(analysis)
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    text = " ".join(page_texts(render_report_pdf(analysis)))
    assert evil in text and "<img src=x onerror=alert(2)>" in text


def test_disclaimer_and_page_number_on_every_page(store, page):
    long_notes = "\n".join(f"Observation {i}: symptoms reviewed with the patient." for i in range(70))
    analysis = add(store, page, patient=PatientInfo("Long Notes", 60, "male", long_notes))
    texts = page_texts(render_report_pdf(analysis))
    assert len(texts) >= 3
    disclaimer = norm(load_guidance().disclaimer)
    for number, text in enumerate(texts, start=1):
        assert disclaimer in text, number
        assert f"Page {number} of {len(texts)}" in text
    assert f"ECG Analysis Report · {analysis.id}" in texts[1]  # running header from page 2 on


def test_long_unbroken_text_wraps_inside_the_patient_column(store, page):
    """A name or note with no spaces wraps within its column: it must not run over the uploaded image
    beside it, nor push that image off the page (both happened before the cells could break words)."""
    from weasyprint import HTML

    patient = PatientInfo("W" * 150, 61, "female", "X" * 300)
    html = render_report_html(add(store, page, patient=patient))
    first = HTML(string=html).render().pages[0]
    boxes = list(first._page_box.descendants())

    def right_edge(box) -> float:
        return box.position_x + box.margin_width()

    def with_class(name: str):
        elements = ((b, getattr(b, "element", None)) for b in boxes)
        return next(b for b, e in elements if e is not None and name in e.get("class", "").split())

    column, image = with_class("patient-col"), with_class("thumbnail")
    texts = [b for b in column.descendants() if hasattr(b, "text")]
    assert {"W" * 10, "X" * 10} <= {b.text[:10] for b in texts}
    assert max(right_edge(b) for b in texts) <= right_edge(column) + 0.5
    assert right_edge(column) <= image.position_x
    assert right_edge(image) <= first.width
    # The two columns, padding included, fit the width of the page's content (the header's table).
    assert right_edge(with_class("image-col")) <= right_edge(with_class("layout")) + 0.5


def test_metrics_summary_tolerates_absence_and_other_versions(tmp_path, model_dir, store, page):
    assert model_metrics_summary(tmp_path / "nowhere", "test-1.0") == []
    assert model_metrics_summary(model_dir, "another-version") == []
    assert model_metrics_summary(model_dir, "test-1.0")[0] == "Held-out test set: 212 images"
    (model_dir / "metrics.json").write_text(json.dumps({**METRICS, "model_version": "retrained"}))
    assert model_metrics_summary(model_dir, "test-1.0") == []  # metrics of another model, same folder
    (model_dir / "metrics.json").write_text("{not json")
    assert model_metrics_summary(model_dir, "test-1.0") == []
    analysis = add(store, page)
    text = " ".join(page_texts(render_report_pdf(analysis, model_dir=tmp_path / "nowhere")))
    assert "Model version test-1.0 Test metrics Not available for this model version." in text


def test_missing_thumbnail_still_renders(store, page):
    analysis = add(store, page)
    analysis.thumbnail_path.unlink()
    assert "Image not available" in " ".join(page_texts(render_report_pdf(analysis)))


def test_first_page_renders_to_png(store, page, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    analysis = add(store, page)
    pdf_path = tmp_path / "report.pdf"
    pdf_path.write_bytes(render_report_pdf(analysis))
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", pdf_path, tmp_path / "p1"],
        check=True,
    )
    with Image.open(tmp_path / "p1.png") as rendered:
        rgb = np.asarray(rendered.convert("RGB")).astype(int)
    height, width = rgb.shape[:2]
    assert width / height == pytest.approx(210 / 297, abs=0.01)  # A4 portrait
    # The HIGH badge and the MI bar are drawn in their colour (#c0392b).
    red = (np.abs(rgb - (0xC0, 0x39, 0x2B)).sum(axis=2) < 40).sum()
    assert red > 100
    # The thumbnail (grid and traces) fills much of the top right of the page.
    top_right = rgb[int(height * 0.1) : int(height * 0.35), width // 2 :]
    assert (top_right.sum(axis=2) < 720).mean() > 0.12
    assert re.fullmatch(r"[0-9a-f-]{36}", str(analysis.id))


def page_image_count(pdf: bytes, page_number: int = 0) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages[page_number].images)


def test_gradcam_and_image_quality_are_printed_for_a_blurred_upload(store, page):
    rgb, _ = page
    blurred = cv2.GaussianBlur(rgb, (0, 0), 4)
    warnings = assess(blurred)
    assert "blurry" in {w.code for w in warnings}
    analysis = store.add(
        make_prediction("MI", 0.8),
        encode(blurred),
        blurred,
        "blurred.png",
        PatientInfo("Jane Example", 54, "female", "Chest pain for 2 hours."),
        quality_warnings=warnings,
        explanation=heat_overlay(blurred),
        measurements=PARTLY_MEASURED,
    )
    pdf = render_report_pdf(analysis)
    texts = page_texts(pdf)
    text = " ".join(texts)
    assert EXPLANATION_TITLE in text and norm(EXPLANATION_CAPTION) in text
    assert "Image quality" in text
    for warning in warnings:
        assert norm(warning.message) in text
    assert page_image_count(pdf) == 2  # the upload and its Grad-CAM overlay, both on page 1
    assert EXPLANATION_TITLE in texts[0] and "Image quality" in texts[0]
    assert len(texts) <= 2  # a typical result, measurements included, still fits on two pages
    html = render_report_html(analysis)
    assert html.count("data:image/jpeg;base64,") == 2


def test_non_ecg_report_has_no_heatmap(store, page):
    rgb, data = page
    analysis = store.add(
        make_prediction("NonECG", 0.97),
        data,
        rgb,
        "coffee.png",
        quality_warnings=assess(rgb),
        explanation=heat_overlay(rgb),  # even if one were stored, a Non-ECG report shows none
    )
    pdf = render_report_pdf(analysis)
    text = " ".join(page_texts(pdf))
    assert EXPLANATION_TITLE not in text and norm(EXPLANATION_CAPTION) not in text
    assert norm(NO_EXPLANATION_NON_ECG) in text
    assert "Image quality" not in text  # a clean picture: no quality box
    assert page_image_count(pdf) == 1


def test_older_analysis_without_explanation_or_quality_check(store, page):
    analysis = add(store, page)  # as stored before schema revision 0002: neither was recorded
    assert analysis.quality_warnings is None and analysis.explanation_path is None
    text = " ".join(page_texts(render_report_pdf(analysis)))
    assert EXPLANATION_TITLE not in text and norm(NO_EXPLANATION_MISSING) in text
    assert "Image quality" not in text


def test_explanation_file_gone_is_reported_as_missing(store, page):
    rgb, data = page
    analysis = store.add(make_prediction("AHB"), data, rgb, "x.png", explanation=heat_overlay(rgb))
    analysis.explanation_path.unlink()
    text = " ".join(page_texts(render_report_pdf(analysis)))
    assert EXPLANATION_TITLE not in text and norm(NO_EXPLANATION_MISSING) in text


@pytest.mark.parametrize("sex", ["female", "male"])
def test_measurements_are_printed_with_their_normal_ranges_and_findings(store, page, sex):
    """Each value with its unit and normal range, a value out of range with its finding (QTc against
    the limit for the patient's sex), a value not measured as a dash, and why it was not."""
    rgb, data = page
    analysis = store.add(
        make_prediction("AHB"), data, rgb, "ecg.png", PatientInfo(sex=sex), measurements=PARTLY_MEASURED
    )
    text = " ".join(page_texts(render_report_pdf(analysis)))
    for item in (
        "Measurements Measurement Value Normal range Finding",
        "Heart rate 112 bpm 50-100 fast: tachycardia (> 100 bpm)",
        "RR irregularity (CV) 0.05 < 0.15",
        "PR interval — 120-200",
        "QRS duration 124 ms < 120 wide QRS (>= 120 ms)",
        "QTc (Bazett) 460 ms <= 450 men, <= 470 women",
        "QRS axis 45 deg -30 to 90",
        "Partly measured: no P waves found",
    ):
        assert item in text, item
    assert ("long QTc (> 450 ms)" in text) == (sex == "male")  # 460 ms: within a woman's limit
    flagged = 3 if sex == "male" else 2
    assert render_report_html(analysis).count('class="out-of-range"') == flagged


def test_why_nothing_was_measured_is_printed(store, page):
    rgb, data = page
    non_ecg = store.add(
        make_prediction("NonECG", 0.97), data, rgb, "coffee.png", measurements=not_measured(NOT_AN_ECG_REASON)
    )
    older = add(store, page)  # as stored before measurements (schema revision 0006)
    for analysis, note in ((non_ecg, f"Not measured: {NOT_AN_ECG_REASON}"), (older, NOT_MEASURED_BEFORE)):
        text = " ".join(page_texts(render_report_pdf(analysis)))
        assert f"Measurements {note}" in text and "Normal range" not in text
