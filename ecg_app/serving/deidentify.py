"""Blank what could name the patient before a picture is stored or printed.

Why: every printout carries a header with the patient ID (other machines add name, birth date, sex,
hospital), and the stored picture, its thumbnail, its Grad-CAM overlay and the PDF all showed it. The
classifier reads only the trace area, so nothing outside it needs keeping.

- **Printouts of the known template** (`trace-frame`): the pink frame around the trace area is found as
  the convex hull of the frame-coloured pixels (`trace_area.frame_colour`, then a looser pink for
  compressed or unevenly lit copies), and everything outside it (header, footer, margins) is painted
  white. Works on rotated, perspective-warped and photographed copies, as the hull follows the frame.
  The hull must be the frame's (its proportions, thin pink lines all along its outline, little pink
  inside): pink that is not it would leave any text inside it legible.
- **Other pictures** (`text`): words found by Tesseract (Smith 2007, "An overview of the Tesseract OCR
  engine", ICDAR) through pytesseract are painted white, on the brightest colour channel so that a pink
  or blue grid fades and is not read as text. Lead labels may be painted too.
- **Fail closed** (`mosaic`): when Tesseract is missing, fails or runs out of time, the picture is
  stored as a coarse mosaic in which no text can be read.

Example:
    >>> clean = deidentify(page_as_read(rgb))
    >>> clean.method, clean.apply_to(overlay)  # the same blanking on a picture of the same page
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np

from ecg_app.serving import trace_area
from ecg_app.serving.trace_area import frame_colour

log = logging.getLogger(__name__)

TRACE_FRAME, TEXT, MOSAIC = "trace-frame", "text", "mosaic"
METHODS = (TRACE_FRAME, TEXT, MOSAIC)
WHITE = 255
# The frame's hull: a share of the picture between these (the template's page 0.75, in perspective 0.71, a
# photo of it not straightened 0.44; with the header in, over 0.9)
# and nearly a rectangle (hull area / its minimal rectangle's), else it is not this template's frame.
HULL_SHARE = (0.3, 0.88)
MIN_RECTANGULARITY = 0.9
# The template's frame, wide to high: its sides (trace_area.BORDER_BOX) on the template's 1106 x 786 page.
# A photo in perspective or a page of other proportions moves this by a few per cent.
_LEFT, _TOP, _RIGHT, _BOTTOM = trace_area.BORDER_BOX
FRAME_ASPECT = (_RIGHT - _LEFT) * 1106 / ((_BOTTOM - _TOP) * 786)  # 1.71
ASPECT_TOLERANCE = 0.12
MAX_PINK_INSIDE = 0.05  # share of the hull's area that is pink line: the template's is about 0.006
MIN_OUTLINE_PINK = 0.6  # share of the hull's outline (away from the picture's edge) along pink lines
_BLOB = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))  # pink this thick in both ways is no frame line
MIN_PINK_SPECK = 20  # pixels of outline: smaller pink specks (JPEG noise, a logo's dot) do not count
FRAME_MARGIN = 0.004  # kept beyond the hull, a share of the page's longer side: the frame line itself
# Tesseract: one thread (its OpenMP threads slow it 3-4x on 2 cores), sparse text, no second pass for
# inverted text; pictures are read at most this large; a run that takes longer is given up.
OCR_MAX_SIDE = 1600
OCR_CONFIG = "--psm 11 -c tessedit_do_invert=0"
OCR_TIMEOUT_S = 10
WORD_PAD = 3  # pixels around a word's box
MOSAIC_CELLS = 48  # cells along the longer side of a mosaic


@dataclass(frozen=True)
class Deidentified:
    """A picture fit to store: `image` with everything outside `keep` painted white (or a mosaic)."""

    image: np.ndarray
    keep: np.ndarray  # bool, the picture's height x width: True where the picture was kept
    method: str

    @property
    def blanked_share(self) -> float:
        return float(1.0 - self.keep.mean())

    def apply_to(self, picture: np.ndarray) -> np.ndarray:
        """The same blanking on another picture of the same page at any size (its Grad-CAM overlay)."""
        if self.method == MOSAIC:
            return mosaic(picture)
        height, width = picture.shape[:2]
        keep = cv2.resize(self.keep.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        return _blank(picture, keep)


def _blank(picture: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """White wherever `keep` is False (OpenCV's masked copy: ~10x faster than boolean indexing)."""
    out = np.full_like(picture, WHITE)
    cv2.copyTo(picture, keep.astype(np.uint8), out)
    return out


def _pink(rgb: np.ndarray) -> np.ndarray:
    """A looser pink than `frame_colour`, for a frame faded by JPEG or a shadow (pale pink pages fail
    the hull's checks instead); the frame's pink has green and blue alike (217, 174, 177)."""
    r, g, b = cv2.split(np.ascontiguousarray(rgb))
    pink = (r > 120) & (g < 215) & (cv2.subtract(r, g) > 12) & (cv2.subtract(r, b) > 8)
    return pink & (cv2.absdiff(g, b) < 20)  # green and blue alike: pink, not a brown desk or skin


def frame_hull(rgb: np.ndarray) -> np.ndarray | None:
    """The convex hull (OpenCV points) of the printed frame around the trace area, or None when the
    picture has no pink frame of the template's shape: thin pink lines all along the hull's outline,
    little pink inside, a near rectangle of the frame's proportions and size."""
    for colour in (frame_colour, _pink):
        pink = colour(rgb).astype(np.uint8)
        lines = pink - cv2.morphologyEx(pink, cv2.MORPH_OPEN, _BLOB)  # not a lit desk's pink patch
        contours, _ = cv2.findContours(lines, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        large = [c for c in contours if cv2.arcLength(c, True) >= MIN_PINK_SPECK]
        if not large:
            continue
        hull = cv2.convexHull(np.concatenate(large))
        if _is_frame(hull, lines):
            return hull
    return None


def _is_frame(hull: np.ndarray, lines: np.ndarray) -> bool:
    area = cv2.contourArea(hull)
    share = area / lines.size
    (_, _), (width, height), _ = cv2.minAreaRect(hull)
    if not HULL_SHARE[0] <= share <= HULL_SHARE[1] or area < MIN_RECTANGULARITY * width * height:
        return False
    aspect = max(width, height) / max(min(width, height), 1e-9)
    if abs(aspect / FRAME_ASPECT - 1) > ASPECT_TOLERANCE:
        return False
    if lines.sum() > MAX_PINK_INSIDE * area:  # a pink object, not a frame of thin lines
        return False
    # The outline of the hull runs along pink lines (where it is not the picture's own edge).
    reach = max(2, round(0.006 * max(lines.shape)))
    outline = np.zeros_like(lines)
    cv2.polylines(outline, [hull], True, 1, thickness=1)
    outline[:2], outline[-2:], outline[:, :2], outline[:, -2:] = 0, 0, 0, 0  # the picture's own edge
    on_outline = outline > 0
    near_pink = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1, 2 * reach + 1)))
    return on_outline.any() and near_pink[on_outline].mean() >= MIN_OUTLINE_PINK


def _keep_inside(shape: tuple[int, ...], hull: np.ndarray) -> np.ndarray:
    keep = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(keep, hull, 1)
    margin = max(1, round(FRAME_MARGIN * max(shape[:2])))
    keep = cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1)))
    return keep.astype(bool)


def word_boxes(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of every word Tesseract reads in the picture, in its pixels. Raises RuntimeError
    when Tesseract is not installed, fails or runs out of time."""
    import pytesseract

    gray = np.maximum(np.maximum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])  # a coloured grid fades
    scale = min(1.0, OCR_MAX_SIDE / max(gray.shape))
    if scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # read by the tesseract process pytesseract starts
    try:
        data = pytesseract.image_to_data(
            gray, config=OCR_CONFIG, timeout=OCR_TIMEOUT_S, output_type=pytesseract.Output.DICT
        )
    except (pytesseract.TesseractError, pytesseract.TesseractNotFoundError, OSError) as exc:
        raise RuntimeError(f"text detection failed: {exc}") from exc
    except RuntimeError as exc:  # pytesseract's timeout
        raise RuntimeError(f"text detection gave up: {exc}") from exc
    boxes = []
    for text, conf, x, y, w, h in zip(
        data["text"], data["conf"], data["left"], data["top"], data["width"], data["height"], strict=True
    ):
        if float(conf) >= 0 and any(ch.isalnum() for ch in str(text)):
            boxes.append(tuple(round(v / scale) for v in (x, y, w, h)))
    return boxes


def _keep_outside(shape: tuple[int, ...], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    for x, y, w, h in boxes:
        keep[max(y - WORD_PAD, 0) : y + h + WORD_PAD, max(x - WORD_PAD, 0) : x + w + WORD_PAD] = False
    return keep


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """The picture as coarse blocks (MOSAIC_CELLS along its longer side): its layout shows, no text."""
    height, width = rgb.shape[:2]
    scale = MOSAIC_CELLS / max(height, width)
    small = cv2.resize(
        rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def deidentify(page: np.ndarray) -> Deidentified:
    """The picture to store for this page (`preprocess.page_as_read` of the upload): outside the trace
    area's frame painted white, or else every word Tesseract reads, or else a mosaic."""
    try:
        hull = frame_hull(page)
    except Exception:  # never let an odd picture stop the analysis: the text search takes it
        log.exception("the frame search failed; searching for text instead")
        hull = None
    if hull is not None:
        keep = _keep_inside(page.shape, hull)
        method = TRACE_FRAME
    else:
        try:
            keep = _keep_outside(page.shape, word_boxes(page))
            method = TEXT
        except Exception as exc:  # fail closed: whatever went wrong, nothing legible is kept
            log.warning("%s; the picture is stored as a mosaic", exc)
            return Deidentified(mosaic(page), np.zeros(page.shape[:2], bool), MOSAIC)
    return Deidentified(_blank(page, keep), keep, method)
