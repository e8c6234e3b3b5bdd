"""The lead-reading diagnosis network: how it is combined, digitised, jittered and served."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG
from ecg_app.serving.lead_diagnosis import CURVES_SHAPE, combine
from tests.conftest import synthetic_printout


def test_combine_keeps_the_page_networks_non_ecg_and_shares_the_rest_as_the_diagnosis_does():
    page = np.array([[0.70, 0.10, 0.05, 0.05, 0.10], [0.01, 0.01, 0.01, 0.01, 0.96]])
    diagnosis = np.array([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    combined = combine(page, diagnosis)
    assert combined.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert combined[:, CLASSES.index(NON_ECG)] == pytest.approx([0.10, 0.96])
    ecg = [CLASSES.index(c) for c in ECG_CLASSES]
    assert combined[0, ecg] == pytest.approx(0.9 * diagnosis[0])  # the page's MI lead is overruled
    assert CLASSES[combined[0].argmax()] == "HMI" and CLASSES[combined[1].argmax()] == NON_ECG


def test_a_page_share_mixes_the_page_networks_own_ecg_proportions_into_the_diagnosis():
    page = np.array([[0.60, 0.00, 0.20, 0.00, 0.20]])  # ECG proportions 0.75, 0, 0.25, 0
    diagnosis = np.array([[0.0, 1.0, 0.0, 0.0]])
    ecg = [CLASSES.index(c) for c in ECG_CLASSES]
    half = combine(page, diagnosis, page_share=0.5)
    assert half[0, ecg] == pytest.approx(0.8 * np.array([0.375, 0.5, 0.125, 0.0]), abs=1e-9)
    assert half[0, CLASSES.index(NON_ECG)] == pytest.approx(0.2)
    assert combine(page, diagnosis, page_share=1.0)[0] == pytest.approx(page[0], abs=1e-9)
    assert combine(page, diagnosis, page_share=0.0)[0, ecg] == pytest.approx(0.8 * diagnosis[0])


def test_curves_shape_is_what_lead_signals_makes_of_the_shared_input():
    from ecg_app.serving.lead_geometry import CELLS, COLUMNS, CURVES
    from ecg_app.serving.preprocess import INPUT_SHAPE

    assert (CELLS, INPUT_SHAPE[1] // COLUMNS, CURVES) == CURVES_SHAPE


def test_digitise_gives_the_served_networks_own_curves():
    """Training reads `digitise`'s curves; serving puts `LeadSignals` in front of the same reader. Both
    must see the same numbers, or the network is trained on one input and served another."""
    from ecg_app.serving.preprocess import preprocess
    from ecg_app.training.diagnosis_fit import digitise
    from ecg_app.training.networks import make_curve_reader, with_lead_signals

    pages = [synthetic_printout(seed=s) for s in range(3)]
    curves = digitise(pages)
    assert curves.shape == (3, *CURVES_SHAPE) and np.abs(curves).max() > 0.05  # traces were found
    reader = make_curve_reader()
    served = with_lead_signals(reader).predict(np.stack([preprocess(p) for p in pages]), verbose=0)
    assert served.shape == (3, len(ECG_CLASSES))
    np.testing.assert_allclose(served, reader.predict(curves, verbose=0), atol=1e-6)


def test_the_served_reader_reads_every_cell_in_one_batch_with_the_trained_readers_outputs(tmp_path):
    """`served_reader` swaps Keras' `TimeDistributed` (the lead encoder traced once per cell) for
    `EachCell` (all cells as one batch). With batch normalisation's moving statistics both compute the
    same thing, so the networks cross-validation judged are served unchanged, only faster; and the served
    form saves and loads."""
    import keras

    from ecg_app.training.diagnosis_fit import served_reader
    from ecg_app.training.networks import EachCell, make_curve_reader, with_lead_signals

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    curves = rng.normal(0.0, 0.2, (8, *CURVES_SHAPE)).astype(np.float32)
    reader = make_curve_reader()
    for layer in reader.get_layer("per_lead").layer.layers:  # moving statistics as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0.0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    assert isinstance(reader.get_layer("per_lead"), keras.layers.TimeDistributed)

    served = with_lead_signals(served_reader(reader))
    path = tmp_path / "served.keras"
    served.save(path)
    loaded = keras.saving.load_model(path, compile=False).get_layer("curve_reader")
    assert isinstance(loaded.get_layer("per_lead"), EachCell)
    expected = reader.predict(curves, verbose=0)
    assert np.abs(expected - 0.25).max() > 0.01  # not a uniform output that any wiring would match
    np.testing.assert_allclose(loaded.predict(curves, verbose=0), expected, atol=1e-6)


def test_jitter_scales_shifts_and_adds_noise_within_the_configured_bounds():
    from ecg_app.training.diagnosis_fit import DiagnosisConfig, jitter

    curves = np.zeros(CURVES_SHAPE, np.float32)
    curves[:, 40, :] = 1.0  # one spike per cell
    config = DiagnosisConfig(noise=0.0)
    shifts, peaks = set(), set()
    for seed in range(40):
        out = jitter(curves, np.random.default_rng(seed), config)
        column = int(out[0, :, 0].argmax())
        shifts.add(column - 40)
        peaks.add(round(float(out.max()), 3))
        assert np.all(out[:, column, :] == out.max())  # the same change for every lead and curve
    assert max(abs(s) for s in shifts) <= config.max_shift and len(shifts) > 5
    assert all(config.amplitude[0] <= p <= config.amplitude[1] for p in peaks) and len(peaks) > 5
    noisy = jitter(curves, np.random.default_rng(0), DiagnosisConfig(amplitude=(1, 1), max_shift=0))
    assert 0.005 < float(np.std(noisy - curves)) < 0.015  # noise 0.01


def test_curve_batches_draw_every_ecg_class_equally_and_refuse_a_missing_one():
    from ecg_app.training.diagnosis_fit import CurveBatches, DiagnosisConfig

    curves = np.zeros((7, *CURVES_SHAPE), np.float32)
    labels = np.array([0, 1, 1, 2, 2, 2, 3])
    config = DiagnosisConfig(draws_per_class=5, batch_size=4)
    batches = CurveBatches(curves, labels, config, seed=0)
    drawn = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert np.bincount(drawn, minlength=4).tolist() == [5, 5, 5, 5]
    with pytest.raises(ValueError, match="all four ECG classes"):
        CurveBatches(curves, np.array([0, 1, 1, 2, 2, 2, 2]), config, seed=0)
