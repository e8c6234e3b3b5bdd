"""Shared fixtures: synthetic printouts made here, and the real data beside the checkout when present."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from ecg_app.config import REPO_ROOT, Settings
from ecg_app.store import open_store
from ecg_app.store.db import create_engine_for

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MODEL_DIR = REPO_ROOT / "model"
# The history tests (store, migrations, reports, history CLI) run on SQLite, and on PostgreSQL as well
# when this names a database they may wipe; `make test` starts a throwaway server (.ci/postgres.sh).
POSTGRES_URL = os.environ.get("ECG_APP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


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


def decoded(path: Path) -> np.ndarray:
    """A stored picture's pixels (RGB)."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


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


def database_url_for(tmp_path: Path, backend: str = "sqlite") -> str:
    """A database with nothing in it: a new SQLite file, or the test PostgreSQL database wiped clean."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ecg.sqlite3'}"
    engine = create_engine_for(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return POSTGRES_URL


def settings_for(tmp_path: Path, backend: str = "sqlite") -> Settings:
    """Settings with an empty data dir in tmp_path and an empty database of the backend."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url_for(tmp_path, backend))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each test that uses it runs once per database backend."""
    return request.param


@pytest.fixture
def store(tmp_path, backend):
    """An empty analysis history (database + image folder), on each backend."""
    with open_store(settings_for(tmp_path, backend)) as opened:
        yield opened
