"""Print timings of the history store and the PDF report (a script, not a test: figures vary by machine).

    python benchmarks/bench_store_report.py [--rows 10000] [--write-sample docs]

Targets: storing an analysis (inference excluded) <= 50 ms; one page of 50 out of 10,000 analyses with a
filter <= 100 ms; PDF generation median <= 500 ms. Everything runs in a temporary data directory on a
SQLite file; `--write-sample DIR` also saves the benchmarked report as DIR/sample-report.pdf and .png.

Stored analyses carry what `analyze_and_store` adds: the image-quality warnings and a Grad-CAM overlay
(computed once, before the timings, by the installed model when there is one; inference is not timed).
The sample upload is a slightly blurred photo-like page, so its report shows an "Image quality" box.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ecg_app.analysis import explainer_for, explanation_overlay, measurements_of  # noqa: E402
from ecg_app.clinical.guidance import load_guidance  # noqa: E402
from ecg_app.clinical.report import render_report_pdf  # noqa: E402
from ecg_app.config import DEFAULT_MODEL_DIR, Settings  # noqa: E402
from ecg_app.labels import CLASSES  # noqa: E402
from ecg_app.serving.classifier import Prediction, get_classifier  # noqa: E402
from ecg_app.serving.explain import overlay  # noqa: E402
from ecg_app.serving.preprocess import page_as_read  # noqa: E402
from ecg_app.serving.quality import assess  # noqa: E402
from ecg_app.store import AnalysisFilter, PatientInfo, open_store  # noqa: E402
from ecg_app.store.images import fit  # noqa: E402
from ecg_app.store.models import PROBABILITY_COLUMNS, Analysis  # noqa: E402
from ecg_app.training.synth_printout import render_printout  # noqa: E402

PAGE_SIZE = 50


def printout(width: int = 2213, height: int = 1572, seed: int = 0) -> np.ndarray:
    """A printout-sized RGB page (pink grid, four rows of traces), the size of the dataset's scans."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 255, np.uint8)
    page[:, ::20] = (240, 190, 190)
    page[::20, :] = (240, 190, 190)
    xs = np.arange(int(0.04 * width), int(0.97 * width))
    for row in range(4):
        base = int(height * (0.27 + 0.18 * row))
        ys = base - (np.sin(xs / width * 40 + rng.uniform(0, 6.3)) ** 15 * height * 0.05).astype(int)
        for dy in range(3):
            page[np.clip(ys + dy, 0, height - 1), xs] = 0
    return page


def jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return out.getvalue()


def prediction(label: str, confidence: float, version: str, status: str = "ok") -> Prediction:
    rest = (1 - confidence) / (len(CLASSES) - 1)
    return Prediction(
        label, {c: confidence if c == label else rest for c in CLASSES}, confidence, version, status
    )


def gradcam_overlay(rgb: np.ndarray, label: str) -> np.ndarray:
    """The installed model's Grad-CAM overlay for `label`; without a model, a stand-in map of the same size
    (the store and the report only see an RGB picture either way)."""
    if (DEFAULT_MODEL_DIR / "model.json").is_file():
        explainer = explainer_for(get_classifier(DEFAULT_MODEL_DIR))
        if explainer is not None:
            return explanation_overlay(explainer, rgb, label)
    preview = fit(rgb)
    height, width = preview.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    blob = ((xx - width * 0.6) / (width * 0.15)) ** 2 + ((yy - height * 0.5) / (height * 0.2)) ** 2
    return overlay(preview, np.exp(-blob).astype(np.float32))


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(name: str, times: list[float], target_ms: float) -> str:
    median = statistics.median(times)
    p95 = sorted(times)[max(0, int(round(0.95 * len(times))) - 1)]
    verdict = "OK" if median <= target_ms else "OVER TARGET"
    return (
        f"{name:<58} median {median:7.1f} ms   p95 {p95:7.1f} ms   (target <= {target_ms:.0f} ms) {verdict}"
    )


def bulk_rows(store, count: int, template) -> None:
    """Insert `count` analyses directly (setup only), spread over a year, pointing at one stored image."""
    rng = random.Random(0)
    names = ["Alice Smith", "Bob Jones", "Carol White", "Dan Brown", "Eve Black", None]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        label = rng.choice(CLASSES)
        name = rng.choice(names)
        confidence = rng.uniform(0.3, 0.99)
        rest = (1 - confidence) / 4
        rows.append(
            {
                "id": uuid.uuid4(),
                "created_at": start + timedelta(minutes=53 * i),
                "image_sha256": template.image_sha256,
                "original_filename": f"scan-{i}.jpg",
                "label": label,
                "confidence": confidence,
                **{PROBABILITY_COLUMNS[c]: confidence if c == label else rest for c in CLASSES},
                "risk_level": load_guidance().for_label(label).risk_level,
                "model_version": template.model_version,
                "status": "ok" if confidence >= 0.5 else "needs_review",
                "patient_name": f"{name} {i}" if name else None,
                "patient_age": rng.randint(18, 95),
                "patient_sex": rng.choice(["female", "male", None]),
                "notes": rng.choice(["", "chest pain", "palpitations at night", "routine check", None]),
            }
        )
    with store.engine.begin() as connection:
        connection.execute(insert(Analysis), rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000, help="analyses in the listing benchmark")
    parser.add_argument("--stores", type=int, default=100, help="analyses stored in the store benchmark")
    parser.add_argument("--pdfs", type=int, default=20, help="reports rendered in the PDF benchmark")
    parser.add_argument("--write-sample", metavar="DIR", help="save the report as DIR/sample-report.pdf/.png")
    args = parser.parse_args()

    info_file = DEFAULT_MODEL_DIR / "model.json"
    version = json.loads(info_file.read_text())["version"] if info_file.is_file() else "sample"
    work = Path(tempfile.mkdtemp(prefix="ecg-bench-"))
    try:
        settings = Settings(data_dir=work, database_url=f"sqlite:///{work / 'bench.sqlite3'}")
        store = open_store(settings)
        page = printout()
        print(f"data dir {work} (SQLite, WAL); upload {page.shape[1]}x{page.shape[0]} JPEG")

        # 1. Store: hash, thumbnail, two atomic file writes (fsync) and one committed transaction.
        uploads = []
        for i in range(args.stores):
            variant = page.copy()
            variant[0, i % page.shape[1]] = (i % 256, 0, 0)
            uploads.append((jpeg(variant), variant))
        patient = PatientInfo("Alice Smith", 61, "female", "chest pain")
        pending = iter(uploads)
        explanation = gradcam_overlay(page, "MI")
        warnings = assess(page)

        def store_one() -> None:
            data, rgb = next(pending)
            store.add(
                prediction("MI", 0.84, version),
                data,
                rgb,
                "scan.jpg",
                patient,
                quality_warnings=warnings,
                explanation=explanation,
            )

        print(
            summary(f"store one analysis (no inference), n={args.stores}", timed(store_one, args.stores), 50)
        )

        # 2. List: one page of 50 among --rows analyses, newest first, with filters.
        sample = store.list(limit=1).items[0]
        bulk_rows(store, args.rows - store.list().total, sample)
        total = store.list().total
        cases = {
            "label=MI": AnalysisFilter(label="MI"),
            "risk=HIGH, one quarter of the dates": AnalysisFilter(
                risk_level="HIGH",
                since=datetime(2024, 3, 1, tzinfo=UTC),
                until=datetime(2024, 6, 1, tzinfo=UTC),
            ),
            "status=needs_review, page 10": AnalysisFilter(status="needs_review"),
            "free text 'palpitations'": AnalysisFilter(search="palpitations"),
        }
        for name, filters in cases.items():
            offset = 9 * PAGE_SIZE if "page 10" in name else 0
            store.list(filters, limit=PAGE_SIZE, offset=offset)  # warm the page cache
            times = timed(lambda f=filters, o=offset: store.list(f, limit=PAGE_SIZE, offset=o), 30)
            print(summary(f"list 50 of {total}: {name}", times, 100))

        # 3. PDF: the full report of one analysis: a template printout with known timings, scanned at 700 px
        # wide (the low-resolution notice shows), its Grad-CAM overlay and its measurements read off it;
        # metrics if model/ has them.
        scan = cv2.resize(render_printout(7)[0], (700, 498), interpolation=cv2.INTER_AREA)
        analysis = store.add(
            prediction("MI", 0.84, version),
            jpeg(scan),
            scan,
            "ecg-scan-2024-05-14.jpg",
            PatientInfo("Sample Patient (synthetic)", 61, "female", "Chest pain for 2 hours; on aspirin."),
            quality_warnings=assess(scan),
            explanation=gradcam_overlay(scan, "MI"),
            measurements=measurements_of(page_as_read(scan), "MI"),
        )
        render_report_pdf(analysis)  # first call loads fonts
        pdf_times = []
        for _ in range(args.pdfs):
            start = time.perf_counter()
            pdf = render_report_pdf(analysis)
            pdf_times.append((time.perf_counter() - start) * 1000)
        print(summary(f"PDF report ({len(pdf) / 1024:.0f} KiB), n={args.pdfs}", pdf_times, 500))

        if args.write_sample:
            out = Path(args.write_sample)
            out.mkdir(parents=True, exist_ok=True)
            (out / "sample-report.pdf").write_bytes(pdf)
            if shutil.which("pdftoppm"):
                subprocess.run(
                    ["pdftoppm", "-png", "-r", "100", "-f", "1", "-l", "1", "-singlefile",
                     str(out / "sample-report.pdf"), str(out / "sample-report")],
                    check=True,
                )  # fmt: skip
            print(f"sample written to {out / 'sample-report.pdf'}")
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
