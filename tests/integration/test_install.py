"""A plain (non-editable) install works from anywhere: the built wheel carries the shipped model, the
report templates and the migrations, so `ecg-app` run from another folder classifies, stores and writes a
PDF without the repository.

The wheel goes into a fresh venv; the project's dependencies come from this test run's environment
through a .pth line (a path line does not run that environment's .pth files, so its editable install of
ecg_app stays out of sight).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ecg_app.classifier import get_classifier
from ecg_app.config import REPO_ROOT
from ecg_app.intake import load_image
from ecg_app.ui.analyze_tab import EXAMPLES_DIR

pytestmark = pytest.mark.slow
EXAMPLE = EXAMPLES_DIR / "MI(19).jpg"


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The venv's bin folder, with the wheel built from this checkout installed in it."""
    root = tmp_path_factory.mktemp("install")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(REPO_ROOT)], root, env)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    python = str(venv / "bin" / "python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env)
    (Path(site.strip()) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel = next((root / "dist").glob("ecg_app-*.whl"))
    _run([*pip, "--python", python, "install", "-q", "--no-deps", str(wheel)], root, env)
    return venv / "bin"


def test_the_installed_package_runs_without_the_repository(installed, tmp_path):
    env = {**os.environ, "ECG_APP_DATA_DIR": str(tmp_path / "data")}
    env.pop("ECG_APP_MODEL_DIR", None)
    env.pop("ECG_APP_DATABASE_URL", None)
    where = _run(
        [str(installed / "python"), "-c", "import ecg_app.config as c; print(c.DEFAULT_MODEL_DIR)"],
        tmp_path,
        env,
    )
    model_dir = Path(where.strip())
    assert model_dir.parts[-2:] == ("bundled", "model") and installed.parent in model_dir.parents

    predicted = json.loads(
        _run([str(installed / "ecg-app"), "predict", str(EXAMPLE), "--json"], tmp_path, env)
    )
    expected = get_classifier().predict(load_image(EXAMPLE.read_bytes()))
    assert predicted["label"] == expected.label
    assert predicted["probabilities"][expected.label] == pytest.approx(expected.confidence, abs=1e-5)

    stored = json.loads(_run([str(installed / "ecg-app"), "analyze", str(EXAMPLE), "--json"], tmp_path, env))
    assert stored["measurements"]["heart_rate_bpm"] is not None  # the migrations ran: a schema with them
    pdf = tmp_path / "report.pdf"
    _run([str(installed / "ecg-app"), "report", stored["id"], "-o", str(pdf)], tmp_path, env)
    assert pdf.read_bytes().startswith(b"%PDF")  # the report templates came with the package
