"""analyze_and_store (intake -> classifier -> store) and the `analyze`, `history` and `report` commands."""

import csv
import json

import numpy as np
import pytest

from ecg_app.analysis import analyze_and_store
from ecg_app.classifier import Prediction
from ecg_app.cli import main
from ecg_app.config import Settings
from ecg_app.intake import IntakeError, IntakeLimits
from ecg_app.store import PatientInfo, open_store
from tests.conftest import encode, synthetic_printout
from tests.test_store import make_prediction, stored_files

PREDICT_FIELDS = {
    "file", "label", "display_name", "confidence", "probabilities", "risk_level", "status", "model_version"
}  # fmt: skip


class FixedClassifier:
    """Stands in for the CNN where the test is about the plumbing, not the model."""

    def __init__(self, prediction: Prediction):
        self.prediction = prediction
        self.seen: list[np.ndarray] = []

    def predict(self, image: np.ndarray) -> Prediction:
        self.seen.append(image)
        return self.prediction


@pytest.fixture
def env(tmp_path, monkeypatch):
    """ECG_APP_DATA_DIR in tmp_path, default database URL; returns the Settings the CLI will see."""
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ECG_APP_DATABASE_URL", raising=False)
    monkeypatch.delenv("ECG_APP_MODEL_DIR", raising=False)
    return Settings.from_env()


@pytest.fixture
def ecg_file(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(encode(synthetic_printout(seed=11)))
    return path


def test_analyze_and_store_runs_the_whole_chain(env, ecg_file):
    classifier = FixedClassifier(make_prediction("HMI", 0.66))
    with open_store(env) as store:
        stored = analyze_and_store(
            ecg_file.read_bytes(), "scan.png", PatientInfo("P-7", 70), store, classifier
        )
        assert store.get(stored.id) == stored
    (seen,) = classifier.seen
    assert seen.dtype == np.uint8 and seen.shape == (786, 1106, 3)
    assert stored.label == "HMI" and stored.risk_level == "HIGH" and stored.patient.name == "P-7"
    assert stored.image_path.read_bytes() == ecg_file.read_bytes()


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (b"this is not an image", None, "not_an_image"),
        (b"", None, "empty"),
        (encode(np.zeros((20, 20, 3), np.uint8)), None, "too_small"),
        (encode(synthetic_printout(seed=1)), IntakeLimits(max_bytes=1000), "file_too_large"),
    ],
)
def test_bad_upload_raises_and_stores_nothing(env, data, limits, code):
    classifier = FixedClassifier(make_prediction())
    with open_store(env) as store:
        with pytest.raises(IntakeError) as info:
            analyze_and_store(data, "bad.png", None, store, classifier, limits)
        assert info.value.code == code
        assert classifier.seen == [] and store.list().total == 0 and stored_files(store) == []


def _populate(settings: Settings) -> list:
    rgb = synthetic_printout(seed=2)
    with open_store(settings) as store:
        return [
            store.add(make_prediction("MI", 0.9), encode(rgb), rgb, "mi.png", PatientInfo("=Alice", 61, "f")),
            store.add(make_prediction("Normal", 0.7), encode(rgb[:, ::-1]), rgb, "n.png", PatientInfo("Bob")),
        ]


def test_history_export_report_delete_commands(env, tmp_path, capsys):
    mi, normal = _populate(env)

    assert main(["history", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 analyses, showing 1-2")
    assert str(mi.id) in out and str(normal.id) in out and "=Alice" in out

    assert main(["history", "list", "--label", "MI", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["total"] == 1 and [item["id"] for item in listing["items"]] == [str(mi.id)]
    assert listing["items"][0]["patient_name"] == "=Alice" and listing["items"][0]["label"] == "MI"

    assert main(["history", "list", "--search", "bob", "--limit", "1", "--json"]) == 0
    assert [item["id"] for item in json.loads(capsys.readouterr().out)["items"]] == [str(normal.id)]

    out_csv = tmp_path / "history.csv"
    assert main(["history", "export", str(out_csv)]) == 0
    assert capsys.readouterr().out.strip() == f"Exported 2 analyses to {out_csv}"
    with out_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["id"] for row in rows} == {str(mi.id), str(normal.id)}
    assert {row["patient_name"] for row in rows} == {"'=Alice", "Bob"}

    pdf = tmp_path / "report.pdf"
    assert main(["report", str(mi.id), "-o", str(pdf)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF") and capsys.readouterr().out.strip() == f"Wrote {pdf}"
    assert main(["report", "00000000-0000-0000-0000-000000000000", "-o", str(tmp_path / "none.pdf")]) == 1
    assert "no analysis with id" in capsys.readouterr().err and not (tmp_path / "none.pdf").exists()

    assert main(["history", "delete", str(mi.id)]) == 0
    assert capsys.readouterr().out.strip() == f"Deleted {mi.id}"
    assert main(["history", "delete", str(mi.id)]) == 1
    assert capsys.readouterr().out.strip() == f"No analysis with id {mi.id}"
    assert main(["history", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 1
    assert not mi.image_path.exists() and normal.image_path.exists()


def test_analyze_refuses_bad_arguments_before_storing(env, ecg_file, tmp_path, capsys):
    assert main(["analyze", str(ecg_file), "--model", str(tmp_path / "no-model")]) == 2
    assert "No trained model" in capsys.readouterr().err
    assert main(["analyze", str(ecg_file), "--age", "200"]) == 2
    assert "age must be between 0 and 150" in capsys.readouterr().err
    with open_store(env) as store:
        assert store.list().total == 0


def test_analyze_with_the_shipped_model(env, ecg_file, tmp_path, shipped_model, capsys):
    args = ["--patient-name", "Jane <Doe>", "--age", "54", "--sex", "F", "--notes", "chest pain", "--json"]
    assert main(["analyze", str(ecg_file), *args]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == PREDICT_FIELDS | {"id"}
    assert result["file"] == str(ecg_file)
    assert set(result["probabilities"]) == {"MI", "HMI", "AHB", "Normal", "NonECG"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    # The same image through `predict` gives the same answer: one code path from bytes to prediction.
    assert main(["predict", str(ecg_file), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in result.items() if k != "id"} == predicted

    with open_store(env) as store:
        stored = store.get(result["id"])
    assert stored.label == result["label"] and stored.model_version == result["model_version"]
    assert stored.patient == PatientInfo("Jane <Doe>", 54, "female", "chest pain")

    assert main(["analyze", str(ecg_file)]) == 0  # plain text, same image stored once
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{ecg_file}: ") and lines[1].startswith("  stored as ")
    with open_store(env) as store:
        assert store.list().total == 2 and len(stored_files(store)) == 2

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert main(["analyze", str(bad), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error_code"] == "not_an_image"
    assert main(["analyze", str(tmp_path / "missing.png")]) == 1
    assert "ERROR" in capsys.readouterr().out

    pdf = tmp_path / "real.pdf"
    assert main(["report", result["id"], "-o", str(pdf)]) == 0
    assert pdf.stat().st_size > 10_000
