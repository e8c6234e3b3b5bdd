"""Printouts of the reference template drawn from signals whose wave timings are known.

Why: the measurements (`rhythm.measure`) are checked against the rate the ECG machine printed, but no
printout says where its P wave starts or its T wave ends. Drawn here from `synth_ecg`'s simulated leads
on the template's geometry (pink frame, 3 x 4 leads over 10 s and a lead II rhythm strip, 25 mm/s,
10 mm/mV, a calibration pulse per row), each page comes with the ground truth of its PR, QRS and QT
(`synth_ecg.wave_bounds`) and its heart rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ecg_app.clinical.rhythm import STRIP_SECONDS, STRIP_SPAN
from ecg_app.clinical.trace_reading import GAIN_MM_MV, PAPER_SPEED_MM_S
from ecg_app.serving.lead_geometry import ROW_CENTRES
from ecg_app.serving.preprocess import crop_box
from ecg_app.serving.trace_area import BORDER_BOX
from ecg_app.training.synth_ecg import ecg_signal, make_rhythm, qrs_axis, wave_bounds

PAGE_SIZE = (1106, 786)  # (width, height) of the dataset's printouts
ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"), ("II",))
PINK = (240, 170, 180)
FS = 1000.0


@dataclass(frozen=True)
class Truth:
    """What was drawn: the mean heart rate (bpm, from the beats shown), R-peak times (s), the
    intervals (ms) of a sinus beat in lead II and its frontal QRS axis (degrees)."""

    heart_rate_bpm: float
    beats: np.ndarray
    pr_ms: float
    qrs_ms: float
    qt_ms: float
    qrs_axis_deg: float


def render_printout(
    seed: int, heart_rate: float | None = None, axis_turn: float = 0.0
) -> tuple[np.ndarray, Truth]:
    """(RGB page, truth) of a sinus-rhythm 12-lead printout drawn from `seed`; `axis_turn` turns the
    QRS axis (near +45 degrees as drawn) by that many degrees in the limb leads."""
    rng = np.random.default_rng(seed)
    width, height = PAGE_SIZE
    heart_rate = float(rng.uniform(50, 120)) if heart_rate is None else heart_rate
    rhythm = replace(make_rhythm(rng, 10.0, heart_rate, regime="sinus"), axis_turn=axis_turn)
    page = np.full((height, width, 3), 255, np.uint8)
    top, bottom, left, right = crop_box(height, width)
    px_per_s = (STRIP_SPAN[1] - STRIP_SPAN[0]) * (right - left) / STRIP_SECONDS
    px_per_mv = GAIN_MM_MV * px_per_s / PAPER_SPEED_MM_S
    _draw_grid(page, (top, bottom, left, right), px_per_s / PAPER_SPEED_MM_S)
    x0, y0, x1, y1 = (v * s for v, s in zip(BORDER_BOX, (width, height, width, height), strict=True))
    cv2.rectangle(page, (round(x0), round(y0)), (round(x1), round(y1)), PINK, 2)
    start = left + STRIP_SPAN[0] * (right - left)
    leads = dict.fromkeys(sum(ROWS, ()))  # in a fixed order: each lead draws from the one generator
    signals = {lead: ecg_signal(rng, 10.0, FS, heart_rate, lead, rhythm) for lead in leads}
    for row, leads in enumerate(ROWS):
        baseline = top + ROW_CENTRES[row] * (bottom - top)
        pulse = np.array(
            [
                [start - 34, baseline],
                [start - 30, baseline],
                [start - 30, baseline - px_per_mv],
                [start - 22, baseline - px_per_mv],
                [start - 22, baseline],
                [start - 18, baseline],
            ]
        )
        cv2.polylines(page, [np.round(pulse * 4).astype(np.int32)], False, (0, 0, 0), 1, cv2.LINE_AA, 2)
        for j, lead in enumerate(leads):
            first, last = j * 10.0 / len(leads), (j + 1) * 10.0 / len(leads)
            samples = signals[lead][int(first * FS) : int(last * FS)]
            xs = start + (first + np.arange(samples.size) / FS) * px_per_s
            ys = baseline - samples * px_per_mv
            points = np.round(np.stack([xs, ys], axis=1) * 4).astype(np.int32)
            cv2.polylines(page, [points], False, (0, 0, 0), 1, cv2.LINE_AA, 2)
    # Where lead II shows its waves; a lead II turned near perpendicular to the QRS shows none: then the
    # timings as drawn before the turn.
    bounds = wave_bounds("II", rhythm)
    if np.isnan(bounds["qrs_onset"]):
        bounds = wave_bounds("II", replace(rhythm, axis_turn=0.0))
    beats = rhythm.times[(rhythm.times >= 0) & (rhythm.times <= 10)]
    truth = Truth(
        heart_rate_bpm=float(60 / np.diff(beats).mean()),
        beats=beats,
        pr_ms=1000 * (bounds["qrs_onset"] - bounds["p_onset"]),
        qrs_ms=1000 * (bounds["qrs_offset"] - bounds["qrs_onset"]),
        qt_ms=1000 * (bounds["t_offset"] - bounds["qrs_onset"]),
        qrs_axis_deg=qrs_axis(rhythm),
    )
    return page, truth


def _draw_grid(page: np.ndarray, box: tuple[int, int, int, int], px_per_mm: float) -> None:
    """The template's faint dotted grid: a dot every millimetre on the 5 mm lines."""
    top, bottom, left, right = box
    step = 5 * px_per_mm
    dots = np.arange(left, right, px_per_mm)
    for y in np.arange(top, bottom, step):
        page[round(y), np.round(dots).astype(int)] = PINK
    for x in np.arange(left, right, step):
        page[np.round(np.arange(top, bottom, px_per_mm)).astype(int), round(x)] = PINK
