"""Reading what a stored picture or a report still shows, with Tesseract: the privacy checks' eyes.

Used by tests/test_deidentify.py (a sample) and benchmarks/check_deidentified.py (every printout).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytesseract

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's own threads slow it down on 2 cores
PRINTED_ID = re.compile(r"\bI[DdO0]\s*[:;.]?\s*(\d{5,8})\b")
HEADER_ROWS = 0.18  # the Mendeley header: the top of the page


def read_text(rgb: np.ndarray, scale: float = 1.0, psm: int = 11) -> str:
    """Everything Tesseract reads in a picture (grayscale, optionally enlarged so small print is read)."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return pytesseract.image_to_string(gray, config=f"--psm {psm}")


def printed_id(rgb: np.ndarray) -> str | None:
    """The patient ID printed in a Mendeley printout's header ("ID : 177016"), as Tesseract reads it."""
    header = rgb[: round(HEADER_ROWS * rgb.shape[0])]
    for scale in (1.0, 2.0):
        found = PRINTED_ID.search(read_text(header, scale, psm=6))
        if found:
            return found.group(1)
    return None


def shows_digits(text: str, digits: str) -> bool:
    """Whether the digits appear in the text, even split by spaces or punctuation."""
    return digits in re.sub(r"\D", "", text)


def readings(rgb: np.ndarray) -> str:
    """What Tesseract reads at the picture's size and enlarged twice (a thumbnail's print is small)."""
    return "\n".join(read_text(rgb, scale) for scale in (1.0, 2.0))


def pdf_pages(pdf: bytes, dpi: int = 150) -> list[np.ndarray]:
    """The pages of a PDF as RGB pictures (poppler's pdftoppm)."""
    if shutil.which("pdftoppm") is None:
        raise RuntimeError("pdftoppm (poppler-utils) is not installed")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "report.pdf"
        source.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-png", "-r", str(dpi), source, Path(folder) / "page"], check=True)
        return [
            cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            for path in sorted(Path(folder).glob("page*.png"))
        ]
