""" "Infarction not ruled out": a flag on an ECG called another class whose probability of myocardial
infarction is still too high to dismiss. `ecg-app model fit-mi-flag` fits its threshold (here); the
classifier applies it (`serving.mi_flag`, `classifier.decide`).

Why: a missed infarction is the costliest error, and the top class alone recalls 13 of 20 infarctions
out of fold (model card). Most of the infarctions it misses still get a P(MI) that printouts without
one rarely reach, so a threshold on P(MI) catches them at the cost of flagging a few others for review.
The class shown, and every figure built on it, is unchanged.

The threshold is fitted on a cross-validation run's out-of-fold predictions (never the test split),
in the served probabilities' terms (any decision weight and the temperature applied): the lowest P(MI)
at which at most `FALSE_ALARM_RATE` of the ECG printouts without an infarction, called another ECG
class, would be flagged. Only the printouts without an infarction choose it, so the infarctions it
then catches are a fair count; a nested figure (threshold fitted on four folds, applied to the fifth)
is recorded too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ecg_app.config import portable_path
from ecg_app.serving.calibration import softmax
from ecg_app.serving.classifier import MODEL_INFO_FILE
from ecg_app.serving.mi_flag import FALSE_ALARM_RATE, INFO_KEY, MI, OTHER_ECG, flagged
from ecg_app.training.cross_validation import labelled_out_of_fold


def fit_threshold(probs: np.ndarray, y: np.ndarray, false_alarm_rate: float = FALSE_ALARM_RATE) -> float:
    """The lowest threshold that flags at most `false_alarm_rate` of the ECG printouts without an
    infarction (true class HMI, AHB or Normal): halfway between the largest P(MI) it may flag and the
    next, so that only the allowed number are at or above it."""
    without_mi = np.isin(y, OTHER_ECG)
    candidates = np.sort(probs[without_mi & flagged(probs, 0.0), MI])[::-1]
    allowed = int(np.floor(false_alarm_rate * without_mi.sum()))
    if allowed >= len(candidates):
        return 0.0
    above = candidates[allowed - 1] if allowed > 0 else 1.0
    return float((above + candidates[allowed]) / 2)


def caught(y: np.ndarray, called: np.ndarray, flags: np.ndarray) -> dict:
    """Infarctions called MI, and called MI or flagged; printouts without one that were flagged. `y` and
    `called` are class indices (CLASSES order), `flags` whether each result carries the flag."""
    mi, called = y == MI, called == MI
    return {
        "mi": int(mi.sum()),
        "mi_called": int((called & mi).sum()),
        "mi_called_or_flagged": int(((called | flags) & mi).sum()),
        "without_mi": int(np.isin(y, OTHER_ECG).sum()),
        "flagged_without_mi": int((flags & np.isin(y, OTHER_ECG)).sum()),
    }


def fit_mi_flag(run_dir: Path, info: dict, false_alarm_rate: float = FALSE_ALARM_RATE) -> dict:
    """The flag's record for model.json, fitted on `run_dir`'s out-of-fold predictions as the model
    described by `info` (its model.json) serves them, and what it does there: with the threshold fitted
    on all folds, and nested."""
    _, y, fold, raw = labelled_out_of_fold(Path(run_dir))
    temperature = float(info.get("temperature", 1.0))
    # As `Classifier.embed_proba` serves them: log-probabilities plus any decision weight's, over T.
    probs = softmax(np.log(np.clip(raw, 1e-12, 1.0)) / temperature)
    threshold = fit_threshold(probs, y, false_alarm_rate)
    nested = np.zeros(len(y), dtype=bool)
    fold_thresholds = {}
    for f in np.unique(fold):
        held = fold == f
        fold_thresholds[int(f)] = fit_threshold(probs[~held], y[~held], false_alarm_rate)
        nested[held] = flagged(probs[held], fold_thresholds[int(f)])
    return {
        "threshold": threshold,
        "temperature": temperature,
        "false_alarm_rate": false_alarm_rate,
        "run": portable_path(run_dir),
        "out_of_fold": caught(y, probs.argmax(axis=1), flagged(probs, threshold)),
        "nested": {**caught(y, probs.argmax(axis=1), nested), "fold_thresholds": fold_thresholds},
    }


def record_mi_flag(model_dir: Path, run_dir: Path, false_alarm_rate: float = FALSE_ALARM_RATE) -> dict:
    """Fit the flag for `model_dir` (its temperature) on `run_dir` and record it in its model.json; the
    version gains "+mi<threshold>", since results now carry the flag."""
    from ecg_app.training.model_files import write_json_atomic

    path = Path(model_dir) / MODEL_INFO_FILE
    info = json.loads(path.read_text(encoding="utf-8"))
    record = fit_mi_flag(run_dir, info, false_alarm_rate)
    info[INFO_KEY] = record
    info["version"] = re.sub(r"\+mi[0-9.e-]+$", "", info["version"]) + f"+mi{record['threshold']:.3g}"
    write_json_atomic(info, path)
    return record
