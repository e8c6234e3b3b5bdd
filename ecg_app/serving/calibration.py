"""Confidence that means what it says: temperature scaling, calibration error, review threshold."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T minimising validation negative log-likelihood of softmax(logits / T)."""
    if len(y_true) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar  # only fitting needs scipy (~0.4 s to import)

    def nll(log_t: float) -> float:
        probs = softmax(logits / np.exp(log_t))
        return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1)).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def reliability(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> dict:
    """Expected calibration error of the top-class confidence, with the reliability diagram's bins."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        in_bin = bins == b
        count = int(in_bin.sum())
        if count:
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += gap * count / len(y_true)
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[in_bin].mean()) if count else None,
                "accuracy": float(correct[in_bin].mean()) if count else None,
            }
        )
    return {"ece": float(ece), "bins": rows}


def choose_review_threshold(probs: np.ndarray, y_true: np.ndarray, target_accuracy: float = 0.95) -> float:
    """Lowest top-probability threshold at which validation accuracy on the covered cases reaches target.

    Falls back to the threshold with the best covered accuracy when the target cannot be met. Capped at
    0.9 so "needs review" stays a minority outcome rather than the default.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    best_threshold, best_accuracy = 0.5, -1.0
    for threshold in np.round(np.arange(0.4, 0.91, 0.05), 2):
        covered = confidence >= threshold
        if covered.sum() == 0:
            break
        accuracy = float(correct[covered].mean())
        if accuracy >= target_accuracy:
            return float(threshold)
        if accuracy > best_accuracy:
            best_threshold, best_accuracy = float(threshold), accuracy
    return best_threshold
