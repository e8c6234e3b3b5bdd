"""Where the reference template's leads lie on the ink map, and turning a map about its centre: what
serving needs of the digitiser without Keras (`lead_signals` holds the digitiser itself, which runs as
an ONNX graph when serving).

The template prints three rows of four leads (I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6) and a
rhythm strip, so the trace area splits into sixteen cells: twelve leads and four quarters of the strip.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
from scipy import ndimage

# Middle of each row's band (baseline of its traces) as a fraction of the trace area's height, and the
# band's half height; measured on the reference printouts (rows 152 px apart on a 617 px trace area).
ROW_CENTRES: tuple[float, ...] = (0.144, 0.384, 0.637, 0.883)
BAND_HALF_HEIGHT = 0.115
COLUMNS = 4
CELLS = len(ROW_CENTRES) * COLUMNS
CURVES = 3  # top, centre, bottom


def band_rows(height: int) -> list[tuple[int, int]]:
    """(first, last + 1) pixel rows of each row band in an ink map of this height."""
    half = round(BAND_HALF_HEIGHT * height)
    return [(round(c * height) - half, round(c * height) + half) for c in ROW_CENTRES]


def rotation(degrees, height: int, width: int, xp: ModuleType = np):
    """Rows (N, 8) of a projective transform that turns maps of this size about their centre, output pixel
    (x, y) reading input (cos x - sin y + ..., sin x + cos y + ...), as `keras.ops.image.affine_transform`
    takes them; `xp` is numpy or `keras.ops`, so the Keras digitiser and serving share one formula."""
    theta = degrees * (math.pi / 180)
    cos, sin = xp.cos(theta), xp.sin(theta)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    zero = xp.zeros_like(theta)
    return xp.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zero, zero], axis=-1
    )


def turn(maps: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """(N, H, W, C) float maps turned about their centre by (N,) degrees, bilinear, zero outside: what
    `keras.ops.image.affine_transform` does with `rotation` (TensorFlow's ImageProjectiveTransformV3,
    whose constant fill reads each neighbour outside the map as zero, like scipy's "grid-constant")."""
    maps = np.asarray(maps, np.float32)
    height, width = maps.shape[1:3]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty_like(maps)
    for k, row in enumerate(rotation(np.asarray(degrees, np.float64), height, width)):
        source_x = row[0] * xs + row[1] * ys + row[2]
        source_y = row[3] * xs + row[4] * ys + row[5]
        for c in range(maps.shape[3]):
            out[k, :, :, c] = ndimage.map_coordinates(
                maps[k, :, :, c], [source_y, source_x], order=1, mode="grid-constant", cval=0.0
            )
    return out
