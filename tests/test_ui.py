"""Dashboard building blocks without a server: wording of results, filters, paging, the app layout."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from ecg_app.analysis import NOT_AN_ECG_REASON
from ecg_app.clinical.measurements import (
    NOT_MEASURED_BEFORE,
    PARTIAL,
    Measurements,
    RhythmStrip,
    not_measured,
)
from ecg_app.config import Settings
from ecg_app.serving.classifier import MI_NOT_RULED_OUT
from ecg_app.store import Page, PatientInfo
from ecg_app.ui import about_tab, analyze_tab, history_tab, performance_tab, widgets


def result(label: str, status: str = "ok", confidence: float = 0.9, risk: str = "HIGH") -> dict:
    return {"label": label, "status": status, "confidence": confidence, "risk_level": risk}


def test_confident_ecg_result_is_shown_as_a_finding_with_its_risk():
    card = widgets.result_card(result("MI"))
    assert "Myocardial Infarction" in card and "90.0%" in card and "High risk" in card
    assert "Emergency warning" in widgets.emergency_banner(result("MI"))
    assert "Suggested tests" in widgets.guidance_html(result("MI"))


@pytest.mark.parametrize(
    ("res", "headline"),
    [
        (result("NonECG", risk="NONE"), "Not an ECG image"),
        (result("MI", status="needs_review", confidence=0.35), "Inconclusive result: needs review"),
    ],
)
def test_non_ecg_and_low_confidence_are_not_presented_as_diagnoses(res, headline):
    card = widgets.result_card(res)
    assert headline in card
    assert "Please upload a valid" in card
    assert widgets.emergency_banner(res) == ""
    assert widgets.guidance_html(res) == ""


def test_an_ecg_with_infarction_not_ruled_out_is_shown_as_such_not_as_low_confidence():
    """The flag (`mi_flag`) turns the card into a review notice naming the class and P(MI), puts its advice
    in the red banner, and keeps it out of the image-quality notice, which still lists the others."""
    warnings = [
        {"code": MI_NOT_RULED_OUT.code, "message": MI_NOT_RULED_OUT.message},
        {"code": "blurry", "message": "The image looks blurred. Retake it."},
    ]
    res = {
        **result("Normal", status="needs_review", confidence=0.93, risk="LOW"),
        "probabilities": {"MI": 0.061, "Normal": 0.93},
        "quality_warnings": warnings,
    }
    card = widgets.result_card(res)
    assert "Needs review: infarction not ruled out" in card and "Normal ECG (93%)" in card and "6.1%" in card
    assert "Inconclusive" not in card
    banner = widgets.emergency_banner(res)
    assert "Infarction not ruled out." in banner and "call the emergency number" in banner
    notice = widgets.quality_notice(warnings)
    assert "blurred" in notice and MI_NOT_RULED_OUT.message not in notice
    assert widgets.quality_notice(warnings[:1]) == ""
    assert widgets.guidance_html(res) == ""  # not presented as a Normal finding


def test_medium_and_low_risk_have_no_emergency_banner():
    assert widgets.emergency_banner(result("AHB", risk="MEDIUM")) == ""
    assert widgets.emergency_banner(result("Normal", risk="LOW")) == ""


def test_patient_text_is_escaped():
    assert "<script>" not in widgets.stat_card("<script>", "1")


def test_history_filter_dates_are_inclusive_days_in_utc():
    flt = history_tab.make_filter("MI", "All", "2024-03-01", "2024-03-02", "  smith ")
    assert flt.label == "MI" and flt.risk_level is None and flt.search == "smith"
    assert flt.since == datetime(2024, 3, 1, tzinfo=UTC)
    assert flt.until == datetime(2024, 3, 3, tzinfo=UTC)
    empty = history_tab.make_filter("All", "All", None, "", "")
    assert (empty.label, empty.since, empty.until, empty.search) == (None, None, None, None)


def test_page_text():
    assert (
        history_tab.page_text(Page(items=[], total=0, limit=20, offset=0))
        == "No analyses match these filters."
    )
    page = Page(items=[object()] * 20, total=45, limit=20, offset=20)
    assert history_tab.page_text(page) == "Page 2 of 3 · analyses 21–40 of 45"


def test_patient_fields_from_the_form():
    patient = analyze_tab.patient_from_fields(" Ann ", " 61 ", "Female", "")
    assert (patient.name, patient.age, patient.sex, patient.notes) == ("Ann", 61, "female", None)
    assert analyze_tab.patient_from_fields(None, "", "Not stated", None).sex is None
    with pytest.raises(ValueError, match="whole number"):
        analyze_tab.patient_from_fields(None, "sixty", None, None)


def test_model_card_sections():
    card = "# Card\n\n## What it does\nClassifies.\n\n## Known limits\n- One hospital.\n"
    assert about_tab.card_section(card, "what it does") == "Classifies."
    assert about_tab.card_section(card, "limit") == "- One hospital."
    assert about_tab.card_section(card, "missing") is None


def test_examples_are_shipped_and_small():
    files = [analyze_tab.EXAMPLES_DIR / name for name, _ in analyze_tab.EXAMPLES]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in files) < 1.5e6


def test_app_builds_with_a_stub_classifier(tmp_path):
    from ecg_app.ui import build_app

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    app = build_app(settings, classifier=object(), warm=False)
    api = {dep.api_name for dep in app.blocks.fns.values() if dep.api_visibility == "public"}
    assert {"analyze", "report", "history"} <= api
    # The Analyze tab keeps the rhythm strip in a state beside the answer; the API answers the JSON alone.
    returns = app.blocks.get_api_info()["named_endpoints"]["/analyze"]["returns"]
    assert [r["component"] for r in returns] == ["Json"]


def test_app_is_built_with_the_networks_warm_and_finishes_the_warm_up_in_the_background(
    tmp_path, shipped_model, caplog
):
    """Start-up waits only for what every analysis needs (the networks, traced); the detector, the
    first explanation and the PDF fonts are readied in a background thread while the server starts."""
    import threading

    from ecg_app.analysis import explainer_for
    from ecg_app.serving.classifier import Classifier
    from ecg_app.ui import build_app

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    classifier = Classifier(shipped_model)
    with caplog.at_level("INFO", logger="ecg_app.ui.app"):
        build_app(settings, classifier=classifier)
        assert {"page", "curves", "reader"} <= set(
            classifier.networks._sessions
        )  # opened before the app is returned
        warming = [t for t in threading.enumerate() if t.name == "ecg-app-warm-up"]
        assert len(warming) == 1 and warming[0].daemon
        warming[0].join(timeout=300)
    assert not warming[0].is_alive()
    assert "warm-up finished" in caplog.text
    assert "detector" in classifier.networks._sessions
    assert explainer_for(classifier) is not None


def test_quality_notice_lists_warnings_escaped_and_is_empty_without_them():
    warnings = [
        {"code": "blurry", "message": "The image looks blurred. Retake it."},
        {"code": "x", "message": "<b>tag</b> & more."},
    ]
    notice = widgets.quality_notice(warnings)
    assert "Image quality" in notice and "The image looks blurred. Retake it." in notice
    assert "<b>tag</b>" not in notice and "&lt;b&gt;tag&lt;/b&gt; &amp; more." in notice
    assert widgets.quality_notice([]) == "" and widgets.quality_notice(None) == ""
    assert analyze_tab.quality_view(None)["visible"] is False
    assert analyze_tab.quality_view(warnings)["visible"] is True


def test_explanation_views_show_the_overlay_or_say_why_not(tmp_path):
    from ecg_app.analysis import EXPLANATION_CAPTION, NO_EXPLANATION_MISSING, NO_EXPLANATION_NON_ECG
    from ecg_app.store import open_store
    from tests.conftest import encode, synthetic_printout
    from tests.test_store import heat_overlay, make_prediction

    rgb = synthetic_printout(seed=4)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with open_store(settings) as store:
        explained = store.add(make_prediction("MI"), encode(rgb), rgb, "a.png", explanation=heat_overlay(rgb))
        non_ecg = store.add(make_prediction("NonECG"), encode(rgb), rgb, "b.png")
        older = store.add(make_prediction("Normal"), encode(rgb), rgb, "c.png")
    picture, caption = analyze_tab.explanation_views(explained)
    assert picture["visible"] is True and picture["value"] == str(explained.explanation_path)
    assert EXPLANATION_CAPTION in caption
    picture, caption = analyze_tab.explanation_views(non_ecg)
    assert picture["visible"] is False and NO_EXPLANATION_NON_ECG in caption
    picture, caption = analyze_tab.explanation_views(older)
    assert picture["visible"] is False and NO_EXPLANATION_MISSING in caption


def test_measurements_table_flags_out_of_range_values_for_the_patients_sex():
    m = Measurements(
        heart_rate_bpm=120.0,
        qrs_ms=96.0,
        qtc_bazett_ms=460.0,
        quality=PARTIAL,
        not_measured_reason="no P waves",
    )
    female = widgets.measurements_html(m, "female")
    assert "Heart rate</th><td>120 bpm</td><td>50-100</td>" in female and "tachycardia" in female
    assert "QRS duration</th><td>96 ms</td><td>&lt; 120</td><td></td>" in female
    assert "PR interval</th><td>—</td>" in female  # not measured
    assert female.count('class="out-of-range"') == 1  # 460 ms is within a woman's QTc limit
    assert widgets.measurements_html(m, "male").count('class="out-of-range"') == 2
    assert "Partly measured: no P waves" in female


def test_measurements_panel_says_why_nothing_was_measured():
    non_ecg = widgets.measurements_html(not_measured(NOT_AN_ECG_REASON), "female")
    assert f"Not measured: {NOT_AN_ECG_REASON}" in non_ecg and "<table" not in non_ecg
    assert NOT_MEASURED_BEFORE in widgets.measurements_html(None, None)  # stored before measurements
    assert "&lt;b&gt;" in widgets.measurements_html(not_measured("<b>odd</b>"), None)


def test_analyze_tab_shows_the_stored_measurements_and_plots_the_strip_when_there_is_one():
    m = Measurements(heart_rate_bpm=72.0, qtc_bazett_ms=460.0, quality=PARTIAL)
    analysis = replace(
        _stored("Normal", 0.9, 0, "P-1"), patient=PatientInfo("P-1", sex="male"), measurements=m
    )
    assert analyze_tab.measurements_view(analysis) == widgets.measurements_html(m, "male")
    assert analyze_tab.measurements_view(None) == ""
    seconds = np.linspace(0, 10, 5000)
    plot = analyze_tab.strip_view(RhythmStrip(seconds, np.zeros(5000), np.array([1.0, 2.0])))
    assert plot["visible"] is True and list(plot["value"].data[1].x) == [1.0, 2.0]
    assert analyze_tab.strip_view(None)["visible"] is False


def test_performance_summary_shows_the_ecg_gate_when_fitted():
    gate = {
        "fitted": True,
        "marked_unfamiliar": {"template_ecgs": {"n": 59, "rate": 0.0}},
        "other_layout_called_non_ecg": {"softmax_only": {"rate": 1 / 6}, "with_gate": {"rate": 0.0}},
    }
    html = performance_tab.summary_html({"test": {"n": 128, "ecg_gate": gate}})
    assert "ECG gate" in html and "16.7% (softmax alone), 0.0% (with the gate)" in html
    unfitted = performance_tab.summary_html({"test": {"n": 128, "ecg_gate": {**gate, "fitted": False}}})
    assert "ECG gate" not in unfitted
    other = {**gate["other_layout_called_non_ecg"], "with_gate_and_detector": {"rate": 0.0}}
    detected = performance_tab.summary_html(
        {"test": {"n": 128, "ecg_gate": {**gate, "other_layout_called_non_ecg": other}}}
    )
    assert "0.0% (with the gate), 0.0% (with the gate and the ECG detector)" in detected


def test_robustness_section_is_a_table_with_readable_headings():
    metrics = {
        "robustness": {
            "clean": {"accuracy": 0.96875, "needs_review": 0.0, "other_layout_called_non_ecg": 1 / 6},
            "JPEG quality 30": {"accuracy": 0.9609375, "needs_review": 0.0078125},
        }
    }
    text = performance_tab.extra_markdown(metrics)
    assert "### Robustness" in text
    assert "| Condition | Accuracy | Needs review | Other layout called Non-ECG |" in text
    assert "| Clean | 0.969 | 0.000 | 0.167 |" in text
    assert "| JPEG quality 30 | 0.961 | 0.008 |  |" in text
    assert performance_tab.extra_markdown({}) == ""


def test_about_says_what_is_kept_of_an_upload(tmp_path):
    text = about_tab.about_markdown(tmp_path)
    assert "painted white" in text and "EXIF" in text and "`ECG_APP_KEEP_ORIGINALS=1`: off here" in text
    assert "on here" in about_tab.about_markdown(tmp_path, keep_originals=True)


def test_comparison_table_lists_each_class_then_and_now():
    from ecg_app.clinical.comparison import compare

    later = _stored("MI", 0.7, days_ago=0, patient="P-1")
    earlier = _stored("Normal", 0.8, days_ago=30, patient="p-1")
    result = compare(later, earlier)
    assert result.earlier is earlier and result.days_apart == pytest.approx(30, abs=1e-6)
    assert result.same_patient
    assert "Normal ECG then, Myocardial Infarction now; risk LOW → HIGH" in result.summary()
    html = history_tab.comparison_html(result)
    assert html.count("<tr>") == 1 + 2 + 5 and "+65.0%" in html and "Not stored under the same" not in html
    assert "Neither ECG was measured" in html


def test_comparison_and_timeline_show_the_measurements():
    """Each measurement then, now and its change; "—" where one ECG did not measure it; the timeline's
    heart rate column."""
    from ecg_app.clinical.comparison import compare

    earlier = replace(
        _stored("Normal", 0.8, days_ago=7, patient="P-1"),
        measurements=Measurements(heart_rate_bpm=72.0, qrs_ms=96.0, qt_ms=380.0, quality=PARTIAL),
    )
    later = replace(
        _stored("AHB", 0.7, days_ago=0, patient="P-1"),
        measurements=Measurements(heart_rate_bpm=118.4, qrs_ms=96.0, quality=PARTIAL),
    )
    result = compare(later, earlier)
    changes = result.measurement_changes()
    assert changes["heart_rate_bpm"] == pytest.approx((72.0, 118.4, 46.4))
    assert changes["qt_ms"] == (380.0, None, None) and changes["pr_ms"] == (None, None, None)
    assert result.to_dict()["measurement_changes"]["qrs_ms"] == 0.0
    html = history_tab.comparison_measurements_html(result)
    assert html.count("<tr>") == 1 + 8
    assert "<td>72 bpm</td><td>118 bpm</td><td>+46 bpm</td>" in html
    assert "<td>380 ms</td><td>—</td><td>—</td>" in html
    assert "<td>96 ms</td><td>96 ms</td><td>+0 ms</td>" in html

    listed = Page(items=[later, _stored("MI", 0.9, 1, "Q")], total=2, limit=20, offset=0)
    table = history_tab.table_rows(listed)
    assert list(table.columns) == history_tab.COLUMNS and table["Heart rate"].tolist() == ["118 bpm", "—"]


def _stored(label: str, confidence: float, days_ago: int, patient: str):
    import uuid
    from datetime import timedelta
    from pathlib import Path

    from ecg_app.labels import CLASSES
    from ecg_app.store import PatientInfo, StoredAnalysis

    rest = (1 - confidence) / 4
    when = datetime(2026, 12, 1, tzinfo=UTC) - timedelta(days=days_ago)
    return StoredAnalysis(
        id=uuid.uuid4(), created_at=when, original_filename="x.png", image_sha256="0" * 64,
        image_path=Path("x"), thumbnail_path=Path("x"), media_type="image/png", label=label,
        confidence=confidence, probabilities={c: confidence if c == label else rest for c in CLASSES},
        risk_level="HIGH" if label == "MI" else "LOW", model_version="v", status="ok",
        patient=PatientInfo(patient),
    )  # fmt: skip
