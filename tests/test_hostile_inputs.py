"""The hostile-input corpus (tests/hostile_inputs.py) through intake and through `ecg-app analyze --json`."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from ecg_app.cli import main
from ecg_app.serving.intake import DEFAULT_MAX_BYTES, IntakeError, load_image
from tests.hostile_inputs import ACCEPTED, CASES, REJECTED, HostileCase

INTAKE_CODES = {
    "empty", "not_an_image", "corrupt", "file_too_large", "too_many_pixels", "too_small", "not_found",
}  # fmt: skip


def ids(cases: list[HostileCase]) -> list[str]:
    return [case.name for case in cases]


def intake_outcome(source) -> np.ndarray | IntakeError:
    try:
        return load_image(source)
    except IntakeError as exc:
        return exc


def test_corpus_is_big_and_varied():
    assert len(CASES) >= 25
    assert len(set(ids(CASES))) == len(CASES)
    assert {case.code for case in REJECTED} == INTAKE_CODES - {"not_found"}
    assert len(ACCEPTED) >= 10


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_intake_from_bytes_and_from_a_file(case, tmp_path):
    for source in (case.make(), case.write(tmp_path)):
        outcome = intake_outcome(source)
        if case.accepted:
            assert isinstance(outcome, np.ndarray), f"{case.name}: refused with {outcome!r}"
            assert outcome.dtype == np.uint8 and outcome.ndim == 3 and outcome.shape[2] == 3
            assert outcome.flags.c_contiguous
            if case.shape:
                assert outcome.shape == case.shape
        else:
            assert isinstance(outcome, IntakeError), f"{case.name}: decoded to {outcome.shape}"
            assert outcome.code == case.code
            assert outcome.message and outcome.message == str(outcome)


def test_transparency_is_laid_on_white():
    rgba = next(case for case in CASES if case.name == "rgba_png_transparent")
    image = load_image(rgba.make())
    assert (image[:, : image.shape[1] // 3] == 255).all()  # the transparent band held black colour values
    palette = next(case for case in CASES if case.name == "palette_png_transparent").make()
    with Image.open(io.BytesIO(palette)) as image:
        transparent = np.asarray(image) == image.info["transparency"]
    assert transparent.any()
    assert (load_image(palette)[transparent] == 255).all()


def test_exif_orientation_is_applied():
    case = next(case for case in CASES if case.name == "exif_rotated_jpeg")
    assert load_image(case.make()).shape == (800, 600, 3)  # stored 800 wide, 600 high; shown portrait


def test_size_message_never_reads_as_within_the_limit():
    case = next(case for case in CASES if case.code == "file_too_large")
    message = intake_outcome(case.make()).message
    size, limit = (float(x) for x in re.findall(r"(\d+(?:\.\d+)?) MB", message))
    assert limit == DEFAULT_MAX_BYTES / 2**20 == 20
    assert size > limit, message


def test_missing_file_is_not_found(tmp_path):
    outcome = intake_outcome(tmp_path / "no-such-scan.jpg")
    assert isinstance(outcome, IntakeError) and outcome.code == "not_found"


# -- the analyze command -----------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, monkeypatch, shipped_model):
    data = tmp_path / "data"
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(data))
    monkeypatch.delenv("ECG_APP_DATABASE_URL", raising=False)
    monkeypatch.delenv("ECG_APP_MODEL_DIR", raising=False)
    for name in ("ECG_APP_MAX_UPLOAD_BYTES", "ECG_APP_MAX_PIXELS", "ECG_APP_MIN_SIDE"):
        monkeypatch.delenv(name, raising=False)
    return data


def run_cli(capsys, *argv: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def history_total(capsys) -> int:
    code, lines = run_cli(capsys, "history", "list", "--json")
    assert code == 0 and len(lines) == 1
    assert len(lines[0]["items"]) == lines[0]["total"]
    return lines[0]["total"]


def stored_files(data_dir) -> list[str]:
    images = data_dir / "images"
    return sorted(p.name for p in images.rglob("*") if p.is_file()) if images.exists() else []


@pytest.mark.parametrize("case", REJECTED, ids=ids(REJECTED))
def test_analyze_command_refuses_without_storing(case, tmp_path, data_dir, capsys):
    path = case.write(tmp_path)
    expected = intake_outcome(path)
    code, lines = run_cli(capsys, "analyze", str(path), "--json")
    assert code != 0
    assert lines == [{"file": str(path), "error": expected.message, "error_code": case.code}]
    assert history_total(capsys) == 0
    assert stored_files(data_dir) == []


def test_analyze_command_on_a_missing_file(tmp_path, data_dir, capsys):
    path = tmp_path / "no-such-scan.jpg"
    code, lines = run_cli(capsys, "analyze", str(path), "--json")
    assert code != 0
    assert lines[0]["error_code"] == "not_found" and lines[0]["file"] == str(path)
    assert history_total(capsys) == 0
    assert stored_files(data_dir) == []


@pytest.mark.parametrize("case", ACCEPTED, ids=ids(ACCEPTED))
def test_analyze_command_classifies_and_stores(case, tmp_path, data_dir, capsys):
    path = case.write(tmp_path)
    code, lines = run_cli(capsys, "analyze", str(path), "--json")
    assert code == 0, lines
    (result,) = lines
    assert "error" not in result
    assert result["label"] in result["probabilities"]
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    _, listed = run_cli(capsys, "history", "list", "--json")
    assert listed[0]["total"] == 1
    assert listed[0]["items"][0]["id"] == result["id"]
    files = stored_files(data_dir)
    assert any(name.endswith(".thumb.jpg") for name in files)
    assert any(not name.endswith(".thumb.jpg") and ".gradcam." not in name for name in files), files
