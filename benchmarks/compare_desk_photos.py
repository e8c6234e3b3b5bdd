"""Printouts photographed with the scene around them: the shipped model with and without `page.straighten`.

    python benchmarks/compare_desk_photos.py [--model model] [--splits val,test] [--seed 0]

Each ECG of the chosen splits (`split.csv`: the reference template's printouts and the other-layout
ECGs) is pasted whole into a 1600x1200 photo, as a phone would see a sheet held up or lying in front
of something: a random everyday photo of the same splits' non-ECG pictures behind it (`photos/`), the
sheet at 60-85% of the frame, its corners moved by up to 4% of its size (perspective), and a lighting
gradient across the frame. The same composites are classified twice by the shipped model: as served
(the page found and straightened before the crop), and with straightening switched off, as before it
existed. The non-ECG pictures of the splits are classified as they are, both ways, to show what
straightening does to them. Reads `../shared/data` (the model's own data roots); writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app import dataset, ecg_detector, preprocess  # noqa: E402
from ecg_app.classifier import Classifier  # noqa: E402
from ecg_app.evaluation import model_roots  # noqa: E402
from ecg_app.intake import load_image  # noqa: E402
from ecg_app.labels import NON_ECG  # noqa: E402
from ecg_app.page import find_page, straighten  # noqa: E402

FRAME = (1200, 1600)  # height, width of the "photo"


def photograph(page: np.ndarray, scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`page` pasted whole into `scene`, seen at a slant, under uneven light."""
    frame_h, frame_w = FRAME
    scene = cv2.resize(scene, (frame_w, frame_h), interpolation=cv2.INTER_AREA)
    height, width = page.shape[:2]
    scale = rng.uniform(0.6, 0.85) * min(frame_w / width, frame_h / height)
    w, h = width * scale, height * scale
    x0, y0 = rng.uniform(0.05 * w, frame_w - 1.05 * w), rng.uniform(0.05 * h, frame_h - 1.05 * h)
    seen = np.float32([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
    seen += rng.uniform(-0.04, 0.04, (4, 2)).astype(np.float32) * np.float32([w, h])
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [width, 0], [width, height], [0, height]]), seen)
    sheet = cv2.warpPerspective(np.ones((height, width), np.float32), matrix, (frame_w, frame_h))[:, :, None]
    photo = cv2.warpPerspective(page, matrix, (frame_w, frame_h)) * sheet + scene * (1 - sheet)
    light = np.linspace(rng.uniform(0.7, 1.0), 1.0, frame_w, dtype=np.float32)[None, :, None]
    return np.clip(photo * light, 0, 255).astype(np.uint8)


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
    args = parser.parse_args()
    classifier = Classifier(args.model)
    samples = dataset.read_manifest(args.model / "split.csv", model_roots(classifier.info))
    chosen = [s for s in samples if s.split in args.splits.split(",")]
    scenes = [s for s in chosen if s.label == NON_ECG and "photos" in s.path.parts]
    rng = np.random.default_rng(args.seed)
    groups: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for sample in chosen:
        image = load_image(sample.path)
        if sample.label != NON_ECG:
            image = photograph(image, load_image(scenes[rng.integers(len(scenes))].path), rng)
        images, labels = groups.setdefault(group_of(sample.label), ([], []))
        images.append(image)
        labels.append(sample.label)
    print(f"model {classifier.version}; splits {args.splits}; seed {args.seed}; {len(scenes)} scene photos")
    for name, (images, labels) in groups.items():
        found = sum(find_page(image) is not None for image in images)
        print(f"{name} (n={len(images)}; page found in {found})")
        print(f"  straightened (as served): {summary(classifier, images, labels)}")
        # As before `page.straighten` existed: the networks and the ECG detector read the photo as it is.
        preprocess.straighten = ecg_detector.straighten = lambda rgb: rgb
        try:
            print(f"  not straightened:         {summary(classifier, images, labels)}")
        finally:
            preprocess.straighten = ecg_detector.straighten = straighten
    return 0


if __name__ == "__main__":
    sys.exit(main())
