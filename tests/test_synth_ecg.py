"""The synthetic ECG renderer: reproducible, every layout reachable, and signals that are real ECG-like."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_app.training.synth_ecg import FAMILIES, LEADS, ecg_signal, make_rhythm, pick_family, render_ecg


def count_r_peaks(signal: np.ndarray, fs: float) -> int:
    """QRS complexes: steep slopes after a 20 ms smoothing (T and P waves are slow), 150 ms refractory."""
    k = int(0.02 * fs)
    smooth = np.convolve(signal.astype(np.float64), np.ones(k) / k, mode="same")
    energy = np.convolve((np.diff(smooth) * fs) ** 2, np.ones(int(0.05 * fs)) / int(0.05 * fs), mode="same")
    above = energy > 0.2 * np.percentile(energy, 99.5)
    peaks: list[int] = []
    for onset in np.flatnonzero(above[1:] & ~above[:-1]):
        if not peaks or onset - peaks[-1] > 0.15 * fs:
            peaks.append(int(onset))
    return len(peaks)


def ink_fraction(image: np.ndarray) -> float:
    """Share of pixels far from the dominant (background) colour: traces, grid, text, surroundings."""
    pixels = image.astype(np.int16)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    return float((np.abs(pixels - background).sum(axis=2) > 80).mean())


@pytest.mark.parametrize("heart_rate", [40, 72, 110, 180])
@pytest.mark.parametrize("fs", [250, 500])
def test_signal_beats_at_the_requested_heart_rate(heart_rate, fs):
    expected = heart_rate * 20 / 60
    for seed in range(8):
        signal = ecg_signal(np.random.default_rng(seed), 20, fs, heart_rate, "II")
        assert signal.shape == (20 * fs,) and signal.dtype == np.float32
        assert abs(count_r_peaks(signal, fs) - expected) <= 1 + 0.1 * expected, seed


def qrs_extremes(lead: str, seed: int) -> tuple[float, float]:
    """Median most negative and most positive QRS deflection (mV) from the PR-segment baseline."""
    rng = np.random.default_rng(seed)
    fs = 500
    rhythm = make_rhythm(rng, 10, 70, regime="sinus")
    signal = ecg_signal(rng, 10, fs, 70, lead, rhythm)
    lows, highs = [], []
    for time, kind in zip(rhythm.times, rhythm.kinds, strict=True):
        i = int(round(time * fs))
        if kind == 0 and 50 <= i < signal.size - 30:  # sinus beats fully inside the strip
            window = signal[i - 30 : i + 30] - np.median(signal[i - 50 : i - 30])
            lows.append(window.min())
            highs.append(window.max())
    return float(np.median(lows)), float(np.median(highs))


@pytest.mark.parametrize("seed", range(6))
def test_leads_have_their_own_polarity(seed):
    """aVR points down, V1 has a deep S, II and V5 point up: the renders show recognisable leads."""
    for lead, downward in (("aVR", True), ("V1", True), ("II", False), ("V5", False)):
        low, high = qrs_extremes(lead, seed)
        assert (-low > high) == downward, lead


def test_signal_is_reproducible_and_rejects_unknown_leads():
    a = ecg_signal(np.random.default_rng(3), 5, 500, 80, "V2")
    assert np.array_equal(a, ecg_signal(np.random.default_rng(3), 5, 500, 80, "V2"))
    assert not np.array_equal(a, ecg_signal(np.random.default_rng(4), 5, 500, 80, "V2"))
    assert set(LEADS) == {"I", "II", "III", "aVR", "aVL", "aVF", *(f"V{i}" for i in range(1, 7))}
    with pytest.raises(ValueError, match="lead"):
        ecg_signal(np.random.default_rng(0), 5, 500, 80, "V7")


def test_render_is_deterministic_per_seed():
    first = render_ecg(11)
    assert np.array_equal(first, render_ecg(11))
    other = render_ecg(12)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_every_family_is_reachable_from_plain_seeds():
    seen = {pick_family(seed) for seed in range(300)}
    assert seen == set(FAMILIES)
    for seed in range(4):
        assert np.array_equal(render_ecg(seed), render_ecg(seed, family=pick_family(seed)))


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_renders_a_picture_not_noise(family):
    for seed in range(3):
        image = render_ecg(seed, family=family)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert 150 <= image.shape[0] <= 2000 and 500 <= image.shape[1] <= 2500
        # Something drawn on a dominant background; uniform noise scores about 0.96 here.
        assert 0.005 < ink_fraction(image) < 0.85


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="family"):
        render_ecg(0, family="holter_3d")


def test_a_turned_axis_keeps_einthovens_law_and_turns_the_axis():
    from dataclasses import replace

    from ecg_app.training.synth_ecg import _sinus_waves, qrs_axis

    rhythm = make_rhythm(np.random.default_rng(0), 10, 70, regime="sinus")
    turned = replace(rhythm, axis_turn=-90.0)
    t = np.arange(-0.1, 0.1, 1e-3)
    qrs = {lead: _sinus_waves(lead, turned, t)["QRS"] for lead in ("I", "II", "III")}
    assert np.allclose(qrs["I"] + qrs["III"], qrs["II"], atol=1e-9)
    assert (qrs_axis(turned) - qrs_axis(rhythm) + 180) % 360 - 180 == pytest.approx(-90.0, abs=5)
