"""Digitise the ink map into one short curve triple per lead cell, inside the Keras model.

Why: a 2-D network given 13 to 16 infarction printouts learns where on the page an infarction's ink
lies; read as curves, the same printouts might teach what a sign looks like in any lead (the model
card's third candidate: History of MI read better, infarctions worse, so not shipped). The reference
template prints three rows of four leads (I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6) and a
rhythm strip, so the trace area splits into sixteen cells: twelve leads and four quarters of the strip.
Each cell becomes three curves along its width: the top, the ink-weighted centre and the bottom of
the trace in each pixel column, measured from the middle of the lead's row band, in band heights, up
positive. A layer, so training and serving digitise the same shared preprocessing output the same way.

The bands are fixed, so a page photographed a few degrees askew would move its traces across them
(the fifth candidate lost 7.8 points of accuracy at -5 degrees): `deskew` first turns the ink map by the
angle that makes its traces' rows sharpest. Every printout of the dataset reads as straight (angle 0,
ink map unchanged), so this changes nothing for the scans the diagnosis networks were trained and
judged on. (The `leads` page network of the third candidate was trained before it; its augmentation's
rotations of 1 degree and more would now be turned back.)
"""

from __future__ import annotations

import math

import keras
from keras import ops

# Middle of each row's band (baseline of its traces) as a fraction of the trace area's height, and the
# band's half height; measured on the reference printouts (rows 152 px apart on a 617 px trace area).
ROW_CENTRES: tuple[float, ...] = (0.144, 0.384, 0.637, 0.883)
BAND_HALF_HEIGHT = 0.115
COLUMNS = 4
CELLS = len(ROW_CENTRES) * COLUMNS
CURVES = 3  # top, centre, bottom
INK_THRESHOLD = 0.3  # ink-map value above which a pixel is trace (the paper and faded grid are ~0)
# Degrees tried by `deskew`: 0, or 1 to 8 either way. Not below 1: a tilt under 1 degree moves a trace at
# most 5 px across its band (74 px high), and finer angles would "straighten" leads whose baselines
# merely sit at slightly different heights.
SKEW_ANGLES: tuple[float, ...] = (0.0, *(s * a / 2 for a in range(2, 17) for s in (1, -1)))
SKEW_GAIN = 1.05  # how much sharper than unturned a turned map's row profile must be to be chosen


def _rotation(degrees, height: int, width: int):
    """`keras.ops.image.affine_transform` rows (N, 8) that turn maps of this size about their centre."""
    theta = degrees * (math.pi / 180)
    cos, sin = ops.cos(theta), ops.sin(theta)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    zero = ops.zeros_like(theta)
    return ops.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zero, zero], axis=-1
    )


def deskew(ink):
    """(batch, H, W, 1) ink maps, each turned by the `SKEW_ANGLES` angle under which its traces' row
    profile (ink summed along each row, on a half-size map) is sharpest (largest sum of squares), or
    left exactly as it is when no angle beats 0 by `SKEW_GAIN`."""
    small = ops.average_pool(ink, 2, 2)
    height, width = small.shape[1], small.shape[2]
    scores = []
    for angle in SKEW_ANGLES:
        turned = ops.image.affine_transform(
            small,
            _rotation(ops.convert_to_tensor([angle], ink.dtype), height, width)[0],
            fill_mode="constant",
        )
        scores.append(ops.sum(ops.square(ops.sum(turned[..., 0], axis=2)), axis=1))
    scores = ops.stack(scores, axis=1)
    best = ops.argmax(scores, axis=1)
    straight = ops.take(scores, SKEW_ANGLES.index(0.0), axis=1)
    keep = ops.max(scores, axis=1) <= SKEW_GAIN * straight
    angle = ops.take(ops.convert_to_tensor(SKEW_ANGLES, ink.dtype), best)
    turned = ops.image.affine_transform(
        ink, _rotation(angle, ink.shape[1], ink.shape[2]), fill_mode="constant"
    )
    return ops.where(ops.reshape(keep, (-1, 1, 1, 1)), ink, turned)


def band_rows(height: int) -> list[tuple[int, int]]:
    """(first, last + 1) pixel rows of each row band in an ink map of this height."""
    half = round(BAND_HALF_HEIGHT * height)
    return [(round(c * height) - half, round(c * height) + half) for c in ROW_CENTRES]


def read_bands(ink):
    """(batch, H, W, 1) ink map -> (batch, CELLS, W // COLUMNS, CURVES) curves cut from the fixed bands;
    a column with no ink in a band reads 0 (the band's middle) on all three curves."""
    ink = ink[..., 0]
    height, width = ink.shape[1], ink.shape[2]
    cell_width = width // COLUMNS
    cells = []
    for first, last in band_rows(height):
        band = ink[:, first:last, :]
        rows = last - first
        trace = band > INK_THRESHOLD
        ys = ops.reshape(ops.arange(rows, dtype=ink.dtype), (1, rows, 1))
        top = ops.min(ops.where(trace, ys, float(rows)), axis=1)
        bottom = ops.max(ops.where(trace, ys, -1.0), axis=1)
        weight = ops.where(trace, band, 0.0)
        centre = ops.sum(weight * ys, axis=1) / ops.maximum(ops.sum(weight, axis=1), 1e-6)
        has_ink = ops.cast(ops.any(trace, axis=1), ink.dtype)[..., None]
        curves = (rows / 2 - ops.stack([top, centre, bottom], axis=-1)) / rows * has_ink
        cells += [curves[:, c * cell_width : (c + 1) * cell_width] for c in range(COLUMNS)]
    return ops.stack(cells, axis=1)


@keras.saving.register_keras_serializable(package="ecg_app")
class LeadSignals(keras.layers.Layer):
    """(batch, H, W, 1) ink map -> (batch, CELLS, W // COLUMNS, CURVES) curves: `deskew`, then
    `read_bands`."""

    def compute_output_shape(self, input_shape):
        return (input_shape[0], CELLS, input_shape[2] // COLUMNS, CURVES)

    def call(self, ink):
        return read_bands(deskew(ink))
