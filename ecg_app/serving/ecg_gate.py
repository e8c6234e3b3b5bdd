"""Out-of-distribution gate: does this image resemble the ECGs the network was trained on?

The softmax's Non-ECG class only knows the kinds of non-ECG pictures it was shown, and its ECG classes
will happily score a layout they never saw. A second, independent opinion comes from the network's
embedding (the `features` layer of every member): the mean cosine distance to the k nearest training
ECGs (the reference template and the other-layout ECGs). The distance threshold is chosen on the
validation split. `Classifier` combines both opinions (see `classifier.decide`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GATE_FILE = "ecg_gate.npz"


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def best_threshold(distances: np.ndarray, is_ecg: np.ndarray) -> float:
    """The cut that best separates ECGs from non-ECGs (balanced accuracy); among equally good cuts, the
    middle of the widest gap, so the margin is shared by both sides."""
    distances = np.asarray(distances, dtype=float)
    is_ecg = np.asarray(is_ecg, dtype=bool)
    if is_ecg.all() or not is_ecg.any():
        raise ValueError("choosing a threshold needs both ECGs and non-ECGs")
    values = np.sort(distances)
    cuts = (values[:-1] + values[1:]) / 2
    gaps = values[1:] - values[:-1]
    scores = [((distances[is_ecg] <= cut).mean() + (distances[~is_ecg] > cut).mean()) / 2 for cut in cuts]
    best = np.flatnonzero(np.isclose(scores, max(scores)))
    return float(cuts[best[np.argmax(gaps[best])]])


@dataclass
class EcgGate:
    """k-nearest-neighbour distance to training ECG embeddings, scikit-learn style (`fit`, learned `_`)."""

    k: int = 5
    mean_: np.ndarray | None = field(default=None, repr=False)
    scale_: np.ndarray | None = field(default=None, repr=False)
    references_: np.ndarray | None = field(default=None, repr=False)
    threshold_: float | None = None

    def fit(self, features: np.ndarray, is_ecg: np.ndarray) -> EcgGate:
        """Standardise with all training embeddings; keep the ECGs' as references (at float16 precision:
        half the file, distances change by < 1e-3)."""
        features = np.asarray(features, dtype=np.float32)
        is_ecg = np.asarray(is_ecg, dtype=bool)
        if is_ecg.sum() < self.k:
            raise ValueError(f"need at least k={self.k} training ECGs, got {int(is_ecg.sum())}")
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0) + 1e-6
        # Rounded to float16 precision now, so the saved (float16) gate gives identical distances.
        self.references_ = self._normalise(features[is_ecg]).astype(np.float16).astype(np.float32)
        return self

    def _normalise(self, features: np.ndarray) -> np.ndarray:
        return _unit_rows((np.asarray(features, dtype=np.float32) - self.mean_) / self.scale_)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mean cosine distance of each row to its k nearest reference ECGs (0 = identical direction)."""
        if self.references_ is None:
            raise RuntimeError("EcgGate is not fitted")
        # einsum, not `@`: a BLAS product leaves its threads spinning, which slowed the next network pass
        # by ~10 ms per image on 2 cores (benchmarks/bench_latency.py: 30 -> 40 ms bytes to result).
        similarity = np.einsum("ij,kj->ik", self._normalise(features), self.references_)
        nearest = np.sort(similarity, axis=1)[:, -self.k :]
        return 1.0 - nearest.mean(axis=1)

    def choose_threshold(self, features: np.ndarray, is_ecg: np.ndarray) -> float:
        """Set `threshold_` from validation embeddings (see `best_threshold`)."""
        self.threshold_ = best_threshold(self.distance(features), is_ecg)
        return self.threshold_

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            k=self.k,
            mean=self.mean_,
            scale=self.scale_,
            references=self.references_.astype(np.float16),
            threshold=np.nan if self.threshold_ is None else self.threshold_,
        )

    @classmethod
    def load(cls, path: Path) -> EcgGate:
        with np.load(path) as data:
            threshold = float(data["threshold"])
            return cls(
                k=int(data["k"]),
                mean_=data["mean"],
                scale_=data["scale"],
                references_=data["references"].astype(np.float32),
                threshold_=None if np.isnan(threshold) else threshold,
            )
