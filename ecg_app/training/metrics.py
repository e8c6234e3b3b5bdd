"""The classification figures every evaluation reports (macro-F1, ECG-class accuracy, recalls, ROC,
calibration), with bootstrap 95% intervals because the splits are small."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG
from ecg_app.serving.calibration import reliability

_ALL = list(range(len(CLASSES)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    present = sorted(set(y_true.tolist()))
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def _ecg_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy over images whose true class is one of the four ECG classes (5-way prediction)."""
    ecg = y_true < len(ECG_CLASSES)
    return float((y_true[ecg] == y_pred[ecg]).mean()) if ecg.any() else float("nan")


def _recall(y_true: np.ndarray, y_pred: np.ndarray, label: str) -> float:
    of_class = y_true == CLASSES.index(label)
    return float((y_pred[of_class] == y_true[of_class]).mean()) if of_class.any() else float("nan")


def bootstrap_ci(
    y_true: np.ndarray, y_pred: np.ndarray, metric, n_boot: int = 1000, seed: int = 0
) -> list[float]:
    """Percentile 95% interval of `metric` over resamples of the test images (stratified by class)."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y_true == c) for c in np.unique(y_true)]
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(members, size=len(members), replace=True) for members in by_class])
        values.append(metric(y_true[idx], y_pred[idx]))
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return (
        [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
        if len(values)
        else [None, None]
    )


def _with_ci(y_true, y_pred, metric) -> dict:
    return {"value": metric(y_true, y_pred), "ci95": bootstrap_ci(y_true, y_pred, metric)}


def _roc(y_true: np.ndarray, probs: np.ndarray) -> dict:
    curves = {}
    for c, label in enumerate(CLASSES):
        positives = y_true == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, c])
        curves[label] = {
            "fpr": [round(float(v), 4) for v in fpr],
            "tpr": [round(float(v), 4) for v in tpr],
            "auc": float(roc_auc_score(positives, probs[:, c])),
        }
    return curves


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray | None = None) -> dict:
    """All headline metrics for integer labels (CLASSES order) and an (N, 5) probability matrix;
    `y_pred` is the decided class when it is not the top probability (the ECG gate can overrule it)."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=int)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=_ALL, zero_division=0
    )
    calib = reliability(probs, y_true)
    return {
        "n": int(len(y_true)),
        "accuracy": _with_ci(y_true, y_pred, lambda t, p: float((t == p).mean())),
        "macro_f1": _with_ci(y_true, y_pred, macro_f1),
        "ecg_accuracy": _with_ci(y_true, y_pred, _ecg_accuracy),
        "mi_recall": _with_ci(y_true, y_pred, lambda t, p: _recall(t, p, "MI")),
        "non_ecg_recall": _with_ci(y_true, y_pred, lambda t, p: _recall(t, p, NON_ECG)),
        "per_class": {
            label: {
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c, label in enumerate(CLASSES)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=_ALL).tolist(),
        "roc": _roc(y_true, probs),
        "ece": calib["ece"],
        "reliability": calib["bins"],
    }
