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

import keras
import numpy as np
from keras import ops

from ecg_app.serving.lead_geometry import CELLS, COLUMNS, CURVES, band_rows, rotation

INK_THRESHOLD = 0.3  # ink-map value above which a pixel is trace (the paper and faded grid are ~0)
# Degrees tried by `deskew`: 0, or 1 to 8 either way. Not below 1: a tilt under 1 degree moves a trace at
# most 5 px across its band (74 px high), and finer angles would "straighten" leads whose baselines
# merely sit at slightly different heights.
SKEW_ANGLES: tuple[float, ...] = (0.0, *(s * a / 2 for a in range(2, 17) for s in (1, -1)))
SKEW_GAIN = 1.05  # how much sharper than unturned a turned map's row profile must be to be chosen
SKEW_BLOCK = 16  # columns of the ink map that `_row_profiles` shifts together


def _row_profiles(ink):
    """(batch, H, W, 1) -> (batch, len(SKEW_ANGLES), H // 2): ink summed along each row of the map as
    turned by each angle, on a half-height map whose columns are summed in blocks of `SKEW_BLOCK`.

    Why not turn the map 33 times: 33 `affine_transform`s took 16-18 ms a printout, this 2. For these
    small angles a turn moves column x by sin(angle) * (x - centre) rows, so each block's row sums are
    shifted by that many rows (whole rows, zero outside) and added up: one gather. At angle 0 no block
    moves, so that profile is the unturned map's exactly."""
    height, width = ink.shape[1] // 2, ink.shape[2]
    blocks = width // SKEW_BLOCK
    sums = ops.sum(
        ops.reshape(ink[:, : 2 * height, : blocks * SKEW_BLOCK, 0], (-1, height, 2, blocks, SKEW_BLOCK)),
        axis=(2, 4),
    )
    # Rows of the half-height map, as in `rotation`: output row r reads row r + sin(angle) * (x - cx).
    offsets = ((np.arange(blocks) + 0.5) * SKEW_BLOCK - width / 2) / 2
    shifts = np.rint(np.sin(np.radians(SKEW_ANGLES))[:, None] * offsets[None]).astype(int)
    pad = int(np.abs(shifts).max())
    padded = ops.pad(sums, ((0, 0), (pad, pad), (0, 0)))
    rows = np.arange(height)[None, :, None] + pad + shifts[:, None, :]
    index = rows * blocks + np.arange(blocks)[None, None, :]  # (angles, height, blocks) into padded
    gathered = ops.take(ops.reshape(padded, (-1, (height + 2 * pad) * blocks)), index.ravel(), axis=1)
    return ops.sum(ops.reshape(gathered, (-1, len(SKEW_ANGLES), height, blocks)), axis=3)


def skew_angle(ink):
    """(batch,) the angle, in degrees, by which `deskew` turns each (H, W, 1) ink map: the `SKEW_ANGLES`
    angle under which its traces' row profile (`_row_profiles`) is sharpest (largest sum of squares), or
    0 when no angle beats 0 by `SKEW_GAIN`."""
    scores = ops.sum(ops.square(_row_profiles(ink)), axis=2)
    straight = ops.take(scores, SKEW_ANGLES.index(0.0), axis=1)
    # The first angle of the highest score, as argmax picks it; spelt out because Keras's argmax brings
    # ops (Bitcast, BitwiseAnd) that ONNX Runtime lacks, and serving runs this as an ONNX graph.
    top = ops.cast(scores >= ops.max(scores, axis=1, keepdims=True), ink.dtype)
    first = top * ops.cast(ops.cumsum(top, axis=1) == 1.0, ink.dtype)
    best = ops.sum(first * ops.convert_to_tensor(SKEW_ANGLES, ink.dtype)[None], axis=1)
    return ops.where(ops.max(scores, axis=1) <= SKEW_GAIN * straight, 0.0, best)


def turn(maps, degrees):
    """(batch, H, W, C) maps turned about their centre by (batch,) `degrees`, in `deskew`'s sense: the
    negated angle turns a deskewed map back onto the picture."""
    return ops.image.affine_transform(
        maps, rotation(degrees, maps.shape[1], maps.shape[2], ops), fill_mode="constant"
    )


def deskew(ink, angle=None):
    """(batch, H, W, 1) ink maps, each turned by its `skew_angle` (pass `angle` when it is already
    known); a map whose angle is 0 is returned exactly as it is, and the turn runs only when some map of
    the batch needs one."""
    angle = skew_angle(ink) if angle is None else angle
    keep = ops.reshape(angle == 0.0, (-1, 1, 1, 1))
    return ops.cond(ops.all(keep), lambda: ink, lambda: ops.where(keep, ink, turn(ink, angle)))


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


class LeadCurves(keras.layers.Layer):
    """(batch, H, W, 1) ink map -> ((batch,) `skew_angle`, curves `read_bands` reads from the map as it
    is): `LeadSignals` without the turn, the part that exports to ONNX (`keras_networks.lead_curves`)."""

    def compute_output_shape(self, input_shape):
        return (input_shape[0],), (input_shape[0], CELLS, input_shape[2] // COLUMNS, CURVES)

    def call(self, ink):
        return skew_angle(ink), read_bands(ink)
