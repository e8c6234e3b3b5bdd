"""Fit the ECG gate of a trained model directory (`ecg-app model fit-gate`, and the last step of training).

References are the training split's ECG embeddings (the reference template and the other-layout ECGs);
the distance threshold is chosen on the validation split. Both come from the model's own `split.csv`, so
the test split stays untouched for `ecg-app model evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecg_app.labels import NON_ECG
from ecg_app.serving.classifier import Classifier
from ecg_app.serving.ecg_gate import GATE_FILE, EcgGate
from ecg_app.training import dataset
from ecg_app.training.keras_networks import fitted_classifier

CHUNK = 64  # images decoded at a time: bounds memory on the full training split


def embed_samples(
    classifier: Classifier, samples: Sequence[dataset.Sample]
) -> tuple[list[dataset.Sample], np.ndarray]:
    """(kept samples, their embeddings), decoding `CHUNK` images at a time."""
    kept, features = [], []
    for start in range(0, len(samples), CHUNK):
        chunk, images = dataset.load_images(samples[start : start + CHUNK])
        if images:
            kept += chunk
            features.append(classifier.embed_proba(images)[0])
    return kept, np.concatenate(features) if features else np.zeros((0, 0), np.float32)


def is_ecg(samples: Sequence[dataset.Sample]) -> np.ndarray:
    return np.array([s.label != NON_ECG for s in samples], dtype=bool)


def fit_gate(model_dir: Path, roots: dict[str, Path], k: int = 5) -> dict:
    """Fit, save `ecg_gate.npz` and record the gate in `model.json`; returns that record.

    References are real training ECGs only: rendered ECGs (a candidate, docs/experiments.md) were tried as
    extra references and put the threshold among the non-ECG pictures (a faint rendered trace looks like an
    almost empty page), letting half the validation non-ECGs through."""
    from ecg_app.training.model_files import record_in_model_info

    model_dir = Path(model_dir)
    classifier = fitted_classifier(model_dir)
    samples = dataset.read_manifest(model_dir / "split.csv", roots)
    train, train_features = embed_samples(classifier, [s for s in samples if s.split == "train"])
    val, val_features = embed_samples(classifier, [s for s in samples if s.split == "val"])
    gate = EcgGate(k=k).fit(train_features, is_ecg(train))
    threshold = gate.choose_threshold(val_features, is_ecg(val))
    gate.save(model_dir / GATE_FILE)
    distances, val_ecg = gate.distance(val_features), is_ecg(val)
    record = {
        "file": GATE_FILE,
        "k": k,
        "threshold": threshold,
        "references": int(len(gate.references_)),
        "validation": {
            "ecgs": int(val_ecg.sum()),
            "ecgs_beyond_threshold": int((distances[val_ecg] > threshold).sum()),
            "non_ecgs": int((~val_ecg).sum()),
            "non_ecgs_within_threshold": int((distances[~val_ecg] <= threshold).sum()),
            "max_ecg_distance": float(distances[val_ecg].max()),
            "min_non_ecg_distance": float(distances[~val_ecg].min()),
        },
    }
    record_in_model_info(model_dir, "ecg_gate", record)
    return record
