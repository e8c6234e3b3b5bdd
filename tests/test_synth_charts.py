"""Rendered line charts, the ECG detector's chart negatives (`ecg_app/training/synth_charts.py`)."""

import numpy as np
import pytest

from ecg_app.training.synth_charts import CHART_KINDS, _series, chart_seeds, render_chart
from ecg_app.training.synth_ecg import synthetic_seeds


def test_a_seed_always_draws_the_same_chart_and_seeds_differ():
    first = render_chart(11)
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert 300 <= first.shape[0] < 900 and 500 <= first.shape[1] < 1400
    np.testing.assert_array_equal(render_chart(11), first)
    assert render_chart(12).shape != first.shape or not np.array_equal(render_chart(12), first)


@pytest.mark.parametrize("kind", CHART_KINDS)
def test_every_kind_of_series_fills_the_unit_range(kind):
    values = _series(kind, 300, np.random.default_rng(0))
    assert values.shape == (300,) and values.min() == pytest.approx(0) and values.max() == pytest.approx(1)
    assert np.abs(np.diff(values)).max() > 0  # not a flat line


def test_training_charts_use_seeds_no_render_and_no_benchmark_uses():
    charts = set(chart_seeds(600))
    assert len(charts) == 600 and not charts & set(synthetic_seeds(600))
    # compare_detector.py draws its fresh charts from 8,000,000 and renders from 6,000,000 or 7,000,000.
    assert max(charts) < 6_000_000
