"""Choose and judge a decision weight on infarction (`decision_weight`) from a cross-validation run's
out-of-fold predictions: `ecg-app model fit-class-weight`. The test split is never read.

Why nested: the weight is chosen on four folds' predictions and applied to the fifth, so the figure it
is judged by is one the choice never saw. The rule, pre-registered in docs/experiments.md (sixth
candidate): the weight is recorded only if its nested macro-F1 is no lower than the unweighted
predictions' and it recalls more of the class; then the weight chosen on all folds is recorded and
the temperature and review threshold are refitted on validation for the weighted scores. The
judgement is kept beside the run (`class-weight.json`), adopted or not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ecg_app.labels import CLASSES
from ecg_app.serving.classifier import MODEL_INFO_FILE
from ecg_app.serving.decision_weight import INFO_KEY, version_tag
from ecg_app.training.cross_validation import labelled_out_of_fold
from ecg_app.training.metrics import macro_f1
from ecg_app.training.model_files import write_json_atomic
from ecg_app.training.recalibration import recalibrate

WEIGHT_GRID: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
WEIGHT_FILE = "class-weight.json"  # the judgement, kept beside the cross-validation run it was made on


def weighted_predictions(probs: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Argmax of `probs` (N, C) with column `k` multiplied by `weight`."""
    scores = np.array(probs, dtype=np.float64)
    scores[:, k] *= weight
    return scores.argmax(axis=1)


def choose_weight(probs: np.ndarray, y: np.ndarray, k: int, grid: tuple[float, ...] = WEIGHT_GRID) -> float:
    """The weight in `grid` (ascending) with the largest macro-F1 on (probs, y); the smaller on a tie."""
    scores = [macro_f1(y, weighted_predictions(probs, k, w)) for w in grid]
    return float(grid[int(np.argmax(scores))])  # argmax returns the first of equal scores


def nested_predictions(
    probs: np.ndarray, y: np.ndarray, fold: np.ndarray, k: int, grid: tuple[float, ...] = WEIGHT_GRID
) -> tuple[np.ndarray, dict[int, float]]:
    """Each fold's predictions with the weight chosen on the other folds alone, and each fold's weight."""
    predictions = np.empty(len(y), dtype=int)
    weights = {}
    for f in np.unique(fold):
        held = fold == f
        weights[int(f)] = choose_weight(probs[~held], y[~held], k, grid)
        predictions[held] = weighted_predictions(probs[held], k, weights[int(f)])
    return predictions, weights


def _summary(y: np.ndarray, predictions: np.ndarray, k: int) -> dict:
    return {
        "macro_f1": macro_f1(y, predictions),
        "recalled": int((predictions[y == k] == k).sum()),
        "of": int((y == k).sum()),
        "wrongly_called": int(((predictions == k) & (y != k)).sum()),
    }


def judge_weight(cv_run: Path, label: str = "MI") -> dict:
    """The rule applied to `cv_run`'s out-of-fold predictions: the unweighted and nested figures, whether
    the weight is adopted and, if so, the weight chosen on all folds."""
    paths, y, fold, probs = labelled_out_of_fold(Path(cv_run))
    k = CLASSES.index(label)
    nested, fold_weights = nested_predictions(probs, y, fold, k)
    unweighted, judged = _summary(y, probs.argmax(axis=1), k), _summary(y, nested, k)
    adopted = judged["macro_f1"] >= unweighted["macro_f1"] and judged["recalled"] > unweighted["recalled"]
    return {
        "class": label,
        "weight": choose_weight(probs, y, k) if adopted else 1.0,
        "adopted": bool(adopted),
        "cv_run": str(cv_run),
        "n": len(paths),
        "unweighted": unweighted,
        "nested": {**judged, "fold_weights": fold_weights},
    }


def fit_class_weight(model_dir: Path, cv_run: Path, roots: dict[str, Path], label: str = "MI") -> dict:
    """Judge the weight (`judge_weight`) and keep the judgement beside the run (`WEIGHT_FILE`). When it
    is adopted, or an older weight is to go, record that in `model.json`, tag the version and
    recalibrate on validation; otherwise what is served does not change and the model is left alone.
    Returns the judgement, with the calibration when there was one."""
    judgement = judge_weight(cv_run, label)
    write_json_atomic(judgement, Path(cv_run) / WEIGHT_FILE)
    info_path = Path(model_dir) / MODEL_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if not judgement["adopted"] and INFO_KEY not in info:
        return judgement
    stem = info["version"].removesuffix(version_tag(info))
    info.pop(INFO_KEY, None)
    if judgement["adopted"]:
        info[INFO_KEY] = {key: judgement[key] for key in ("class", "weight", "cv_run", "nested")}
    info["version"] = stem + version_tag(info)
    write_json_atomic(info, info_path)
    return {**judgement, **recalibrate(Path(model_dir), roots)}
