"""The seventh candidate's per-lead statistics and linear model (`ecg_app/training/lead_statistics.py`)."""

import numpy as np
import pytest
from keras import ops

from ecg_app.serving.lead_diagnosis import CURVES_SHAPE
from ecg_app.training.lead_statistics import PENALTIES, PER_CELL, PERCENTILES, LeadStatisticsModel, statistics

CELLS, COLUMNS, _ = CURVES_SHAPE


def _features(curves: np.ndarray) -> np.ndarray:
    return ops.convert_to_numpy(statistics(curves)).reshape(len(curves), CELLS, PER_CELL)


def test_a_flat_trace_reads_as_its_level_and_a_spike_only_in_the_upper_tail():
    flat = np.zeros((1, *CURVES_SHAPE), np.float32)
    flat[..., 0], flat[..., 1], flat[..., 2] = 0.25, 0.2, 0.15  # top, centre, bottom
    spiked = flat.copy()
    spiked[0, 3, 60:62, :] += 0.5  # a two-column deflection upward in cell 3
    plain, spike = _features(flat)[0], _features(spiked)[0]
    n = len(PERCENTILES)
    np.testing.assert_allclose(plain[:, :n], 0.2, atol=1e-6)
    np.testing.assert_allclose(plain[:, n], 0.1, atol=1e-6)  # mean thickness
    np.testing.assert_allclose(plain[:, n + 1 : n + 3], [[0.25, 0.15]] * CELLS, atol=1e-6)  # top, bottom
    np.testing.assert_allclose(plain[:, n + 3], 0.0, atol=1e-6)  # a flat line has no roughness
    # Only cell 3 changes; two columns of 136 lie above the 98th percentile, so no percentile moves.
    np.testing.assert_array_equal(np.delete(spike, 3, axis=0), np.delete(plain, 3, axis=0))
    np.testing.assert_allclose(spike[3, :n], 0.2, atol=1e-6)
    assert spike[3, n + 1] == pytest.approx(0.75) and spike[3, n + 3] > 0.05


def test_percentiles_are_the_nearest_ranks_of_each_cell_and_printouts_do_not_mix():
    rng = np.random.default_rng(0)
    curves = rng.normal(0, 0.1, (3, *CURVES_SHAPE)).astype(np.float32)
    together = _features(curves)
    expected = np.percentile(curves[..., 1], PERCENTILES, axis=-1, method="nearest")
    np.testing.assert_allclose(together[..., : len(PERCENTILES)], np.moveaxis(expected, 0, -1), atol=1e-6)
    np.testing.assert_array_equal(together[1], _features(curves[1:2])[0])


def _printouts(rng: np.random.Generator, per_class: int):
    """Noisy curves whose class k raises the baseline of leads 2k and 2k + 1 (an ST-like shift)."""
    labels = np.repeat(np.arange(4), per_class)
    curves = rng.normal(0, 0.05, (len(labels), *CURVES_SHAPE)).astype(np.float32)
    for i, k in enumerate(labels):
        curves[i, 2 * k : 2 * k + 2] += 0.1
    return curves, labels


def test_the_linear_model_learns_a_lead_pattern_and_is_deterministic():
    rng = np.random.default_rng(1)
    curves, labels = _printouts(rng, 15)
    groups = np.arange(len(labels)) // 2  # pairs of near-copies, kept on one side of the inner folds
    model = LeadStatisticsModel(seed=42).fit(curves, labels, groups)
    unseen, truth = _printouts(rng, 10)
    proba = model.predict_proba(unseen)
    assert proba.shape == (40, 4) and np.allclose(proba.sum(axis=1), 1)
    assert (proba.argmax(axis=1) == truth).mean() >= 0.95
    assert model.penalty_ in PENALTIES
    again = LeadStatisticsModel(seed=42).fit(curves, labels, groups)
    np.testing.assert_array_equal(again.predict_proba(unseen), proba)
