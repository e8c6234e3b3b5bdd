"""Batch scoring throughput against one-at-a-time prediction, measured in the same run.

    python benchmarks/bench_batch.py --data ../shared/data --n 64

Both paths include decoding and preprocessing; the model is loaded and warmed up first.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from ecg_app.batch import score_folder
from ecg_app.config import DEFAULT_MODEL_DIR
from ecg_app.serving.classifier import Classifier
from ecg_app.serving.intake import image_files, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()

    files = image_files(args.data / "mendeley-ecg")[: args.n]
    classifier = Classifier(args.model)
    classifier.predict(load_image(files[0]))  # load + warm up

    start = time.perf_counter()
    for path in files:
        classifier.predict(load_image(path))
    single = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for path in files:
            shutil.copy(path, folder / path.name)
        start = time.perf_counter()
        score_folder(folder, Path(tmp) / "out.csv", classifier, batch_size=16, progress=False)
        batched = time.perf_counter() - start

    print(f"{len(files)} full-size ECG images, model {classifier.version}, 2-core CPU")
    print(f"one at a time : {len(files) / single:6.1f} images/s")
    print(f"batched (16)  : {len(files) / batched:6.1f} images/s  ({single / batched:.2f}x)")


if __name__ == "__main__":
    main()
