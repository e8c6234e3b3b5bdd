"""Candidate: the rhythm measures (rate, RR irregularity) as an input for the ECG classes, judged by the
project's cross-validation rule against the shipped recipe's out-of-fold predictions.

Pre-registered (docs/experiments.md, "The rhythm measures as an input", written before it ran): per
fold, a logistic regression (scikit-learn, balanced class weights) on the other folds' Mendeley
printouts maps [heart rate, RR irregularity, measured or not] to the four ECG classes; on the held-out
fold its probabilities take a third of the networks' ECG-class share (as the per-lead statistics
candidate did), Non-ECG untouched. The candidate replaces the recipe only if its out-of-fold macro-F1 is
at least 0.02 higher and its MI recall no lower (`cross_validation.compare_runs`).

    python benchmarks/try_rhythm_input.py   # writes model/cross-validation/rhythm-input/
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecg_app.clinical.rhythm import measure  # noqa: E402
from ecg_app.labels import CLASSES, ECG_CLASSES  # noqa: E402
from ecg_app.serving.intake import load_image  # noqa: E402
from ecg_app.serving.preprocess import page_as_read  # noqa: E402
from ecg_app.training.cross_validation import PREDICTIONS_FILE, compare_runs  # noqa: E402

BASELINE = ROOT / "model" / "cross-validation" / "diagnosis-mix"
OUT = ROOT / "model" / "cross-validation" / "rhythm-input"
MENDELEY = ROOT.parent / "shared" / "data" / "mendeley-ecg"
SHARE = 1 / 3  # the logistic regression's share of the ECG-class probability
FEATURES_FILE = "rhythm-features.csv"


def features(rows: list[dict]) -> np.ndarray:
    """[rate, RR irregularity, measured] per printout (median-imputed when not measured), cached."""
    cache = OUT / FEATURES_FILE
    if cache.exists():
        kept = {r["path"]: r for r in csv.DictReader(cache.open())}
    else:
        kept = {}
        for row in rows:
            m = measure(page_as_read(load_image((MENDELEY / row["path"]).read_bytes())))
            kept[row["path"]] = {
                "path": row["path"],
                "rate": "" if m.heart_rate_bpm is None else f"{m.heart_rate_bpm:.2f}",
                "irregularity": "" if m.rr_irregularity is None else f"{m.rr_irregularity:.4f}",
            }
        OUT.mkdir(parents=True, exist_ok=True)
        with cache.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "rate", "irregularity"])
            writer.writeheader()
            writer.writerows(kept.values())
    raw = np.array(
        [[float(kept[r["path"]][k] or "nan") for k in ("rate", "irregularity")] for r in rows], float
    )
    measured = ~np.isnan(raw[:, 0])
    raw[np.isnan(raw)] = np.take(np.nanmedian(raw, axis=0), np.nonzero(np.isnan(raw))[1])
    return np.column_stack([raw, measured.astype(float)])


def main() -> None:
    rows = list(csv.DictReader((BASELINE / PREDICTIONS_FILE).open()))
    ecg_rows = [r for r in rows if r["source"] == "mendeley"]
    x = features(ecg_rows)
    y = np.array([ECG_CLASSES.index(r["label"]) for r in ecg_rows])
    folds = np.array([int(r["fold"]) for r in ecg_rows])
    mixed = {}
    for k in np.unique(folds):
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
        model.fit(x[folds != k], y[folds != k])
        for i in np.flatnonzero(folds == k):
            mixed[ecg_rows[i]["path"]] = model.predict_proba(x[i : i + 1])[0]
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / PREDICTIONS_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(rows[0]))
        for row in rows:
            p = np.array([float(row[f"p_{c}"]) for c in CLASSES])
            if row["path"] in mixed:  # only Mendeley printouts were measured: the rest keep their networks'
                ecg = [CLASSES.index(c) for c in ECG_CLASSES]
                share = p[ecg].sum()
                p[ecg] = (1 - SHARE) * p[ecg] + SHARE * share * mixed[row["path"]]
            writer.writerow([row[k] for k in list(rows[0])[:5]] + [f"{v:.6f}" for v in p])
    result = compare_runs(BASELINE, OUT)
    measured = x[:, 2].astype(bool)
    result["printouts_measured"] = [int(measured.sum()), len(ecg_rows)]
    result["median_rate_by_class"] = {
        c: float(np.median(x[(y == k) & measured, 0])) for k, c in enumerate(ECG_CLASSES)
    }
    result["median_irregularity_by_class"] = {
        c: float(np.median(x[(y == k) & measured, 1])) for k, c in enumerate(ECG_CLASSES)
    }
    (OUT / "cv.json").write_text(json.dumps({k: v for k, v in result.items()}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("fixed", "broken")}, indent=1))


if __name__ == "__main__":
    main()
