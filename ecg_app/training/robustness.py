"""Fixed capture-like degradations for the robustness evaluation (test split, metrics.json)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from ecg_app.labels import CLASSES, NON_ECG
from ecg_app.serving.classifier import STATUS_NEEDS_REVIEW
from ecg_app.serving.preprocess import TRACE_BOX
from ecg_app.training import augment


def _rotate(angle: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda image: augment.warp(image, augment.homography(*image.shape[:2], angle=angle))


def _perspective(image: np.ndarray) -> np.ndarray:
    """A photo taken slightly from below and the left: top edge narrower, one side shorter."""
    jitter = np.array([[0.04, 0.03], [-0.04, 0.0], [0.0, 0.0], [0.0, -0.03]])
    return augment.warp(image, augment.homography(*image.shape[:2], corner_jitter=jitter))


def _downscale_to_800(image: np.ndarray) -> np.ndarray:
    import cv2

    scale = 800 / image.shape[1]
    if scale >= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _blank_header(image: np.ndarray) -> np.ndarray:
    """White out everything above the trace area: patient ID, date, heart rate."""
    blanked = image.copy()
    blanked[: int(TRACE_BOX[1] * image.shape[0])] = 255
    return blanked


def _desk(height: int, width: int) -> np.ndarray:
    """A wooden desk top (the same every time): brown, with streaks of grain along its width."""
    import cv2

    grain = np.random.default_rng(0).random((12, 48)).astype(np.float32)
    streaks = cv2.resize(grain, (width, height), interpolation=cv2.INTER_CUBIC)
    shade = 0.75 + 0.25 * np.clip(streaks, 0, 1)[:, :, None]
    return (np.float32([150, 105, 70]) * shade).astype(np.uint8)


def _on_a_desk(image: np.ndarray) -> np.ndarray:
    """A phone photo of the printout lying on a desk: the page fills about three quarters of the frame's
    width, seen a little from one side, under a lighting gradient."""
    import cv2

    height, width = image.shape[:2]
    frame_h, frame_w = round(1.3 * height), round(1.3 * width)
    left, top = (frame_w - width) / 2, (frame_h - height) / 2
    page = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    seen = page + np.float32(
        [[left + 0.03 * width, top], [left, top + 0.02 * height], [left, top], [left, top]]
    )
    matrix = cv2.getPerspectiveTransform(page, seen)
    photo = cv2.warpPerspective(image, matrix, (frame_w, frame_h), flags=cv2.INTER_LINEAR)
    sheet = cv2.warpPerspective(np.ones((height, width), np.float32), matrix, (frame_w, frame_h))[:, :, None]
    photo = (photo * sheet + _desk(frame_h, frame_w) * (1 - sheet)).astype(np.uint8)
    return augment.lighting_gradient(photo, np.pi / 6, 0.25)


def _another_template(image: np.ndarray) -> np.ndarray:
    """The trace area on another hospital's page (`augment.reprinted`: page colour, title block, logo,
    frame, footer), drawn from the picture's own bytes, so each image gets the same page every run."""
    seed = int.from_bytes(hashlib.md5(image.tobytes()).digest()[:8], "little")
    return augment.reprinted(image, np.random.default_rng(seed))


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rotate +5 deg": _rotate(5.0),
    "rotate -5 deg": _rotate(-5.0),
    "perspective warp": _perspective,
    "blur (sigma 1.5)": lambda image: augment.blur(image, 1.5),
    "JPEG quality 30": lambda image: augment.jpeg(image, 30),
    "downscale to 800 px wide": _downscale_to_800,
    "lighting gradient (40%)": lambda image: augment.lighting_gradient(image, np.pi / 4, 0.4),
    "header blanked": _blank_header,
    "photographed on a desk": _on_a_desk,
    "printed on another template": _another_template,
}


def robustness_table(
    predict_batch,
    images: list[np.ndarray],
    y_true: np.ndarray,
    other_layout: list[np.ndarray] | None = None,
) -> dict:
    """Accuracy of the decided class (ECG gate included) on clean and degraded copies of the same images,
    each drop in points, and the share of results that would be marked "needs review".

    With `other_layout` (unlabelled ECGs of other layouts), each row also has the share of them called
    Non-ECG: photos of other machines' printouts must stay ECGs, not only clean scans of them."""

    def score(degrade) -> dict:
        predictions = predict_batch([degrade(image) for image in images])
        labels = np.array([CLASSES.index(p.label) for p in predictions])
        row = {
            "accuracy": float((labels == y_true).mean()),
            "needs_review": float(np.mean([p.status == STATUS_NEEDS_REVIEW for p in predictions])),
        }
        if other_layout:
            called = [p.label == NON_ECG for p in predict_batch([degrade(i) for i in other_layout])]
            row["other_layout_called_non_ecg"] = float(np.mean(called))
        return row

    rows = {name: score(degrade) for name, degrade in {"clean": lambda image: image, **DEGRADATIONS}.items()}
    clean = rows["clean"]["accuracy"]
    # Accuracy, then its drop, then the rest: the column order of the Performance tab table.
    return {
        name: {"accuracy": row["accuracy"], "drop_points": round(100 * (clean - row["accuracy"]), 2), **row}
        for name, row in rows.items()
    }
