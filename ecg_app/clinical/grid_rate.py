"""Heart rate from a printout of any layout, timed by its printed grid.

Why: the reference template (`rhythm`) is read from where its rows are; other machines print 6 x 2,
12 x 1, 3 x 4 without a strip or a lone rhythm strip. What all ECG paper shares is the grid: 1 mm minor
and 5 mm major lines at 25 mm/s, so 5 mm is 0.2 s whatever the picture's size. The grid's pitch is
read from the autocorrelation of the page's column darkness (`grid_px_per_mm`), and accepted only when
its 5:1 pattern of minor and major lines is seen: a grid seen without it (faint minor lines, or none)
leaves the millimetre ambiguous by a factor of five, and the page unmeasured. Rows of trace are found as
the page's horizontal lines of ink (`trace_rows`); the longest rows are tried from the bottom up (where
machines print the rhythm strip) and the first that reads cleanly gives the beats (`trace_reading`),
confirmed by another row over the same seconds where there is one. Only the rate is reported: where
the leads and the calibration are is not known, so no intervals and no axis; and where a row changes
lead halfway (6 x 2, 3 x 4 pages) the printed boundary can add a beat, which the median RR shrugs off
but the RR irregularity does not (schr_sample6, a sinus rhythm: 0.20, over the 0.15 called irregular).

Example:
    >>> m = measure_rate(page_as_read(rgb))
    >>> m.heart_rate_bpm, m.not_measured_reason
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from ecg_app.clinical.measurements import NOT_MEASURED, PARTIAL, Measurements, RhythmStrip, not_measured
from ecg_app.clinical.trace_reading import (
    FS,
    GAIN_MM_MV,
    LABEL_S,
    MIN_CONFIRMED,
    PAPER_SPEED_MM_S,
    RATE_LIMITS_BPM,
    band_curve,
    confirmed_share,
    darkness,
    detect_beats,
    resample,
)

MINOR_PER_MAJOR = 5
UPSAMPLE = 4  # the darkness profile is resampled this many times finer
SQUARE_TOLERANCE = 0.04  # the grid's pitch across and down the page agree this well (a photo's tilt)
MIN_MINOR_PX = 2.5  # finer minor lines than this are not resolved: only the major lines are seen
PEAK_PROMINENCE = 0.02  # of the autocorrelation (1 at lag 0)
PATTERN_MARGIN = 0.05  # minor-line peaks stand this far above the troughs between them (on average)
HALF_MARGIN = 0.1  # a period whose halfway points come this close to its peaks is two periods
MAX_MULTIPLES = 20  # of a period, compared with the points halfway between them
MAJOR_MARGIN = 0.05  # every fifth line's peak stands this far above the fourth and sixth
INK_THRESHOLDS = (0.35, 0.45, 0.55, 0.65, 0.75)
MAX_INK_SHARE = 0.06
MIN_SPECK_MM = 1.5  # ink this small across is no trace
MIN_ROW_GAP_MM = 8.0  # two rows of trace are at least this far apart
MIN_STRIP_S = 3.0  # a row shorter than this is too short for a rate
EQUAL_SHARE = 0.95  # rows at least this share of the longest are its equals
MAX_TRIED = 6  # of them, from the bottom up
GAP_S = 0.12  # a row's trace may break this long (a lead's label, a separator) and go on
MIN_BEATS = 4  # one more than on the template: no lead above confirms a lone strip
STEEP_MV_S = 80.0  # a slope this steep is a QRS, or a mark that is not trace
MAX_STRAY_PER_S = 1.0  # steep strokes away from every beat, per second, on a trace read cleanly
NOT_READ = "RR irregularity, PR, QRS, QT and the axis (read only on the reference 12-lead template)"


def _autocorrelation(profile: np.ndarray, window: int) -> np.ndarray:
    """Autocorrelation (1 at lag 0) of a profile less its running mean over `window`, Hann-windowed."""
    x = profile - uniform_filter1d(profile, window, mode="nearest")
    x = x * np.hanning(x.size)
    spectrum = np.fft.rfft(x, 2 * x.size)
    ac = np.fft.irfft(np.abs(spectrum) ** 2)[: x.size]
    return ac / max(float(ac[0]), 1e-12)


def _near_max(ac: np.ndarray, lag: float, reach: int) -> float:
    i = round(lag)
    return float(ac[max(i - reach, 0) : i + reach + 1].max())


def _refined_peak(ac: np.ndarray, lag: float, reach: float) -> float:
    """The autocorrelation's peak near `lag`, to a fraction of a pixel (a parabola through its top)."""
    low = max(round(lag - reach), 1)
    i = low + int(np.argmax(ac[low : round(lag + reach) + 1]))
    if not 0 < i < ac.size - 1:
        return float(i)
    a, b, c = ac[i - 1], ac[i], ac[i + 1]
    curvature = a - 2 * b + c
    return i + (float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature else 0.0)


def _pitch(profile: np.ndarray) -> float | None:
    """Pixels per millimetre of a grid along one axis (see `grid_px_per_mm`), from that axis's
    darkness profile; None without the 5:1 pattern. The profile is first resampled `UPSAMPLE` times
    finer: one-pixel lines a fractional period apart (5.5 px) overlap their neighbours at no
    whole-pixel lag, and the period would be taken for twice itself."""
    fine = np.interp(np.arange(profile.size * UPSAMPLE) / UPSAMPLE, np.arange(profile.size), profile)
    ac = _autocorrelation(fine, 31 * UPSAMPLE)
    reach = ac.size // 3
    peaks, _ = find_peaks(ac[:reach], prominence=PEAK_PROMINENCE)
    peaks = peaks[peaks >= 3 * UPSAMPLE]
    if not peaks.size:
        return None
    first = int(peaks[ac[peaks] >= 0.5 * ac[peaks].max()][0])
    # Refined at its 2nd, 4th, 8th ... multiple: each guess close enough to find the next peak.
    period, multiple = float(first), 1
    while 2 * multiple * period < reach:
        multiple *= 2
        period = _refined_peak(ac, multiple * period, max(2.0 * UPSAMPLE, 0.3 * period)) / multiple
    # Lines at half that period (a minor pitch between whole pixels, drawn alternately 4 and 5 px
    # apart, repeats best every two lines): the autocorrelation halfway between F's multiples is then
    # as high as at them, where a true period has its troughs.
    count = int(min(MAX_MULTIPLES, reach / period))
    multiples = period * np.arange(1, count + 1)
    halfway = np.interp(multiples - period / 2, np.arange(ac.size), ac).mean()
    if (
        period / 2 >= 3 * UPSAMPLE
        and halfway > np.interp(multiples, np.arange(ac.size), ac).mean() - HALF_MARGIN
    ):
        period /= 2
    if period / MINOR_PER_MAJOR >= MIN_MINOR_PX * UPSAMPLE:
        minors = np.array(
            [_near_max(ac, period * k / MINOR_PER_MAJOR, UPSAMPLE) for k in range(1, MINOR_PER_MAJOR)]
        )
        # Between the minor lines, away from the skirts of the peaks at 0 and F.
        troughs = np.array(
            [ac[round(period * (k + 0.5) / MINOR_PER_MAJOR)] for k in range(1, MINOR_PER_MAJOR - 1)]
        )
        if minors.min() > troughs.mean() and minors.mean() > troughs.mean() + PATTERN_MARGIN:
            return period / MINOR_PER_MAJOR / UPSAMPLE
    if (MINOR_PER_MAJOR + 1) * period < reach:
        major = _near_max(ac, MINOR_PER_MAJOR * period, UPSAMPLE)
        beside = max(_near_max(ac, (MINOR_PER_MAJOR + s) * period, UPSAMPLE) for s in (-1, 1))
        if major > beside + MAJOR_MARGIN:
            return period / UPSAMPLE
    return None


def grid_px_per_mm(rgb: np.ndarray) -> float | None:
    """Pixels per millimetre of the printed grid along the page's width; None when no grid with the 5:1
    pattern of minor and major lines is seen, or the pitch down the page differs by over
    `SQUARE_TOLERANCE` (ECG paper's squares are square: a repeating texture or noise is not).

    The column darkness (its median down each column: grid lines run the page's height, traces do not)
    repeats with the grid. Its fundamental period F is the first autocorrelation peak at least half as
    high as the highest, measured to a fraction of a pixel at its 2nd, 4th, 8th ... multiple up to a
    third of the page (a pixel's rounding spread over many squares), and halved when the
    autocorrelation halfway between its multiples is as high as at them (lines on whole pixels, 4 and
    5 px apart in turn, repeat best every two). F is a major square (5 mm) when the autocorrelation at
    F/5, 2F/5 ... stands above the troughs between them, or a minor one (1 mm) when every fifth line is
    darker (a higher peak at 5F than at 4F and 6F).
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    darkness_map = np.clip(cv2.dilate(gray, np.ones((15, 15), np.uint8)) - gray, 0, 1)
    across, down = _pitch(np.median(darkness_map, axis=0)), _pitch(np.median(darkness_map, axis=1))
    if across is None or down is None or abs(down / across - 1) > SQUARE_TOLERANCE:
        return None
    return across


def trace_ink(rgb: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Trace pixels: dark (`trace_reading.darkness`) over the lowest of `INK_THRESHOLDS` that leaves at
    most `MAX_INK_SHARE` of the page inked (a grey or black grid passes the first threshold but covers
    far more of the page than traces do), less straight lines a quarter of the page long (printed
    frames, grid lines left) and specks under `MIN_SPECK_MM` across (the darker dots where grid lines
    cross, dust): each would be read as the trace's top or bottom in its column."""
    dark = darkness(rgb)
    for threshold in INK_THRESHOLDS:
        mask = (dark > threshold).astype(np.uint8)
        if mask.mean() <= MAX_INK_SHARE:
            break
    height, width = mask.shape
    lines = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, max(3, width // 4)), np.uint8))
    lines |= cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((max(3, height // 4), 1), np.uint8))
    mask &= 1 - lines
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sizes = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = sizes >= MIN_SPECK_MM * px_per_mm
    keep[0] = False
    return keep[labels]


def trace_rows(mask: np.ndarray, px_per_mm: float) -> list[tuple[int, int]]:
    """(first, last + 1) pixel rows of each row of trace: around each horizontal line of ink (a trace's
    baseline is its commonest height), halfway to the rows beside it."""
    profile = uniform_filter1d(mask.sum(axis=1).astype(float), max(1, round(px_per_mm)))
    if profile.max(initial=0) <= 0:
        return []
    centres, _ = find_peaks(
        profile, distance=max(1, round(MIN_ROW_GAP_MM * px_per_mm)), height=0.25 * profile.max()
    )
    if not centres.size:
        return []
    gap = float(np.median(np.diff(centres))) if centres.size > 1 else 20 * px_per_mm
    edges = [max(0, round(centres[0] - gap / 2))]
    edges += [round((a + b) / 2) for a, b in zip(centres[:-1], centres[1:], strict=True)]
    edges.append(min(mask.shape[0], round(centres[-1] + gap / 2)))
    return list(zip(edges[:-1], edges[1:], strict=True))


def _extent(mask: np.ndarray, gap_px: int) -> tuple[int, int] | None:
    """(first, last + 1) columns of the longest run of inked columns, breaks up to `gap_px` bridged."""
    inked = np.flatnonzero(mask.any(axis=0))
    if not inked.size:
        return None
    breaks = np.flatnonzero(np.diff(inked) > gap_px)
    starts = np.r_[inked[0], inked[breaks + 1]]
    stops = np.r_[inked[breaks], inked[-1]] + 1
    k = int(np.argmax(stops - starts))
    return int(starts[k]), int(stops[k])


def stray_strokes(signal_mv: np.ndarray, beats: np.ndarray) -> float:
    """Steep strokes (over `STEEP_MV_S`) more than 100 ms before or 120 ms after every beat, per second:
    text, separators or grid read as trace. On the reference printouts read this way at most 0.2 per
    second (the calibration pulse); on rows mixed with other marks 1 to 7."""
    steep = np.abs(np.gradient(signal_mv)) * FS > STEEP_MV_S
    for beat in beats:
        steep[max(0, round((beat - 0.1) * FS)) : round((beat + 0.12) * FS)] = False
    return np.count_nonzero(np.diff(steep.astype(np.int8)) == 1) / (signal_mv.size / FS)


def _read_row(mask: np.ndarray, row: tuple[int, int, int, int], px_per_mm: float) -> RhythmStrip | None:
    """One row of trace as a strip in millivolts with its beats (those after `LABEL_S`)."""
    first, last, start, stop = row
    curve = band_curve(mask[first:last, start:stop])
    if curve is None:
        return None
    signal = resample(curve / (GAIN_MM_MV * px_per_mm), PAPER_SPEED_MM_S * px_per_mm)
    beats = detect_beats(signal)
    return RhythmStrip(seconds=np.arange(signal.size) / FS, millivolts=signal, beats=beats[beats >= LABEL_S])


def measure_rate(page: np.ndarray) -> Measurements:
    """The heart rate of a page of any layout (see the module's notes); "not measured" with
    the reason where no grid gives the time scale or no row gives enough beats.

    The rows as long as the longest (within `EQUAL_SHARE`) are tried from the bottom up, at most
    `MAX_TRIED`: the first with `MIN_BEATS` beats and no more than `MAX_STRAY_PER_S` stray strokes is
    read (the top and bottom rows of a page often run into its printed text)."""
    px_per_mm = grid_px_per_mm(page)
    if px_per_mm is None:
        return not_measured(
            "the printout's layout was not recognised and no ECG grid (1 mm and 5 mm lines)"
            " gives its time scale"
        )
    px_per_s = PAPER_SPEED_MM_S * px_per_mm
    mask = trace_ink(page, px_per_mm)
    rows = []
    for first, last in trace_rows(mask, px_per_mm):
        extent = _extent(mask[first:last], round(GAP_S * px_per_s))
        if extent is not None and (extent[1] - extent[0]) / px_per_s >= MIN_STRIP_S:
            rows.append((first, last, *extent))
    longest = max((stop - start for _, _, start, stop in rows), default=0)
    candidates = sorted((r for r in rows if r[3] - r[2] >= EQUAL_SHARE * longest), key=lambda r: -r[0])
    reason, shown = "no row of trace long enough for a rate was found on the grid", None
    for row in candidates[:MAX_TRIED]:
        strip = _read_row(mask, row, px_per_mm)
        if strip is None:
            continue
        if strip.beats.size < MIN_BEATS:
            found = f"fewer than {MIN_BEATS} beats were found on the longest rows"
        elif stray_strokes(strip.millivolts, strip.beats) > MAX_STRAY_PER_S:
            found = "the longest rows are mixed with other marks (text, lines) read as trace"
        else:
            return _rate_of(strip, row, rows, mask, px_per_s)
        if shown is None:  # what the bottom row read, shown with the reason
            reason, shown = found, strip
    return Measurements(quality=NOT_MEASURED, not_measured_reason=reason, strip=shown)


def _rate_of(
    strip: RhythmStrip, row: tuple[int, int, int, int], rows: list, mask: np.ndarray, px_per_s: float
) -> Measurements:
    """The rate of a row read cleanly, confirmed by another row over the same seconds where one exists."""
    first, _, start, stop = row
    rr = np.diff(strip.beats)
    rate = 60.0 / float(np.median(rr))
    if not RATE_LIMITS_BPM[0] <= rate <= RATE_LIMITS_BPM[1]:
        return Measurements(
            quality=NOT_MEASURED, not_measured_reason=f"implausible heart rate ({rate:.0f} bpm)", strip=strip
        )
    reach = 0.05 * (stop - start)
    others = [
        band_curve(mask[a:b, start:stop])
        for a, b, s, e in rows
        if a != first and s <= start + reach and e >= stop - reach
    ]
    if others and confirmed_share(others, strip.beats, px_per_s) < MIN_CONFIRMED:
        return Measurements(
            quality=NOT_MEASURED,
            not_measured_reason="the beats found on the longest row are not seen in the rows beside it",
            strip=strip,
        )
    return Measurements(
        heart_rate_bpm=rate,
        quality=PARTIAL,
        not_measured_reason=NOT_READ,
        strip=strip,
    )
