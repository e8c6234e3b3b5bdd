"""Find the paper in a photo of a printout and straighten it, before the trace area is cropped.

Why: `preprocess` crops the trace area at fixed fractions of the picture, which holds for a scan or a
screenshot (the page is the picture) but not for a phone photo that shows the desk around the page:
there the crop lands on the wrong part, and the networks, which never saw a background, misread most
such photos and called many Non-ECG (docs/experiments.md, "Photographed on a desk"). So the largest bright,
colourless region is taken as the page when it is a clear four-cornered shape, wholly in view,
covering at least a twentieth of the picture (a photographed rhythm strip is a thin sheet) but not all
of it, and is warped to a straight rectangle. A
picture that is all page (every printout in the dataset) is returned unchanged.

Brightness alone fails in front of a busy or pale scene: a white wall or a bright patch touching the
sheet merges with it, so the outline is wrong or no sheet is found (docs/experiments.md, "Finding the sheet by
its edges"). So sheets are also sought as four straight edges with paper on their inner side only, and
of all the outlines found, the one whose sides best separate paper inside from something else outside
is taken.

A scan of another template, on tinted paper or with a grey surround, shows its bright trace area inside
a darker border, which looks like a sheet in a scene; it was straightened to that area, and the crop then
cut into the traces (the reprinted pages of shared/EXPERIMENTS.md). So an outline that is a level,
upright rectangle with one plain colour all around it is taken for part of the page, not for a sheet
(`_printed_surround`).

One upload is searched up to four times per analysis (the networks' input, the ECG detector's second
view, the image-quality check and the explanation's overlay), and a photo's search costs 15-30 ms:
so the latest searches are remembered, keyed by the search copy's bytes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from itertools import combinations, product

import cv2
import numpy as np

WORK_SIDE = 480  # the search copy's long side: a scan in ~2 ms, a photo in 15-30; corners within ~0.5%
MIN_PAGE = 0.05  # the paper must cover at least this share of the picture to be taken for a page
FULL_PAGE = 0.9  # ... and less than this, or the picture is the page already (a scan)
MIN_FILL = 0.9  # the bright region must fill its four-cornered outline this well (a sheet, not a blob)
PAPER_MAX_SATURATION = 70  # HSV saturation (0-255) below which a bright pixel may be paper
THRESHOLD_STEPS = 4  # brightness thresholds tried, from Otsu's towards white
MAX_OUTLINE_POINTS = 8  # a simplified outline with more corners than this is not a sheet
EDGE_MARGIN = 0.01  # a page's corners must lie at least this far (share of the long side) inside the picture
MAX_TILT = np.tan(np.radians(20))  # a sheet's side is at most this far from horizontal or vertical
LINES_KEPT = 12  # the longest border-like lines of each direction that are combined into outlines
BAND = 5  # pixels (search copy) either side of a line or side where paper and background are compared
CONTRAST = 8  # paper is at least this much brighter (0-255) than what lies beyond its edge
MIN_SIDE_COVER = 0.5  # share of each side of an outline that its detected edge must cover
MIN_BORDER = 0.75  # share of each side's length along which paper inside meets something else outside
MIN_INSIDE_PAPER = 0.85  # share of an outline's inside that must be paper
MAX_OUTSIDE_PAPER = 0.5  # ... and the most of the picture around it that may be paper too
_CLOSE = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))  # fills the traces and grid lines
# Openings that cut bright clutter off the sheet, the smaller tried first: whatever is narrower than the
# kernel goes, and a sheet is at least ~200 px across here.
_OPENINGS = [cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)) for side in (21, 41, 61)]
# A flat page printed on tinted paper or with a grey surround is not a photographed sheet: its bright trace
# area is a level rectangle (corners within this share of the long side of an upright one) ...
LEVEL_TOLERANCE = 0.01
# ... and what lies around it is one plain colour (this share of it within FLAT_TOLERANCE of its median
# in every channel; the title block's text and a logo are the rest), which no scene is.
PLAIN_SURROUND = 0.8
FLAT_TOLERANCE = 12
REMEMBERED = 8  # searches kept: a few uploads analysed at once, each searched up to four times


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


def _bright_sheet(value: np.ndarray, colourless: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """The brightest sheet-like region's corners (or None), and whether the picture is all page: at
    Otsu's threshold the bright region is nearly the whole picture (a scan or a screenshot).

    The first brightness threshold is Otsu's; when the brightest region there is not a sheet (a white
    wall or table joins it), brighter thresholds are tried in turn, since the paper is usually the
    brightest thing in the photo."""
    otsu, _ = cv2.threshold(value, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    for step in range(THRESHOLD_STEPS):
        level = otsu + (250 - otsu) * step / THRESHOLD_STEPS
        paper = cv2.morphologyEx(((value > level) & colourless).astype(np.uint8), cv2.MORPH_CLOSE, _CLOSE)
        for opening in _OPENINGS:
            mask = cv2.morphologyEx(paper, cv2.MORPH_OPEN, opening)
            quad, share = _sheet(mask)
            if step == 0 and share >= FULL_PAGE:
                return None, True
            if (
                quad is not None
                and MIN_PAGE <= cv2.contourArea(quad) / mask.size < FULL_PAGE
                and _inside(quad, mask)
            ):
                return _ordered(quad), False
    return None, False


class _Line:
    """Collinear edge segments of one direction, in (along, across) coordinates: `across` is
    `position + slope * (along - centre)`, and `spans` are the stretches along it that are edge."""

    def __init__(self, along: tuple[float, float], across: tuple[float, float], centre: float):
        self.slope = (across[1] - across[0]) / max(along[1] - along[0], 1e-6)
        self.position = across[0] + self.slope * (centre - along[0])
        self.centre = centre
        self.spans = [along]

    def at(self, along: float) -> float:
        return self.position + self.slope * (along - self.centre)

    def add(self, span: tuple[float, float]) -> None:
        """Take in another stretch of edge, merging the spans that overlap it."""
        merged = []
        for a, b in sorted([*self.spans, span]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.spans = merged

    def length(self) -> float:
        return sum(b - a for a, b in self.spans)

    def cover(self, start: float, end: float) -> float:
        """Share of [start, end] that the line's edge covers."""
        if end <= start:
            return 0.0
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.spans) / (end - start)


def _segments(value: np.ndarray) -> np.ndarray:
    """Straight edge segments (x1, y1, x2, y2) at least a tenth of the picture's short side long."""
    found = cv2.HoughLinesP(
        cv2.Canny(value, 20, 60),
        1,
        np.pi / 360,
        threshold=30,
        minLineLength=int(0.1 * min(value.shape)),
        maxLineGap=12,
    )
    return np.zeros((0, 4), np.float32) if found is None else found.reshape(-1, 4).astype(np.float32)


def _lines(
    found: np.ndarray, value: np.ndarray, colourless: np.ndarray, horizontal: bool
) -> list[tuple[_Line, int]]:
    """The long straight edges among `found` of one direction with paper on one side only, and that
    side (+1: after the line, below or right of it; -1: before it). Edges inside a printout (traces,
    grid, lead frames) have paper on both sides, and edges of the scene on neither."""
    height, width = value.shape
    centre = (width if horizontal else height) / 2
    segments = []
    for x1, y1, x2, y2 in found:
        if not horizontal:
            x1, y1, x2, y2 = y1, x1, y2, x2
        if abs(y2 - y1) > MAX_TILT * abs(x2 - x1):
            continue
        if x2 < x1:
            x1, y1, x2, y2 = x2, y2, x1, y1
        segments.append((x2 - x1, (x1, x2), (y1, y2)))
    lines: list[_Line] = []
    for _, along, across in sorted(segments, key=lambda s: -s[0]):
        near = [
            line
            for line in lines
            if max(abs(line.at(a) - c) for a, c in zip(along, across, strict=True)) <= 3
        ]
        if near:
            near[0].add(along)
        else:
            lines.append(_Line(along, across, centre))
    kept = []
    for line in lines:
        along = np.concatenate([np.arange(a, b, 2.0) for a, b in line.spans])
        sides = []
        for sign in (-1, 1):
            across = line.at(along) + sign * BAND
            xs, ys = (along, across) if horizontal else (across, along)
            seen = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
            ys, xs = ys[seen].astype(int), xs[seen].astype(int)
            sides.append((np.median(value[ys, xs]), colourless[ys, xs].mean()) if seen.any() else (0.0, 0.0))
        (before, before_pale), (after, after_pale) = sides
        if after_pale >= 0.8 and after - before >= CONTRAST:
            kept.append((line, 1))
        elif before_pale >= 0.8 and before - after >= CONTRAST:
            kept.append((line, -1))
    kept.sort(key=lambda k: -k[0].length())
    return kept[:LINES_KEPT]


def _line_sheets(value: np.ndarray, colourless: np.ndarray) -> list[np.ndarray]:
    """Outlines of four border-like edges (paper facing inward) whose edges cover each side well,
    wholly in view and of a page's size, largest first: top-left, top-right, bottom-right, bottom-left
    corners."""
    found = _segments(value)
    rows, columns = (_lines(found, value, colourless, horizontal) for horizontal in (True, False))
    tops, bottoms = [ln for ln, side in rows if side == 1], [ln for ln, side in rows if side == -1]
    lefts, rights = [ln for ln, side in columns if side == 1], [ln for ln, side in columns if side == -1]
    outlines = []
    for top, bottom, left, right in product(tops, bottoms, lefts, rights):
        if bottom.position <= top.position or right.position <= left.position:
            continue
        corners = []
        for row, column in ((top, left), (top, right), (bottom, right), (bottom, left)):
            # y = row.at(x) and x = column.at(y), solved together
            y = (row.position + row.slope * (column.position - column.slope * column.centre - row.centre)) / (
                1 - row.slope * column.slope
            )
            corners.append((column.at(y), y))
        quad = np.float32(corners)
        if not MIN_PAGE <= cv2.contourArea(quad) / value.size < FULL_PAGE or not _inside(quad, value):
            continue
        (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = corners
        covers = (top.cover(tlx, trx), bottom.cover(blx, brx), left.cover(tly, bly), right.cover(try_, bry))
        if min(covers) >= MIN_SIDE_COVER:
            outlines.append(quad)
    return sorted(outlines, key=cv2.contourArea, reverse=True)


def _border(quad: np.ndarray, value: np.ndarray, colourless: np.ndarray) -> float:
    """How well the outline's sides are a sheet's edges: over the four sides, the lowest share of points
    where just inside is paper and just outside is not like it (darker, coloured, or out of the picture).
    An outline inside the sheet has paper on both sides of its edges; one reaching into the scene has
    scene on both."""
    height, width = value.shape
    centre = quad.mean(axis=0)
    lowest = 1.0
    for start, end in zip(quad, np.roll(quad, -1, axis=0), strict=True):
        direction = end - start
        normal = np.float32([-direction[1], direction[0]]) / max(float(np.hypot(*direction)), 1e-6)
        if np.dot(centre - (start + end) / 2, normal) < 0:
            normal = -normal  # pointing inward
        points = start + direction * np.linspace(0.05, 0.95, 40)[:, None]
        inner = np.clip((points + BAND * normal).round().astype(int), 0, [width - 1, height - 1])
        outer = (points - BAND * normal).round().astype(int)
        seen = (outer[:, 0] >= 0) & (outer[:, 0] < width) & (outer[:, 1] >= 0) & (outer[:, 1] < height)
        outer = np.clip(outer, 0, [width - 1, height - 1])
        inside, outside = (
            value[inner[:, 1], inner[:, 0]].astype(int),
            value[outer[:, 1], outer[:, 0]].astype(int),
        )
        unlike = (inside - outside >= CONTRAST) | ~colourless[outer[:, 1], outer[:, 0]] | ~seen
        lowest = min(lowest, float((colourless[inner[:, 1], inner[:, 0]] & unlike).mean()))
    return lowest


def _paper_around(quad: np.ndarray, value: np.ndarray, colourless: np.ndarray) -> tuple[float, float]:
    """Shares of the outline's inside and of the picture outside it that are paper: pale, and not far
    below the inside's typical brightness (the ink of traces and text is filled in by a closing). A
    sheet is paper inside with something else around it; a rectangle drawn on a page (its grid, a lead
    frame) has paper on both sides."""
    inside = np.zeros(value.shape, np.uint8)
    cv2.fillConvexPoly(inside, quad.round().astype(np.int32), 1)
    level = np.median(value[inside > 0]) - 60
    paper = cv2.morphologyEx(((value > level) & colourless).astype(np.uint8), cv2.MORPH_CLOSE, _CLOSE)
    return float(paper[inside > 0].mean()), float(paper[inside == 0].mean())


def _printed_surround(quad: np.ndarray, rgb: np.ndarray) -> bool:
    """Whether the outline is a rectangle printed on the page rather than a sheet in a scene: level, upright
    sides, and one plain colour all around it (a page's tinted margins: a scan or screenshot of another
    template, which must be read as it is, not cropped to its trace area)."""
    height, width = rgb.shape[:2]
    (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = quad
    tolerance = LEVEL_TOLERANCE * max(height, width)
    if max(abs(tlx - blx), abs(trx - brx), abs(tly - try_), abs(bly - bry)) > tolerance:
        return False
    inside = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(inside, quad.round().astype(np.int32), 1)
    around = rgb[inside == 0].astype(np.int16)
    if not len(around):
        return False
    off = np.abs(around - np.median(around, axis=0)).max(axis=1)
    return float((off <= FLAT_TOLERANCE).mean()) >= PLAIN_SURROUND


def _is_sheet(shares: tuple[float, float]) -> bool:
    """Paper inside and, mostly, something else around (`_paper_around`'s shares)."""
    inside, outside = shares
    return inside >= MIN_INSIDE_PAPER and outside <= MAX_OUTSIDE_PAPER


class _SearchCopy:
    """The search copy as a cache key: equal when the pixels are (a digest of them and their shape)."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels
        self.key = (pixels.shape, hashlib.blake2b(np.ascontiguousarray(pixels).data, digest_size=16).digest())

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SearchCopy) and self.key == other.key


def find_page(rgb: np.ndarray) -> np.ndarray | None:
    """The page's four corners (top-left, top-right, bottom-right, bottom-left; pixels of `rgb`), or
    None when the picture is all page or shows no clear sheet of paper.

    Paper is bright and nearly colourless. The outline of the brightest sheet-like region and those of
    four straight border-like edges compete: the one whose sides best separate paper from what lies
    beyond wins, if any separates them well enough; else the bright region's outline, when there is one,
    is kept (a rough outline still serves the crop better than the whole photo)."""
    small, scale = _search_copy(rgb)
    outline = _outline(_SearchCopy(small))
    return None if outline is None else outline / np.float32(scale)


def forget_searches() -> None:
    """Drop the remembered searches, so that the next one is done afresh (a benchmark timing it)."""
    _outline.cache_clear()


@lru_cache(maxsize=REMEMBERED)
def _outline(copy: _SearchCopy) -> np.ndarray | None:
    """`find_page` on the search copy, in its pixels; read-only, since it is shared by every caller."""
    small = copy.pixels
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    value = cv2.GaussianBlur(hsv[:, :, 2], (5, 5), 0)
    colourless = hsv[:, :, 1] < PAPER_MAX_SATURATION
    bright, scan = _bright_sheet(value, colourless)
    if scan:
        # Also a sheet merged with a white background; the edges of a page's own grid and lead frames
        # would then pass for a sheet's, so no outline is sought.
        return None
    candidates = [q for q in (bright,) if q is not None] + _line_sheets(value, colourless)
    borders = [_border(q, value, colourless) for q in candidates]
    chosen = next(
        (
            candidates[i]
            for i in np.argsort(borders, kind="stable")[::-1]
            if borders[i] >= MIN_BORDER and _is_sheet(_paper_around(candidates[i], value, colourless))
        ),
        bright,
    )
    if chosen is None or _printed_surround(chosen, small):
        return None
    chosen.flags.writeable = False
    return chosen


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
