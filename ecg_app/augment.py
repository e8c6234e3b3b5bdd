"""Capture-like augmentation of RGB images: how ECG printouts really reach the app.

Small rotations, perspective, crop/scale shifts, brightness, contrast, paper tint, uneven lighting,
blur, downscaling and JPEG artefacts. No flips: they would move leads. Applied to the RGB picture
before the shared preprocessing, so the network sees augmented pictures exactly as it sees uploads.
"""

from __future__ import annotations

import cv2
import numpy as np


def random_homography(height: int, width: int, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Rotation (<= 3 deg), scale (0.94-1.06), shift (<= 3%) and corner jitter (<= 2.5%) as one warp."""
    angle = rng.uniform(-3, 3) * strength
    scale = 1 + rng.uniform(-0.06, 0.06) * strength
    centre = (width / 2 + rng.uniform(-0.03, 0.03) * width * strength,
              height / 2 + rng.uniform(-0.03, 0.03) * height * strength)
    affine = np.vstack([cv2.getRotationMatrix2D(centre, angle, scale), [0, 0, 1]])
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = rng.uniform(-0.025, 0.025, size=(4, 2)) * [width, height] * strength
    perspective = cv2.getPerspectiveTransform(corners, np.float32(corners + jitter))
    return perspective @ affine


def augment(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """One random capture-like variant of an (H, W, 3) uint8 image."""
    height, width = rgb.shape[:2]
    image = cv2.warpPerspective(
        rgb, random_homography(height, width, rng, strength), (width, height),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    ).astype(np.float32)
    tint = 1 - rng.uniform(0, 0.12, size=3) * (rng.random() < 0.5)
    contrast = rng.uniform(0.75, 1.15)
    brightness = rng.uniform(-25, 20)
    image = (image - 128) * contrast + 128 + brightness
    image *= tint
    if rng.random() < 0.4:  # uneven lighting: a linear gradient across the page
        direction = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = (np.cos(direction) * xs / width + np.sin(direction) * ys / height)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        image *= (1 - rng.uniform(0.1, 0.35) * ramp)[:, :, None]
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.3))
    if rng.random() < 0.3:
        factor = rng.uniform(0.55, 0.9)
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.35:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 85))])
        if ok:
            image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return image
