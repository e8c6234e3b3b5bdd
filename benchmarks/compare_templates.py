"""The same traces on other page templates: does the class stay, and is a flat page left flat?

    python benchmarks/compare_templates.py [--model model] [--split val] [--seed 0] [--margin 0.01]
        [--moved-only]

Each reference-template printout of the split (`split.csv`) is reprinted once on each page colour of
`augment.PAGE_COLOURS` (white, pink, blue, yellow, grey) with another title block, font, logo, frame and
footer (`augment.reprinted`; the trace area kept, moved by up to `--margin` of the page, 1%). Per colour:
how many composites get the class the model gives the printout itself (the issue's target: at least
95%), how many are right, and how many `page.find_page` takes for a photographed sheet (a flat page
must not be straightened: 0 wanted). `--margin 0` keeps the trace area where the reference template
puts it (the rest of each page drawn the same); `--moved-only` reprints nothing and only moves each
printout as the composites move their trace area (`np.roll`), to tell the page from the margin.
Reads `../shared/data` (the model's own data roots); writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app.labels import ECG_CLASSES  # noqa: E402
from ecg_app.serving.classifier import Classifier  # noqa: E402
from ecg_app.serving.intake import load_image  # noqa: E402
from ecg_app.serving.page import find_page  # noqa: E402
from ecg_app.training import dataset  # noqa: E402
from ecg_app.training.augment import PAGE_COLOURS, margin_move, reprinted  # noqa: E402
from ecg_app.training.dataset import model_roots  # noqa: E402


def moved(image: np.ndarray, rng: np.random.Generator, colour: str, margin: float) -> np.ndarray:
    """The printout itself moved as `reprinted(image, rng, colour, margin)` moves its trace area (the
    colour is given, so the move is the generator's first draw there too)."""
    return np.roll(image, margin_move(image.shape, rng, margin), axis=(0, 1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO / "model")
    parser.add_argument("--split", default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.01, help="the most the trace area moves")
    parser.add_argument("--moved-only", action="store_true")
    args = parser.parse_args()
    classifier = Classifier(args.model)
    samples = dataset.read_manifest(args.model / "split.csv", model_roots(classifier.info))
    chosen = [s for s in samples if s.split == args.split and s.label in ECG_CLASSES]
    images = [load_image(s.path) for s in chosen]
    own = [p.label for p in classifier.predict_batch(images)]
    truth = [s.label for s in chosen]
    right = sum(a == b for a, b in zip(own, truth, strict=True))
    print(f"{len(chosen)} printouts of the {args.split} split; as they are: right {right}")
    same_all, total = 0, 0
    for k, colour in enumerate(PAGE_COLOURS):
        composites = [
            (moved if args.moved_only else reprinted)(
                image, np.random.default_rng([args.seed, k, i]), colour, args.margin
            )
            for i, image in enumerate(images)
        ]
        labels = [p.label for p in classifier.predict_batch(composites)]
        same = sum(a == b for a, b in zip(labels, own, strict=True))
        right = sum(a == b for a, b in zip(labels, truth, strict=True))
        flattened = sum(find_page(c) is not None for c in composites)
        same_all, total = same_all + same, total + len(chosen)
        print(
            f"{colour:7s} same class {same:3d}/{len(chosen)}, right {right:3d}, "
            f"taken for a photographed sheet {flattened:3d}"
        )
    print(f"all colours: same class {same_all}/{total} ({same_all / total:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
