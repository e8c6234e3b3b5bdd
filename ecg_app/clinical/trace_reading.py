"""From a band of printed trace to a curve and its beats, whatever the page's layout.

Why: the reference template (`rhythm`) and pages of other layouts (`grid_rate`) differ in where their
rows are and what gives the time scale, not in how a row of ink becomes a curve or a curve its beats.
A row's ink (`ink`) is read column by column (`band_curve`); beats are voted by several of neurokit2's
QRS detectors (Makowski et al. 2021, `detect_beats`) and kept only when another lead recorded at the same
time shows them too (`confirmed_share`).

Example:
    >>> curve = band_curve(ink(band_rgb))  # px, up positive
    >>> beats = detect_beats(resample(curve / px_per_mv, px_per_s))  # R-peak times (s)
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

FS = 500.0  # Hz: the rate a digitised curve is resampled to for the detectors
PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
INK_THRESHOLD = 0.35
# neurokit2 QRS detectors voted on a curve; a beat counts where at least VOTES of them put one within
# VOTE_TOLERANCE_S. Each alone missed or doubled beats on some printouts (docs/experiments.md).
DETECTORS: tuple[str, ...] = ("neurokit", "kalidas2017", "hamilton2002", "pantompkins1985", "rodrigues2021")
VOTES = 3
VOTE_TOLERANCE_S = 0.05
REFRACTORY_S = 0.2  # no two beats closer (300 bpm)
LABEL_S = 0.15  # a row's first seconds, where a lead's name may be printed over the trace: no beats
MIN_CONFIRMED = 0.5  # share of a row's beats another lead over the same seconds must show
RATE_LIMITS_BPM = (25.0, 250.0)  # a rate outside is a misread, not a finding
CONFIRM_GAIN = 4.0  # a QRS in another lead: its slope this many times the row's median slope
SEPARATOR_SHARE = 0.8  # a column inked this share of its band high is a printed separator, not trace
_PEAK_REACH = 3  # px: a stroke's tip is the highest (lowest) ink this far either side


def longest_runs(mask: np.ndarray) -> np.ndarray:
    """Per column, the longest vertical run of True."""
    best = np.zeros(mask.shape[1], np.int32)
    run = np.zeros(mask.shape[1], np.int32)
    for row in mask:
        run = np.where(row, run + 1, 0)
        np.maximum(best, run, out=best)
    return best


def darkness(region: np.ndarray) -> np.ndarray:
    """How much darker than the local background each pixel of an RGB region is (0 to 1), by its
    brightest channel, so a coloured grid (bright in one channel) and uneven light drop out."""
    # Pairwise maxima: the same as region.max(axis=2), many times faster (as in preprocess.ink_map).
    bright = np.maximum(np.maximum(region[:, :, 0], region[:, :, 1]), region[:, :, 2]).astype(np.float32)
    background = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9)))
    return 1.0 - bright / np.maximum(background, 1.0)


def ink(region: np.ndarray) -> np.ndarray:
    """Dark trace pixels of an RGB region (`darkness` over `INK_THRESHOLD`)."""
    return darkness(region) > INK_THRESHOLD


def band_curve(mask: np.ndarray) -> np.ndarray | None:
    """A band's ink mask as a curve: per pixel column, the height (px, up positive, from the band's
    median level) of the line's middle, and at the tip of a stroke (a QRS spike, a few px wide but tens
    high) of its tip, so a spike keeps its height with a single column at its top; None when under half
    the columns have ink. Columns inked nearly the whole band high (printed lead separators) and columns
    without ink are filled in from their neighbours."""
    mask = mask.copy()
    mask[:, longest_runs(mask) > SEPARATOR_SHARE * mask.shape[0]] = False
    has = mask.any(axis=0)
    if has.mean() < 0.5:
        return None
    columns = np.arange(mask.shape[1])
    top = np.interp(columns, columns[has], np.argmax(mask, axis=0)[has])
    bottom = np.interp(columns, columns[has], mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)[has])
    middle = (top + bottom) / 2
    level = float(np.median(middle))
    span = bottom - top
    steep = span > 2 * np.median(span) + 1  # a stroke, not the line's own thickness
    reach = 2 * _PEAK_REACH + 1
    peak_up = steep & (top == minimum_filter1d(top, reach, mode="nearest"))
    peak_down = steep & (bottom == maximum_filter1d(bottom, reach, mode="nearest"))
    up, down = level - top, bottom - level
    heights = level - middle
    heights = np.where(peak_down & ~(peak_up & (up >= down)), -down, heights)
    return np.where(peak_up & ~(peak_down & (down > up)), up, heights)


def resample(trace: np.ndarray, px_per_s: float) -> np.ndarray:
    """A curve sampled once per pixel column, resampled to `FS` (the column pitch is `px_per_s`)."""
    t = np.arange(trace.size) / px_per_s
    return np.interp(np.arange(0.0, t[-1], 1 / FS), t, trace)


def detect_beats(signal_mv: np.ndarray) -> np.ndarray:
    """R-peak times (s) on which at least `VOTES` of the `DETECTORS` agree: each detector's peaks,
    grouped while each is within `VOTE_TOLERANCE_S` of the one before (on a wide or notched QRS the
    detectors' marks spread over up to 170 ms), the group's median time for each group that enough
    detectors share (within about 40 ms of the R peak: some detectors mark the upstroke, others the S
    wave), one per `REFRACTORY_S`. A vote, because each detector alone doubled beats at
    tall T waves or lost small QRS complexes on some printouts where the others did not."""
    import neurokit2 as nk  # here: importing it (pandas, matplotlib) takes seconds; `predict` may not measure

    # Mirrored a second either side: the cleaning filter and the detectors' own windows ring at a
    # signal's ends (a false beat 0.3 s in on most strips); beats found in the mirror are dropped.
    pad = min(round(FS), signal_mv.size - 1)
    clean = nk.ecg_clean(np.pad(signal_mv, pad, mode="reflect"), sampling_rate=FS)
    found = []
    for k, method in enumerate(DETECTORS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = nk.ecg_findpeaks(clean, sampling_rate=FS, method=method)  # ecg_peaks less its table
        except Exception:  # a detector that fails on this curve simply casts no vote
            continue
        found += [((i - pad) / FS, k) for i in info["ECG_R_Peaks"] if pad <= i < pad + signal_mv.size]
    found.sort()
    groups: list[list[tuple[float, int]]] = []
    for time, k in found:  # single linkage: within the tolerance of the group's latest detection
        if groups and time - groups[-1][-1][0] <= VOTE_TOLERANCE_S:
            groups[-1].append((time, k))
        else:
            groups.append([(time, k)])
    voted = [(float(np.median([t for t, _ in g])), len({k for _, k in g})) for g in groups]
    beats: list[tuple[float, int]] = []
    for time, votes in voted:
        if votes < VOTES:
            continue
        # Two groups within the refractory period are one beat marked at its R and at its S by different
        # detectors: keep the one more of them agree on.
        if beats and time - beats[-1][0] < REFRACTORY_S:
            if votes > beats[-1][1]:
                beats[-1] = (time, votes)
            continue
        beats.append((time, votes))
    return np.array([time for time, _ in beats])


def confirmed_share(traces: list[np.ndarray | None], beats: np.ndarray, px_per_s: float) -> float:
    """The largest share, over rows of other leads recorded over the same seconds (curves in the same
    pixel columns as the one the beats were found on), of those beats at which that row has a QRS: its
    curve's slope, smoothed over 30 ms, peaks within 60 ms of the beat at over `CONFIRM_GAIN` times its
    median. "Beats" no other lead
    shows are noise or a misread, not a rhythm."""
    best = 0.0
    smooth, reach = max(1, round(0.03 * px_per_s)), round(0.06 * px_per_s)
    columns = np.round(beats * px_per_s).astype(int)
    for trace in traces:
        if trace is None:
            continue
        energy = uniform_filter1d(np.abs(np.gradient(trace)), smooth)
        floor = CONFIRM_GAIN * np.median(energy)
        seen = [energy[max(0, x - reach) : x + reach + 1].max(initial=0.0) > floor for x in columns]
        best = max(best, float(np.mean(seen)))
    return best
