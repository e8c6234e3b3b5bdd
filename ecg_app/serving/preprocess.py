"""RGB image -> model input. The one preprocessing function shared by training and serving.

Why these steps:
- Straighten a photographed page first (`page.straighten`): a photo that shows the desk around the
  printout has its sheet found and warped flat, so the crop below lands where it does on a scan. A
  picture that is all page, such as every scan in the dataset, passes unchanged.
- Move the page so the trace area's printed frame sits where the reference template has it
  (`trace_area.register`): the same traces printed with other margins are cropped alike.
- Crop to the trace area of the printout (relative coordinates of the reference template), so the
  printed header (patient ID, date, heart rate) and footer (machine settings) never reach the network
  and cannot become a shortcut. Relative, so it does not depend on the input resolution.
- Take the brightest colour channel: the pink/red grid and paper tint are bright in at least one
  channel, black ink is dark in all, so the grid fades and the traces stay.
- Divide by a local background estimate (a morphological closing), which removes uneven lighting and
  shadows from phone photos; the result is "ink darkness" in [0, 1], traces high and paper 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ecg_app.serving.page import straighten
from ecg_app.serving.trace_area import register

# Trace area of the reference printout: x 68-2177, y 283-1518 on a 2213x1572 page.
TRACE_BOX: tuple[float, float, float, float] = (68 / 2213, 283 / 1572, 2177 / 2213, 1518 / 1572)
INPUT_HEIGHT = 320
INPUT_WIDTH = 544
INPUT_SHAPE: tuple[int, int, int] = (INPUT_HEIGHT, INPUT_WIDTH, 1)
_BACKGROUND_KERNEL = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel box (top, bottom, left, right) of the trace area for an image of this size."""
    left, top, right, bottom = TRACE_BOX
    return round(top * height), round(bottom * height), round(left * width), round(right * width)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")


def page_as_read(rgb: np.ndarray) -> np.ndarray:
    """The page as the networks read it: a photographed sheet straightened, then moved so its trace
    area's frame sits where the reference template has it. Most pictures come back as they are."""
    return register(straighten(rgb))


def preprocess(rgb: np.ndarray, size: tuple[int, int] = (INPUT_HEIGHT, INPUT_WIDTH)) -> np.ndarray:
    """Map an (H, W, 3) uint8 RGB image to an (h, w, 1) float32 ink map in [0, 1]: `page_as_read`,
    then `ink_map`."""
    _check_rgb(rgb)
    return ink_map(page_as_read(rgb), size)


def ink_map(rgb: np.ndarray, size: tuple[int, int] = (INPUT_HEIGHT, INPUT_WIDTH)) -> np.ndarray:
    """The trace area of a picture taken as the whole page, as an (h, w, 1) ink map."""
    _check_rgb(rgb)
    top, bottom, left, right = crop_box(*rgb.shape[:2])
    crop = rgb[top:bottom, left:right]
    # Pairwise maxima: identical to crop.max(axis=2) and ~20x faster on a full-size scan.
    brightest = np.maximum(np.maximum(crop[:, :, 0], crop[:, :, 1]), crop[:, :, 2])
    height, width = size
    small = cv2.resize(brightest, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, _BACKGROUND_KERNEL)
    ink = 1.0 - small / np.maximum(background, 1.0)
    return np.clip(ink, 0.0, 1.0)[:, :, None]


def preprocess_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack preprocessed images into one (N, h, w, 1) batch."""
    return (
        np.stack([preprocess(image) for image in images])
        if images
        else np.zeros((0, *INPUT_SHAPE), np.float32)
    )
