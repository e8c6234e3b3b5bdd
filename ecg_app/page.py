"""Find the paper in a photo of a printout and straighten it, before the trace area is cropped.

Why: `preprocess` crops the trace area at fixed fractions of the picture, which holds for a scan or a
screenshot (the page is the picture) but not for a phone photo that shows the desk around the page:
there the crop lands on the wrong part, and the networks, which never saw a background, misread most
such photos and called many Non-ECG (model card, "Photographed on a desk"). So the largest bright,
colourless region is taken as the page when it is a clear four-cornered shape, wholly in view,
covering at least a twentieth of the picture (a photographed rhythm strip is a thin sheet) but not all
of it, and is warped to a straight rectangle. A
picture that is all page (every printout in the dataset) is returned unchanged.
"""

from __future__ import annotations

from itertools import combinations

import cv2
import numpy as np

WORK_SIDE = 480  # the search runs on a copy this long: about 2 ms, corners within ~0.5%
MIN_PAGE = 0.05  # the paper must cover at least this share of the picture to be taken for a page
FULL_PAGE = 0.9  # ... and less than this, or the picture is the page already (a scan)
MIN_FILL = 0.9  # the bright region must fill its four-cornered outline this well (a sheet, not a blob)
PAPER_MAX_SATURATION = 70  # HSV saturation (0-255) below which a bright pixel may be paper
THRESHOLD_STEPS = 4  # brightness thresholds tried, from Otsu's towards white
MAX_OUTLINE_POINTS = 8  # a simplified outline with more corners than this is not a sheet
EDGE_MARGIN = 0.01  # a page's corners must lie at least this far (share of the long side) inside the picture
_CLOSE = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))  # fills the traces and grid lines
# Openings that cut bright clutter off the sheet, the smaller tried first: whatever is narrower than the
# kernel goes, and a sheet is at least ~200 px across here.
_OPENINGS = [cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)) for side in (21, 41, 61)]


def _search_copy(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """A small copy to search (linear resampling: a quarter of area averaging's time) and its scale."""
    height, width = rgb.shape[:2]
    scale = WORK_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR), scale


def _ordered(corners: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left."""
    total, diff = corners.sum(axis=1), np.diff(corners, axis=1)[:, 0]
    return np.float32(
        [corners[total.argmin()], corners[diff.argmin()], corners[total.argmax()], corners[diff.argmax()]]
    )


def _sheet(mask: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The largest region's four-cornered outline if it is sheet-like, and that region's share of the
    picture. Sheet-like: its convex outline reduces to four corners (the largest quadrilateral on the
    outline's simplified points) that the region fills."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, 0.0
    region = max(contours, key=cv2.contourArea)
    share = cv2.contourArea(region) / mask.size
    hull = cv2.convexHull(region)
    points = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True)[:, 0, :].astype(np.float32)
    if not 4 <= len(points) <= MAX_OUTLINE_POINTS:
        return None, share
    quad = max(
        (points[list(corners)] for corners in combinations(range(len(points)), 4)), key=cv2.contourArea
    )
    if min(cv2.contourArea(region), cv2.contourArea(quad)) < MIN_FILL * cv2.contourArea(hull):
        return None, share
    return quad, share


def _inside(quad: np.ndarray, mask: np.ndarray) -> bool:
    """Every corner clear of the picture's edges: the whole sheet is in view, with something else
    around it. A region that reaches the edges is part of a page, not a page (for example a scan
    whose header is dark), and straightening it would move the crop."""
    margin = EDGE_MARGIN * max(mask.shape)
    height, width = mask.shape
    xs, ys = quad[:, 0], quad[:, 1]
    return bool(
        xs.min() >= margin
        and ys.min() >= margin
        and xs.max() <= width - 1 - margin
        and ys.max() <= height - 1 - margin
    )


def find_page(rgb: np.ndarray) -> np.ndarray | None:
    """The page's four corners (top-left, top-right, bottom-right, bottom-left; pixels of `rgb`), or
    None when the picture is all page or shows no clear sheet of paper.

    Paper is bright and nearly colourless. The first brightness threshold is Otsu's; when the brightest
    region there is not a sheet (a white wall or table joins it), brighter thresholds are tried in turn,
    since the paper is usually the brightest thing in the photo."""
    small, scale = _search_copy(rgb)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    value = cv2.GaussianBlur(hsv[:, :, 2], (5, 5), 0)
    colourless = hsv[:, :, 1] < PAPER_MAX_SATURATION
    otsu, _ = cv2.threshold(value, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    for step in range(THRESHOLD_STEPS):
        level = otsu + (250 - otsu) * step / THRESHOLD_STEPS
        paper = cv2.morphologyEx(((value > level) & colourless).astype(np.uint8), cv2.MORPH_CLOSE, _CLOSE)
        for opening in _OPENINGS:
            mask = cv2.morphologyEx(paper, cv2.MORPH_OPEN, opening)
            quad, share = _sheet(mask)
            if step == 0 and share >= FULL_PAGE:
                return None  # the picture is the page (a scan or a screenshot)
            if (
                quad is not None
                and MIN_PAGE <= cv2.contourArea(quad) / mask.size < FULL_PAGE
                and _inside(quad, mask)
            ):
                return _ordered(quad) / np.float32(scale)
    return None


def straighten(rgb: np.ndarray) -> np.ndarray:
    """The page of a photo warped to a straight rectangle (`find_page`), or `rgb` itself when there is
    no page to find. The rectangle keeps the page's measured proportions and resolution."""
    corners = find_page(rgb)
    if corners is None:
        return rgb
    top_left, top_right, bottom_right, bottom_left = corners
    width = round(max(np.linalg.norm(top_right - top_left), np.linalg.norm(bottom_right - bottom_left)))
    height = round(max(np.linalg.norm(bottom_left - top_left), np.linalg.norm(bottom_right - top_right)))
    target = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    matrix = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR)
