"""Load the shipped model once and turn RGB images into class probabilities.

`model/` holds `ecg_cnn.keras` (the network) and `model.json` (version, input size, the temperature
fitted on the validation split, and the "needs review" threshold). Loading is lazy and thread-safe so
an app with many request threads loads the network exactly once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_app.calibration import softmax
from ecg_app.config import DEFAULT_MODEL_DIR
from ecg_app.guidance import load_guidance
from ecg_app.labels import CLASSES, display_name
from ecg_app.preprocess import preprocess_batch

MODEL_FILE = "ecg_cnn.keras"
MODEL_INFO_FILE = "model.json"
STATUS_OK = "ok"
STATUS_NEEDS_REVIEW = "needs_review"


@dataclass(frozen=True)
class Prediction:
    """One image's result: everything a caller needs to show, store or print it."""

    label: str
    probabilities: dict[str, float]
    confidence: float
    model_version: str
    status: str = STATUS_OK

    @property
    def display_name(self) -> str:
        return display_name(self.label)

    @property
    def risk_level(self) -> str:
        return load_guidance().for_label(self.label).risk_level

    def to_dict(self) -> dict:
        """The fields of `ecg-app predict --json` (without "file")."""
        return {
            "label": self.label,
            "display_name": self.display_name,
            "confidence": round(self.confidence, 6),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "risk_level": self.risk_level,
            "status": self.status,
            "model_version": self.model_version,
        }


def prediction_from_probabilities(probs: np.ndarray, version: str, review_threshold: float) -> Prediction:
    """Build a Prediction from one probability vector in CLASSES order."""
    top = int(np.argmax(probs))
    confidence = float(probs[top])
    return Prediction(
        label=CLASSES[top],
        probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=True)},
        confidence=confidence,
        model_version=version,
        status=STATUS_OK if confidence >= review_threshold else STATUS_NEEDS_REVIEW,
    )


class Classifier:
    """The shipped CNN behind a scikit-learn-like `predict_proba`, plus `predict` returning Predictions."""

    def __init__(self, model_dir: str | Path = DEFAULT_MODEL_DIR):
        self.model_dir = Path(model_dir)
        info_path = self.model_dir / MODEL_INFO_FILE
        if not info_path.is_file():
            raise FileNotFoundError(f"No trained model in {self.model_dir} (missing {MODEL_INFO_FILE})")
        self.info: dict = json.loads(info_path.read_text(encoding="utf-8"))
        self.version: str = self.info["version"]
        self.temperature: float = float(self.info.get("temperature", 1.0))
        self.review_threshold: float = float(self.info.get("review_threshold", 0.0))
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        """The Keras model, loaded on first use (double-checked lock: one load even under concurrency)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                    import keras

                    self._model = keras.saving.load_model(self.model_dir / MODEL_FILE, compile=False)
        return self._model

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Log-probabilities of the network (its softmax output) for a preprocessed batch."""
        probs = np.asarray(self.model.predict_on_batch(batch), dtype=np.float64)
        return np.log(np.clip(probs, 1e-12, 1.0))

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Calibrated probabilities, shape (N, 5), for RGB uint8 images (batched to bound memory)."""
        chunks = [
            softmax(self.logits(preprocess_batch(images[start : start + batch_size])) / self.temperature)
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(CLASSES)))

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[Prediction]:
        probs = self.predict_proba(images, batch_size)
        return [prediction_from_probabilities(p, self.version, self.review_threshold) for p in probs]

    def predict(self, image: np.ndarray) -> Prediction:
        return self.predict_batch([image])[0]


_shared: dict[Path, Classifier] = {}
_shared_lock = threading.Lock()


def get_classifier(model_dir: str | Path | None = None) -> Classifier:
    """The process-wide Classifier for a model directory (one network in memory per directory)."""
    key = Path(model_dir or DEFAULT_MODEL_DIR).resolve()
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Classifier(key)
        return _shared[key]
