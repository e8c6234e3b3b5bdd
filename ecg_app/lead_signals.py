"""Digitise the ink map into one short curve triple per lead cell, inside the Keras model.

Why: a 2-D network given 13 to 16 infarction printouts learns where on the page an infarction's ink
lies; read as curves, the same printouts might teach what a sign looks like in any lead (the model
card's third candidate: History of MI read better, infarctions worse, so not shipped). The reference
template prints three rows of four leads (I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6) and a
rhythm strip, so the trace area splits into sixteen cells: twelve leads and four quarters of the strip.
Each cell becomes three curves along its width: the top, the ink-weighted centre and the bottom of
the trace in each pixel column, measured from the middle of the lead's row band, in band heights, up
positive. A layer, so training and serving digitise the same shared preprocessing output the same way.
"""

from __future__ import annotations

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


def band_rows(height: int) -> list[tuple[int, int]]:
    """(first, last + 1) pixel rows of each row band in an ink map of this height."""
    half = round(BAND_HALF_HEIGHT * height)
    return [(round(c * height) - half, round(c * height) + half) for c in ROW_CENTRES]


@keras.saving.register_keras_serializable(package="ecg_app")
class LeadSignals(keras.layers.Layer):
    """(batch, H, W, 1) ink map -> (batch, CELLS, W // COLUMNS, CURVES) curves; a column with no ink
    in a band reads 0 (the band's middle) on all three curves."""

    def compute_output_shape(self, input_shape):
        return (input_shape[0], CELLS, input_shape[2] // COLUMNS, CURVES)

    def call(self, ink):
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
