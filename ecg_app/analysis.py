"""One upload, end to end: intake -> classifier (+ ECG gate) -> quality check + Grad-CAM + measurements
-> de-identify -> store. The CLI and the UI both call this."""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ecg_app.clinical.measurements import Measurements, not_measured
from ecg_app.clinical.rhythm import measure
from ecg_app.labels import CLASSES, NON_ECG
from ecg_app.serving.classifier import Prediction
from ecg_app.serving.deidentify import deidentify
from ecg_app.serving.explain import build_explainer, heatmap_on_page, overlay
from ecg_app.serving.intake import IntakeLimits, load_image
from ecg_app.serving.preprocess import ink_map, page_as_read
from ecg_app.serving.quality import QualityWarning, assess

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported where an analysis is stored, not by `predict`
    from ecg_app.store import AnalysisStore, PatientInfo, StoredAnalysis

log = logging.getLogger(__name__)

# Shown wherever an explanation would be, for a result that has none.
NO_EXPLANATION_NON_ECG = (
    "No Grad-CAM map: the picture was not recognised as an ECG, so there is nothing ECG-like to explain."
)
NO_EXPLANATION_MISSING = "No Grad-CAM map is stored for this analysis."
EXPLANATION_TITLE = "Where the model looked (Grad-CAM)"
EXPLANATION_CAPTION = (
    "Attention map: warmer colours show what weighed most in the prediction. It is not a diagnosis."
)
NOT_AN_ECG_REASON = "the picture was not recognised as an ECG"


def image_warnings(prediction: Prediction, rgb: np.ndarray) -> list[QualityWarning]:
    """What may make this result unreliable: the ECG gate's findings first, then the picture's quality."""
    return [*prediction.warnings, *assess(rgb)]


def explanation_note(label: str, has_map: bool) -> str | None:
    """What to show instead of a Grad-CAM picture, or None when there is one to show."""
    if label == NON_ECG:
        return NO_EXPLANATION_NON_ECG
    return None if has_map else NO_EXPLANATION_MISSING


def measurements_of(page: np.ndarray, label: str) -> Measurements:
    """Rate, intervals and axis read off a page (`page_as_read`) of the given class; none for a Non-ECG.

    Measuring is an aid, like the explanation: a failure is logged and said in `not_measured_reason`,
    never raised, so the result it accompanies is not lost."""
    if label == NON_ECG:
        return not_measured(NOT_AN_ECG_REASON)
    try:
        return measure(page)
    except Exception as exc:
        log.exception("Measuring failed; the analysis goes on without measurements")
        return not_measured(f"measuring failed: {str(exc) or type(exc).__name__}")


class Predictor(Protocol):
    def predict(self, image: np.ndarray) -> Prediction: ...


class Explainer(Protocol):
    """A map in [0, 1] for one preprocessed input and one class (`explain.build_explainer`)."""

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray: ...


_explainers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_explainers_lock = threading.Lock()


def explainer_for(classifier: Predictor) -> Explainer | None:
    """The process-wide Grad-CAM of a classifier's network, built once on first use; None when the
    classifier has no networks (a stand-in) or its network has no layer Grad-CAM can use."""
    with _explainers_lock:
        try:
            return _explainers[classifier]
        except KeyError:
            pass
        except TypeError:  # cannot be weakly referenced: a stand-in, never a Classifier
            return _build_explainer(classifier)
        explainer = _explainers[classifier] = _build_explainer(classifier)
        return explainer


def _build_explainer(classifier: Predictor) -> Explainer | None:
    if getattr(classifier, "networks", None) is None:
        return None
    try:
        return build_explainer(classifier)
    except ValueError as exc:  # e.g. the "seed" network has no s5b_relu layer
        log.warning("Grad-CAM is not available for this model (%s); analyses get no map", exc)
        return None


def explanation_overlay(explainer: Explainer, rgb: np.ndarray, label: str) -> np.ndarray | None:
    """Grad-CAM overlay of the predicted class, at thumbnail size (of the upload, or of its page when a
    photographed page was straightened).

    The map is computed on exactly the model's input (preprocessed full-size picture), then laid over
    the scaled-down page: `GradCam.explain`'s overlay as the thumbnail shows it, without blending a
    full-size image that is only ever shown small. A photographed page is shown straightened, as the
    networks read it. None for a Non-ECG result: nothing ECG-like to explain.
    """
    if label == NON_ECG:
        return None
    return _overlay_on_page(explainer, page_as_read(rgb), label)


def _overlay_on_page(explainer: Explainer, page: np.ndarray, label: str) -> np.ndarray:
    """`explanation_overlay` of a page already read (`page_as_read`)."""
    from ecg_app.store.images import THUMBNAIL_MAX_SIDE, fit

    cam = explainer(ink_map(page), CLASSES.index(label))
    preview = fit(page, THUMBNAIL_MAX_SIDE)
    return overlay(preview, heatmap_on_page(preview, cam))


def analyze_and_store(
    image_bytes: bytes,
    filename: str | None,
    patient: PatientInfo | None,
    store: AnalysisStore,
    classifier: Predictor,
    limits: IntakeLimits | None = None,
) -> StoredAnalysis:
    """Classify an upload and record it with its image-quality warnings and its Grad-CAM overlay.

    The classifier reads the upload as it is; what is stored (picture, thumbnail, overlay) is its page
    de-identified (`deidentify`: header, footer and margins, or any text, painted white). Bad input
    raises IntakeError before anything is stored. The explanation and the measurements are aids, not
    part of the result: if either fails, the analysis is stored without it (and the failure logged).
    The returned analysis carries the measurements as stored plus the digitised strip they were read
    from (`Measurements.strip`, for the Analyze tab's plot), which is not stored."""
    rgb = load_image(image_bytes, limits or IntakeLimits())
    prediction = classifier.predict(rgb)
    warnings = image_warnings(prediction, rgb)
    page = page_as_read(rgb)  # read once: the overlay and the kept picture are both of the page
    explanation = None
    explainer = explainer_for(classifier) if prediction.label != NON_ECG else None
    if explainer is not None:
        try:
            explanation = _overlay_on_page(explainer, page, prediction.label)
        except Exception:
            log.exception("Grad-CAM failed; storing the analysis without its map")
    measurements = measurements_of(page, prediction.label)
    clean = deidentify(page)
    stored = store.add(
        prediction,
        bytes(image_bytes),
        clean.image,
        filename,
        patient,
        quality_warnings=warnings,
        explanation=None if explanation is None else clean.apply_to(explanation),
        deidentification=clean.method,
        measurements=measurements,
    )
    return replace(stored, measurements=replace(stored.measurements, strip=measurements.strip))
