"""The heart rate the ECG machine printed in each Mendeley printout's footer, read with tesseract.

    python benchmarks/read_printed_rates.py [--data ../shared/data] [--out tests/data/printed_heart_rates.csv]
        [--sheet unread.png] [--by-eye FILE=RATE ...]

The footer reads "... 4*2.5s+1r <heart>77 SE-3 V1.0 ...". The heart glyph confuses OCR (it is read as
an 8 or a 9), so it is found first (the most solid dark blob of the footer's left half) and painted
out; the footer line around it is then read by tesseract (Debian's `tesseract-ocr`, `--psm 7`) at
three scales, and the number just before "SE" kept. A rate is taken when the three readings agree;
the others are written to `--sheet` (a picture of their footers) to be read by eye and given with
`--by-eye`. The CSV (`file`, `printed_rate_bpm`, `read_by`) is the reference that measured heart
rates are validated against; the printed rate is never an input to the classifier.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app.serving.intake import image_files, load_image  # noqa: E402

FOOTER_ROWS = (0.962, 0.992)  # the footer line, as shares of the page height
SEARCH_COLUMNS = (0.20, 0.34)  # where the heart is sought
READ_COLUMNS = (0.16, 0.40)  # the stretch of the footer given to tesseract
SCALES = (3, 4, 5)
NUMBER = re.compile(r"([0-9IlO|]{2,3})\W*S\s*E")  # the rate, just before "SE-3"
AS_DIGITS = str.maketrans("IlO|", "1101")


def footer(rgb: np.ndarray) -> np.ndarray:
    height = rgb.shape[0]
    top, bottom = (round(v * height) for v in FOOTER_ROWS)
    return cv2.cvtColor(rgb[top:bottom], cv2.COLOR_RGB2GRAY)


def heart_box(line: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the heart glyph: the dark blob in the search columns that fills most of its box."""
    width = line.shape[1]
    x0, x1 = (round(v * width) for v in SEARCH_COLUMNS)
    dark = (line[:, x0:x1] < 128).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    best, best_fill = None, 0.6
    for x, y, w, h, area in stats[1:count]:
        fill = area / (w * h)
        if w >= 0.004 * width and h >= 0.004 * width and fill > best_fill:
            best, best_fill = (x0 + x, y, w, h), fill
    return best


def tesseract(gray: np.ndarray) -> str:
    with tempfile.NamedTemporaryFile(suffix=".png") as handle:
        cv2.imwrite(handle.name, gray)
        done = subprocess.run(
            ["tesseract", handle.name, "-", "--psm", "7"], capture_output=True, text=True, check=True
        )
    return done.stdout.strip()


def read_rate(rgb: np.ndarray) -> tuple[int | None, list[str]]:
    """The printed rate when the three scales agree on it, and what each reading gave."""
    line = footer(rgb).copy()
    box = heart_box(line)
    if box is None:
        return None, []
    x, y, w, h = box
    line[max(y - 1, 0) : y + h + 1, max(x - 1, 0) : x + w + 1] = 255
    width = line.shape[1]
    stretch = line[:, round(READ_COLUMNS[0] * width) : round(READ_COLUMNS[1] * width)]
    readings = []
    for scale in SCALES:
        big = cv2.resize(stretch, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        text = tesseract(cv2.copyMakeBorder(big, 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=255))
        found = NUMBER.search(text)
        readings.append(found.group(1).translate(AS_DIGITS) if found else "")
    value, votes = Counter(readings).most_common(1)[0]
    return (int(value) if votes == len(SCALES) and value else None), readings


def contact_sheet(images: dict[str, np.ndarray], path: Path) -> None:
    rows = []
    for name, rgb in images.items():
        line = footer(rgb)
        width = line.shape[1]
        stretch = line[:, round(0.22 * width) : round(0.36 * width)]
        stretch = cv2.resize(stretch, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        label = np.full((stretch.shape[0], 260), 255, np.uint8)
        cv2.putText(label, name, (4, stretch.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1)
        rows.append(np.hstack([label, stretch]))
    width = max(r.shape[1] for r in rows)
    rows = [cv2.copyMakeBorder(r, 0, 4, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=255) for r in rows]
    cv2.imwrite(str(path), np.vstack(rows))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "printed_heart_rates.csv")
    parser.add_argument("--sheet", type=Path, default=Path("unread.png"))
    parser.add_argument("--by-eye", nargs="*", default=[], metavar="FILE=RATE")
    args = parser.parse_args()
    root = args.data / "mendeley-ecg"
    by_eye = dict(item.split("=", 1) for item in args.by_eye)
    rows, unread = [], {}
    for path in sorted(image_files(root)):
        name = path.relative_to(root).as_posix()
        rgb = load_image(path)
        rate, readings = read_rate(rgb)
        if rate is not None:
            rows.append((name, rate, "tesseract"))
        elif path.name in by_eye:
            rows.append((name, int(by_eye[path.name]), "eye"))
        else:
            unread[path.name] = rgb
            print(f"{path.name}: readings {readings}, not agreed", flush=True)
    if unread:
        contact_sheet(unread, args.sheet)
        print(f"{len(unread)} footers to read by eye: {args.sheet}; give them with --by-eye")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "printed_rate_bpm", "read_by"])
        writer.writerows(rows)
    read = Counter(by for _, _, by in rows)
    agreed, eye = read["tesseract"], read["eye"]
    print(f"{len(rows)} printouts: {agreed} read by tesseract (three scales agree), {eye} by eye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
