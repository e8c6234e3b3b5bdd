"""The lead-reading diagnosis network: which of the four ECG classes, read from the digitised leads.

Why: the page network (`ecg_cnn.keras`) tells ECGs from other pictures well but, given 13 to 16
infarction printouts, reads the diagnosis from where ink lies on the page. This network reads each
lead's curves (`LeadSignals`) with one shared encoder and is trained on ECGs only (`diagnosis_fit`),
so it has no say in whether a picture is an ECG: `combine` keeps the page network's P(Non-ECG) and
shares its P(some ECG) among the four classes in this network's proportions (the fourth candidate
of docs/experiments.md). The network itself is built in `training.networks` (`make_curve_reader`).
"""

from __future__ import annotations

import numpy as np

from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG
from ecg_app.serving.preprocess import INPUT_SHAPE

DIAGNOSIS_FILE = "ecg_diagnosis.keras"
# LeadSignals' output for the shared input: 16 cells of 136 columns, 3 curves (top, centre, bottom).
CURVES_SHAPE = (16, INPUT_SHAPE[1] // 4, 3)


def combine(probs: np.ndarray, diagnosis: np.ndarray, page_share: float = 0.0) -> np.ndarray:
    """(N, 5) probabilities: the page network's P(Non-ECG) from `probs` (CLASSES order), the rest shared
    among the ECG classes as `diagnosis` (N, 4, ECG_CLASSES order) shares it, or, with `page_share` > 0,
    as that mix of the page network's own ECG-class proportions and the diagnosis network's does."""
    non_ecg = probs[:, [CLASSES.index(NON_ECG)]]
    if page_share:
        page = probs[:, [CLASSES.index(c) for c in ECG_CLASSES]] + 1e-12
        diagnosis = (1 - page_share) * diagnosis + page_share * page / page.sum(axis=1, keepdims=True)
    combined = np.concatenate([(1.0 - non_ecg) * diagnosis, non_ecg], axis=1)
    return combined[:, [(*ECG_CLASSES, NON_ECG).index(c) for c in CLASSES]]
