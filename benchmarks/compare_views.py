"""Would more ensemble members or test-time views help? Compare them on the validation split only.

Each member network of a training run (`<run>/members/seed-N/ecg_cnn.keras`) scores the validation images
as uploaded and under fixed capture-like views (scale 0.96 / 1.04, rotation -1.5 / +1.5 degrees); the
table prints macro-F1, accuracy and log-loss of every member set and view set, probabilities averaged.
The test split is never read.

    python benchmarks/compare_views.py --run runs/ens5 --model model
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import f1_score, log_loss

from ecg_app.labels import CLASSES
from ecg_app.serving.classifier import Classifier
from ecg_app.serving.preprocess import preprocess_batch
from ecg_app.training import dataset
from ecg_app.training.augment import homography, warp
from ecg_app.training.dataset import model_roots
from ecg_app.training.keras_networks import PAGE_FILE as MODEL_FILE

VIEWS = {
    "as uploaded": {},
    "scale 0.96": {"scale": 0.96},
    "scale 1.04": {"scale": 1.04},
    "rotate -1.5": {"angle": -1.5},
    "rotate +1.5": {"angle": 1.5},
}
VIEW_SETS = {
    "none": ["as uploaded"],
    "2 scales": ["as uploaded", "scale 0.96", "scale 1.04"],
    "2 rotations": ["as uploaded", "rotate -1.5", "rotate +1.5"],
    "all 4": list(VIEWS),
}


def view(image: np.ndarray, name: str) -> np.ndarray:
    return warp(image, homography(*image.shape[:2], **VIEWS[name])) if VIEWS[name] else image


def scores(y: np.ndarray, probs: np.ndarray) -> tuple[float, float, float]:
    """(macro-F1, accuracy, log-loss) of averaged probabilities."""
    pred = probs.argmax(axis=1)
    loss = log_loss(y, probs, labels=list(range(len(CLASSES))))
    return float(f1_score(y, pred, average="macro")), float((pred == y).mean()), float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=Path("runs/ens5"), help="training run with members/")
    parser.add_argument("--model", type=Path, default=Path("model"), help="where split.csv and roots are")
    parser.add_argument("--members", type=int, nargs="+", default=[3, 4], help="ensemble sizes to compare")
    args = parser.parse_args()

    roots = model_roots(Classifier(args.model).info)
    samples = [s for s in dataset.read_manifest(args.model / "split.csv", roots) if s.split == "val"]
    samples, images = dataset.load_images([s for s in samples if s.label in CLASSES])
    y = np.array([CLASSES.index(s.label) for s in samples])
    seeds = sorted(int(d.name.removeprefix("seed-")) for d in (args.run / "members").glob("seed-*"))
    probs = {}
    for seed in seeds:
        member = keras.saving.load_model(args.run / "members" / f"seed-{seed}" / MODEL_FILE, compile=False)
        for name in VIEWS:
            batch = preprocess_batch([view(image, name) for image in images])
            probs[seed, name] = member.predict(batch, batch_size=16, verbose=0)
    print(f"validation split: {len(y)} labelled images; members {seeds}")
    print(f"{'members':<22} {'test-time views':<14} {'macro-F1':>8} {'accuracy':>8} {'log-loss':>8}")
    for seed in seeds:
        print(
            f"{'seed ' + str(seed):<22} {'none':<14} "
            + "{:8.4f} {:8.4f} {:8.4f}".format(*scores(y, probs[seed, "as uploaded"]))
        )
    for size in args.members:
        chosen = seeds[:size]
        for set_name, names in VIEW_SETS.items():
            mean = np.mean([probs[s, n] for s in chosen for n in names], axis=0)
            print(f"{str(chosen):<22} {set_name:<14} " + "{:8.4f} {:8.4f} {:8.4f}".format(*scores(y, mean)))


if __name__ == "__main__":
    main()
