"""The linear-probe floor of the pretrained backbone, on the kept recipe's cross-validation folds.

    python benchmarks/probe_backbone.py [--input ink|gray] [--model model] [--out runs/probe-ink]
        [--baseline model/cross-validation/diagnosis-mix]

EfficientNet-Lite0 with its ImageNet weights (`ecg_app.training.backbone`), frozen; block 10's output for a
384x640 picture of the trace area, averaged over the 3x4 grid of lead cells (1344 numbers); standardised;
a class-balanced logistic regression whose C is chosen by grouped 3-fold cross-validation inside each
training fold (macro-F1). Inputs: `ink`, the shared ink map drawn as dark ink on white paper (what the
fine-tuned candidate read), or `gray`, the trace area in plain grayscale (the crop without the grid and
lighting removal, as the probe of shared/EXPERIMENTS.md read it). Other-layout ECGs (no diagnosis) are
not trained on; they are scored like the rest. The folds are the model's (`split.csv`'s train +
validation, never test), so `oof.csv` is judged against the kept run by the model card's rule. Writes
`oof.csv` and `cv.json` into `--out`; about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app.labels import CLASSES  # noqa: E402
from ecg_app.serving.page import straighten  # noqa: E402
from ecg_app.serving.preprocess import crop_box, preprocess  # noqa: E402
from ecg_app.training.backbone import pretrained_lite0  # noqa: E402
from ecg_app.training.cross_validation import (  # noqa: E402
    PREDICTIONS_FILE,
    RESULT_FILE,
    _folded_pool,
    _summarise,
    _write_predictions,
    compare_runs,
)
from ecg_app.training.metrics import macro_f1  # noqa: E402

SIZE = (384, 640)
CUT = 10
PENALTIES = (0.001, 0.01, 0.1, 1.0)


def picture(rgb: np.ndarray, kind: str) -> np.ndarray:
    """The trace area as a (384, 640, 3) 0-255 picture for the backbone."""
    if kind == "ink":
        gray = 255.0 * (1.0 - preprocess(rgb, SIZE)[:, :, 0])
    else:
        page = straighten(rgb)
        top, bottom, left, right = crop_box(*page.shape[:2])
        crop = cv2.cvtColor(page[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
        gray = cv2.resize(crop, SIZE[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.repeat(gray[:, :, None], 3, axis=2)


def lead_grid_features(images: list[np.ndarray], kind: str) -> np.ndarray:
    network = pretrained_lite0((*SIZE, 3), cut=CUT)
    rows = []
    for start in range(0, len(images), 16):
        batch = np.stack([picture(image, kind) for image in images[start : start + 16]])
        maps = network.predict(batch, verbose=0)  # (n, 24, 40, 112)
        n, height, width, channels = maps.shape
        cells = maps.reshape(n, 3, height // 3, 4, width // 4, channels).mean(axis=(2, 4))
        rows.append(cells.reshape(n, -1))
    return np.concatenate(rows)


def probe(penalty: float) -> object:
    regression = LogisticRegression(C=penalty, class_weight="balanced", max_iter=3000)
    return make_pipeline(StandardScaler(), regression)


def choose_penalty(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The C with the best macro-F1 over a grouped 3-fold split of the training fold."""
    scores = []
    for penalty in PENALTIES:
        predicted = np.empty_like(y)
        for fit, held in GroupKFold(3).split(x, y, groups):
            predicted[held] = probe(penalty).fit(x[fit], y[fit]).predict(x[held])
        scores.append(macro_f1(y, predicted))
    return PENALTIES[int(np.argmax(scores))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", choices=("ink", "gray"), default="ink")
    parser.add_argument("--model", type=Path, default=REPO / "model")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--baseline", type=Path, default=REPO / "model/cross-validation/diagnosis-mix")
    args = parser.parse_args()
    out = args.out or REPO / "runs" / f"probe-{args.input}"
    _, roots, pool, images, fold, y = _folded_pool(args.model, None, 5)
    x = lead_grid_features(images, args.input)
    groups = np.array([s.group for s in pool])
    probs = np.zeros((len(pool), len(CLASSES)))
    per_fold = []
    for k in range(int(fold.max()) + 1):
        held, train = fold == k, (fold != k) & (y >= 0)
        penalty = choose_penalty(x[train], y[train], groups[train])
        model = probe(penalty).fit(x[train], y[train])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(x[held])
        scored = held & (y >= 0)
        f1 = macro_f1(y[scored], probs[scored].argmax(axis=1))
        per_fold.append({"fold": k + 1, "n": int(scored.sum()), "macro_f1": f1, "C": penalty})
        print(f"fold {k + 1}: C={penalty} macro-F1 {f1:.3f}", flush=True)
    _write_predictions(pool, fold, probs, out / PREDICTIONS_FILE, roots)
    recipe = {"kind": "linear probe", "input": args.input, "size": SIZE, "block": CUT, "penalties": PENALTIES}
    result = _summarise(pool, fold, y, probs, per_fold, recipe, args.model)
    result["against_baseline"] = {"baseline": str(args.baseline), **compare_runs(args.baseline, out)}
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    pooled, verdict = result["out_of_fold"], result["against_baseline"]
    print(
        f"{args.input}: out-of-fold macro-F1 {pooled['macro_f1']['value']:.3f} {pooled['macro_f1']['ci95']}, "
        f"ECG accuracy {pooled['ecg_accuracy']['value']:.3f}, MI {verdict['mi_recalled']['candidate']}"
        f"/{verdict['mi_recalled']['of']}; against the baseline {verdict['macro_f1']['gain']:+.3f} "
        f"{verdict['macro_f1']['gain_ci95']}, replaces it: {verdict['replaces_baseline']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
