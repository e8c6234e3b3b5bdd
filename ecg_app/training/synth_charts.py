"""Synthetic line charts of time series that are not ECGs: negatives for the ECG detector.

Why: the detector learnt "an ECG" from printouts and from renders of many layouts (`synth_ecg`), including
bare line plots of a heartbeat, against real non-ECG pictures of which few are charts. So a wiggly line
chart (a random walk such as a price history, a noisy seasonal series) looked to it like an ECG plot:
trained without these charts, it overruled the page networks and the gate for 15 of 45 hand-drawn ones
(docs/experiments.md, "Line charts are not ECGs"). These charts show it the same kind of picture without a
heartbeat: axes, ticks, titles, legends and one to four series of random walks, seasonal sums of sines,
autoregressive noise or steps, drawn with OpenCV from a seed (reproducible, no downloads).

Public API: `render_chart(seed)`, `chart_seeds(n)` (the training seeds), `CHART_KINDS`.
"""

from __future__ import annotations

import cv2
import numpy as np

from ecg_app.training.augment import blur, jpeg

CHART_KINDS: tuple[str, ...] = ("walk", "seasonal", "noise", "steps")
_PALETTE = (  # matplotlib's tab10 and a few plain colours, RGB
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (0, 0, 0), (220, 0, 0), (0, 0, 200),
)  # fmt: skip
_WORDS = ("revenue", "price", "index", "sensor", "load", "demand", "count", "rate", "weekly", "trend")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SEED_BASE = 5_000_000  # training charts; probes and tests use other seeds


def chart_seeds(n: int) -> range:
    """The seeds of the first `n` training charts: the same for every detector member and run."""
    return range(_SEED_BASE, _SEED_BASE + n)


def _series(kind: str, points: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(points, dtype=float)
    if kind == "walk":
        values = np.cumsum(rng.normal(rng.normal(0, 0.05), 1, points))
    elif kind == "seasonal":
        values = sum(
            rng.uniform(0.3, 1) * np.sin(2 * np.pi * t / rng.uniform(8, points / 2) + rng.uniform(0, 6))
            for _ in range(int(rng.integers(1, 4)))
        ) + rng.normal(0, rng.uniform(0.05, 0.5), points)
    elif kind == "noise":
        phi, values = rng.uniform(0, 0.95), np.zeros(points)
        shocks = rng.normal(0, 1, points)
        for i in range(1, points):
            values[i] = phi * values[i - 1] + shocks[i]
    else:
        values = np.repeat(rng.normal(0, 1, points // 10 + 1), 10)[:points] + rng.normal(0, 0.05, points)
    return (values - values.min()) / (np.ptp(values) + 1e-9)


def _text(image: np.ndarray, text: str, at: tuple[int, int], scale: float, colour) -> None:
    cv2.putText(image, text, at, _FONT, scale, colour, 1, cv2.LINE_AA)


def render_chart(seed: int) -> np.ndarray:
    """An RGB uint8 line chart; the same seed always gives the same picture."""
    rng = np.random.default_rng([seed, 3])
    height, width = int(rng.integers(300, 900)), int(rng.integers(500, 1400))
    dark = rng.random() < 0.1
    ink = (230, 230, 230) if dark else (30, 30, 30)
    image = np.full((height, width, 3), 30 if dark else int(rng.choice([255, 255, 248, 240])), np.uint8)
    left, top = int(rng.integers(50, 110)), int(rng.integers(40, 80))
    right, bottom = width - int(rng.integers(20, 60)), height - int(rng.integers(45, 80))
    grid = rng.choice(["none", "light", "dense"])
    for count, colour in (("light", (225, 225, 225)), ("dense", (235, 235, 235))):
        if grid == count:
            lines = 6 if count == "light" else 16
            shade = (70, 70, 70) if dark else colour
            for x in np.linspace(left, right, lines).astype(int):
                cv2.line(image, (x, top), (x, bottom), shade, 1)
            for y in np.linspace(top, bottom, max(lines * 2 // 3, 3)).astype(int):
                cv2.line(image, (left, y), (right, y), shade, 1)
    if rng.random() < 0.5:
        cv2.rectangle(image, (left, top), (right, bottom), ink, 1)
    else:
        cv2.line(image, (left, bottom), (right, bottom), ink, 2)
        cv2.line(image, (left, top), (left, bottom), ink, 2)
    for k, x in enumerate(np.linspace(left, right, int(rng.integers(4, 9))).astype(int)):
        cv2.line(image, (x, bottom), (x, bottom + 6), ink, 1)
        _text(image, str(int(k * rng.choice([1, 5, 10, 50]))), (x - 8, bottom + 24), 0.45, ink)
    for k, y in enumerate(np.linspace(bottom, top, int(rng.integers(3, 7))).astype(int)):
        _text(image, f"{k * rng.choice([0.2, 1, 10, 100]):g}", (max(left - 45, 2), y + 5), 0.45, ink)
    title = " ".join(rng.choice(_WORDS, int(rng.integers(1, 4))))
    _text(image, title, (left + int(rng.integers(0, 120)), top - 15), float(rng.uniform(0.5, 0.9)), ink)
    kind = rng.choice(CHART_KINDS)
    points = int(rng.integers(40, 1500))
    xs = np.linspace(left + 2, right - 2, points)
    colours = rng.permutation(len(_PALETTE))
    series = int(rng.integers(1, 5))
    for s in range(series):
        values = _series(str(kind if rng.random() < 0.7 else rng.choice(CHART_KINDS)), points, rng)
        low, high = sorted(rng.uniform(0.02, 0.98, 2)) if series > 1 else (0.05, 0.95)
        ys = bottom - (low + values * max(high - low, 0.2)) * (bottom - top)
        colour = _PALETTE[int(colours[s])]
        cv2.polylines(
            image,
            [np.stack([xs, ys], 1).astype(np.int32)],
            False,
            colour,
            int(rng.integers(1, 4)),
            cv2.LINE_AA,
        )
        if points < 80 and rng.random() < 0.5:
            for x, y in zip(xs.astype(int), ys.astype(int), strict=True):
                cv2.circle(image, (x, y), 3, colour, -1, cv2.LINE_AA)
    if series > 1 and rng.random() < 0.6:
        x0, y0 = right - 150, top + 10
        for s in range(series):
            colour = _PALETTE[int(colours[s])]
            cv2.line(image, (x0, y0 + 20 * s + 10), (x0 + 30, y0 + 20 * s + 10), colour, 2)
            _text(image, str(rng.choice(_WORDS)), (x0 + 38, y0 + 20 * s + 15), 0.45, ink)
    if rng.random() < 0.3:
        image = blur(image, rng.uniform(0.3, 1.0))
    return jpeg(image, int(rng.integers(40, 95))) if rng.random() < 0.6 else image
