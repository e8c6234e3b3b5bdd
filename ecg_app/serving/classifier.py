"""Load the shipped model once and turn RGB images into class probabilities.

`model/` holds `ecg_cnn.keras` (the network), `model.json` (version, input size, the temperature
fitted on the validation split, the "needs review" threshold), `ecg_gate.npz` (the embedding-space
ECG gate, see `ecg_gate`) and `ecg_detector.keras` (the whole-picture ECG detector, see
`ecg_detector`), and, when trained, `ecg_diagnosis.keras` (the lead-reading diagnosis network, see
`lead_diagnosis`), and the same networks exported as ONNX graphs, which serving runs
(`network_runtime`; `ecg-app model export-onnx` writes them). Loading is lazy and thread-safe so an app with
many request threads loads each network exactly once.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_app.clinical.guidance import load_guidance
from ecg_app.config import DEFAULT_MODEL_DIR
from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG, display_name
from ecg_app.serving import ecg_detector
from ecg_app.serving.calibration import softmax
from ecg_app.serving.ecg_detector import DETECTOR_FILE
from ecg_app.serving.ecg_gate import GATE_FILE, EcgGate
from ecg_app.serving.lead_diagnosis import DIAGNOSIS_FILE, combine
from ecg_app.serving.mi_flag import INFO_KEY as MI_FLAG_KEY
from ecg_app.serving.mi_flag import WARNING_CODE as MI_FLAG_WARNING
from ecg_app.serving.mi_flag import flagged
from ecg_app.serving.network_runtime import Networks, OnnxNetworks, onnx_is_current
from ecg_app.serving.preprocess import preprocess_batch
from ecg_app.serving.quality import QualityWarning

MODEL_INFO_FILE = "model.json"
STATUS_OK = "ok"
STATUS_NEEDS_REVIEW = "needs_review"

# What the ECG gate adds when its opinion and the softmax's disagree (shown like image-quality warnings).
GATE_DISAGREES = QualityWarning(
    "ecg_gate_disagrees",
    "The classifier scored this picture as not an ECG, but it closely resembles the ECGs the model was "
    "trained on. It is treated as an ECG of uncertain class: have it reviewed.",
)
DETECTOR_DISAGREES = QualityWarning(
    "ecg_detector_disagrees",
    "The classifier scored this picture as not an ECG, but the ECG detector recognises an ECG in it "
    "(perhaps another machine's layout, which the classifier was not trained to read). It is treated as "
    "an ECG of uncertain class: have it reviewed.",
)
UNFAMILIAR_IMAGE = QualityWarning(
    "unfamiliar_image",
    "This picture does not resemble the 12-lead printouts the model was trained on (another layout, a "
    "screen, or not an ECG at all), so the class shown is unreliable: have it reviewed.",
)

# What the infarction flag adds (`mi_flag`): shown apart from the image-quality warnings, as a banner.
MI_NOT_RULED_OUT = QualityWarning(
    MI_FLAG_WARNING,
    "Another class is the most likely, but the probability of myocardial infarction is too high to rule "
    "one out: most infarctions the model fails to name score this high, and few ECGs without one do. "
    "Have a clinician read this ECG now, with the symptoms and troponin; with chest pain, breathlessness "
    "or other worrying symptoms, call the emergency number.",
)

# Every warning `decide` may give: what a stored analysis keeps of them is its prediction's again.
PREDICTION_WARNING_CODES = frozenset(
    w.code for w in (GATE_DISAGREES, DETECTOR_DISAGREES, UNFAMILIAR_IMAGE, MI_NOT_RULED_OUT)
)


@dataclass(frozen=True)
class Prediction:
    """One image's result: everything a caller needs to show, store or print it."""

    label: str
    probabilities: dict[str, float]
    confidence: float
    model_version: str
    status: str = STATUS_OK
    warnings: tuple[QualityWarning, ...] = ()
    ecg_distance: float | None = None  # the gate's distance to the training ECGs (None: no gate)
    # The ECG detector's P(ECG); None without a detector, or when the softmax named an ECG class (then the
    # detector cannot change the result and `predict_batch` does not run it).
    ecg_probability: float | None = None

    @property
    def display_name(self) -> str:
        return display_name(self.label)

    @property
    def infarction_not_ruled_out(self) -> bool:
        """Whether the result carries the infarction flag (`mi_flag`), by its code: a stored analysis
        keeps the message it was given, which a later version may word differently."""
        return any(w.code == MI_FLAG_WARNING for w in self.warnings)

    @property
    def risk_level(self) -> str:
        """The class's risk level, raised to HIGH when an infarction is not ruled out (`mi_flag`), so
        that a triage by risk finds those results with the infarctions."""
        if self.infarction_not_ruled_out:
            return "HIGH"
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
            "ecg_distance": None if self.ecg_distance is None else round(self.ecg_distance, 6),
            "ecg_probability": None if self.ecg_probability is None else round(self.ecg_probability, 6),
            "model_version": self.model_version,
        }


def decide(
    probs: np.ndarray,
    version: str,
    review_threshold: float,
    ecg_distance: float | None = None,
    gate_threshold: float | None = None,
    ecg_probability: float | None = None,
    detector_threshold: float | None = None,
    mi_flag_threshold: float | None = None,
) -> Prediction:
    """The result for one probability vector (CLASSES order) and, when fitted, the gate's distance, the
    detector's P(ECG) and the infarction flag's threshold.

    Calling a real ECG "not an ECG" hides it from every later check, so Non-ECG needs every opinion:
    when the softmax says Non-ECG but the picture sits among the training ECGs (gate) or the detector
    recognises an ECG, the most likely ECG class is shown for review instead. An ECG class far from every
    training ECG is kept but marked for review. Anything below the review threshold needs review too,
    and so does an ECG called another class whose P(MI) reaches the flag's threshold (`mi_flag`).
    """
    top = int(np.argmax(probs))
    warnings: tuple[QualityWarning, ...] = ()
    gate_says_ecg = None if ecg_distance is None or gate_threshold is None else ecg_distance <= gate_threshold
    detector_says_ecg = (
        None
        if ecg_probability is None or detector_threshold is None
        else ecg_probability >= detector_threshold
    )
    if CLASSES[top] == NON_ECG and (gate_says_ecg or detector_says_ecg):
        top = int(np.argmax(probs[: len(ECG_CLASSES)]))
        warnings = (GATE_DISAGREES,) if gate_says_ecg else (DETECTOR_DISAGREES,)
    elif CLASSES[top] != NON_ECG and gate_says_ecg is False:
        warnings = (UNFAMILIAR_IMAGE,)
    # As the threshold was fitted: on what the softmax itself calls (a picture the gate or detector keeps
    # as an ECG already needs review, and its small ECG-class probabilities were not what it was fitted on).
    if mi_flag_threshold is not None and flagged(np.asarray(probs)[None], mi_flag_threshold)[0]:
        warnings = (MI_NOT_RULED_OUT, *warnings)
    confidence = float(probs[top])
    return Prediction(
        label=CLASSES[top],
        probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=True)},
        confidence=confidence,
        model_version=version,
        status=STATUS_OK if confidence >= review_threshold and not warnings else STATUS_NEEDS_REVIEW,
        warnings=warnings,
        ecg_distance=ecg_distance,
        ecg_probability=ecg_probability,
    )


class Classifier:
    """The shipped CNN behind a scikit-learn-like `predict_proba`, plus `predict` returning Predictions.

    The networks run in ONNX Runtime from the directory's export (`training.onnx_export`). Training,
    which fits `.keras` files before they are exported, passes Keras networks instead
    (`training.keras_networks.fitted_classifier`); a model whose export is missing or stale cannot be
    served."""

    def __init__(self, model_dir: str | Path = DEFAULT_MODEL_DIR, networks: Networks | None = None):
        self.model_dir = Path(model_dir)
        info_path = self.model_dir / MODEL_INFO_FILE
        if not info_path.is_file():
            raise FileNotFoundError(f"No trained model in {self.model_dir} (missing {MODEL_INFO_FILE})")
        self.info: dict = json.loads(info_path.read_text(encoding="utf-8"))
        self.version: str = self.info["version"]
        self.temperature: float = float(self.info.get("temperature", 1.0))
        self.review_threshold: float = float(self.info.get("review_threshold", 0.0))
        gate_path = self.model_dir / GATE_FILE
        self.gate: EcgGate | None = EcgGate.load(gate_path) if gate_path.is_file() else None
        detector_info = self.info.get("ecg_detector") or {}
        self.detector_threshold: float | None = (
            float(detector_info["threshold"])
            if "threshold" in detector_info and (self.model_dir / DETECTOR_FILE).is_file()
            else None
        )
        self.has_diagnosis: bool = (
            "ecg_diagnosis" in self.info and (self.model_dir / DIAGNOSIS_FILE).is_file()
        )
        self.page_share: float = float(
            (self.info.get("ecg_diagnosis") or {}).get("config", {}).get("page_share", 0.0)
        )
        # The infarction flag's threshold on the served P(MI); fitted for one temperature, so a model
        # recalibrated since (e.g. `fit-diagnosis` again) serves no flag until it is fitted anew.
        flag = self.info.get(MI_FLAG_KEY) or {}
        self.mi_flag_threshold: float | None = (
            float(flag["threshold"])
            if "threshold" in flag and math.isclose(float(flag["temperature"]), self.temperature)
            else None
        )
        self._networks = networks
        self._lock = threading.Lock()

    @property
    def networks(self) -> Networks:
        """The served networks, opened on first use: the given ones, or the directory's ONNX export."""
        if self._networks is None:
            with self._lock:
                if self._networks is None:
                    if not onnx_is_current(self.model_dir, self.info):
                        raise RuntimeError(
                            f"{self.model_dir} has no current ONNX export of its networks: run "
                            "`ecg-app model export-onnx --model DIR` (the train extra) after fitting them"
                        )
                    self._networks = OnnxNetworks(self.model_dir, self.info)
        return self._networks

    def embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, log-probabilities) of a preprocessed batch; with a diagnosis network the
        probabilities are the page network's combined with it (`lead_diagnosis.combine`)."""
        page = self.networks.page(batch)
        probs = np.asarray(page.probs, dtype=np.float64)
        if self.has_diagnosis:
            probs = combine(
                probs, np.asarray(self.networks.diagnose(batch), dtype=np.float64), self.page_share
            )
        probs = np.clip(probs, 1e-12, 1.0)
        return np.asarray(page.features, dtype=np.float32), np.log(probs)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Log-probabilities of the networks for a preprocessed batch, what the temperature divides."""
        return self.embed(batch)[1]

    def embed_proba(
        self, images: Sequence[np.ndarray], batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and calibrated probabilities (N, 5) for RGB uint8 images (batched to bound memory)."""
        features, probs = [], []
        for start in range(0, len(images), batch_size):
            f, log_p = self.embed(preprocess_batch(images[start : start + batch_size]))
            features.append(f)
            probs.append(softmax(log_p / self.temperature))
        if not probs:
            return np.zeros((0, 0), np.float32), np.zeros((0, len(CLASSES)))
        return np.concatenate(features), np.concatenate(probs)

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        return self.embed_proba(images, batch_size)[1]

    def detect(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray | None:
        """The detector's P(ECG) for RGB uint8 images, or None when the model directory has no detector."""
        if self.detector_threshold is None:
            return None
        return ecg_detector.ecg_probability(self.networks.detect, images, batch_size)

    def decide_batch(
        self, features: np.ndarray, probs: np.ndarray, ecg_probability: np.ndarray | None = None
    ) -> list[Prediction]:
        """Predictions from embeddings, calibrated probabilities and the detector's P(ECG) (`detect`);
        the gate and the detector are applied when the model has them."""
        has_gate = self.gate is not None and self.gate.threshold_ is not None
        distances = self.gate.distance(features) if has_gate else [None] * len(probs)
        if ecg_probability is None:
            ecg_probability = np.full(len(probs), np.nan)
        # NaN: the detector was not consulted for that picture (see `predict_batch`).
        p_ecg = [None if np.isnan(p) else float(p) for p in ecg_probability]
        return [
            decide(
                p,
                self.version,
                self.review_threshold,
                None if d is None else float(d),
                self.gate.threshold_ if has_gate else None,
                q,
                self.detector_threshold,
                self.mi_flag_threshold,
            )
            for p, d, q in zip(probs, distances, p_ecg, strict=True)
        ]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[Prediction]:
        """Predictions for RGB uint8 images. The detector can only overrule a Non-ECG call, so it is
        consulted only for the pictures the softmax calls Non-ECG (an ECG upload pays nothing for it);
        the others get `ecg_probability` None."""
        features, probs = self.embed_proba(images, batch_size)
        p_ecg = None
        if self.detector_threshold is not None:
            asked = np.flatnonzero(probs.argmax(axis=1) == CLASSES.index(NON_ECG))
            p_ecg = np.full(len(images), np.nan)
            if asked.size:
                p_ecg[asked] = self.detect([images[i] for i in asked], batch_size)
        return self.decide_batch(features, probs, p_ecg)

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
