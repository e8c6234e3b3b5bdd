"""Single-image latency: a full-size (2213x1572) JPEG's bytes through decoding, preprocessing and the
shipped model to probabilities, median of repeated runs after a warm-up (target <= 60 ms on 2 cores).
With `--baseline DIR`, the same total for another model directory too, the two timed in turns in this
run, and their ratio: on a machine whose speed drifts between runs, only that ratio compares them.

    python benchmarks/bench_latency.py --data ../shared/data [--baseline DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2

from ecg_app.classifier import Classifier
from ecg_app.config import DEFAULT_MODEL_DIR
from ecg_app.dataset import image_files
from ecg_app.intake import load_image
from ecg_app.preprocess import preprocess


def median_ms(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
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
    args = parser.parse_args()

    # The shared copies are half size; users upload the original 2213x1572 scans.
    page = load_image(image_files(args.data / "mendeley-ecg")[0])
    full = cv2.resize(page, (2213, 1572), interpolation=cv2.INTER_CUBIC)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(full, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    data = encoded.tobytes()

    classifier = Classifier(args.model)
    classifier.predict(load_image(data))  # load and trace the graph
    rgb = load_image(data)
    x = preprocess(rgb)[None]
    decode = median_ms(lambda: load_image(data), args.repeats)
    prep = median_ms(lambda: preprocess(rgb), args.repeats)
    network = median_ms(lambda: classifier.logits(x), args.repeats)
    # The whole-picture ECG detector (resize + its networks), when the model has one.
    has_detector = classifier.detector_threshold is not None
    detector = median_ms(lambda: classifier.detect([rgb]), args.repeats) if has_detector else None
    total = median_ms(lambda: classifier.predict(load_image(data)), args.repeats)
    print(
        f"model {classifier.version}, {len(data) / 1e6:.1f} MB JPEG 2213x1572, "
        f"median of {args.repeats}, 2 cores"
    )
    print(f"decode (intake)      {decode:6.1f} ms")
    print(f"preprocess           {prep:6.1f} ms")
    print(f"network              {network:6.1f} ms")
    if detector is not None:
        print(f"ECG detector         {detector:6.1f} ms")
    print(f"bytes -> probabilities {total:6.1f} ms  (target <= 60 ms)")
    if args.baseline:
        baseline = Classifier(args.baseline)
        baseline.predict(load_image(data))
        models = {classifier.version: classifier, baseline.version: baseline}
        times: dict[str, list[float]] = {version: [] for version in models}
        for _ in range(args.repeats):
            for version, model in models.items():
                times[version].append(median_ms(lambda m=model: m.predict(load_image(data)), 1))
        ours, theirs = (statistics.median(t) for t in times.values())
        print(
            f"in turns, median of {args.repeats}: {classifier.version} {ours:.1f} ms, "
            f"baseline {baseline.version} {theirs:.1f} ms, ratio {ours / theirs:.2f}"
        )


if __name__ == "__main__":
    main()
