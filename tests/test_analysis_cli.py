"""analyze_and_store (intake -> classifier -> quality + Grad-CAM -> store) and the `predict`, `analyze`,
`history` and `report` commands; everything that stores runs on each database backend (`env` fixture)."""

import csv
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

import ecg_app
from ecg_app.analysis import (
    EXPLANATION_CAPTION,
    EXPLANATION_TITLE,
    NOT_AN_ECG_REASON,
    analyze_and_store,
    explainer_for,
    explanation_overlay,
)
from ecg_app.cli import main
from ecg_app.clinical.measurements import not_measured
from ecg_app.clinical.report import render_report_pdf
from ecg_app.clinical.rhythm import measure
from ecg_app.config import Settings
from ecg_app.labels import NON_ECG
from ecg_app.serving.classifier import MI_NOT_RULED_OUT, Prediction, get_classifier
from ecg_app.serving.deidentify import METHODS
from ecg_app.serving.intake import IntakeError, IntakeLimits, load_image
from ecg_app.serving.preprocess import page_as_read
from ecg_app.store import PatientInfo, open_store
from ecg_app.store.images import fit, make_thumbnail
from ecg_app.training.synth_printout import render_printout
from tests.conftest import database_url_for, decoded, encode, synthetic_printout
from tests.test_measurements import MEASUREMENT_KEYS
from tests.test_store import make_prediction, stored_files

EXAMPLES_DIR = Path(ecg_app.__file__).parent / "examples"
PREDICT_FIELDS = {
    "file", "label", "display_name", "confidence", "probabilities", "risk_level", "status", "ecg_distance",
    "ecg_probability", "model_version", "quality_warnings", "measurements",
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
def env(tmp_path, monkeypatch, backend):
    """ECG_APP_DATA_DIR in tmp_path and an empty database (SQLite: the default URL; PostgreSQL: the test
    server's); returns the Settings the CLI will see."""
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path / "data"))
    if backend == "sqlite":
        monkeypatch.delenv("ECG_APP_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("ECG_APP_DATABASE_URL", database_url_for(tmp_path, backend))
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
    # The page is kept de-identified, and the upload's own bytes are not kept anywhere.
    assert stored.deidentification in METHODS and decoded(stored.image_path).shape == (786, 1106, 3)
    upload = ecg_file.read_bytes()
    assert not [p for p in env.data_dir.rglob("*") if p.is_file() and p.read_bytes() == upload]
    assert stored.quality_warnings == ()  # checked: a clean full page
    assert stored.explanation_path is None  # a stand-in classifier has no network to explain


def test_analyze_and_store_measures_the_page_and_returns_the_strip_it_does_not_store(env):
    """The measurements are read off the page the networks read and stored as their JSON; the analysis
    returned also carries the digitised strip they were read from (the Analyze tab plots it)."""
    data = (EXAMPLES_DIR / "Normal(29).jpg").read_bytes()
    expected = measure(page_as_read(load_image(data)))
    with open_store(env) as store:
        stored = analyze_and_store(data, "n.jpg", None, store, FixedClassifier(make_prediction("Normal")))
        kept = store.get(stored.id)
    assert kept == stored and stored.measurements.to_dict() == expected.to_dict()
    assert set(kept.to_dict()["measurements"]) == MEASUREMENT_KEYS and kept.measurements.strip is None
    assert (stored.measurements.strip is None) == (expected.strip is None)
    if expected.strip is not None:
        assert np.array_equal(stored.measurements.strip.millivolts, expected.strip.millivolts)
        assert np.array_equal(stored.measurements.strip.beats, expected.strip.beats)


def test_a_non_ecg_is_not_measured_and_a_failure_to_measure_loses_no_analysis(
    env, ecg_file, monkeypatch, caplog
):
    def broken(page: np.ndarray):
        raise RuntimeError("no calibration pulse")

    monkeypatch.setattr("ecg_app.analysis.measure", broken)
    with open_store(env) as store:
        non_ecg = analyze_and_store(
            ecg_file.read_bytes(), "x.png", None, store, FixedClassifier(make_prediction(NON_ECG))
        )
        failed = analyze_and_store(
            ecg_file.read_bytes(), "y.png", None, store, FixedClassifier(make_prediction("MI"))
        )
        assert [store.get(a.id).measurements for a in (non_ecg, failed)] == [
            not_measured(NOT_AN_ECG_REASON),  # not even tried
            not_measured("measuring failed: no calibration pulse"),
        ]
    assert failed.label == "MI" and "Measuring failed" in caplog.text


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


def test_a_patients_timeline_comparison_image_and_erasure_from_the_cli(env, tmp_path, capsys, monkeypatch):
    """`history list --patient` (oldest first) with each heart rate, `history compare` with the change
    of each class's probability and of each measurement, `history image` and `history delete --patient`,
    which asks first and leaves the other patients alone."""
    with open_store(env) as store:
        stored = [
            analyze_and_store(
                encode(render_printout(20 + k, heart_rate=60 + 20 * k)[0]),
                f"{k}.png",
                PatientInfo(patient),
                store,
                FixedClassifier(make_prediction(label, 0.7)),
            )
            for k, (patient, label) in enumerate([("P-9", "Normal"), ("Q-1", "MI"), ("P-9", "AHB")])
        ]
    earlier, other, later = stored
    assert main(["history", "list", "--patient", "p-9"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 analyses of patient p-9, oldest first")
    assert out.index(str(earlier.id)) < out.index(str(later.id)) and str(other.id) not in out
    rates = [float(rate) for rate in re.findall(r"(\d+) bpm", out)]  # as measured, one per line
    assert rates == pytest.approx([60, 100], abs=5)

    assert main(["history", "compare", str(later.id), str(earlier.id), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["earlier"]["id"] == str(earlier.id) and result["later"]["id"] == str(later.id)
    assert result["same_patient"] and result["label_changed"]
    assert result["probability_changes"]["AHB"] == pytest.approx(0.7 - 0.075)
    rate_then, rate_now = (result[k]["measurements"]["heart_rate_bpm"] for k in ("earlier", "later"))
    assert result["measurement_changes"]["heart_rate_bpm"] == pytest.approx(rate_now - rate_then, abs=0.01)
    assert result["measurement_changes"].keys() == MEASUREMENT_KEYS - {"quality", "not_measured_reason"}
    assert main(["history", "compare", str(earlier.id), str(later.id)]) == 0
    rate_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Heart rate"))
    change, unit = rate_row.split()[-2:]
    assert change.startswith("+") and int(change) == pytest.approx(rate_now - rate_then, abs=0.51)
    assert unit == "bpm"
    assert main(["history", "compare", str(earlier.id), str(other.id)]) == 0
    assert "not stored under the same patient" in capsys.readouterr().out
    assert main(["history", "compare", str(earlier.id), "nope"]) == 1

    assert main(["history", "image", str(earlier.id), "-o", str(tmp_path / "x.unknown")]) == 2
    assert "use .jpg or .png" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))  # not a terminal: --yes is required
    assert main(["history", "delete", "--patient", "P-9"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["history", "delete", "--patient", "P-9", "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "Deleted 2 analyses of patient P-9 and their files"
    assert not earlier.image_path.exists() and not later.thumbnail_path.exists()
    assert main(["history", "list", "--json"]) == 0
    assert [item["id"] for item in json.loads(capsys.readouterr().out)["items"]] == [str(other.id)]
    assert main(["history", "delete", "--patient", "P-9", "--yes"]) == 1
    assert main(["history", "delete"]) == 2


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
        page = store.list()
        overlays = sum(item.explanation_path is not None for item in page.items)
        assert page.total == 2 and len(stored_files(store)) == 2 + overlays  # the image once

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert main(["analyze", str(bad), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error_code"] == "not_an_image"
    assert main(["analyze", str(tmp_path / "missing.png")]) == 1
    assert "ERROR" in capsys.readouterr().out

    pdf = tmp_path / "real.pdf"
    assert main(["report", result["id"], "-o", str(pdf)]) == 0
    assert pdf.stat().st_size > 10_000


def test_an_ecg_whose_infarction_cannot_be_ruled_out_is_flagged_end_to_end(
    env, shared_data, shipped_model, capsys
):
    """A real ECG of another layout (validation split) that the shipped model calls Abnormal heartbeat
    with P(MI) well above the flag's threshold: the analysis needs review, says why first, and the PDF
    names that reason rather than low confidence."""
    path = shared_data / "other-layout-ecg" / "schr_sample3.jpg"
    assert main(["analyze", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    threshold = json.loads((shipped_model / "model.json").read_text())["mi_flag"]["threshold"]
    assert result["label"] not in ("MI", NON_ECG) and result["probabilities"]["MI"] >= threshold
    assert result["status"] == "needs_review" and result["risk_level"] == "HIGH"
    assert result["quality_warnings"][0] == {
        "code": MI_NOT_RULED_OUT.code,
        "message": MI_NOT_RULED_OUT.message,
    }
    with open_store(env) as store:
        text = " ".join(
            p.extract_text() for p in PdfReader(io.BytesIO(render_report_pdf(store.get(result["id"])))).pages
        )
    assert "infarction not ruled out" in " ".join(text.split())
    assert main(["predict", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("[needs review: infarction not ruled out]")


@pytest.fixture
def blurred_ecg_file(tmp_path):
    """A real ECG printout (an example of the dataset), photographed out of focus."""
    rgb = load_image(EXAMPLES_DIR / "MI(19).jpg")
    path = tmp_path / "blurred-ecg.jpg"
    path.write_bytes(encode(cv2.GaussianBlur(rgb, (0, 0), 4), "JPEG", quality=92))
    return path


def test_gradcam_overlay_with_the_shipped_model(shipped_model):
    classifier = get_classifier(shipped_model)
    explainer = explainer_for(classifier)
    assert explainer is not None and explainer_for(classifier) is explainer  # built once per classifier
    assert explainer_for(FixedClassifier(make_prediction())) is None  # nothing to explain without a network
    rgb = load_image(EXAMPLES_DIR / "MI(19).jpg")
    picture = explanation_overlay(explainer, rgb, "MI")
    thumbnail = np.asarray(Image.open(io.BytesIO(make_thumbnail(rgb))))
    assert picture.dtype == np.uint8 and picture.shape == thumbnail.shape  # lines up with the thumbnail
    assert not np.array_equal(picture, fit(rgb))  # some heat is drawn
    assert explanation_overlay(explainer, rgb, NON_ECG) is None


def test_a_photo_of_a_printout_on_a_desk_is_read_and_explained_as_its_page(shipped_model):
    """The shipped model gets the photographed example right (the page is found and straightened before
    the crop), and the overlay shows that straightened page, at thumbnail size."""
    from ecg_app.serving.page import straighten
    from ecg_app.serving.preprocess import crop_box
    from ecg_app.training.robustness import DEGRADATIONS

    classifier = get_classifier(shipped_model)
    photo = DEGRADATIONS["photographed on a desk"](load_image(EXAMPLES_DIR / "MI(19).jpg"))
    assert classifier.predict(photo).label == "MI"
    picture = explanation_overlay(explainer_for(classifier), photo, "MI")
    page = fit(straighten(photo))
    assert picture.shape == page.shape
    header = crop_box(*page.shape[:2])[0]  # no heat above the trace area: the picture shows there
    assert np.array_equal(picture[:header], page[:header])
    assert not np.array_equal(picture[:header], fit(photo)[:header])


def test_a_photo_analysis_searches_its_page_once(env, shipped_model):
    """The networks' input, the quality check, the overlay and the de-identification all need the
    photo's page; the search (15-30 ms on a photo, depending on the machine) is done once and remembered
    for the others (the overlay and the de-identification share one reading of the page)."""
    from ecg_app.serving import page
    from ecg_app.training.robustness import DEGRADATIONS

    classifier = get_classifier(shipped_model)
    photo = encode(DEGRADATIONS["photographed on a desk"](load_image(EXAMPLES_DIR / "MI(19).jpg")), "JPEG")
    page.forget_searches()
    with open_store(env) as store:
        stored = analyze_and_store(photo, "desk.jpg", None, store, classifier)
    assert stored.label == "MI" and stored.explanation_path.is_file()
    assert "page_straightened" in {w.code for w in stored.quality_warnings}
    searches = page._outline.cache_info()
    assert (searches.misses, searches.hits) == (1, 2)


def test_analyze_and_store_explains_and_checks_quality_with_the_shipped_model(
    env, blurred_ecg_file, shipped_model
):
    classifier = get_classifier(shipped_model)
    with open_store(env) as store:
        stored = analyze_and_store(blurred_ecg_file.read_bytes(), "blurred.jpg", None, store, classifier)
        assert store.get(stored.id) == stored
        report_text = " ".join(
            page.extract_text() for page in PdfReader(io.BytesIO(render_report_pdf(stored))).pages
        )
    assert "blurry" in {w.code for w in stored.quality_warnings}
    report_text = " ".join(report_text.split())
    assert "Image quality" in report_text and "The image looks blurred." in report_text
    if stored.label == NON_ECG:  # the model's call on a blurred page: either way the rule holds
        assert stored.explanation_path is None and EXPLANATION_TITLE not in report_text
    else:
        assert stored.explanation_path.is_file()
        with Image.open(stored.explanation_path) as cam, Image.open(stored.thumbnail_path) as thumb:
            assert cam.size == thumb.size
        assert EXPLANATION_TITLE in report_text and " ".join(EXPLANATION_CAPTION.split()) in report_text


def test_json_outputs_carry_quality_warnings(env, blurred_ecg_file, shipped_model, capsys):
    sharp_ecg_file = EXAMPLES_DIR / "MI(19).jpg"
    assert main(["predict", str(blurred_ecg_file), str(sharp_ecg_file), "--json"]) == 0
    blurred, clean = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert set(blurred) == set(clean) == PREDICT_FIELDS
    assert set(blurred["measurements"]) == set(clean["measurements"]) == MEASUREMENT_KEYS
    assert "blurry" in {w["code"] for w in blurred["quality_warnings"]}
    assert all(set(w) == {"code", "message"} for w in blurred["quality_warnings"])
    assert clean["quality_warnings"] == []

    assert main(["analyze", str(blurred_ecg_file), "--json"]) == 0
    analysed = json.loads(capsys.readouterr().out)
    assert set(analysed) == PREDICT_FIELDS | {"id"}
    assert analysed["quality_warnings"] == blurred["quality_warnings"]
    assert {k: v for k, v in analysed.items() if k != "id"} == blurred
    # The sharp printout sits among the training ECGs; the stored analysis keeps its gate distance.
    gate = json.loads((shipped_model / "model.json").read_text())["ecg_gate"]
    assert 0 <= clean["ecg_distance"] <= gate["threshold"] and analysed["ecg_distance"] > 0
    detector = json.loads((shipped_model / "model.json").read_text()).get("ecg_detector")
    if detector:  # consulted only when the softmax says Non-ECG: not for the sharp printout
        assert clean["ecg_probability"] is None

    assert main(["predict", str(sharp_ecg_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith(("  Heart rate ", "  Measurements: not measured"))

    assert main(["analyze", str(blurred_ecg_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  stored as ")
    assert lines[2].startswith(("  Heart rate ", "  Measurements: not measured"))
    assert any(line.startswith("  warning: The image looks blurred") for line in lines[2:])

    assert main(["history", "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [item["quality_warnings"] for item in items] == [blurred["quality_warnings"]] * 2
