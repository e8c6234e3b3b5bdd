"""A plain (non-editable) install works from anywhere and without TensorFlow: the built wheel carries
the shipped model (its ONNX graphs), the report templates and the migrations, so `ecg-app` run from
another folder classifies, explains, stores and writes a PDF without the repository, and its required
dependencies name no TensorFlow or Keras (the `train` extra does).

The wheel goes into a fresh venv; the project's dependencies come from this test run's environment
through a .pth line (a path line does not run that environment's .pth files, so its editable install of
ecg_app stays out of sight). That environment has TensorFlow (the tests need it), so every command runs
with an import hook that refuses it: any import of TensorFlow or Keras fails the command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ecg_app.config import REPO_ROOT
from ecg_app.serving.classifier import get_classifier
from ecg_app.serving.intake import load_image
from ecg_app.ui.analyze_tab import EXAMPLES_DIR

pytestmark = pytest.mark.slow
EXAMPLE = EXAMPLES_DIR / "MI(19).jpg"
TRAINING_ONLY = ("tensorflow", "keras", "tf2onnx", "onnx")
# Runs `ecg-app ARGS...` (or, with "-c CODE", CODE) with TensorFlow and its kin made unimportable.
WITHOUT_TENSORFLOW = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_ONLY!r}:
            raise ImportError("serving imported " + name)
sys.meta_path.insert(0, Refuse())
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    from ecg_app.cli import main
    sys.exit(main(sys.argv[1:]))
"""


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


def test_the_installed_package_serves_without_the_repository_or_tensorflow(installed, tmp_path):
    env = {**os.environ, "ECG_APP_DATA_DIR": str(tmp_path / "data")}
    env.pop("ECG_APP_MODEL_DIR", None)
    env.pop("ECG_APP_DATABASE_URL", None)
    python = str(installed / "python")

    def serve(*args: str) -> str:
        return _run([python, "-c", WITHOUT_TENSORFLOW, *args], tmp_path, env)

    where = serve("-c", "import ecg_app.config as c; print(c.DEFAULT_MODEL_DIR)")
    model_dir = Path(where.strip())
    assert model_dir.parts[-2:] == ("bundled", "model") and installed.parent in model_dir.parents
    required = serve("-c", "from importlib.metadata import requires; print(*requires('ecg-app'), sep='\\n')")
    names = {
        re.match(r"[\w.-]+", line).group().lower() for line in required.splitlines() if "extra ==" not in line
    }
    assert "onnxruntime" in names and not names & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx"}

    predicted = json.loads(serve("predict", str(EXAMPLE), "--json"))
    expected = get_classifier().predict(load_image(EXAMPLE.read_bytes()))
    assert predicted["label"] == expected.label
    assert predicted["probabilities"][expected.label] == pytest.approx(expected.confidence, abs=1e-5)

    stored = json.loads(serve("analyze", str(EXAMPLE), "--json"))
    assert stored["measurements"]["heart_rate_bpm"] is not None  # the migrations ran: a schema with them
    pdf = tmp_path / "report.pdf"
    serve("report", stored["id"], "-o", str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF")  # the report templates came with the package
    kept = serve(
        "-c",
        f"""
from ecg_app.store import open_store
with open_store() as store:
    print(store.get({stored["id"]!r}).explanation_path.stat().st_size)
""",
    )
    assert int(kept) > 0  # its Grad-CAM map was made and stored
    serve("-c", "from ecg_app.ui.app import build_app; build_app(warm=False)")  # the UI's imports too
