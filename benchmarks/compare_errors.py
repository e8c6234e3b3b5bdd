"""Which images do several models get wrong? Per-image errors on one split, side by side.

A macro-F1 difference on 10 History-of-MI images is one or two images; this shows whether two models
miss the same images (the images are hard for this data) or different ones (the models differ). Every
model is applied as the app applies it (calibrated probabilities, ECG gate). An error is a wrong class
for a labelled image, or "Non-ECG" for an other-layout ECG (marked "*"). Each cell shows the returned
class and the probability given to the true class ("any ECG class" for other-layout ECGs). With
--members, each network of an ensemble is shown too (its own softmax: no temperature, no gate).

    python benchmarks/compare_errors.py model runs/refit --split test --members

All models must take this checkout's input size and share the first model's `split.csv`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG
from ecg_app.serving.classifier import Classifier
from ecg_app.serving.preprocess import preprocess_batch
from ecg_app.training import dataset
from ecg_app.training.dataset import model_roots
from ecg_app.training.keras_networks import ensemble_members


def true_probability(label: str, probs: np.ndarray) -> float:
    """Probability (CLASSES order) of the true class; of "any ECG class" for an other-layout ECG."""
    if label == dataset.OTHER_ECG:
        return float(probs[: len(ECG_CLASSES)].sum())
    return float(probs[CLASSES.index(label)])


def is_error(label: str, predicted: str) -> bool:
    return predicted == NON_ECG if label == dataset.OTHER_ECG else predicted != label


def cell(label: str, predicted: str, probs: np.ndarray) -> str:
    """Returned class, probability of the true class, and "*" when it is an error."""
    mark = " *" if is_error(label, predicted) else "  "
    return f"{predicted} {true_probability(label, probs):.2f}{mark}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", type=Path, nargs="+", help="model directories (ecg_cnn.keras, model.json)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--members", action="store_true", help="also show each network of an ensemble")
    args = parser.parse_args()

    classifiers = [Classifier(d) for d in args.models]
    roots = model_roots(classifiers[0].info)
    samples = [s for s in dataset.read_manifest(args.models[0] / "split.csv", roots) if s.split == args.split]
    samples, images = dataset.load_images(samples)
    labels = [s.label for s in samples]
    predicted, probs = [], []
    for classifier in classifiers:
        features, calibrated = classifier.embed_proba(images)
        decided = classifier.decide_batch(features, calibrated, classifier.detect(images))
        predicted.append([p.label for p in decided])
        probs.append(calibrated)
    wrong = np.array([[is_error(y, p) for y, p in zip(labels, row, strict=True)] for row in predicted])
    shown = np.flatnonzero(wrong.any(axis=0))

    print(f"{args.split} split: {len(samples)} images ({len(samples) - len(shown)} right for every model)")
    for directory, row in zip(args.models, wrong, strict=True):
        print(f"  {directory}: {int(row.sum())} errors")
    print(f"{'image':<40} {'true':<8} " + " ".join(f"{str(d)[-20:]:>20}" for d in args.models))
    for i in shown:
        cells = [cell(labels[i], predicted[m][i], probs[m][i]) for m in range(len(args.models))]
        print(f"{Path(samples[i].path).name[-40:]:<40} {labels[i]:<8} " + " ".join(f"{c:>20}" for c in cells))
    print(f"missed by every model: {int(wrong.all(axis=0).sum())}; by at least one: {len(shown)}")

    if args.members and len(shown):
        x = preprocess_batch([images[i] for i in shown])
        print("each network's own softmax, images in the table's order:")
        for directory, classifier in zip(args.models, classifiers, strict=True):
            for k, member in enumerate(ensemble_members(classifier.model)):
                member_probs = np.asarray(member.predict(x, verbose=0), dtype=np.float64)
                cells = [
                    cell(labels[i], CLASSES[int(row.argmax())], row)
                    for i, row in zip(shown, member_probs, strict=True)
                ]
                print(f"{directory} network {k}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
