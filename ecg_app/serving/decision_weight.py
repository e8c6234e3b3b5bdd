"""What a recorded decision weight means for the served probabilities: a weight `w` on one class's
probability (infarction, the costliest miss) adds `log w` to its log-probability before the
temperature. Chosen on cross-validation's out-of-fold predictions by `weight_fit`, never on test."""

from __future__ import annotations

import numpy as np

from ecg_app.labels import CLASSES

INFO_KEY = "decision_weight"  # in model.json: {"class", "weight", "cv_run", "nested"}


def log_weights(info: dict) -> np.ndarray:
    """Per-class log weights, in CLASSES order, that the classifier adds to its log-probabilities
    (zeros when `info` records no weight)."""
    logs = np.zeros(len(CLASSES))
    recorded = info.get(INFO_KEY)
    if recorded:
        logs[CLASSES.index(recorded["class"])] = np.log(float(recorded["weight"]))
    return logs


def version_tag(info: dict) -> str:
    """The suffix a recorded weight adds to the model version, since it changes what is served."""
    recorded = info.get(INFO_KEY)
    return f"+w{recorded['class']}{float(recorded['weight']):g}" if recorded else ""
