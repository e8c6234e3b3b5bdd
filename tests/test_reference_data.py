"""The reference data kept in the repository for validating measurements (`tests/data/`)."""

import csv
from pathlib import Path

from ecg_app.serving.intake import image_files

RATES = Path(__file__).parent / "data" / "printed_heart_rates.csv"


def read_rates() -> dict[str, tuple[int, str]]:
    with RATES.open(newline="", encoding="utf-8") as handle:
        return {row["file"]: (int(row["printed_rate_bpm"]), row["read_by"]) for row in csv.DictReader(handle)}


def test_printed_rates_are_plausible_and_mostly_read_by_ocr():
    """The rate the ECG machine printed in each footer (`benchmarks/read_printed_rates.py`): a resting
    adult's or a tachycardia's, read by tesseract where three scales agree, by eye otherwise."""
    rates = read_rates()
    assert all(30 <= rate <= 250 for rate, _ in rates.values())
    assert {by for _, by in rates.values()} <= {"tesseract", "eye"}
    assert sum(by == "eye" for _, by in rates.values()) < 0.15 * len(rates)


def test_every_mendeley_printout_has_its_printed_rate(shared_data):
    root = shared_data / "mendeley-ecg"
    files = sorted(path.relative_to(root).as_posix() for path in image_files(root))
    assert sorted(read_rates()) == files
