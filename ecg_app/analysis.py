"""One upload, end to end: intake -> classifier -> store. The CLI and the UI both call this."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ecg_app.classifier import Prediction
from ecg_app.intake import IntakeLimits, load_image
from ecg_app.store import AnalysisStore, PatientInfo, StoredAnalysis


class Predictor(Protocol):
    def predict(self, image: np.ndarray) -> Prediction: ...


def analyze_and_store(
    image_bytes: bytes,
    filename: str | None,
    patient: PatientInfo | None,
    store: AnalysisStore,
    classifier: Predictor,
    limits: IntakeLimits | None = None,
) -> StoredAnalysis:
    """Classify an upload and record it. Bad input raises IntakeError before anything is stored."""
    rgb = load_image(image_bytes, limits or IntakeLimits())
    prediction = classifier.predict(rgb)
    return store.add(prediction, bytes(image_bytes), rgb, filename, patient)
