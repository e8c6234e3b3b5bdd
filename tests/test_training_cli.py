"""End to end on a tiny synthetic dataset: train one epoch, evaluate, predict through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from ecg_app import dataset
from ecg_app.cli import main
from ecg_app.labels import CLASSES
from ecg_app.training import TrainConfig, train
from tests.conftest import encode, synthetic_printout

pytestmark = pytest.mark.slow


def tiny_config(root: Path, out: str, **overrides) -> TrainConfig:
    """One epoch of 4 draws per class: enough to exercise every step, fast on 2 cores."""
    settings = dict(
        data_dir=root / "ecg",
        non_ecg_dir=root / "other",
        epochs=1,
        out_dir=root / out,
        samples_per_class=4,
        batch_size=4,
        seed=1,
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for c, folder in enumerate(["MI", "HMI", "AHB", "Normal"]):
        for k in range(4):
            path = root / "ecg" / folder / f"{folder}({k}).png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(synthetic_printout(seed=10 * c + k)))
    for k in range(4):
        path = root / "other" / "photos" / f"noise{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), "JPEG"))
    # A byte-identical copy, as in the published dataset: must share its original's split.
    (root / "ecg" / "MI" / "MI(9).png").write_bytes((root / "ecg" / "MI" / "MI(0).png").read_bytes())
    train(tiny_config(root, "model"))
    return root


def test_training_writes_a_loadable_model_and_manifest(tiny_run):
    model_dir = tiny_run / "model"
    info = json.loads((model_dir / "model.json").read_text())
    assert info["classes"] == list(CLASSES) and info["epochs"] == 1
    assert info["temperature"] > 0 and 0 < info["review_threshold"] < 1
    assert not list(model_dir.glob("*.partial*")) and not list(model_dir.glob("*.tmp"))
    samples = dataset.read_manifest(
        model_dir / "split.csv", {"mendeley": tiny_run / "ecg", "non_ecg": tiny_run / "other"}
    )
    split_of = {s.path.name: s.split for s in samples}
    assert split_of["MI(9).png"] == split_of["MI(0).png"]
    assert {s.split for s in samples} == {"train", "val", "test"}


def test_evaluate_writes_metrics(tiny_run, capsys):
    assert main(["evaluate", "--model", str(tiny_run / "model")]) == 0
    metrics = json.loads((tiny_run / "model" / "metrics.json").read_text())
    assert metrics["test"]["n"] == sum(
        1 for line in (tiny_run / "model" / "split.csv").read_text().splitlines() if line.endswith(",test")
    )
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "roc", "ece", "reliability"):
        assert key in metrics["test"]
    assert metrics["history"]["loss"] and metrics["dataset"]["split_sizes"]
    assert "macro-F1" in capsys.readouterr().out


def test_predict_json_lines_and_errors(tiny_run, tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(encode(synthetic_printout(seed=99)))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code = main(["predict", str(good), str(bad), "--json", "--model", str(tiny_run / "model")])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 1  # one file failed
    assert lines[0]["file"] == str(good)
    assert set(lines[0]) >= {
        "file",
        "label",
        "display_name",
        "confidence",
        "probabilities",
        "risk_level",
        "model_version",
    }
    assert list(lines[0]["probabilities"]) == list(CLASSES)
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert lines[0]["confidence"] == max(lines[0]["probabilities"].values())
    assert lines[1]["file"] == str(bad) and "not an image" in lines[1]["error"]


def test_predict_plain_text(tiny_run, tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(encode(synthetic_printout(seed=98)))
    assert main(["predict", str(good), "--model", str(tiny_run / "model")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: ") and "risk" in out


def test_classifier_loads_once_under_concurrency(tiny_run):
    from concurrent.futures import ThreadPoolExecutor

    from ecg_app.classifier import Classifier, get_classifier

    classifier = Classifier(tiny_run / "model")
    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: id(classifier.model), range(16)))
    assert len(set(models)) == 1
    assert get_classifier(tiny_run / "model") is get_classifier(str(tiny_run / "model"))


def test_batch_prediction_matches_single(tiny_run):
    from ecg_app.classifier import Classifier

    classifier = Classifier(tiny_run / "model")
    images = [synthetic_printout(seed=s) for s in (1, 2, 3)]
    batch = classifier.predict_batch(images, batch_size=2)
    for image, from_batch in zip(images, batch, strict=True):
        single = classifier.predict(image)
        assert single.label == from_batch.label
        assert single.confidence == pytest.approx(from_batch.confidence, abs=1e-5)
        assert single.status in ("ok", "needs_review") and single.model_version == classifier.version


def test_ctrl_c_leaves_a_complete_model(tiny_run, tmp_path):
    """A real SIGINT in the middle of training: the best checkpoint so far stays loadable, no partial file."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ecg_app.cli",
            "train",
            "--data",
            str(tiny_run / "ecg"),
            "--non-ecg",
            str(tiny_run / "other"),
            "--epochs",
            "200",
            "--batch-size",
            "4",
            "--samples-per-class",
            "4",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (out / "ecg_cnn.keras").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert (out / "ecg_cnn.keras").exists(), process.communicate()[0][-2000:]
    time.sleep(3)  # interrupt somewhere later in training, possibly mid-save
    process.send_signal(signal.SIGINT)
    log = process.communicate(timeout=240)[0]
    assert process.returncode == 0, log[-2000:]
    assert "interrupted" in log
    assert not list(out.glob("*.partial*")) and not list(out.glob("*.tmp"))
    from ecg_app.classifier import Classifier

    prediction = Classifier(out).predict(synthetic_printout(seed=5))
    assert prediction.label in CLASSES


def test_ensemble_averages_members_and_resumes(tiny_run, capsys):
    from dataclasses import replace

    import keras

    from ecg_app.preprocess import preprocess

    config = tiny_config(tiny_run, "ensemble", ensemble=2)
    info = train(config)
    assert info["ensemble"] == 2 and len(info["best_epoch"]) == 2
    assert sorted(p.name for p in (tiny_run / "ensemble" / "members").iterdir()) == ["seed-1", "seed-2"]
    members = [
        keras.saving.load_model(tiny_run / "ensemble" / "members" / f"seed-{s}" / "ecg_cnn.keras")
        for s in (1, 2)
    ]
    x = preprocess(synthetic_printout(seed=4))[None]
    expected = np.mean([np.asarray(m.predict_on_batch(x)) for m in members], axis=0)
    combined = keras.saving.load_model(tiny_run / "ensemble" / "ecg_cnn.keras")
    assert np.allclose(np.asarray(combined.predict_on_batch(x)), expected, atol=1e-5)
    capsys.readouterr()
    train(replace(config))  # finished members are reused, not retrained
    assert capsys.readouterr().out.count("reusing") == 2


def test_batch_scoring_is_resumable(tiny_run, tmp_path, capsys):
    import csv

    folder = tmp_path / "inbox"
    for k in range(5):
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        (folder / "sub" / f"ecg{k}.png").write_bytes(encode(synthetic_printout(seed=50 + k)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "scores.csv"
    model = ["--model", str(tiny_run / "model")]

    assert main(["predict", "--batch", str(folder), "--csv", str(out), *model]) == 1  # one bad file
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["file"] for r in rows) == ["broken.jpg", *[f"sub/ecg{k}.png" for k in range(5)]]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 5 and all(r["label"] in CLASSES for r in good)
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in CLASSES) - 1) < 1e-3 for r in good)
    assert "not an image" in next(r for r in rows if r["file"] == "broken.jpg")["error"]

    # Interrupted run: keep the header and two rows, add a new file; only the missing ones are scored.
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:3]))
    (folder / "new.png").write_bytes(encode(synthetic_printout(seed=70)))
    capsys.readouterr()
    main(["predict", "--batch", str(folder), "--csv", str(out), *model])
    assert "2 already in" in capsys.readouterr().out
    files = [r["file"] for r in csv.DictReader(out.open())]
    assert len(files) == len(set(files)) == 7


def test_predict_needs_files_or_batch():
    with pytest.raises(SystemExit):
        main(["predict"])
    with pytest.raises(SystemExit):
        main(["predict", "--batch", "somewhere"])
