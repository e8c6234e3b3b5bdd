"""Single-image latency: a full-size (2213x1572) JPEG's bytes through decoding, preprocessing and the
shipped model to probabilities, median of repeated runs after a warm-up (target <= 60 ms on 2 cores).
With `--baseline DIR`, the same total for another model directory too, the two timed in turns in this
run, and their ratio: on a machine whose speed drifts between runs, only that ratio compares them.
With `--agreement`, what decoding a full-size JPEG at reduced scale (`intake.DECODE_AT_LEAST`) changes:
the validation split's printouts, scaled up to the scanner's 2213x1572, classified after a full decode
and after the app's reduced one. With `--photo`, what a phone photo costs against the scan: the same
printout photographed in front of an everyday photo (`augment.photographed`, 1600x1200, seed 0), its
page search and its bytes -> probabilities timed in turns with the scan's (a scan's search stops at the
first test; a photo's also looks for the sheet's straight edges), then one whole analysis of the photo
(bytes to a stored record, `analyze_and_store` into a scratch SQLite store) with the page searches
remembered, as served, in turns with every search done afresh, as before they were remembered.
Every timed call starts with no search remembered, as for a new upload.

    python benchmarks/bench_latency.py --data ../shared/data [--baseline DIR] [--agreement] [--photo]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ecg_app.analysis import analyze_and_store
from ecg_app.config import DEFAULT_MODEL_DIR, Settings
from ecg_app.labels import CLASSES, ECG_CLASSES
from ecg_app.serving import page
from ecg_app.serving.classifier import Classifier
from ecg_app.serving.intake import image_files, load_image
from ecg_app.serving.page import find_page, forget_searches
from ecg_app.serving.preprocess import preprocess
from ecg_app.store import open_store
from ecg_app.training.augment import photographed
from ecg_app.training.dataset import model_roots, read_manifest

FULL_SIZE = (2213, 1572)


def full_size_jpeg(page: np.ndarray) -> bytes:
    """A printout as the scanner writes it (the shared copies are half size), JPEG quality 90."""
    return jpeg(cv2.resize(page, FULL_SIZE, interpolation=cv2.INTER_CUBIC))


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes()


def full_decode(data: bytes) -> np.ndarray:
    """Every pixel decoded, as the intake did before it decoded large JPEGs at reduced scale."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def print_in_turns(steps: dict[str, Callable[[], object]], repeats: int) -> None:
    """Time two steps one after the other in every round, and print their medians and ratio: on a
    machine whose speed drifts between runs, only figures from the same rounds compare."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(median_ms(step, 1))
    (first, a), (second, b) = ((name, statistics.median(t)) for name, t in times.items())
    print(f"in turns, median of {repeats}: {first} {a:.1f} ms, {second} {b:.1f} ms, ratio {a / b:.2f}")


def median_ms(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        forget_searches()  # each upload is a new picture: its page search is not remembered yet
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--baseline", type=Path, help="a model directory to compare, timed in turns")
    parser.add_argument("--agreement", action="store_true", help="full against reduced JPEG decoding")
    parser.add_argument("--photo", action="store_true", help="a desk photo of the printout against its scan")
    args = parser.parse_args()

    # The shared copies are half size; users upload the original 2213x1572 scans.
    printout = load_image(image_files(args.data / "mendeley-ecg")[0])
    data = full_size_jpeg(printout)

    classifier = Classifier(args.model)
    classifier.predict(load_image(data))  # load and trace the graph
    rgb = load_image(data)
    x = preprocess(rgb)[None]
    decode = median_ms(lambda: load_image(data), args.repeats)
    prep = median_ms(lambda: preprocess(rgb), args.repeats)
    page_search = median_ms(lambda: find_page(rgb), args.repeats)
    network = median_ms(lambda: classifier.logits(x), args.repeats)
    # The whole-picture ECG detector (resize + its networks), when the model has one.
    has_detector = classifier.detector_threshold is not None
    detector = median_ms(lambda: classifier.detect([rgb]), args.repeats) if has_detector else None
    total = median_ms(lambda: classifier.predict(load_image(data)), args.repeats)
    print(
        f"model {classifier.version}, {len(data) / 1e6:.1f} MB JPEG {FULL_SIZE[0]}x{FULL_SIZE[1]} "
        f"decoded at {rgb.shape[1]}x{rgb.shape[0]}, "
        f"median of {args.repeats}, 2 cores"
    )
    print(f"decode (intake)      {decode:6.1f} ms")
    print(f"preprocess           {prep:6.1f} ms  (of which the page search {page_search:.1f} ms)")
    print(f"network              {network:6.1f} ms")
    if detector is not None:
        print(f"ECG detector         {detector:6.1f} ms")
    print(f"bytes -> probabilities {total:6.1f} ms  (target <= 60 ms)")
    print_in_turns(
        {
            "reduced decoding": lambda: classifier.predict(load_image(data)),
            "every pixel decoded": lambda: classifier.predict(full_decode(data)),
        },
        args.repeats,
    )
    if args.baseline:
        baseline = Classifier(args.baseline)
        baseline.predict(load_image(data))
        print_in_turns(
            {
                classifier.version: lambda: classifier.predict(load_image(data)),
                f"baseline {baseline.version}": lambda: baseline.predict(load_image(data)),
            },
            args.repeats,
        )
    if args.agreement:
        decoding_agreement(classifier)
    if args.photo:
        scene = load_image(image_files(args.data / "non-ecg" / "photos")[0])
        photo = jpeg(photographed(printout, scene, np.random.default_rng(0)))
        photo_rgb = load_image(photo)
        found = "found" if find_page(photo_rgb) is not None else "NOT found"
        height, width = photo_rgb.shape[:2]
        print(f"desk photo: {len(photo) / 1e6:.1f} MB JPEG {width}x{height}, page {found}")
        print_in_turns(
            {"page search, photo": lambda: find_page(photo_rgb), "scan": lambda: find_page(rgb)}, args.repeats
        )
        print_in_turns(
            {
                "bytes -> probabilities, photo": lambda: classifier.predict(load_image(photo)),
                "scan": lambda: classifier.predict(load_image(data)),
            },
            args.repeats,
        )
        time_remembered_searches(classifier, photo, args.repeats)


def time_remembered_searches(classifier: Classifier, photo: bytes, repeats: int) -> None:
    """One analysis of the photo with the page searches remembered, in turns with every search done
    afresh: the search's uncached body (`page._outline.__wrapped__`) swapped in for the second."""
    remembered = page._outline
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), database_url=f"sqlite:///{scratch}/bench.sqlite3")
        with open_store(settings) as store:

            def analyze() -> None:
                analyze_and_store(photo, "photo.jpg", None, store, classifier)

            analyze()  # trace Grad-CAM's graph

            def afresh() -> None:
                page._outline = remembered.__wrapped__
                try:
                    analyze()
                finally:
                    page._outline = remembered

            print_in_turns({"analysis of the photo, searches remembered": analyze, "afresh": afresh}, repeats)


def decoding_agreement(classifier: Classifier) -> None:
    """Print how often the full and the reduced decoding of the same full-size JPEG get the same class."""
    samples = read_manifest(classifier.model_dir / "split.csv", model_roots(classifier.info))
    chosen = [s for s in samples if s.split == "val" and s.label in ECG_CLASSES]
    full, reduced = [], []
    for sample in chosen:
        data = full_size_jpeg(load_image(sample.path))
        full.append(full_decode(data))
        reduced.append(load_image(data))
    y = np.array([CLASSES.index(s.label) for s in chosen])
    p_full, p_reduced = classifier.predict_proba(full), classifier.predict_proba(reduced)
    print(
        f"validation printouts at {FULL_SIZE[0]}x{FULL_SIZE[1]}, n={len(y)}: same class "
        f"{int((p_full.argmax(1) == p_reduced.argmax(1)).sum())}, accuracy full decode "
        f"{(p_full.argmax(1) == y).mean():.3f}, reduced {(p_reduced.argmax(1) == y).mean():.3f}, "
        f"largest probability change {np.abs(p_full - p_reduced).max():.3f}"
    )


if __name__ == "__main__":
    main()
