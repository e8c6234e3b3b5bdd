"""Fit the ECG gate of a trained model directory (`ecg-app fit-gate`, and the last step of training).

References are the embeddings of the ECGs the network was trained on (the reference template and the
other-layout ECGs of the train split, or of train + val for a refit); the distance threshold is chosen on
the validation split, or carried over from the source model of a refit. Both come from the model's own
`split.csv`, so the test split stays untouched for `ecg-app evaluate`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecg_app import dataset
from ecg_app.classifier import MODEL_INFO_FILE, Classifier
from ecg_app.ecg_gate import GATE_FILE, EcgGate
from ecg_app.labels import NON_ECG

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

    References are the real ECGs the network was trained on (the train split, or train + val for a refit):
    rendered ECGs (`train --synthetic-ecgs`) were tried as extra references and put the threshold among the
    non-ECG pictures (a faint rendered trace looks like an almost empty page), letting half the validation
    non-ECGs through. The threshold is chosen on validation; a refit trained on validation too keeps the
    threshold its source model chose there (`refit_from` in model.json), as it keeps its temperature."""
    from ecg_app.training import write_json_atomic

    model_dir = Path(model_dir)
    info_path = model_dir / MODEL_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8"))
    fit_splits = info.get("fit_splits", ["train"])
    classifier = Classifier(model_dir)
    samples = dataset.read_manifest(model_dir / "split.csv", roots)
    train, train_features = embed_samples(classifier, [s for s in samples if s.split in fit_splits])
    gate = EcgGate(k=k).fit(train_features, is_ecg(train))
    record: dict = {"file": GATE_FILE, "k": k}
    if "val" in fit_splits:
        carried = info.get("refit_from", {}).get("ecg_gate_threshold")
        if carried is None:
            raise ValueError("a model trained on validation needs the gate threshold of its source model")
        gate.threshold_ = float(carried)
        record.update(threshold=gate.threshold_, threshold_from=info["refit_from"]["version"])
    else:
        val, val_features = embed_samples(classifier, [s for s in samples if s.split == "val"])
        threshold = gate.choose_threshold(val_features, is_ecg(val))
        distances, val_ecg = gate.distance(val_features), is_ecg(val)
        record.update(
            threshold=threshold,
            validation={
                "ecgs": int(val_ecg.sum()),
                "ecgs_beyond_threshold": int((distances[val_ecg] > threshold).sum()),
                "non_ecgs": int((~val_ecg).sum()),
                "non_ecgs_within_threshold": int((distances[~val_ecg] <= threshold).sum()),
                "max_ecg_distance": float(distances[val_ecg].max()),
                "min_non_ecg_distance": float(distances[~val_ecg].min()),
            },
        )
    record["references"] = int(len(gate.references_))
    gate.save(model_dir / GATE_FILE)
    info["ecg_gate"] = record
    write_json_atomic(info, info_path)
    return record
