"""Score a folder of images into a CSV: batched inference, a progress bar, and resumable runs.

Rows are appended and flushed batch by batch, and files already in the CSV are skipped, so an
interrupted run picks up where it stopped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ecg_app.labels import CLASSES
from ecg_app.serving.classifier import Classifier, Prediction
from ecg_app.serving.intake import IntakeError, image_files, load_image

PREDICTION_FIELDS = (
    "label",
    "display_name",
    "confidence",
    "risk_level",
    "status",
    "ecg_distance",
    "ecg_probability",
    "model_version",
)
# Probability columns named as in the history CSV export; "warnings" holds the classifier's warning codes
# (ECG gate, ECG detector, infarction flag).
FIELDS = ("file", *PREDICTION_FIELDS, *(f"prob_{c}" for c in CLASSES), "warnings", "error")


def _row(name: str, prediction: Prediction) -> dict:
    """One CSV row from a Prediction (its `to_dict()` fields, flattened)."""
    result = prediction.to_dict()
    return {
        "file": name,
        **{key: result[key] for key in PREDICTION_FIELDS},
        **{f"prob_{c}": result["probabilities"][c] for c in CLASSES},
        "warnings": ";".join(warning.code for warning in prediction.warnings),
    }


@dataclass(frozen=True)
class BatchSummary:
    scored: int
    failed: int
    skipped: int


def already_scored(out_csv: Path) -> set[str]:
    if not out_csv.is_file():
        return set()
    with out_csv.open(newline="", encoding="utf-8") as handle:
        return {row["file"] for row in csv.DictReader(handle)}


def score_folder(
    folder: Path, out_csv: Path, classifier: Classifier, batch_size: int = 16, progress: bool = True
) -> BatchSummary:
    """Classify every image below `folder` not yet in `out_csv`, appending one row per file."""
    folder, out_csv = Path(folder), Path(out_csv)
    done = already_scored(out_csv)
    pending = [p for p in image_files(folder) if p.relative_to(folder).as_posix() not in done]
    new_file = not out_csv.is_file() or out_csv.stat().st_size == 0
    scored = failed = 0
    with (
        out_csv.open("a", newline="", encoding="utf-8") as handle,
        tqdm(total=len(pending), unit="img", disable=not progress) as bar,
    ):
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for start in range(0, len(pending), batch_size):
            rows, images, names = [], [], []
            for path in pending[start : start + batch_size]:
                name = path.relative_to(folder).as_posix()
                try:
                    images.append(load_image(path))
                    names.append(name)
                except IntakeError as exc:
                    rows.append({"file": name, "error": exc.message})
                    failed += 1
            for name, prediction in zip(names, classifier.predict_batch(images, batch_size), strict=True):
                rows.append(_row(name, prediction))
                scored += 1
            writer.writerows(rows)
            handle.flush()
            bar.update(len(rows))
    return BatchSummary(scored=scored, failed=failed, skipped=len(done))
