"""Printouts photographed with the scene around them: the shipped model with and without `page.straighten`.

    python benchmarks/compare_desk_photos.py [--model model] [--splits val,test] [--seed 0] [--served-only]

Each ECG of the chosen splits (`split.csv`: the reference template's printouts and the other-layout
ECGs) is pasted whole into a 1600x1200 photo, as a phone would see a sheet held up or lying in front
of something: a random everyday photo of the same splits' non-ECG pictures behind it (`photos/`), the
sheet at 60-85% of the frame, its corners moved by up to 4% of its size (perspective), and a lighting
gradient across the frame. The same composites are classified twice by the shipped model: as served
(the page found and straightened before the crop), and with straightening switched off, as before it
existed (`--served-only`: as served only). The non-ECG pictures of the splits are classified as they
are, both ways, to show what straightening does to them, and photographed the same way in front of
another of the photos (drawn from their own generator, so the ECGs' composites do not depend on them):
a chart or a page photographed in front of something must stay Non-ECG. Reads `../shared/data` (the
model's own data roots); writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app.labels import NON_ECG  # noqa: E402
from ecg_app.serving.classifier import Classifier  # noqa: E402
from ecg_app.serving.intake import load_image  # noqa: E402
from ecg_app.serving.page import find_page, straighten  # noqa: E402
from ecg_app.training import dataset, ecg_detector, preprocess  # noqa: E402
from ecg_app.training.augment import photographed  # noqa: E402
from ecg_app.training.dataset import model_roots  # noqa: E402


def summary(classifier: Classifier, images: list[np.ndarray], labels: list[str]) -> str:
    predictions = classifier.predict_batch(images)
    non_ecg = sum(p.label == NON_ECG for p in predictions)
    review = sum(p.status != "ok" for p in predictions)
    line = f"called Non-ECG {non_ecg:3d}/{len(images)}, needs review {review:3d}"
    if labels and labels[0] not in (dataset.OTHER_ECG, NON_ECG):
        right = sum(p.label == label for p, label in zip(predictions, labels, strict=True))
        line = f"right {right:3d}/{len(images)} ({right / len(images):.3f}), " + line
    return line


def group_of(label: str) -> str:
    if label == NON_ECG:
        return "non-ECG pictures as they are"
    if label == dataset.OTHER_ECG:
        return "other-layout ECGs, photographed"
    return "reference-template ECGs, photographed"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO / "model")
    parser.add_argument("--splits", default="val,test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--served-only", action="store_true", help="skip the not-straightened column")
    args = parser.parse_args()
    classifier = Classifier(args.model)
    samples = dataset.read_manifest(args.model / "split.csv", model_roots(classifier.info))
    chosen = [s for s in samples if s.split in args.splits.split(",")]
    scenes = [s for s in chosen if s.label == NON_ECG and "photos" in s.path.parts]
    rng, non_ecg_rng = np.random.default_rng(args.seed), np.random.default_rng([args.seed, 1])
    groups: dict[str, tuple[list[np.ndarray], list[str]]] = {}

    def add(group: str, image: np.ndarray, label: str) -> None:
        images, labels = groups.setdefault(group, ([], []))
        images.append(image)
        labels.append(label)

    for sample in chosen:
        image = load_image(sample.path)
        if sample.label != NON_ECG:
            image = photographed(image, load_image(scenes[rng.integers(len(scenes))].path), rng)
        add(group_of(sample.label), image, sample.label)
        if sample.label == NON_ECG:
            others = [scene for scene in scenes if scene.path != sample.path]
            scene = load_image(others[non_ecg_rng.integers(len(others))].path)
            add("non-ECG pictures, photographed", photographed(image, scene, non_ecg_rng), NON_ECG)
    print(f"model {classifier.version}; splits {args.splits}; seed {args.seed}; {len(scenes)} scene photos")
    for name, (images, labels) in groups.items():
        found = sum(find_page(image) is not None for image in images)
        print(f"{name} (n={len(images)}; page found in {found})")
        print(f"  straightened (as served): {summary(classifier, images, labels)}")
        if args.served_only:
            continue
        # As before `page.straighten` existed: the networks and the ECG detector read the photo as it is.
        preprocess.straighten = ecg_detector.straighten = lambda rgb: rgb
        try:
            print(f"  not straightened:         {summary(classifier, images, labels)}")
        finally:
            preprocess.straighten = ecg_detector.straighten = straighten
    return 0


if __name__ == "__main__":
    sys.exit(main())
