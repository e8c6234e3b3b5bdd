"""`ecg-app model validate`: the shipped model scored on a labelled collection, copies of its own images found
(identical bytes or near-identical pictures) and left out (`ecg_app/training/external_validation.py`)."""

import json
import shutil

import cv2
import numpy as np
import pytest

from ecg_app.cli import main
from ecg_app.serving.classifier import Classifier
from ecg_app.training.dataset import discover, load_rgb
from ecg_app.training.external_validation import validate
from tests.conftest import encode, synthetic_printout

MENDELEY = {
    "MI": "ECG Images of Myocardial Infarction Patients (240x12=2880)",
    "HMI": "ECG Images of Patient that have History of MI (172x12=2064)",
    "AHB": "ECG Images of Patient that have abnormal heartbeat (233x12=2796)",
    "Normal": "Normal Person ECG Images (284x12=3408)",
}


@pytest.fixture
def collection(tmp_path, shared_data):
    """Class folders as a research group might bring them: two test-split printouts and a test-split
    chart (new to the model's training), a training printout copied byte for byte, a validation printout
    shrunk and saved as PNG (a near-identical picture), and a synthetic printout no one has seen."""
    data = shared_data / "mendeley-ecg"
    chart = shared_data / "non-ecg" / "charts-and-screenshots" / "dinojan_original_class_distribution.jpg"
    root = tmp_path / "collection"
    for label in ("MI", "HMI", "AHB", "Normal", "not-ecg"):
        (root / label).mkdir(parents=True)
    shutil.copy(data / MENDELEY["AHB"] / "HB(109).jpg", root / "AHB" / "a.jpg")  # test split
    shutil.copy(data / MENDELEY["Normal"] / "Normal(101).jpg", root / "Normal" / "b.jpg")  # test split
    shutil.copy(data / MENDELEY["MI"] / "MI(11).jpg", root / "MI" / "copy.jpg")  # train split, same bytes
    val = load_rgb(data / MENDELEY["HMI"] / "PMI(17).jpg")  # validation split
    smaller = cv2.resize(val, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    (root / "HMI" / "resaved.png").write_bytes(encode(smaller))
    (root / "Normal" / "synthetic.png").write_bytes(encode(synthetic_printout(seed=5)))
    (root / "AHB" / "broken.jpg").write_bytes(b"not a picture")  # reported, never scored
    shutil.copy(chart, root / "not-ecg")  # test split
    return root


def test_copies_of_the_models_images_are_found_and_left_out_and_the_rest_scored_as_the_app_does(
    collection, shipped_model
):
    samples = discover(collection, collection / "not-ecg")
    result = validate(shipped_model, samples)
    images = result["images"]
    assert images["found"] == 6 and images["scored"] == 4
    assert [p.rsplit("/", 1)[-1] for p in images["unreadable"]] == ["broken.jpg"]
    assert images["copies_of_model_images"] == {"train": 1, "val": 1, "test": 3}
    assert sorted(p.rsplit("/", 1)[-1] for p in images["left_out"]) == ["copy.jpg", "resaved.png"]
    assert images["checked_against"]["compared_by_picture"] == images["checked_against"]["model_images"] > 800
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in result["per_image"]}
    assert sorted(rows) == ["a.jpg", "b.jpg", "dinojan_original_class_distribution.jpg", "synthetic.png"]
    assert rows["synthetic.png"]["copy_of"] is None and rows["a.jpg"]["copy_of"] == "test"
    # The decisions are the classifier's own, image by image.
    kept = [s for s in samples if s.path.name in rows]
    predictions = Classifier(shipped_model).predict_batch([load_rgb(s.path) for s in kept])
    assert [rows[s.path.name]["predicted"] for s in kept] == [p.label for p in predictions]
    assert [rows[s.path.name]["status"] for s in kept] == [p.status for p in predictions]
    metrics = result["metrics"]
    assert metrics["n"] == 4 and np.sum(metrics["confusion_matrix"]) == 4
    right = sum(rows[s.path.name]["predicted"] == s.label for s in kept)
    assert metrics["accuracy"]["value"] == pytest.approx(right / 4)
    kept_all = validate(shipped_model, samples, keep_copies=True)
    assert kept_all["images"]["scored"] == 6 and kept_all["images"]["left_out"] == []


def test_the_whole_dataset_scores_as_the_test_split_once_the_models_own_images_are_left_out(
    shared_data, shipped_model
):
    """Given every image of the project's data, `validate` finds the 756 train and validation images
    as copies and scores what is left: the test split, with the figures `ecg-app model evaluate` wrote."""
    samples = discover(
        shared_data / "mendeley-ecg", shared_data / "non-ecg", shared_data / "other-layout-ecg"
    )
    result = validate(shipped_model, samples)
    assert result["images"]["copies_of_model_images"] == {"train": 622, "val": 134, "test": 134}
    test = json.loads((shipped_model / "metrics.json").read_text())["test"]
    for key in ("n", "confusion_matrix", "macro_f1", "accuracy", "needs_review", "mi_flag"):
        assert result["metrics"][key] == test[key], key
    # float32 network outputs are not bit-stable across CPUs: on an AMD EPYC machine ECE comes out
    # 2.2e-9 off the value stored on another (2026-12-06); a confidence changed by 1e-5 on one of the
    # 128 images moves it by up to 8e-8.
    assert result["metrics"]["ece"] == pytest.approx(test["ece"], abs=1e-7)


def test_the_cli_prints_the_figures_writes_the_json_and_refuses_what_it_cannot_score(
    collection, shipped_model, tmp_path, capsys
):
    out = tmp_path / "validation.json"
    args = ["model", "validate", "--data", str(collection), "--non-ecg", str(collection / "not-ecg")]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 images; copies of the model's images: train 1, val 1, test 3" in printed
    assert "2 left out, 4 scored" in printed and "n=4 accuracy=" in printed
    assert "1 files could not be read as images and are not counted" in printed
    # Strict JSON: no infarction was scored (the one MI image is a copy), so MI recall is null, not NaN.
    written = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert written["images"]["scored"] == 4 and written["metrics"]["mi_recall"]["value"] is None
    assert "MI recall=n/a" in printed
    copies_only = tmp_path / "copies"
    (copies_only / "MI").mkdir(parents=True)
    shutil.copy(collection / "MI" / "copy.jpg", copies_only / "MI")
    assert main(["model", "validate", "--data", str(copies_only)]) == 2
    assert "nothing to score: 1 images found, 1 of them copies" in capsys.readouterr().err
    assert main(["model", "validate", "--data", str(tmp_path / "missing")]) == 2
    assert "ecg-app model validate: error:" in capsys.readouterr().err
