"""A third opinion on "is this an ECG at all": a small binary CNN on the whole picture.

The diagnosis network sees only the reference template's trace area through the brightest colour
channel, which is right for diagnosis and wrong for recognising other layouts: a red trace on white
vanishes, and a rhythm strip is cropped away. Teaching that network rendered ECGs of many layouts
cost diagnosis accuracy (docs/experiments.md, "training on rendered ECGs"), so this job gets its own network:
whole picture, colour kept, trained on real ECGs plus renders (`ecg_app.training.synth_ecg`) against the
non-ECG pictures. `classifier.decide` calls Non-ECG only when the softmax, the embedding gate and this
detector all agree.

A photo of a sheet of paper lying on a desk is read twice, as uploaded and as the straightened sheet
(`page.straighten`), and counts as an ECG only if both views do: the whole photo alone took printed
charts on a desk for ECGs, the cut-out sheet alone took bright patches of other photos for them
(docs/experiments.md, "The detector reads the sheet too").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ecg_app.serving.page import straighten

DETECTOR_FILE = "ecg_detector.keras"
DETECTOR_SHAPE: tuple[int, int, int] = (224, 224, 3)


def detector_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (224, 224, 3) float32 in [0, 1]: the whole picture, squashed to a square
    (strips and pages alike), the one input transform of the detector's training and serving."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    height, width = DETECTOR_SHAPE[:2]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def detector_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    return (
        np.stack([detector_input(image) for image in images])
        if images
        else np.zeros((0, *DETECTOR_SHAPE), np.float32)
    )


def views(rgb: np.ndarray) -> list[np.ndarray]:
    """The pictures the detector reads for one upload: the upload, and its straightened sheet when a
    sheet of paper is found in it (a scan or a screenshot has none)."""
    sheet = straighten(rgb)
    return [rgb] if sheet is rgb else [rgb, sheet]


def ecg_probability(
    detect: Callable[[np.ndarray], np.ndarray], images: Sequence[np.ndarray], batch_size: int = 16
) -> np.ndarray:
    """P(ECG) of each RGB uint8 image: the lowest of the detector's calls (`detect`: a batch of
    `detector_batch` pictures -> (N, 1)) on its `views`. Serving and the threshold's choice on validation
    (`detector_fit`) both read pictures through it."""
    seen = [views(image) for image in images]
    flat = [view for picture in seen for view in picture]
    calls = [
        np.asarray(detect(detector_batch(flat[start : start + batch_size])))[:, 0]
        for start in range(0, len(flat), batch_size)
    ]
    if not calls:
        return np.zeros(0)
    owner = np.repeat(np.arange(len(images)), [len(picture) for picture in seen])
    lowest = np.full(len(images), np.inf)
    np.minimum.at(lowest, owner, np.concatenate(calls).astype(np.float64))
    return lowest


def choose_threshold(p_ecg: np.ndarray, is_ecg: np.ndarray) -> float:
    """The P(ECG) from which the detector overrules a Non-ECG call, chosen on validation pictures.

    The detector can only turn a Non-ECG call into an ECG one, so its one possible error is a false
    "ECG": the cut keeps every validation non-ECG out, in the middle of the gap above the highest one
    (a balanced-accuracy cut let a photo through to rescue one ECG; docs/experiments.md)."""
    p_ecg, is_ecg = np.asarray(p_ecg, dtype=float), np.asarray(is_ecg, dtype=bool)
    if is_ecg.all() or not is_ecg.any():
        raise ValueError("choosing a threshold needs both ECGs and non-ECGs")
    highest = p_ecg[~is_ecg].max()
    above = p_ecg[is_ecg & (p_ecg > highest)]
    return float((highest + (above.min() if above.size else 1.0)) / 2)
