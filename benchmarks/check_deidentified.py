"""Does anything stored or printed still show the patient ID? And does de-identification change a decision?

    python benchmarks/check_deidentified.py [--model model] [--data ../shared/data] [--pdf-every 10]
        [--limit N] [--skip-privacy] [--skip-decisions] [--condition "as uploaded" ...]

Privacy: every Mendeley printout in `--data`, as uploaded and photographed on a desk
(`robustness.DEGRADATIONS`), goes through `analysis.analyze_and_store` with the shipped model into a
temporary store. Tesseract reads the ID printed in the original's header, then everything the store keeps
(de-identified picture, thumbnail, Grad-CAM overlay), each at its size and enlarged twice, and the PDF
report (every `--pdf-every`-th printout: pages rasterised at 150 dpi, and the PDF's text). A leak is the
ID's digits anywhere in what was read. The same reading of the original's thumbnail (what was stored
before) shows that the check sees an ID where there is one.

Decisions: the test split (`split.csv`): the class of each picture as uploaded against the class of its
stored, de-identified picture read back from disk. Also the time of the text search on the pictures
without the template's frame. Reads ../shared/data; writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from pypdf import PdfReader

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app.analysis import analyze_and_store  # noqa: E402
from ecg_app.clinical.report import render_report_pdf  # noqa: E402
from ecg_app.config import Settings  # noqa: E402
from ecg_app.serving.classifier import Classifier  # noqa: E402
from ecg_app.serving.deidentify import TEXT, deidentify  # noqa: E402
from ecg_app.serving.intake import image_files, load_image  # noqa: E402
from ecg_app.serving.preprocess import page_as_read  # noqa: E402
from ecg_app.store import open_store  # noqa: E402
from ecg_app.store.images import describe, encode_picture, fit  # noqa: E402
from ecg_app.training import dataset  # noqa: E402
from ecg_app.training.dataset import model_roots  # noqa: E402
from ecg_app.training.robustness import DEGRADATIONS  # noqa: E402
from tests.conftest import decoded, encode  # noqa: E402
from tests.ocr import pdf_pages, printed_id, readings, shows_digits  # noqa: E402

CONDITIONS = {"as uploaded": None, "photographed on a desk": DEGRADATIONS["photographed on a desk"]}


def check_privacy(
    classifier: Classifier, data: Path, pdf_every: int, limit: int | None, conditions: list[str]
) -> None:
    files = image_files(data / "mendeley-ecg")[:limit]
    print(f"privacy: {len(files)} Mendeley printouts, {', '.join(conditions)}")
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), database_url=f"sqlite:///{folder}/history.db")
        with open_store(settings) as store:
            for condition in conditions:
                degrade = CONDITIONS[condition]
                ids_read, before, methods, leaks, pdfs = 0, 0, Counter(), Counter(), 0
                for k, path in enumerate(files):
                    original = load_image(path.read_bytes())
                    upload = original if degrade is None else degrade(original)
                    data_bytes = path.read_bytes() if degrade is None else encode(upload, "JPEG", quality=92)
                    number = printed_id(original)
                    stored = analyze_and_store(data_bytes, path.name, None, store, classifier)
                    methods[stored.deidentification] += 1
                    if number is None:
                        continue
                    ids_read += 1
                    before += shows_digits(readings(fit(upload)), number)
                    kept = {"picture": stored.image_path, "thumbnail": stored.thumbnail_path}
                    if stored.explanation_path is not None:
                        kept["overlay"] = stored.explanation_path
                    for what, file in kept.items():
                        leaks[what] += shows_digits(readings(decoded(file)), number)
                    if k % pdf_every == 0:
                        pdf = render_report_pdf(stored)
                        text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
                        pages = "\n".join(readings(page) for page in pdf_pages(pdf))
                        leaks["PDF"] += shows_digits(text, number) or shows_digits(pages, number)
                        pdfs += 1
                    if (k + 1) % 50 == 0:
                        print(f"  {condition}: {k + 1}/{len(files)}", flush=True)
                print(
                    f"{condition}: IDs read in the original {ids_read}/{len(files)}; "
                    f"shown in the original's thumbnail {before}/{ids_read}; "
                    f"de-identified by {dict(methods)}"
                )
                for what in ("picture", "thumbnail", "overlay"):
                    print(f"  ID digits read in the stored {what}: {leaks[what]}/{ids_read}")
                print(f"  ID digits read in the PDF report: {leaks['PDF']}/{pdfs}")


def check_decisions(classifier: Classifier, model: Path) -> None:
    samples = dataset.read_manifest(model / "split.csv", model_roots(classifier.info))
    test = [s for s in samples if s.split == "test"]
    uploads = [load_image(s.path.read_bytes()) for s in test]
    text_times, methods, changed = [], Counter(), []
    stored = []
    for sample, rgb in zip(test, uploads, strict=True):
        start = time.perf_counter()
        clean = deidentify(page_as_read(rgb))
        if clean.method == TEXT:
            text_times.append(time.perf_counter() - start)
        methods[clean.method] += 1
        # As the store writes it: the file of the picture, read back.
        file = encode_picture(clean.image, describe(sample.path.read_bytes(), clean.image).media_type)
        stored.append(
            cv2.cvtColor(cv2.imdecode(np.frombuffer(file, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        )
    before = classifier.predict_batch(uploads)
    after = classifier.predict_batch(stored)
    for sample, a, b in zip(test, before, after, strict=True):
        if a.label != b.label:
            changed.append(f"{sample.path.name}: {a.label} -> {b.label}")
    print(f"decisions: test split {len(test)} pictures ({dict(Counter(s.label for s in test))})")
    print(f"  de-identified by {dict(methods)}")
    print(f"  class changed when the stored picture is classified again: {len(changed)}/{len(test)}")
    for line in changed:
        print(f"    {line}")
    probability_gap = max(
        abs(a.probabilities[c] - b.probabilities[c])
        for a, b in zip(before, after, strict=True)
        for c in a.probabilities
    )
    print(f"  largest change of a class probability: {probability_gap:.4f}")
    if text_times:
        print(
            f"  text search on {len(text_times)} pictures without the frame: median "
            f"{statistics.median(text_times):.2f} s, 95th percentile {np.quantile(text_times, 0.95):.2f} s, "
            f"max {max(text_times):.2f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO / "model")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pdf-every", type=int, default=10)
    parser.add_argument("--limit", type=int, help="only the first N printouts (a quick look)")
    parser.add_argument("--skip-privacy", action="store_true")
    parser.add_argument("--skip-decisions", action="store_true")
    parser.add_argument(
        "--condition", choices=list(CONDITIONS), action="append", help="only these (default: both)"
    )
    args = parser.parse_args()
    classifier = Classifier(args.model)
    if not args.skip_decisions:
        check_decisions(classifier, args.model)
    if not args.skip_privacy:
        check_privacy(classifier, args.data, args.pdf_every, args.limit, args.condition or list(CONDITIONS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
