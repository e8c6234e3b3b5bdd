"""Image-quality warnings for an upload: blurry, low-resolution, a photographed page that had to be
straightened, or not showing the whole page.

Warnings, not rejections: the image is still analysed, and the user is told why the result may be
less reliable and how to take a better picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ecg_app.serving.page import find_page

MIN_WIDTH, MIN_HEIGHT = 800, 500
# Variance of the Laplacian at 1100 px width. Measured on ../shared/data: the 5th percentile of real
# printouts is ~280, a Gaussian blur of sigma 3 brings the median to ~4, sigma 1.5 to ~38.
MIN_SHARPNESS = 15.0
# A full 12-lead printout page is about 1.41:1 (A4/letter landscape).
ASPECT_RANGE = (1.15, 1.75)


@dataclass(frozen=True)
class QualityWarning:
    code: str
    message: str


def sharpness(rgb: np.ndarray) -> float:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = 1100 / gray.shape[1]
    gray = cv2.resize(
        gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    )
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def assess(rgb: np.ndarray) -> list[QualityWarning]:
    """Everything about this picture that may make the result less reliable."""
    height, width = rgb.shape[:2]
    warnings = []
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        warnings.append(
            QualityWarning(
                "low_resolution",
                f"The image is small ({width}x{height} px); fine ECG detail may be lost. "
                f"Use a scan or photo of at least {MIN_WIDTH}x{MIN_HEIGHT} px.",
            )
        )
    if sharpness(rgb) < MIN_SHARPNESS:
        warnings.append(
            QualityWarning(
                "blurry",
                "The image looks blurred. Hold the camera steady, focus on the traces and retake it.",
            )
        )
    if find_page(rgb) is not None:
        warnings.append(
            QualityWarning(
                "page_straightened",
                "The page was found in the photo and straightened before it was read (the explanation "
                "shows it as read). Check that the whole printout is there; a flat scan is more reliable.",
            )
        )
    aspect = width / height
    if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        warnings.append(
            QualityWarning(
                "unusual_framing",
                f"The picture's shape ({aspect:.2f}:1) is not that of a whole printout page (about 1.41:1 "
                "landscape). Make sure the whole page is in the frame, upright and not cropped.",
            )
        )
    return warnings
