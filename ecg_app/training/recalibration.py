"""Refit the temperature and review threshold on validation for what the classifier now serves, after
a step that changes its probabilities (the diagnosis networks' combination, a decision weight)."""

from __future__ import annotations

import json
from pathlib import Path

from ecg_app.serving.calibration import choose_review_threshold, fit_temperature, softmax
from ecg_app.serving.classifier import MODEL_INFO_FILE
from ecg_app.training import dataset
from ecg_app.training.keras_networks import fitted_classifier
from ecg_app.training.model_files import write_json_atomic
from ecg_app.training.training import labelled_arrays


def recalibrate(model_dir: Path, roots: dict[str, Path]) -> dict:
    """Fit T and the review threshold on the validation split's labelled images through the served
    path (`Classifier.logits`), record both in `model.json` and return them."""
    model_dir = Path(model_dir)
    samples = dataset.read_manifest(model_dir / "split.csv", roots)
    val, images = dataset.load_images([s for s in samples if s.split == "val"])
    x_val, y_val = labelled_arrays(val, images)
    log_p = fitted_classifier(model_dir).logits(x_val)
    temperature = fit_temperature(log_p, y_val)
    calibration = {
        "temperature": temperature,
        "review_threshold": choose_review_threshold(softmax(log_p / temperature), y_val),
    }
    info_path = model_dir / MODEL_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8"))
    write_json_atomic({**info, **calibration}, info_path)
    return calibration
