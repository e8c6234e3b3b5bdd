"""Hand-drawn line charts, bar charts and text pages through a model: how many come out Non-ECG.

A probe drawn here with OpenCV, independent of `training.synth_charts` (which the detector may be trained
on), so it checks charts the networks have not seen the like of. Seed 7 gives the figures in the model
card ("Line charts are not ECGs").

    python benchmarks/probe_line_charts.py [--model model] [--seed 7]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ecg_app.config import DEFAULT_MODEL_DIR
from ecg_app.labels import NON_ECG
from ecg_app.serving.classifier import Classifier

FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_chart(rng: np.random.Generator, grid: bool, n_lines: int, kind: str) -> np.ndarray:
    """Axes, a title, tick labels and `n_lines` series: random walks, noisy sines or loss-like curves."""
    h, w = int(rng.integers(500, 900)), int(rng.integers(800, 1400))
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = 80, 40, w - 30, h - 70
    if grid:
        for x in np.linspace(x0, x1, 11).astype(int):
            cv2.line(img, (x, y0), (x, y1), (225, 225, 225), 1)
        for y in np.linspace(y0, y1, 9).astype(int):
            cv2.line(img, (x0, y), (x1, y), (225, 225, 225), 1)
    cv2.line(img, (x0, y1), (x1, y1), (0, 0, 0), 2)
    cv2.line(img, (x0, y0), (x0, y1), (0, 0, 0), 2)
    xs = np.arange(x0, x1)
    for _ in range(n_lines):
        if kind == "walk":
            v = np.cumsum(rng.normal(0, 1, len(xs)))
        elif kind == "sine":
            v = np.sin(xs / rng.uniform(10, 60) + rng.uniform(0, 6)) + 0.3 * rng.normal(0, 1, len(xs))
        else:  # a training loss
            v = -np.exp(-np.arange(len(xs)) / rng.uniform(50, 300)) + 0.02 * rng.normal(0, 1, len(xs))
        v = (v - v.min()) / (np.ptp(v) + 1e-9)
        ys = (y1 - 10 - v * (y1 - y0 - 20)).astype(int)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        points = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(img, [points], False, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    cv2.putText(img, "Training loss per epoch", (w // 3, 30), FONT, 0.8, (0, 0, 0), 2)
    for i, x in enumerate(np.linspace(x0, x1, 6).astype(int)):
        cv2.putText(img, str(i * 20), (x - 10, y1 + 25), FONT, 0.5, (0, 0, 0), 1)
    return img


def document(rng: np.random.Generator) -> np.ndarray:
    h, w = 1400, 1000
    img = np.full((h, w, 3), 250, np.uint8)
    words = "the patient was seen in clinic and the results of the study are reported below with the methods"
    y = 80
    while y < h - 60:
        cv2.putText(
            img, " ".join(rng.choice(words.split(), 10)), (60, y), FONT, 0.7, (20, 20, 20), 1, cv2.LINE_AA
        )
        y += int(rng.integers(30, 45))
    return img


def bars(rng: np.random.Generator) -> np.ndarray:
    h, w = 600, 900
    img = np.full((h, w, 3), 255, np.uint8)
    for i in range(int(rng.integers(4, 12))):
        x, top = 80 + i * 60, int(rng.integers(100, 520))
        cv2.rectangle(img, (x, top), (x + 40, 540), tuple(int(c) for c in rng.integers(0, 220, 3)), -1)
    cv2.line(img, (70, 540), (880, 540), (0, 0, 0), 2)
    return img


def probes(seed: int) -> dict[str, list[np.ndarray]]:
    """The probe sets, drawn in this order from one generator (BGR, as OpenCV draws)."""
    rng = np.random.default_rng(seed)
    return {
        "line charts, grid, random walks": [
            line_chart(rng, True, int(rng.integers(1, 4)), "walk") for _ in range(15)
        ],
        "line charts, no grid, noisy sines": [
            line_chart(rng, False, int(rng.integers(1, 4)), "sine") for _ in range(15)
        ],
        "line charts, grid, noisy sines": [
            line_chart(rng, True, int(rng.integers(1, 4)), "sine") for _ in range(15)
        ],
        "loss curves": [line_chart(rng, bool(rng.integers(0, 2)), 2, "loss") for _ in range(10)],
        "text documents": [document(rng) for _ in range(10)],
        "bar charts": [bars(rng) for _ in range(10)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    classifier = Classifier(args.model)
    print(f"model {classifier.version}")
    for name, images in probes(args.seed).items():
        predictions = classifier.predict_batch([cv2.cvtColor(i, cv2.COLOR_BGR2RGB) for i in images])
        calls = Counter(p.label for p in predictions)
        print(f"{name:34s} {calls[NON_ECG]:3d} of {len(images)} Non-ECG; {dict(sorted(calls.items()))}")


if __name__ == "__main__":
    main()
