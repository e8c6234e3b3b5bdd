"""Shared fixtures: synthetic printouts made here, and the real data beside the checkout when present."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ecg_app.config import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MODEL_DIR = REPO_ROOT / "model"


def synthetic_printout(width: int = 1106, height: int = 786, seed: int = 0) -> np.ndarray:
    """An RGB page in the reference template's layout: header text, pink grid, four rows of traces."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 255, np.uint8)
    for x in range(0, width, max(width // 110, 2)):
        page[:, x] = (240, 200, 200)
    for y in range(0, height, max(width // 110, 2)):
        page[y, :] = (240, 200, 200)
    cv2.putText(
        page,
        f"ID : {rng.integers(100000, 999999)}  HR 72",
        (20, int(0.05 * height)),
        cv2.FONT_HERSHEY_SIMPLEX,
        width / 1500,
        (0, 0, 0),
        2,
    )
    xs = np.arange(int(0.04 * width), int(0.97 * width))
    for row in range(4):
        base = int(height * (0.27 + 0.18 * row))
        phase = rng.uniform(0, 2 * np.pi)
        ys = base - (np.sin(xs / width * 40 + phase) ** 15 * height * 0.05).astype(int)
        pts = np.stack([xs, ys], axis=1).astype(np.int32)
        cv2.polylines(page, [pts], False, (0, 0, 0), max(2, width // 500), cv2.LINE_AA)
    return page


def encode(rgb: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def printout() -> np.ndarray:
    return synthetic_printout()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "mendeley-ecg").is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture
def shipped_model() -> Path:
    if not (MODEL_DIR / "model.json").is_file():
        pytest.skip("no trained model in model/ yet")
    return MODEL_DIR
