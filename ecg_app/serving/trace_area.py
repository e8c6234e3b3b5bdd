"""Find the trace area by its printed border, so the crop does not assume the reference template's margins.

Why: the crop (`preprocess.TRACE_BOX`) is the reference template's trace area in relative coordinates,
and the diagnosis networks read each lead from a fixed band of it. The same traces printed with other
margins, or a photographed page straightened a little off, are read a few pixels off: moving a
validation printout by up to 1% of the page changed the shipped model's class on 31 of 295 copies
(docs/experiments.md, "The same traces on other page templates"). The reference template frames its
trace area with a pink line, the only pink in the page; `register` finds the four sides of that frame
near where the template has them and moves the page so the frame sits there, as it does on every
printout of the dataset (a no-op for them: measured within a pixel on all 393, so their crops and the
networks' inputs do not change).

Example:
    >>> page = register(straighten(rgb))  # then preprocess.ink_map(page) crops the trace area
"""

from __future__ import annotations

import cv2
import numpy as np

# The printed frame's sides (left, top, right, bottom): the centres of its lines as a share of the
# picture's width or height (pixel k spans k to k + 1), the median over the dataset's 393 printouts
# (`border_sides` on the 1106x786 pictures; every one within 0.25 px of it).
BORDER_BOX: tuple[float, float, float, float] = (34.5 / 1106, 142.5 / 786, 1087.0 / 1106, 758.5 / 786)
SEARCH = 0.03  # how far from its place a side is sought (a share of the page)
MIN_LINE = 0.5  # share of a side's length that must be frame-coloured
MAX_OUTSIDE = 0.3  # beyond the frame no line as long: a page-wide grid has no frame to find
SIZE_TOLERANCE = 0.005  # the frame's width and height as the template's, within this share of the page
# A move smaller than about one pixel of the networks' input (544x320 from ~95% x 79% of the page)
# is how the dataset's own scans vary: left as it is.
DEAD_ZONE = 0.002


def frame_colour(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the frame's pink: light, red well above green and blue. A pink page (250, 214, 222)
    is too pale, black or coloured print too dark."""
    r, g, b = cv2.split(np.ascontiguousarray(rgb))
    # Saturating uint8 differences: the same test as in int16 (a negative difference is never > 20).
    return (r > 180) & (g < 200) & (cv2.subtract(r, g) > 25) & (cv2.subtract(r, b) > 20)


def _expected(height: int, width: int) -> tuple[float, float, float, float]:
    """Where the frame's sides are in a picture of this size (pixel indices, left, top, right, bottom)."""
    return tuple(v * s - 0.5 for v, s in zip(BORDER_BOX, (width, height, width, height), strict=True))


def _side(profile: np.ndarray, expected: float, outward: int) -> float | None:
    """How far the centre of the frame line lies from `expected` (an index of a profile of
    frame-coloured shares), or None when no line is long enough or one as long lies beyond it
    (`outward`: -1 before, +1 after)."""
    peak = int(np.argmax(profile))
    if profile[peak] < MIN_LINE:
        return None
    start, stop = peak, peak + 1  # the line's rows (or columns): it is a few pixels thick
    while start > 0 and profile[start - 1] >= MIN_LINE / 2:
        start -= 1
    while stop < len(profile) and profile[stop] >= MIN_LINE / 2:
        stop += 1
    beyond = profile[stop + 2 :] if outward > 0 else profile[: max(start - 2, 0)]
    if beyond.size and beyond.max() > MAX_OUTSIDE:
        return None
    line = np.arange(start, stop)
    return float(np.average(line, weights=profile[line])) - expected


def border_sides(rgb: np.ndarray) -> tuple[float, float, float, float] | None:
    """(left, top, right, bottom) of the printed frame in pixels (line centres), sought within SEARCH of
    where the reference template has it; None when a side is not found or the frame's size is not the
    template's."""
    height, width = rgb.shape[:2]
    left, top, right, bottom = _expected(height, width)
    ry, rx = round(SEARCH * height), round(SEARCH * width)
    inner_x = slice(round(left) + rx, round(right) - rx)
    inner_y = slice(round(top) + ry, round(bottom) - ry)
    found = []
    for along_x, at, reach, outward in (
        (False, left, rx, -1),
        (True, top, ry, -1),
        (False, right, rx, 1),
        (True, bottom, ry, 1),
    ):
        start = max(round(at) - reach, 0)
        stop = min(round(at) + reach + 1, height if along_x else width)
        band = rgb[start:stop, inner_x] if along_x else rgb[inner_y, start:stop]
        if band.size == 0:
            return None
        profile = frame_colour(band).mean(axis=1 if along_x else 0)
        offset = _side(profile, at - start, outward)
        if offset is None:
            return None
        found.append(at + offset)
    x0, y0, x1, y1 = found
    if abs((x1 - x0) - (right - left)) > SIZE_TOLERANCE * width:
        return None
    if abs((y1 - y0) - (bottom - top)) > SIZE_TOLERANCE * height:
        return None
    return x0, y0, x1, y1


def offset(rgb: np.ndarray) -> tuple[int, int]:
    """(dy, dx) in pixels by which the frame sits off the reference template's place; (0, 0) when it
    is not found or sits within DEAD_ZONE."""
    sides = border_sides(rgb)
    if sides is None:
        return 0, 0
    height, width = rgb.shape[:2]
    left, top, right, bottom = _expected(height, width)
    dx = (sides[0] - left + sides[2] - right) / 2
    dy = (sides[1] - top + sides[3] - bottom) / 2
    dx = 0 if abs(dx) < DEAD_ZONE * width else round(dx)
    dy = 0 if abs(dy) < DEAD_ZONE * height else round(dy)
    return dy, dx


def register(rgb: np.ndarray) -> np.ndarray:
    """The page moved so its printed frame sits where the reference template has it (the edge pixels
    repeated into the strip it leaves); the picture itself when it needs no move."""
    dy, dx = offset(rgb)
    if dy == 0 and dx == 0:
        return rgb
    height, width = rgb.shape[:2]
    matrix = np.float32([[1, 0, -dx], [0, 1, -dy]])
    return cv2.warpAffine(
        rgb, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )
