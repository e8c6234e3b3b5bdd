"""The "infarction not ruled out" flag: its threshold's fit, the classifier's use of it, and the shipped
record being what the kept cross-validation run gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecg_app.labels import CLASSES
from ecg_app.serving.classifier import (
    GATE_DISAGREES,
    MI_NOT_RULED_OUT,
    MODEL_INFO_FILE,
    STATUS_NEEDS_REVIEW,
    Classifier,
    decide,
)
from ecg_app.serving.mi_flag import flagged, not_ruled_out
from ecg_app.serving.quality import QualityWarning
from ecg_app.training.mi_flag_fit import fit_mi_flag, fit_threshold, record_mi_flag
from tests.conftest import MODEL_DIR, encode, synthetic_printout

MI, HMI, AHB, NORMAL, NON_ECG = range(5)


def _probs(p_mi: float, top: int) -> np.ndarray:
    """A probability vector with P(MI) = p_mi and the rest on class `top` (MI itself when p_mi wins)."""
    p = np.zeros(len(CLASSES))
    p[top] = 1.0 - p_mi
    p[MI] += p_mi
    return p


def test_the_threshold_flags_at_most_the_allowed_share_of_ecgs_without_an_infarction():
    # 100 printouts without an infarction (P(MI) 0.000 to 0.099, called AHB), 5 infarctions called MI.
    p_mi = np.arange(100) / 1000
    probs = np.array([_probs(p, AHB) for p in p_mi] + [_probs(0.9, MI)] * 5)
    y = np.array([AHB] * 100 + [MI] * 5)
    threshold = fit_threshold(probs, y, false_alarm_rate=0.03)
    assert threshold == pytest.approx((0.097 + 0.096) / 2)
    assert flagged(probs[:100], threshold).sum() == 3
    assert fit_threshold(probs, y, false_alarm_rate=0.0) == pytest.approx((1.0 + 0.099) / 2)
    # The infarctions do not move it: only printouts without one choose the threshold.
    more = np.vstack([probs, [_probs(0.05, AHB)] * 4])
    assert fit_threshold(more, np.r_[y, [MI] * 4], false_alarm_rate=0.03) == threshold


def test_only_an_ecg_called_another_ecg_class_is_flagged():
    assert not_ruled_out("AHB", 0.05, 0.03) and not_ruled_out("Normal", 0.03, 0.03)
    assert not not_ruled_out("HMI", 0.02, 0.03)
    assert not not_ruled_out("MI", 0.9, 0.03)  # called MI: nothing left to flag
    assert not not_ruled_out("NonECG", 0.2, 0.03)  # not an ECG: no diagnosis at all


def test_a_flagged_result_needs_review_and_says_why_first():
    p = _probs(0.10, NORMAL)
    flagged_result = decide(p, "v", review_threshold=0.4, mi_flag_threshold=0.05)
    assert flagged_result.label == "Normal" and flagged_result.status == STATUS_NEEDS_REVIEW
    assert flagged_result.warnings == (MI_NOT_RULED_OUT,)
    assert flagged_result.risk_level == "HIGH"  # a Normal ECG's is LOW
    unflagged = decide(p, "v", review_threshold=0.4, mi_flag_threshold=0.2)
    assert unflagged.status == "ok" and unflagged.risk_level == "LOW"
    assert decide(p, "v", review_threshold=0.4).warnings == ()  # a model without the flag
    # A Non-ECG call the gate keeps as an ECG needs review for that reason alone: the threshold was fitted
    # on what the softmax calls an ECG class, not on these small ECG-class probabilities.
    gated = decide(np.array([0.1, 0.0, 0.15, 0.0, 0.75]), "v", 0.4, 0.1, 0.5, mi_flag_threshold=0.05)
    assert gated.label == "AHB" and gated.warnings == (GATE_DISAGREES,)


def test_the_shipped_flag_is_the_kept_runs_fit_with_the_shipped_temperature():
    info = json.loads((MODEL_DIR / MODEL_INFO_FILE).read_text())
    record = info["mi_flag"]
    assert record["run"] == "model/cross-validation/diagnosis-mix" and record["false_alarm_rate"] == 0.02
    refit = fit_mi_flag(MODEL_DIR / "cross-validation" / "diagnosis-mix", info)
    assert json.loads(json.dumps(refit)) == record
    assert info["version"].endswith(f"+mi{record['threshold']:.3g}")
    assert Classifier(MODEL_DIR).mi_flag_threshold == record["threshold"]
    # It flags fewer out-of-fold printouts without an infarction than allowed, and catches more of them.
    figures = record["out_of_fold"]
    assert figures["flagged_without_mi"] <= 0.02 * figures["without_mi"]
    assert figures["mi_called_or_flagged"] > figures["mi_called"]


def test_a_model_recalibrated_since_serves_no_flag_until_it_is_fitted_again(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    info = json.loads((MODEL_DIR / MODEL_INFO_FILE).read_text())
    info["temperature"] = 1.3  # e.g. `fit-diagnosis` run again
    (model / MODEL_INFO_FILE).write_text(json.dumps(info))
    assert Classifier(model).mi_flag_threshold is None
    record = record_mi_flag(model, MODEL_DIR / "cross-validation" / "diagnosis-mix")
    assert record["temperature"] == 1.3 and Classifier(model).mi_flag_threshold == record["threshold"]
    version = json.loads((model / MODEL_INFO_FILE).read_text())["version"]
    assert version.count("+mi") == 1 and version.endswith(f"+mi{record['threshold']:.3g}")


def test_a_stored_flagged_analysis_gives_back_its_flag_and_high_risk(store):
    """What `ecg-app analyze` and the app print comes from the stored analysis: its prediction must keep
    the flag (and so the HIGH risk and the reason for review) but not the image-quality warnings."""
    rgb = synthetic_printout(seed=4)
    prediction = decide(_probs(0.10, NORMAL), "v", review_threshold=0.4, mi_flag_threshold=0.05)
    blurry = QualityWarning("blurry", "The image looks blurred.")
    stored = store.add(
        prediction, encode(rgb), rgb, "ecg.png", None, quality_warnings=[*prediction.warnings, blurry]
    )
    again = store.get(stored.id)
    assert again.risk_level == "HIGH" and again.prediction.warnings == (MI_NOT_RULED_OUT,)
    assert again.prediction.to_dict() == prediction.to_dict()
