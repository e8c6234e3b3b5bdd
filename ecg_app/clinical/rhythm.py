"""Read the printout's traces as signals in seconds and millivolts, and measure them.

Why: the networks read the page as a picture; a clinician reads numbers off the trace. On the
reference template the bottom row band is a 10-second rhythm strip and the three rows above it print
the twelve leads over the same 10 seconds, four leads of 2.5 s each per row. A page askew, in
perspective or photographed is first squared to the template by its pink frame (`square_to_frame`),
a blurred one sharpened first. Pages of other layouts are read by `grid_rate`.
Each row is digitised column by column (`row_trace`); the strip's width gives the seconds (10 s on
every printout of the template) and its calibration pulse the millivolts (1 mV = 10 mm). Beats are
voted by several of neurokit2's QRS detectors (Makowski et al. 2021) and kept only when a lead above
the strip shows them too; intervals are read on the median beat, the QRS axis from leads I and aVF.

Example:
    >>> m = measure(page_as_read(rgb))
    >>> m.heart_rate_bpm, m.qtc_bazett_ms, m.not_measured_reason
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import find_peaks

from ecg_app.clinical.grid_rate import measure_rate
from ecg_app.clinical.measurements import (
    MEASURED,
    NOT_MEASURED,
    PARTIAL,
    Measurements,
    RhythmStrip,
    not_measured,
    qtc_bazett,
    qtc_fridericia,
)
from ecg_app.clinical.trace_reading import (
    FS,
    GAIN_MM_MV,
    LABEL_S,
    MIN_CONFIRMED,
    PAPER_SPEED_MM_S,
    RATE_LIMITS_BPM,
    band_curve,
    confirmed_share,
    detect_beats,
    ink,
    longest_runs,
    resample,
)
from ecg_app.serving.deidentify import frame_hull
from ecg_app.serving.lead_geometry import ROW_CENTRES
from ecg_app.serving.preprocess import crop_box
from ecg_app.serving.trace_area import BORDER_BOX, border_sides, register

# The template's traces run from here to there (shares of the trace area's width): 10 seconds.
STRIP_SPAN = (48 / 1054, 1025 / 1054)
STRIP_SECONDS = 10.0
STRIP_ROW = 3
TEMPLATE_ASPECT = 786 / 1106  # the template page's height to width
MAX_FRAME_HEIGHT = 0.95  # share of the picture's height
SHARPEN_AMOUNT, SHARPEN_SIGMA = 1.5, 2.0  # the unsharp mask tried when no frame is found
MIN_BEATS = 3
AXIS_AGREEMENT_DEG = 20.0  # the axis from I and aVF and the one from I, II and III agree this well
# Plausible adult ranges: a value outside is a misread edge, not a finding.
INTERVAL_LIMITS_MS = {"pr_ms": (60.0, 400.0), "qrs_ms": (40.0, 220.0), "qt_ms": (200.0, 700.0)}


def _row_band(height: int, row: int) -> tuple[int, int]:
    """(first, last + 1) pixel rows of a row of traces in a trace area this high: halfway to the rows
    beside it, the strip's down to the area's bottom (its spikes reach below the band)."""
    half = (ROW_CENTRES[1] - ROW_CENTRES[0]) / 2 * height
    centre = ROW_CENTRES[row] * height
    last = height if row == len(ROW_CENTRES) - 1 else min(round(centre + half), height)
    return max(round(centre - half), 0), last


def strip_area(page: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The trace area of a page (`square_to_frame`d) and its time scale in px per second: the strip
    spans `STRIP_SECONDS`; None when no template frame is found."""
    page = square_to_frame(page)
    if page is None:
        return None
    top, bottom, left, right = crop_box(*page.shape[:2])
    area = page[top:bottom, left:right]
    return area, (STRIP_SPAN[1] - STRIP_SPAN[0]) * area.shape[1] / STRIP_SECONDS


def row_trace(area: np.ndarray, row: int) -> np.ndarray | None:
    """One row of the trace area as a curve (`trace_reading.band_curve`), per pixel column from the
    strip's start to its end; None when under half the columns have ink."""
    first, last = _row_band(area.shape[0], row)
    start, end = (round(share * area.shape[1]) for share in STRIP_SPAN)
    return band_curve(ink(area[first:last, start : end + 1]))


def pulse_height(area: np.ndarray) -> float | None:
    """Height in px of the rhythm strip's calibration pulse (1 mV), less one trace thickness; None
    when no pulse stands before the strip."""
    first, last = _row_band(area.shape[0], STRIP_ROW)
    region = ink(area[first:last, : round(STRIP_SPAN[0] * area.shape[1]) - 1])
    runs = longest_runs(region)
    if runs.max(initial=0) < 5:
        return None
    inked = region.any(axis=0)
    thickness = float(np.median(region.sum(axis=0)[inked & (runs < runs.max() / 2)])) if inked.any() else 1.0
    return float(runs.max() - thickness)


BEAT_SPAN_S = (-0.35, 0.65)  # the window cut around each R peak for the median beat
WAVE_THRESHOLD_MV = 0.04  # a wave starts or ends where it comes within this of the baseline: ~1.5 px
MIN_P_MV = 0.05  # a smaller bump before the QRS is not called a P wave


def median_beat(signal_mv: np.ndarray, beats: np.ndarray) -> np.ndarray | None:
    """The median of the beats cut `BEAT_SPAN_S` around each R peak (re-centred on the sample farthest
    from the local level within 60 ms), its baseline (its commonest value, the isoelectric line) at 0; None
    when fewer than 2 beats fit in the strip. Averaging beats is how ECG machines measure intervals
    (a median or representative beat, e.g. the GE Marquette 12SL program)."""
    before, after = (round(v * FS) for v in BEAT_SPAN_S)
    reach = round(0.06 * FS)
    cuts = []
    for time in beats:
        i = round(time * FS)
        if i - reach < 0 or i + reach >= signal_mv.size:
            continue
        near = signal_mv[i - reach : i + reach + 1]
        i += int(np.argmax(np.abs(near - np.median(near)))) - reach
        if i + before >= 0 and i + after <= signal_mv.size:
            cuts.append(signal_mv[i + before : i + after])
    if len(cuts) < 2:
        return None
    beat = np.median(np.stack(cuts), axis=0)
    counts, edges = np.histogram(beat, bins=np.arange(beat.min(), beat.max() + 0.02, 0.01))
    return beat - (edges[np.argmax(counts)] + 0.005)  # the isoelectric level: the commonest value


def _edge(deflection: np.ndarray, start: int, step: int, hold: int) -> int | None:
    """From `start`, walking by `step`, the first index after which `hold` samples stay within
    `WAVE_THRESHOLD_MV` of the baseline; None when the walk leaves the beat first."""
    quiet = 0
    i = start
    while 0 <= i < deflection.size:
        quiet = quiet + 1 if deflection[i] < WAVE_THRESHOLD_MV else 0
        if quiet >= hold:
            return i - step * (hold - 1)
        i += step
    return None


def _t_end(beat: np.ndarray, peak: int) -> int | None:
    """End of the T wave by the tangent method (Lepeschkin and Surawicz 1952): where the tangent at
    the steepest point of the T wave's downslope (within 150 ms after its peak) meets the baseline.
    Less thrown by noise or a following P or U wave than waiting for the trace to go quiet."""
    stop = min(beat.size - 1, peak + round(0.15 * FS))
    if stop - peak < 3:
        return None
    sign = np.sign(beat[peak])
    slope = np.gradient(beat[peak : stop + 1] * sign)
    steepest = int(np.argmin(slope))
    if slope[steepest] >= 0:
        return None
    i = peak + steepest
    end = i - beat[i] * sign / slope[steepest]
    if not peak < end < beat.size:
        return None
    # The tangent ends a slow T tail early: where the trace is back at the baseline, if soon after.
    quiet = _edge(np.abs(beat[: min(beat.size, round(end) + round(0.06 * FS))]), i, 1, round(0.012 * FS))
    return quiet if quiet is not None else round(end)


def _p_onset(deflection: np.ndarray, peak: int, hold: int) -> int | None:
    """Walking back from the P peak: where the trace is back at the baseline (`_edge`), or, at fast
    rates where the P wave rides on the T wave before it, the trough between the two."""
    i = peak
    while i - hold >= 0:
        if (deflection[i - hold + 1 : i + 1] < WAVE_THRESHOLD_MV).all():
            return i
        if deflection[i - hold] > deflection[i] + WAVE_THRESHOLD_MV / 2:  # rising again: the T wave
            return i
        i -= 1
    return None


def intervals(beat: np.ndarray, rr_s: float) -> dict[str, float | None]:
    """PR, QRS and QT (ms) of a median beat, by where each wave leaves and rejoins the baseline
    (`WAVE_THRESHOLD_MV`): QRS onset walking back from R, QRS offset forward from R past the last steep
    slope, P onset back from the P peak; T end by `_t_end`. None for an edge not found
    (e.g. no P wave in atrial fibrillation)."""
    r = -round(BEAT_SPAN_S[0] * FS)
    deflection = np.abs(beat)
    hold = round(0.012 * FS)
    onset = _edge(deflection, r, -1, hold)
    slope = np.abs(np.gradient(beat)) * FS  # mV/s
    steep = np.flatnonzero(
        slope[r : r + round(0.12 * FS)] > 0.2 * slope[r - round(0.06 * FS) : r + round(0.06 * FS)].max()
    )
    offset = None
    if steep.size:  # back at the baseline soon after the last steep slope, or else where it levels off
        last = r + int(steep[-1])
        offset = _edge(deflection, last, 1, hold)
        if offset is None or offset - last > round(0.08 * FS):
            calm = np.flatnonzero(slope[last:] < 2.0)
            offset = last + int(calm[0]) if calm.size else None
    out: dict[str, float | None] = {"pr_ms": None, "qrs_ms": None, "qt_ms": None}
    if onset is None or offset is None:
        return out
    out["qrs_ms"] = (offset - onset) / FS * 1000
    t_stop = min(beat.size, r + round(min(0.6, 0.85 * rr_s) * FS))
    t_start = offset + round(0.06 * FS)
    if t_start < t_stop:
        peak = t_start + int(np.argmax(deflection[t_start:t_stop]))
        end = _t_end(beat, peak)
        if end is not None and deflection[peak] >= 2 * WAVE_THRESHOLD_MV:
            out["qt_ms"] = (end - onset) / FS * 1000
    p_start = max(onset - round(0.25 * FS), 0)
    p_stop = onset - round(0.03 * FS)
    if p_start < p_stop:
        # The P wave: the bump nearest the QRS standing out from the trace around it (not the tail of a
        # T wave at the window's edge).
        bumps, _ = find_peaks(deflection[p_start:p_stop], prominence=WAVE_THRESHOLD_MV, height=MIN_P_MV)
        peak = p_start + int(bumps[-1]) if bumps.size else None
        start = None if peak is None else _p_onset(deflection, peak, hold)
        if start is not None:
            out["pr_ms"] = (onset - start) / FS * 1000
    return out


def _corners(hull: np.ndarray) -> np.ndarray | None:
    """The frame hull's four corners (top left, top right, bottom right, bottom left), or None when
    the hull does not simplify to a quadrilateral."""
    perimeter = cv2.arcLength(hull, True)
    for share in (0.01, 0.02, 0.04):
        quad = cv2.approxPolyDP(hull, share * perimeter, True)
        if len(quad) == 4:
            break
    else:
        return None
    points = quad.reshape(4, 2).astype(np.float32)
    by_sum, by_diff = points.sum(axis=1), np.diff(points, axis=1).ravel()
    return np.float32(
        [points[by_sum.argmin()], points[by_diff.argmin()], points[by_sum.argmax()], points[by_diff.argmax()]]
    )


def square_to_frame(page: np.ndarray) -> np.ndarray | None:
    """The page with the template's frame where `trace_area` expects it; None when no template frame is
    found. A frame off square (a scan fed in askew, a photo `page_as_read` could not straighten by the
    sheet's edges, or one whose frame colour the exact test misses after JPEG) is found as
    `deidentify.frame_hull`: the page is turned level by its angle and registered, or else its four
    corners are mapped onto the template's. The networks deskew their own input, but fixed row bands
    need level rows."""
    if border_sides(page) is not None:
        return page
    hull = frame_hull(page)
    if hull is None:
        return None
    # The template's frame leaves the header above it (79% of the page high; 91% turned 5 degrees): a
    # "frame" the picture's whole height is the outline of a page-wide grid of another layout.
    if cv2.boundingRect(hull)[3] > MAX_FRAME_HEIGHT * page.shape[0]:
        return None
    # Turned askew (whose frame corners may lie outside the picture): turned level by the hull's angle.
    angle = (cv2.minAreaRect(hull)[2] + 45) % 90 - 45
    height, width = page.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    level = register(cv2.warpAffine(page, turn, (width, height), borderValue=(255, 255, 255)))
    if border_sides(level) is not None:
        return level
    # In perspective, or its pink faded: the hull's corners onto the template's frame corners.
    corners = _corners(hull)
    if corners is None:
        return None
    width = round(float(np.linalg.norm(corners[1] - corners[0])) / (BORDER_BOX[2] - BORDER_BOX[0]))
    height = round(width * TEMPLATE_ASPECT)
    left, top, right, bottom = (
        v * s for v, s in zip(BORDER_BOX, (width, height, width, height), strict=True)
    )
    target = np.float32([[left, top], [right, top], [right, bottom], [left, bottom]])
    return cv2.warpPerspective(
        page,
        cv2.getPerspectiveTransform(corners, target),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderValue=(255, 255, 255),
    )


def net_qrs(trace: np.ndarray, beats: np.ndarray, px_per_s: float, cell: int) -> float | None:
    """Median net QRS deflection (px: the tallest upward plus the deepest downward, from the level
    100-250 ms before the beat) of the beats inside one 2.5-second lead cell of a row; None when no
    beat lies 100 ms inside it."""
    first, last = cell * STRIP_SECONDS / 4 + 0.1, (cell + 1) * STRIP_SECONDS / 4 - 0.1
    reach = round(0.06 * px_per_s)
    nets = []
    for beat in beats[(beats > first) & (beats < last)]:
        x = round(beat * px_per_s)
        before = trace[max(0, round((beat - 0.25) * px_per_s)) : max(1, round((beat - 0.1) * px_per_s))]
        window = trace[max(0, x - reach) : x + reach + 1] - np.median(before)
        nets.append(window.max() + window.min())
    return float(np.median(nets)) if nets else None


def axis_estimates(
    traces: list[np.ndarray | None], beats: np.ndarray, px_per_s: float
) -> tuple[float, float] | None:
    """Two frontal QRS axes (degrees) by the hexaxial method, atan2(net aVF, net I), from different
    leads and seconds of the template: aVF read in its own cell (second of the third row), and aVF
    derived by Einthoven's law as (II + III) / 2 from the first cells of the second and third rows,
    printed over the same seconds as lead I (first cell of the top row). None when a lead has no beat or
    I and aVF are both nearly flat (under 1 mm, where the angle means nothing).

    >>> round(np.degrees(np.arctan2(1.0, 1.0)))  # I and aVF equally positive: +45 degrees
    45
    """
    if any(trace is None for trace in traces[:3]):
        return None
    lead_i, lead_ii, lead_iii = (net_qrs(traces[row], beats, px_per_s, 0) for row in range(3))
    lead_avf = net_qrs(traces[2], beats, px_per_s, 1)
    if None in (lead_i, lead_ii, lead_iii, lead_avf):
        return None
    if np.hypot(lead_i, lead_avf) < px_per_s / PAPER_SPEED_MM_S:  # under 1 mm (0.1 mV)
        return None
    return (
        float(np.degrees(np.arctan2(lead_avf, lead_i))),
        float(np.degrees(np.arctan2((lead_ii + lead_iii) / 2, lead_i))),
    )


def qrs_axis(traces: list[np.ndarray | None], beats: np.ndarray, px_per_s: float) -> float | None:
    """The frontal QRS axis from leads I and aVF (`axis_estimates`), reported only when the axis from
    I, II and III agrees within `AXIS_AGREEMENT_DEG`: two readings of different cells that disagree
    mean a misread trace."""
    estimates = axis_estimates(traces, beats, px_per_s)
    if estimates is None:
        return None
    direct, derived = estimates
    return direct if abs((direct - derived + 180) % 360 - 180) <= AXIS_AGREEMENT_DEG else None


def sharpened(page: np.ndarray) -> np.ndarray:
    """The page through an unsharp mask (the page plus `SHARPEN_AMOUNT` times its difference from a
    Gaussian blur of `SHARPEN_SIGMA` px): blur fades the template's thin pink frame below the colour
    test that finds it (a sigma 1.5 px blur: 0 of 393 printouts measured) and thins the traces' ink."""
    soft = cv2.GaussianBlur(page, (0, 0), SHARPEN_SIGMA)
    return cv2.addWeighted(page, 1 + SHARPEN_AMOUNT, soft, -SHARPEN_AMOUNT, 0)


def measure(page: np.ndarray) -> Measurements:
    """Measurements of a page as the networks read it (`preprocess.page_as_read`): everything on the
    reference template, the heart rate alone on pages of other layouts (`grid_rate`); "not
    measured" with the reason where its beats cannot be found."""
    found = strip_area(page)
    if found is None:  # a blurred picture's pale frame, found again once sharpened
        found = strip_area(sharpened(page))
    if found is None:
        return measure_rate(page)
    area, px_per_s = found
    px_per_mm = px_per_s / PAPER_SPEED_MM_S
    trace = row_trace(area, STRIP_ROW)
    if trace is None:
        return not_measured("no rhythm strip was found at the bottom of the printout")
    pulse = pulse_height(area)
    # A pulse far off 10 mm (at the time scale's millimetre) is not one: use the paper's own scale.
    if pulse is None or abs(pulse / (GAIN_MM_MV * px_per_mm) - 1) > 0.15:
        pulse = GAIN_MM_MV * px_per_mm
    signal = resample(trace / pulse, px_per_s)
    beats = detect_beats(signal)
    beats = beats[beats >= LABEL_S]  # the lead's name printed over the strip's start is no beat
    strip = RhythmStrip(seconds=np.arange(signal.size) / FS, millivolts=signal, beats=beats)
    if beats.size < MIN_BEATS:
        return Measurements(
            quality=NOT_MEASURED,
            not_measured_reason=f"fewer than {MIN_BEATS} beats were found on the rhythm strip",
            strip=strip,
        )
    rr = np.diff(beats)
    rr_s = float(np.median(rr))
    rate = 60.0 / rr_s
    if not RATE_LIMITS_BPM[0] <= rate <= RATE_LIMITS_BPM[1]:
        return Measurements(
            quality=NOT_MEASURED, not_measured_reason=f"implausible heart rate ({rate:.0f} bpm)", strip=strip
        )
    leads = [row_trace(area, row) for row in range(STRIP_ROW)]
    if confirmed_share(leads, beats, px_per_s) < MIN_CONFIRMED:
        return Measurements(
            quality=NOT_MEASURED,
            not_measured_reason="the beats found on the rhythm strip are not seen in the leads above it",
            strip=strip,
        )
    beat = median_beat(signal, beats)
    edges = intervals(beat, rr_s) if beat is not None else {}
    checked = {
        name: value if value is not None and low <= value <= high else None
        for name, (low, high) in INTERVAL_LIMITS_MS.items()
        for value in [edges.get(name)]
    }
    missing = [
        f"{name.removesuffix('_ms').upper()} (no clear wave edge on the median beat)"
        for name, value in checked.items()
        if value is None
    ]
    axis = qrs_axis(leads, beats, px_per_s)
    if axis is None:
        missing.append("QRS axis (not read consistently from leads I, II, III and aVF)")
    qt = checked["qt_ms"]
    return Measurements(
        heart_rate_bpm=rate,
        rr_irregularity=float(np.std(rr) / np.mean(rr)),
        pr_ms=checked["pr_ms"],
        qrs_ms=checked["qrs_ms"],
        qt_ms=qt,
        qtc_bazett_ms=None if qt is None else float(qtc_bazett(qt, rr_s)),
        qtc_fridericia_ms=None if qt is None else float(qtc_fridericia(qt, rr_s)),
        qrs_axis_deg=axis,
        quality=PARTIAL if missing else MEASURED,
        not_measured_reason="; ".join(missing) or None,
        strip=strip,
    )
