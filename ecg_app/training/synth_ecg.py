"""Synthetic ECG pictures of many layouts, rendered from simulated signals.

Why: the classifier learns "this is an ECG" from one print template plus a few dozen real pictures of
other layouts, and must not call real ECGs of unseen layouts Non-ECG. These renders add cheap, varied
examples of the "OtherECG" kind: 12-lead grids, rhythm strips, monitor screens, plain line plots and
close-ups on differently coloured papers, as clean images, scans or phone photos. Everything is drawn
with numpy + OpenCV from a seed (no global random state, no downloads), so a training run can make as
many as it wants and reproduce each one.

Public API: `ecg_signal` (one lead's waveform), `render_ecg` (one picture), `render_with_rate` (the
same picture and the rate it shows, for validating `grid_rate`), `pick_family` (the layout family
`render_ecg(seed)` draws) and `FAMILIES`.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import cv2
import numpy as np

from ecg_app.training.augment import blur, homography, jpeg, warp

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FAMILIES: tuple[str, ...] = (
    "12lead_3x4",  # the commonest printout: 4 columns of 2.5 s, often with a rhythm strip
    "12lead_6x2",  # 6 rows x 2 columns, some machines and PTB-XL style renders
    "12lead_column",  # one lead per row, 6-12 rows (portrait pages)
    "rhythm_strip",  # 1-3 long rows of one lead each (Holter, telemetry, textbook strips)
    "closeup",  # 1-3 beats on a coarse grid (textbook / web figures)
    "monitor",  # bedside monitor screen: dark background, coloured traces, big numbers
    "plain_plot",  # a bare line plot of a beat or a strip, no grid
)
_FAMILY_WEIGHTS = np.array([0.26, 0.14, 0.08, 0.2, 0.06, 0.14, 0.12])

# Per-lead amplitudes (mV) of the P, Q, R, S, T waves of a normal sinus beat: aVR is inverted, V1-V2
# have deep S waves, R grows across the precordial leads (V1 -> V5).
_LEAD_WAVES: dict[str, tuple[float, float, float, float, float]] = {
    "I": (0.10, -0.05, 0.60, -0.10, 0.22),
    "II": (0.15, -0.07, 1.00, -0.20, 0.30),
    "III": (0.06, -0.05, 0.45, -0.18, 0.10),
    "aVR": (-0.12, 0.05, -0.75, 0.10, -0.25),
    "aVL": (0.05, -0.05, 0.35, -0.12, 0.10),
    "aVF": (0.11, -0.05, 0.70, -0.15, 0.20),
    "V1": (0.08, 0.00, 0.25, -1.00, -0.05),
    "V2": (0.09, 0.00, 0.45, -1.30, 0.45),
    "V3": (0.08, -0.02, 0.85, -0.85, 0.45),
    "V4": (0.08, -0.05, 1.30, -0.50, 0.45),
    "V5": (0.08, -0.08, 1.40, -0.25, 0.35),
    "V6": (0.08, -0.08, 1.10, -0.15, 0.28),
}
_TEMPLATE_SPAN = (-0.35, 0.65)  # seconds around the R peak that one beat's waves occupy
_SINUS, _VENTRICULAR, _ATRIAL = 0, 1, 2
_CHARS = string.ascii_letters + string.digits
_TEXT_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)
RGB = tuple[int, int, int]


# --------------------------------------------------------------------------------------------- signal


@dataclass(frozen=True)
class Rhythm:
    """Beat times and morphology shared by all leads of one recording, so leads stay simultaneous."""

    times: np.ndarray  # R-peak times (s), including beats just before 0 whose T waves show
    kinds: np.ndarray  # _SINUS, _VENTRICULAR or _ATRIAL per beat
    wave_gain: np.ndarray  # per-recording factors on P, Q, R, S, T amplitudes
    qrs_width: float  # factor on Q/R/S widths (> 1.3 looks like a bundle branch block)
    pr: float  # P-to-R interval (s)
    qt: float  # R-to-T-peak interval (s)
    fibrillation: bool  # atrial fibrillation: no P waves, fibrillatory baseline, irregular RR
    inverted_t: frozenset[str] = field(default_factory=frozenset)
    st_leads: frozenset[str] = field(default_factory=frozenset)
    st_shift: float = 0.0  # mV added between S and T in `st_leads` (elevation or depression)
    axis_turn: float = 0.0  # degrees the QRS's frontal vector is turned (`_turned_qrs`); 0 as drawn


def make_rhythm(
    rng: np.random.Generator, seconds: float, heart_rate: float, regime: str = "random"
) -> Rhythm:
    """Beat schedule with respiratory heart-rate variability and occasional premature beats.

    The mean rate stays `heart_rate` in every regime ("sinus", "af", "vt"; "random" picks one), so a
    beat count over the strip matches it.
    """
    if regime == "random":
        regime = str(rng.choice(["sinus", "af", "vt"], p=[0.86, 0.1, 0.04]))
    mean_rr = 60.0 / heart_rate
    resp_hz, resp_phase = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    hrv = rng.uniform(0.01, 0.06)
    ectopic_rate = float(rng.choice([0.0, 0.0, 0.04, 0.1]))
    times, kinds = [], []
    t = -mean_rr * rng.uniform(1.0, 2.0)
    while t < seconds + 0.5:
        times.append(t)
        kinds.append(_VENTRICULAR if regime == "vt" else _SINUS)
        if regime == "af":
            rr = mean_rr * rng.uniform(0.65, 1.35)
        else:
            rr = mean_rr * (1 + hrv * np.sin(2 * np.pi * resp_hz * t + resp_phase) + rng.normal(0, 0.015))
        if regime == "sinus" and rng.random() < ectopic_rate:
            coupling = rng.uniform(0.6, 0.8)
            premature = _VENTRICULAR if rng.random() < 0.6 else _ATRIAL
            times.append(t + coupling * rr)
            kinds.append(premature)
            rr = 2 * rr if premature == _VENTRICULAR else (1 + coupling) * rr  # compensatory pause
        t += rr
    return Rhythm(
        times=np.array(times),
        kinds=np.array(kinds),
        wave_gain=rng.uniform(0.7, 1.3, size=5) * (1, 1, rng.uniform(0.6, 1.5), 1, 1),
        qrs_width=float(rng.choice([1.0, 1.0, 1.0, rng.uniform(1.4, 2.0)])) * rng.uniform(0.9, 1.15),
        pr=rng.uniform(0.13, 0.2),
        qt=(0.17 + 0.12 * np.sqrt(mean_rr)) * rng.uniform(0.92, 1.08),
        fibrillation=regime == "af",
        inverted_t=frozenset(_random_leads(rng, 0.12)),
        st_leads=frozenset(_random_leads(rng, 0.1)),
        st_shift=float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.25)),
    )


def _random_leads(rng: np.random.Generator, chance: float) -> list[str]:
    """A contiguous group of leads (a territory), present with probability `chance`."""
    if rng.random() >= chance:
        return []
    start = int(rng.integers(0, len(LEADS)))
    return list(LEADS[start : start + int(rng.integers(2, 5))])


def _gaussian(t: np.ndarray, centre: float, width: float, amplitude: float) -> np.ndarray:
    return amplitude * np.exp(-0.5 * ((t - centre) / width) ** 2)


# Hexaxial angles of the limb leads (degrees, aVF at +90).
_LIMB_ANGLES = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}


def _turned_qrs(lead: str, gain: np.ndarray, turn: float) -> np.ndarray:
    """A limb lead's Q, R and S amplitudes with the frontal QRS vector turned by `turn` degrees: each
    wave's vector is read from I (its x) and aVF (its y), turned, and projected on the lead's axis
    (the hexaxial reference system), so the six limb leads keep Einthoven's law (I + III = II)."""
    x = np.array(_LEAD_WAVES["I"])[1:4] * gain[1:4]
    y = np.array(_LEAD_WAVES["aVF"])[1:4] * gain[1:4]
    angle = np.radians(turn)
    x, y = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
    phi = np.radians(_LIMB_ANGLES[lead])
    return x * np.cos(phi) + y * np.sin(phi)


def _sinus_waves(lead: str, rhythm: Rhythm, t: np.ndarray) -> dict[str, np.ndarray]:
    """A sinus (or atrial) beat's waves apart, at times `t` around the R peak: "P" (absent in
    fibrillation), "QRS", "ST" (a shift in the leads of `rhythm.st_leads`) and "T"."""
    p, q, r, s, tw = np.array(_LEAD_WAVES[lead]) * rhythm.wave_gain
    if rhythm.axis_turn and lead in _LIMB_ANGLES:
        q, r, s = _turned_qrs(lead, rhythm.wave_gain, rhythm.axis_turn)
    if lead in rhythm.inverted_t:
        tw = -abs(tw) * 0.8
    w = rhythm.qrs_width
    zero = np.zeros_like(t)
    return {
        "P": zero if rhythm.fibrillation else _gaussian(t, -rhythm.pr, 0.022, p),
        "QRS": _gaussian(t, -0.028 * w, 0.009 * w, q)
        + _gaussian(t, 0.0, 0.011 * w, r)
        + _gaussian(t, 0.03 * w, 0.011 * w, s),
        "ST": _gaussian(t, 0.12, 0.05, rhythm.st_shift) if lead in rhythm.st_leads else zero,
        # a slower T downstroke
        "T": _gaussian(t, rhythm.qt, 0.05, tw) + _gaussian(t, rhythm.qt + 0.06, 0.03, 0.25 * tw),
    }


def _beat_template(lead: str, kind: int, rhythm: Rhythm, fs: float) -> np.ndarray:
    """One beat as a sum of Gaussian waves, sampled over `_TEMPLATE_SPAN` around the R peak."""
    t = np.arange(int(_TEMPLATE_SPAN[0] * fs), int(_TEMPLATE_SPAN[1] * fs)) / fs
    if kind == _VENTRICULAR:  # wide bizarre QRS against the normal axis, discordant T, no P
        _, q, r, s, _ = np.array(_LEAD_WAVES[lead]) * rhythm.wave_gain
        net = q + r + s
        amp = -np.sign(net or 1.0) * max(abs(net) * 1.6, 0.6)
        beat = _gaussian(t, 0.0, 0.04, amp) + _gaussian(t, 0.05, 0.03, -0.3 * amp)
        return beat + _gaussian(t, rhythm.qt + 0.04, 0.07, -0.35 * amp)
    waves = _sinus_waves(lead, rhythm, t)
    if kind == _ATRIAL:
        waves["P"] = -0.6 * waves["P"]
    return sum(waves.values())


def qrs_axis(rhythm: Rhythm) -> float:
    """Frontal QRS axis (degrees) of a sinus beat: atan2 of the net QRS (tallest plus deepest) of aVF
    and of I, the hexaxial method, on the noiseless waves: the ground truth for a rendered ECG."""
    t = np.arange(-0.1, 0.1, 1e-4)
    net = {lead: _sinus_waves(lead, rhythm, t)["QRS"] for lead in ("I", "aVF")}
    return float(np.degrees(np.arctan2(*(wave.max() + wave.min() for wave in (net["aVF"], net["I"])))))


def wave_bounds(lead: str, rhythm: Rhythm, threshold_mv: float = 0.03) -> dict[str, float]:
    """Where a sinus beat's waves show on paper, in seconds from the R peak: the first and last time
    each wave's own deflection reaches `threshold_mv` (about a pixel at 10 mm/mV on a 1100 px page).
    Keys "p_onset", "qrs_onset", "qrs_offset", "t_offset" (NaN for a wave the lead does not show, e.g.
    no P wave): the ground truth of PR, QRS and QT for a rendered ECG whose timings are known.

    >>> rhythm = make_rhythm(np.random.default_rng(0), 10, 60, regime="sinus")
    >>> bounds = wave_bounds("II", rhythm)
    >>> bounds["qrs_onset"] < 0 < bounds["qrs_offset"] < bounds["t_offset"]
    True
    """
    fs = 10_000.0
    t = np.arange(int(_TEMPLATE_SPAN[0] * fs), int(_TEMPLATE_SPAN[1] * fs)) / fs
    waves = _sinus_waves(lead, rhythm, t)
    seen = {name: t[np.abs(wave) >= threshold_mv] for name, wave in waves.items()}

    def first(name: str) -> float:
        return float(seen[name][0]) if seen[name].size else float("nan")

    def last(name: str) -> float:
        return float(seen[name][-1]) if seen[name].size else float("nan")

    return {
        "p_onset": first("P"),
        "qrs_onset": first("QRS"),
        "qrs_offset": last("QRS"),
        "t_offset": last("T"),
    }


def _baseline(rng: np.random.Generator, t: np.ndarray, rhythm: Rhythm) -> np.ndarray:
    """Respiratory wander, white noise, sometimes mains hum and fibrillatory waves."""
    wander = sum(
        rng.uniform(0, 0.12) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6.3))
        for _ in range(2)
    )
    noise = rng.normal(0, rng.uniform(0.003, 0.012) * (3 if rng.random() < 0.1 else 1), size=t.size)
    if rng.random() < 0.2:
        noise += rng.uniform(0.003, 0.012) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t)
    if rhythm.fibrillation:
        noise += rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * rng.uniform(4, 8) * t + np.sin(3 * t))
    return wander + noise


def ecg_signal(
    rng: np.random.Generator,
    seconds: float,
    fs: float,
    heart_rate: float,
    lead: str,
    rhythm: Rhythm | None = None,
) -> np.ndarray:
    """`seconds * fs` samples (mV, float32) of one lead; pass one `rhythm` to all leads of a recording."""
    if lead not in _LEAD_WAVES:
        raise ValueError(f"unknown lead {lead!r}; expected one of {', '.join(LEADS)}")
    rhythm = rhythm if rhythm is not None else make_rhythm(rng, seconds, heart_rate)
    n = int(round(seconds * fs))
    start = int(_TEMPLATE_SPAN[0] * fs)
    templates = {kind: _beat_template(lead, kind, rhythm, fs) for kind in set(rhythm.kinds.tolist())}
    pad = templates[rhythm.kinds[0]].size
    out = np.zeros(n + 2 * pad)
    for time, kind in zip(rhythm.times, rhythm.kinds, strict=True):
        begin = int(round(time * fs)) + start + pad
        if 0 <= begin <= out.size - templates[kind].size:
            out[begin : begin + templates[kind].size] += templates[kind] * rng.normal(1.0, 0.03)
    t = np.arange(n) / fs
    return (out[pad : pad + n] + _baseline(rng, t, rhythm)).astype(np.float32)


def _fibrillation_signal(rng: np.random.Generator, seconds: float, fs: float) -> np.ndarray:
    """Ventricular fibrillation: chaotic 3-7 Hz oscillation, for a few rhythm strips."""
    t = np.arange(int(round(seconds * fs))) / fs
    freq = rng.uniform(3.5, 6.5) + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t)
    phase = 2 * np.pi * np.cumsum(freq) / fs
    envelope = rng.uniform(0.3, 0.9) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    return (envelope * np.sin(phase) + rng.normal(0, 0.02, t.size)).astype(np.float32)


# --------------------------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class Paper:
    """Colours and grid of one printout; the ink colours are RGB."""

    background: RGB
    minor: RGB
    major: RGB
    grid: str  # "lines", "dots", "major_only" or "none"
    ink: RGB
    label_ink: RGB
    thickness: int


_PAPER_COLOURS: dict[str, tuple[RGB, RGB, RGB]] = {  # background, minor line, major line
    "pink": ((255, 248, 248), (248, 205, 205), (238, 150, 150)),
    "red": ((255, 255, 255), (245, 175, 170), (225, 85, 80)),
    "orange": ((255, 247, 235), (250, 210, 165), (235, 150, 85)),
    "green": ((236, 246, 236), (175, 212, 175), (95, 150, 95)),
    "grey": ((238, 238, 238), (200, 200, 200), (140, 140, 140)),
    "blue": ((228, 232, 246), (185, 198, 236), (115, 135, 210)),
    "cyan": ((252, 255, 255), (195, 232, 238), (120, 200, 215)),
}


def _jitter(rng: np.random.Generator, colour: RGB, amount: int = 12) -> RGB:
    return tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-amount, amount + 1, 3), 0, 255))


def _random_paper(rng: np.random.Generator) -> Paper:
    name = str(rng.choice(list(_PAPER_COLOURS)))
    background, minor, major = (_jitter(rng, c) for c in _PAPER_COLOURS[name])
    if rng.random() < 0.25:  # plain white paper under coloured lines
        background = _jitter(rng, (255, 255, 255), 4)
    ink = _jitter(
        rng,
        [(10, 10, 10), (25, 25, 60), (40, 40, 40), (10, 40, 20)][rng.choice(4, p=[0.7, 0.12, 0.12, 0.06])],
    )
    return Paper(
        background=background,
        minor=minor,
        major=major,
        grid=str(rng.choice(["lines", "dots", "major_only", "none"], p=[0.66, 0.1, 0.14, 0.1])),
        ink=ink,
        label_ink=ink if rng.random() < 0.75 else _jitter(rng, (30, 40, 200)),
        thickness=int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])),
    )


def _grid_positions(offset: float, step: float, size: int) -> np.ndarray:
    return np.unique(np.round(np.arange(offset % step, size, step)).astype(int).clip(0, size - 1))


def _draw_grid(image: np.ndarray, paper: Paper, px_per_mm: float, offset: tuple[float, float]) -> None:
    """1 mm minor and 5 mm major lines (or dots at the minor crossings), in place."""
    if paper.grid == "none":
        return
    height, width = image.shape[:2]
    xs, ys = _grid_positions(offset[0], px_per_mm, width), _grid_positions(offset[1], px_per_mm, height)
    if paper.grid == "lines" and px_per_mm >= 2.5:
        image[:, xs] = paper.minor
        image[ys, :] = paper.minor
    elif paper.grid == "dots" and px_per_mm >= 2.5:
        image[np.ix_(ys, xs)] = paper.major
    xs5, ys5 = (
        _grid_positions(offset[0], 5 * px_per_mm, width),
        _grid_positions(offset[1], 5 * px_per_mm, height),
    )
    image[:, xs5] = paper.major
    image[ys5, :] = paper.major
    if px_per_mm > 6:  # heavier major lines on coarse grids, as printed
        image[:, np.clip(xs5 + 1, 0, width - 1)] = paper.major
        image[np.clip(ys5 + 1, 0, height - 1), :] = paper.major


def _polyline(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: RGB, thickness: int) -> None:
    """Anti-aliased open polyline with sub-pixel vertices (OpenCV's 3-bit fixed point)."""
    points = np.round(np.stack([xs, ys], axis=1) * 8).astype(np.int32)
    cv2.polylines(image, [points], False, colour, thickness, cv2.LINE_AA, shift=3)


def _fake_text(rng: np.random.Generator, words: int) -> str:
    """Header-like gibberish: field names and values of random characters, never real patient data."""
    parts = []
    for _ in range(words):
        roll = rng.random()
        if roll < 0.35:
            parts.append(
                f"{rng.integers(0, 999)}{rng.choice(['', ' ms', ' bpm', '.' + str(rng.integers(0, 9))])}"
            )
        else:
            word = "".join(rng.choice(list(_CHARS), size=int(rng.integers(2, 9))))
            parts.append(word + (":" if roll > 0.8 else ""))
    return " ".join(parts)


def _put_text(
    image: np.ndarray,
    text: str,
    origin: tuple[float, float],
    height_px: float,
    colour: RGB,
    font: int,
    bold: int = 1,
) -> None:
    """Text whose capital height is about `height_px`, whatever the font."""
    (_, base_height), _ = cv2.getTextSize("H", font, 1.0, 1)
    scale = max(height_px / max(base_height, 1), 0.25)
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), font, scale, colour, bold, cv2.LINE_AA)


def _text_block(
    image: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int], lines: int, colour: RGB
) -> None:
    """`lines` rows of fake header text in box (left, top, right, bottom), in 1-3 columns."""
    left, top, right, bottom = box
    if lines <= 0 or bottom - top < 8:
        return
    font = int(rng.choice(_TEXT_FONTS))
    line_h = min((bottom - top) / lines, 28.0)
    columns = int(rng.integers(1, 4))
    for row in range(lines):
        for col in range(columns):
            x = left + col * (right - left) / columns
            _put_text(
                image,
                _fake_text(rng, int(rng.integers(1, 5))),
                (x, top + (row + 0.8) * line_h),
                0.55 * line_h,
                colour,
                font,
            )


def _calibration_xy(
    x0: float, baseline: float, px_per_s: float, px_per_mv: float
) -> tuple[np.ndarray, np.ndarray]:
    """The 1 mV x 0.2 s square pulse printed before or after a row."""
    w = 0.2 * px_per_s
    xs = np.array([x0, x0 + 0.25 * w, x0 + 0.25 * w, x0 + 1.25 * w, x0 + 1.25 * w, x0 + 1.5 * w])
    ys = baseline - np.array([0, 0, 1, 1, 0, 0]) * px_per_mv
    return xs, ys


# --------------------------------------------------------------------------------------------- layouts


_LAYOUT_3X4 = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]
_LAYOUT_6X2 = [["I", "V1"], ["II", "V2"], ["III", "V3"], ["aVR", "V4"], ["aVL", "V5"], ["aVF", "V6"]]


def _page_size(rng: np.random.Generator, portrait: bool, aspect: tuple[float, float]) -> tuple[int, int]:
    """(width, height) around 1100 px on the long side."""
    long_side = int(rng.integers(900, 1300))
    short_side = int(long_side / rng.uniform(*aspect))
    return (short_side, long_side) if portrait else (long_side, short_side)


# What `_draw_paper_ecg` drew, when `render_with_rate` listens: (beat times, seconds shown, paper,
# pixels per millimetre).
_DRAWN: ContextVar[list[tuple[np.ndarray, float, Paper, float]] | None] = ContextVar("_DRAWN", default=None)


def _draw_paper_ecg(
    rng: np.random.Generator,
    rows: list[list[str]],
    size: tuple[int, int],
    seconds: float,
    header_lines: int,
    signal_for: Callable[[str, float], np.ndarray] | None = None,
) -> np.ndarray:
    """A printout: grid, rows of lead cells (each row spans `seconds`), labels, pulses and text.

    Cell j of a row with n cells shows the recording from j*seconds/n to (j+1)*seconds/n, as ECG
    machines print, so columns are simultaneous.
    """
    width, height = size
    paper = _random_paper(rng)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = paper.background
    margin_x = width * rng.uniform(0.01, 0.06)
    top = height * (rng.uniform(0.1, 0.2) if header_lines else rng.uniform(0.02, 0.08))
    bottom = height * (1 - rng.uniform(0.03, 0.1))
    calibration = str(rng.choice(["left", "right", "none"], p=[0.5, 0.2, 0.3]))
    cal_px = 0.3 * (width - 2 * margin_x) / (seconds + 0.3) if calibration != "none" else 0.0
    left = margin_x + (cal_px if calibration == "left" else 0.0)
    right = width - margin_x - (cal_px if calibration == "right" else 0.0)
    px_per_s = (right - left) / seconds
    px_per_mm = px_per_s / 25.0
    row_h = (bottom - top) / len(rows)
    px_per_mv = min(10 * px_per_mm * float(rng.choice([1.0, 1.0, 0.5, 2.0])), 0.5 * row_h)
    _draw_grid(image, paper, px_per_mm, tuple(rng.uniform(0, 5 * px_per_mm, 2)))

    fs = float(np.clip(2 * px_per_s, 250, 500))  # about 2 samples per pixel: enough, and fast to draw
    heart_rate = rng.uniform(45, 130)
    rhythm = make_rhythm(rng, seconds, heart_rate)
    drawn = _DRAWN.get()
    if drawn is not None and signal_for is None:
        drawn.append((rhythm.times, seconds, paper, px_per_mm))
    if signal_for is None:
        signals: dict[str, np.ndarray] = {}

        def signal_for(lead: str, _: float) -> np.ndarray:
            if lead not in signals:
                signals[lead] = ecg_signal(rng, seconds, fs, heart_rate, lead, rhythm)
            return signals[lead]

    font = int(rng.choice(_TEXT_FONTS))
    label_h = float(np.clip(row_h * rng.uniform(0.1, 0.2), 8, 26))
    label_place = str(rng.choice(["above", "below", "inside"]))
    separators = rng.random() < 0.5
    for r, row in enumerate(rows):
        baseline = top + (r + rng.uniform(0.55, 0.65)) * row_h
        for j, lead in enumerate(row):
            t0, t1 = j * seconds / len(row), (j + 1) * seconds / len(row)
            signal = signal_for(lead, fs)[int(t0 * fs) : int(t1 * fs)]
            xs = left + (t0 + np.arange(signal.size) / fs) * px_per_s
            ys = np.clip(baseline - signal * px_per_mv, 0, height - 1)
            _polyline(image, xs, ys, paper.ink, paper.thickness)
            label_y = {
                "above": baseline - 0.45 * row_h,
                "below": baseline + 0.3 * row_h,
                "inside": baseline - 0.1 * row_h,
            }
            _put_text(
                image,
                lead,
                (xs[0] + 0.15 * px_per_s * (j > 0 or label_place != "inside"), label_y[label_place]),
                label_h,
                paper.label_ink,
                font,
            )
            if separators and j > 0:
                cv2.line(
                    image,
                    (int(xs[0]), int(baseline - 0.4 * row_h)),
                    (int(xs[0]), int(baseline - 0.15 * row_h)),
                    paper.label_ink,
                    max(1, paper.thickness),
                )
        if calibration != "none":
            x0 = left - cal_px if calibration == "left" else right + 0.1 * cal_px
            _polyline(image, *_calibration_xy(x0, baseline, px_per_s, px_per_mv), paper.ink, paper.thickness)
    _text_block(
        image,
        rng,
        (int(margin_x), int(0.01 * height), width - int(margin_x), int(top - 0.02 * height)),
        header_lines,
        paper.ink,
    )
    if rng.random() < 0.6:
        footer = (
            f"{rng.choice(['25mm/s', '25 mm/s', 'Speed: 25mm/s'])}  {rng.choice(['10mm/mV', '10 mm/mV'])}  "
        )
        _put_text(
            image,
            footer + _fake_text(rng, 2),
            (margin_x, height - 0.012 * height),
            0.012 * height + 4,
            paper.ink,
            font,
        )
    return image


def _render_3x4(rng: np.random.Generator) -> np.ndarray:
    rows = [list(r) for r in _LAYOUT_3X4] + [[str(rng.choice(["II", "V1", "V5"]))]] * int(
        rng.choice([0, 1, 1, 3])
    )
    size = _page_size(rng, rng.random() < 0.12, (1.25, 1.6))
    return _draw_paper_ecg(rng, rows, size, rng.uniform(9, 11), int(rng.choice([0, 2, 3, 4])))


def _render_6x2(rng: np.random.Generator) -> np.ndarray:
    rows = [list(r) for r in _LAYOUT_6X2] + [["II"]] * int(rng.choice([0, 0, 1]))
    size = _page_size(rng, rng.random() < 0.4, (1.2, 1.5))
    return _draw_paper_ecg(rng, rows, size, rng.uniform(5, 10), int(rng.choice([0, 2, 3])))


def _render_column(rng: np.random.Generator) -> np.ndarray:
    leads = list(LEADS) if rng.random() < 0.6 else list(LEADS[int(rng.choice([0, 6])) :][:6])
    size = _page_size(rng, rng.random() < 0.6, (1.2, 1.45))
    return _draw_paper_ecg(
        rng, [[lead] for lead in leads], size, rng.uniform(4, 10), int(rng.choice([0, 0, 2]))
    )


def _render_rhythm_strip(rng: np.random.Generator) -> np.ndarray:
    n_rows = int(rng.choice([1, 1, 2, 3]))
    leads = [str(lead) for lead in rng.choice(["II", "II", "V1", "V5", "I", "III", "aVF"], size=n_rows)]
    width = int(rng.integers(1000, 1600))
    height = int(n_rows * rng.uniform(160, 300) + rng.uniform(0, 80))
    signal_for = None
    if rng.random() < 0.08:  # ventricular fibrillation strip
        vf_seed = int(rng.integers(2**31))

        def signal_for(lead: str, fs: float) -> np.ndarray:
            return _fibrillation_signal(np.random.default_rng([vf_seed, LEADS.index(lead)]), 12.0, fs)

    return _draw_paper_ecg(
        rng,
        [[lead] for lead in leads],
        (width, height),
        rng.uniform(5, 12),
        int(rng.choice([0, 0, 1])),
        signal_for,
    )


def _render_closeup(rng: np.random.Generator) -> np.ndarray:
    size = (int(rng.integers(600, 1100)), int(rng.integers(450, 800)))
    return _draw_paper_ecg(rng, [[str(rng.choice(LEADS))]], size, rng.uniform(1.2, 3.2), 0)


def _render_plain_plot(rng: np.random.Generator) -> np.ndarray:
    """A bare line plot of one beat or a strip, as in papers and web pages; no grid."""
    width = int(rng.integers(700, 1300))
    height = int(width / rng.uniform(1.0, 3.2))
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _jitter(rng, (252, 252, 252), 3)
    seconds = rng.uniform(1.0, 2.2) if rng.random() < 0.4 else rng.uniform(3, 10)
    lead = str(rng.choice(["II", "II", "V1", "V5", "I", "aVR", "V2"]))
    fs = 500.0
    signal = ecg_signal(rng, seconds, fs, rng.uniform(50, 120), lead)
    margin = rng.uniform(0.02, 0.1, size=4) * (width, height, width, height)
    lo, hi = float(signal.min()), float(signal.max())
    xs = margin[0] + np.arange(signal.size) / signal.size * (width - margin[0] - margin[2])
    ys = margin[1] + (hi - signal) / max(hi - lo, 1e-6) * (height - margin[1] - margin[3])
    colours = [(220, 30, 30), (200, 0, 0), (30, 60, 200), (0, 0, 150), (15, 15, 15), (0, 120, 60)]
    colour = _jitter(rng, colours[int(rng.choice(len(colours), p=[0.25, 0.1, 0.2, 0.1, 0.3, 0.05]))], 8)
    _polyline(image, xs, ys, colour, int(rng.choice([1, 2, 2, 3, 4])))
    if rng.random() < 0.4:
        _put_text(
            image,
            lead,
            (margin[0], margin[1] + 0.04 * height + 8),
            0.03 * height + 8,
            colour,
            int(rng.choice(_TEXT_FONTS)),
        )
    return image


def _pleth(rng: np.random.Generator, seconds: float, fs: float, heart_rate: float) -> np.ndarray:
    """Pulse oximeter wave: a smooth upstroke and dicrotic notch per beat (monitors show it under ECG)."""
    t = np.arange(int(round(seconds * fs))) / fs
    phase = (t * heart_rate / 60 + rng.uniform()) % 1.0
    return np.exp(-(((phase - 0.25) / 0.1) ** 2)) + 0.4 * np.exp(-(((phase - 0.55) / 0.1) ** 2))


def _render_monitor(rng: np.random.Generator) -> np.ndarray:
    """Bedside monitor screen: dark background, coloured sweeping traces, numeric panel (HR etc.)."""
    width, height = _page_size(rng, False, (1.3, 1.8))
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _jitter(rng, [(0, 0, 0), (10, 14, 30), (20, 22, 24), (0, 20, 30)][int(rng.integers(0, 4))], 6)
    top_bar = int(height * rng.uniform(0.04, 0.08))
    _put_text(
        image,
        _fake_text(rng, 3),
        (8, top_bar * 0.75),
        top_bar * 0.45,
        (200, 200, 200),
        cv2.FONT_HERSHEY_SIMPLEX,
    )
    panel_x = int(width * rng.uniform(0.66, 0.8))
    if rng.random() < 0.4:  # dim screen grid
        step = rng.uniform(20, 45)
        image[top_bar:, _grid_positions(0, step, panel_x)] = _jitter(rng, (40, 45, 45), 10)
    heart_rate = rng.uniform(50, 140)
    n_ecg = int(rng.integers(1, 4))
    channels = [
        str(lead) for lead in rng.choice(["II", "I", "III", "V1", "V5", "aVF"], size=n_ecg, replace=False)
    ]
    with_pleth = rng.random() < 0.5
    colours = [(0, 235, 0), (255, 230, 0), (0, 225, 255), (235, 235, 235), (255, 80, 200)]
    seconds, fs = rng.uniform(4, 8), 250.0
    rhythm = make_rhythm(rng, seconds, heart_rate)
    rows = n_ecg + with_pleth
    row_h = (height - top_bar) / rows
    gap = rng.uniform(0.1, 0.9) * panel_x
    for r in range(rows):
        is_pleth = r == n_ecg
        signal = (
            _pleth(rng, seconds, fs, heart_rate)
            if is_pleth
            else ecg_signal(rng, seconds, fs, heart_rate, channels[r], rhythm)
        )
        colour = _jitter(rng, colours[2 if is_pleth else (0 if r == 0 else int(rng.integers(0, 5)))], 10)
        centre = top_bar + (r + 0.55) * row_h
        xs = 10 + np.arange(signal.size) / signal.size * (panel_x - 20)
        mid, span = (float(signal.max()) + float(signal.min())) / 2, max(float(np.ptp(signal)), 1.0)
        ys = centre - (signal - mid) / span * 0.7 * row_h
        keep, thickness = np.abs(xs - gap) > 12, int(rng.choice([1, 2, 2]))
        for part in (keep & (xs < gap), keep & (xs > gap)):  # the sweep's erase bar splits the trace
            if part.sum() > 1:
                _polyline(image, xs[part], ys[part], colour, thickness)
        _put_text(
            image,
            "Pleth" if is_pleth else channels[r],
            (14, top_bar + r * row_h + 18),
            11,
            colour,
            cv2.FONT_HERSHEY_SIMPLEX,
        )
    _draw_numeric_panel(image, rng, panel_x, top_bar, heart_rate)
    return image


def _draw_numeric_panel(
    image: np.ndarray, rng: np.random.Generator, panel_x: int, top: int, heart_rate: float
) -> None:
    """Monitor numbers: HR in the ECG colour and fake SpO2 / NIBP / RESP values."""
    height, width = image.shape[:2]
    items = [("HR", str(int(heart_rate)), (0, 235, 0))]
    extras = [
        ("SpO2", str(rng.integers(88, 100)), (0, 225, 255)),
        ("NIBP", f"{rng.integers(95, 150)}/{rng.integers(55, 95)}", (235, 235, 235)),
        ("RESP", str(rng.integers(10, 26)), (255, 230, 0)),
        ("TEMP", f"{rng.uniform(36, 38.5):.1f}", (255, 120, 120)),
    ]
    items += [extras[i] for i in sorted(rng.choice(len(extras), size=int(rng.integers(1, 4)), replace=False))]
    box_h = (height - top) / len(items)
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX]))
    for i, (name, value, colour) in enumerate(items):
        y = top + i * box_h
        cv2.line(image, (panel_x, int(y)), (width, int(y)), (90, 90, 90), 1)
        _put_text(image, name, (panel_x + 10, y + 0.2 * box_h), min(0.1 * box_h, 16), colour, font)
        size = min(0.42 * box_h, (width - panel_x) / (0.9 * max(len(value), 2)))
        _put_text(image, value, (panel_x + 0.15 * (width - panel_x), y + 0.75 * box_h), size, colour, font, 3)
    cv2.line(image, (panel_x, top), (panel_x, height), (90, 90, 90), 1)


_RENDERERS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "12lead_3x4": _render_3x4,
    "12lead_6x2": _render_6x2,
    "12lead_column": _render_column,
    "rhythm_strip": _render_rhythm_strip,
    "closeup": _render_closeup,
    "monitor": _render_monitor,
    "plain_plot": _render_plain_plot,
}


# --------------------------------------------------------------------------------------------- capture


def _as_photo(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone photo of the page or screen: table around it, perspective, uneven light, colour cast."""
    height, width = image.shape[:2]
    pad = (rng.uniform(0, 0.12, size=4) * (height, height, width, width)).astype(int)
    table = _jitter(
        rng, [(60, 45, 35), (120, 110, 100), (25, 25, 25), (180, 170, 150)][int(rng.integers(0, 4))], 20
    )
    photo = cv2.copyMakeBorder(image, *pad.tolist(), cv2.BORDER_CONSTANT, value=table)
    h, w = photo.shape[:2]
    matrix = homography(
        h,
        w,
        angle=rng.uniform(-6, 6),
        scale=rng.uniform(0.92, 1.04),
        corner_jitter=rng.uniform(-0.04, 0.04, size=(4, 2)),
    )
    photo = cv2.warpPerspective(
        photo, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=table
    )
    photo = cv2.multiply(photo, cv2.merge([_illumination(rng, h, w)] * 3), scale=1 / 255)
    cast = 1.0 - rng.uniform(0, 0.15, size=3)
    lut = np.clip(np.arange(256)[:, None] * cast + rng.uniform(-20, 15), 0, 255).astype(np.uint8)
    photo = cv2.LUT(photo, lut.reshape(256, 1, 3))
    if rng.random() < 0.3:
        _draw_creases(photo, rng)
    return photo


def _illumination(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Light falling on the page (uint8, 255 = full): a gradient, maybe a vignette and a soft shadow.

    Made at 1/8 resolution and enlarged: lighting is smooth, and this keeps a photo under a few ms.
    """
    small_h, small_w = height // 8 + 2, width // 8 + 2
    ys, xs = np.mgrid[0 : 1 : small_h * 1j, 0 : 1 : small_w * 1j].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(direction) * xs + np.sin(direction) * ys
    light = 1 - rng.uniform(0.1, 0.45) * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    if rng.random() < 0.4:
        light *= 1 - rng.uniform(0.1, 0.4) * 2 * ((xs - 0.5) ** 2 + (ys - 0.5) ** 2)
    if rng.random() < 0.35:  # a shadow of a hand or phone across part of the picture
        shadow = np.ones_like(light)
        corners = (rng.uniform(-0.2, 1.2, size=(4, 2)) * (small_w, small_h)).astype(np.int32)
        cv2.fillConvexPoly(shadow, cv2.convexHull(corners), float(rng.uniform(0.6, 0.85)))
        light *= cv2.GaussianBlur(shadow, (0, 0), 0.03 * small_w)
    return cv2.resize(
        np.clip(light * 255, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR
    )


def _draw_creases(image: np.ndarray, rng: np.random.Generator) -> None:
    """A few light and dark fold lines, as on handled paper."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(1, 5))):
        p0, p1 = (rng.uniform(0, 1, 2) * (w, h)).astype(int), (rng.uniform(0, 1, 2) * (w, h)).astype(int)
        tone = (255, 255, 255) if rng.random() < 0.5 else (90, 90, 90)
        overlay = image.copy()
        cv2.line(overlay, tuple(p0.tolist()), tuple(p1.tolist()), tone, int(rng.integers(1, 4)), cv2.LINE_AA)
        cv2.addWeighted(overlay, rng.uniform(0.15, 0.4), image, 1 - rng.uniform(0.15, 0.4), 0, dst=image)


def _add_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Sensor grain on the brightness, slightly correlated (made at half size), added with saturation."""
    h, w = image.shape[:2]
    grain = rng.standard_normal((h // 2 + 1, w // 2 + 1), dtype=np.float32) * sigma
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.add(image, cv2.merge([grain] * 3), dtype=cv2.CV_8U)


def _capture(image: np.ndarray, rng: np.random.Generator, family: str) -> np.ndarray:
    """How the picture reached the app: digital file, flatbed scan or phone photo."""
    photo_chance = 0.2 if family in ("plain_plot",) else 0.35
    mode = str(
        rng.choice(
            ["digital", "scan", "photo"], p=[0.65 - photo_chance / 2, 0.35 - photo_chance / 2, photo_chance]
        )
    )
    if mode == "scan":
        h, w = image.shape[:2]
        image = warp(
            image, homography(h, w, angle=rng.uniform(-2, 2), corner_jitter=rng.uniform(-0.01, 0.01, (4, 2)))
        )
    elif mode == "photo":
        image = _as_photo(image, rng)
    elif rng.random() < 0.1:  # a phone screenshot: black bars around the picture
        bars = (rng.uniform(0, 0.08, size=4) * np.array(image.shape[:2]).repeat(2)).astype(int).tolist()
        image = cv2.copyMakeBorder(image, *bars, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if mode != "digital" or rng.random() < 0.2:
        image = blur(image, rng.uniform(0.3, 1.3))
    if mode != "digital":
        image = _add_noise(image, rng, rng.uniform(1, 6))
    if mode != "digital" or rng.random() < 0.5:
        image = jpeg(image, int(rng.integers(35, 92)))
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------------------------- public


SYNTHETIC_SOURCE = "synthetic"  # the `source` of rendered training samples
_SEED_BASE = 1_000_000  # training renders use seeds from here on: apart from the tests' small seeds


def synthetic_seeds(n: int) -> range:
    """The seeds of the first `n` training renders: the same set for every ensemble member and run."""
    return range(_SEED_BASE, _SEED_BASE + n)


def pick_family(seed: int) -> str:
    """The layout family `render_ecg(seed)` draws when no family is given."""
    rng = np.random.default_rng([seed, 1])
    return FAMILIES[int(rng.choice(len(FAMILIES), p=_FAMILY_WEIGHTS / _FAMILY_WEIGHTS.sum()))]


def render_ecg(seed: int, family: str | None = None) -> np.ndarray:
    """An RGB uint8 picture of an ECG in a random layout; the same seed always gives the same picture."""
    family = pick_family(seed) if family is None else family
    if family not in _RENDERERS:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng([seed, 2])
    return _capture(_RENDERERS[family](rng), rng, family)


@dataclass(frozen=True)
class DrawnRate:
    """The rate a rendered printout shows: 60 / the median RR of the beats drawn within its seconds
    (how `grid_rate` reads a rate), its paper's grid ("lines", "dots", "major_only", "none") and the
    grid's pixels per millimetre as drawn (before the picture was scanned or photographed)."""

    heart_rate_bpm: float
    grid: str
    px_per_mm: float


def render_with_rate(seed: int, family: str) -> tuple[np.ndarray, DrawnRate | None]:
    """`render_ecg(seed, family)` and the rate it shows; None for a page without beats (a ventricular
    fibrillation strip) or a family not drawn on paper. The picture is the same as `render_ecg`'s."""
    drawn: list[tuple[np.ndarray, float, Paper, float]] = []
    token = _DRAWN.set(drawn)
    try:
        image = render_ecg(seed, family)
    finally:
        _DRAWN.reset(token)
    if not drawn:
        return image, None
    times, seconds, paper, px_per_mm = drawn[0]
    shown = times[(times >= 0) & (times <= seconds)]
    if shown.size < 2:
        return image, None
    rate = 60.0 / float(np.median(np.diff(shown)))
    return image, DrawnRate(heart_rate_bpm=rate, grid=paper.grid, px_per_mm=px_per_mm)
