"""End to end on a tiny synthetic dataset: train one epoch, evaluate, predict through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecg_app.cli import main
from ecg_app.labels import CLASSES
from ecg_app.training import dataset
from ecg_app.training.training import TrainConfig, train
from tests.conftest import MODEL_DIR, encode, synthetic_printout

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


# `ecg-app` as its own process: SIGINT and a tf.distribute strategy's set-up are per process.
CLI = [sys.executable, "-m", "ecg_app.cli"]


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    """`ecg-app model train` arguments for the tiny data set (4 draws per class and epoch)."""
    data = ["--data", str(root / "ecg"), "--non-ecg", str(root / "other")]
    return [
        "model",
        "train",
        *data,
        "--batch-size",
        "4",
        "--samples-per-class",
        "4",
        "--out",
        str(out),
        *extra,
    ]


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
    assert main(["model", "export-onnx", "--model", str(root / "model")]) == 0  # served as `make train` does
    return root


def test_training_writes_a_loadable_model_and_manifest(tiny_run):
    model_dir = tiny_run / "model"
    info = json.loads((model_dir / "model.json").read_text())
    assert info["classes"] == list(CLASSES) and info["epochs"] == 1
    assert info["temperature"] > 0 and 0 < info["review_threshold"] < 1
    # The ECG gate is fitted as the last step, from the same split (threshold on validation).
    assert info["ecg_gate"]["references"] >= 5 and (model_dir / "ecg_gate.npz").is_file()
    assert not list(model_dir.glob("*.partial*")) and not list(model_dir.glob("*.tmp"))
    samples = dataset.read_manifest(
        model_dir / "split.csv", {"mendeley": tiny_run / "ecg", "non_ecg": tiny_run / "other"}
    )
    split_of = {s.path.name: s.split for s in samples}
    assert split_of["MI(9).png"] == split_of["MI(0).png"]
    assert {s.split for s in samples} == {"train", "val", "test"}


def test_evaluate_writes_metrics(tiny_run, capsys):
    assert main(["model", "evaluate", "--model", str(tiny_run / "model")]) == 0
    metrics = json.loads((tiny_run / "model" / "metrics.json").read_text())
    assert metrics["test"]["n"] == sum(
        1 for line in (tiny_run / "model" / "split.csv").read_text().splitlines() if line.endswith(",test")
    )
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "roc", "ece", "reliability"):
        assert key in metrics["test"]
    gate = metrics["test"]["ecg_gate"]
    assert gate["fitted"] and set(gate["non_ecg_recall"]) == {"softmax_only", "with_gate"}
    assert metrics["history"]["loss"] and metrics["dataset"]["split_sizes"]
    assert "cross_validation" not in metrics  # only when a kept run is named
    assert "macro-F1" in capsys.readouterr().out


def test_evaluate_puts_a_kept_cross_validation_beside_the_test_split(tiny_run, capsys):
    run = MODEL_DIR / "cross-validation" / "default"
    args = ["model", "evaluate", "--model", str(tiny_run / "model"), "--cross-validation", str(run)]
    assert main(args) == 0
    metrics = json.loads((tiny_run / "model" / "metrics.json").read_text())
    pooled = json.loads((run / "cv.json").read_text())["out_of_fold"]
    section = metrics["cross_validation"]
    assert section["run"] == "model/cross-validation/default" and section["n"] == pooled["n"]
    assert (
        section["macro_f1"] == pooled["macro_f1"]
        and section["confusion_matrix"] == pooled["confusion_matrix"]
    )
    assert len(section["per_fold_macro_f1"]) == section["folds"] == 5
    f1 = pooled["macro_f1"]["value"]
    assert (
        f"out of fold (model/cross-validation/default): n={pooled['n']} macro-F1={f1:.3f}"
        in capsys.readouterr().out
    )


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
    """Many request threads at once open one set of networks and one session per graph."""
    from concurrent.futures import ThreadPoolExecutor

    from ecg_app.serving.classifier import Classifier, get_classifier
    from ecg_app.serving.preprocess import preprocess

    classifier = Classifier(tiny_run / "model")
    x = preprocess(synthetic_printout(seed=4))[None]

    def first_use(_):
        networks = classifier.networks
        return id(networks), networks.page(x).probs

    with ThreadPoolExecutor(8) as pool:
        used = list(pool.map(first_use, range(16)))
    assert len({identity for identity, _ in used}) == 1
    assert all(np.array_equal(probs, used[0][1]) for _, probs in used)
    assert list(classifier.networks._sessions) == ["page"]
    assert get_classifier(tiny_run / "model") is get_classifier(str(tiny_run / "model"))


def test_batch_prediction_matches_single(tiny_run):
    from ecg_app.training.keras_networks import fitted_classifier

    classifier = fitted_classifier(tiny_run / "model")
    images = [synthetic_printout(seed=s) for s in (1, 2, 3)]
    batch = classifier.predict_batch(images, batch_size=2)
    for image, from_batch in zip(images, batch, strict=True):
        single = classifier.predict(image)
        assert single.label == from_batch.label
        assert single.confidence == pytest.approx(from_batch.confidence, abs=1e-5)
        assert single.status in ("ok", "needs_review") and single.model_version == classifier.version


@pytest.mark.parametrize("distribute", [[], ["--distribute"]], ids=["default", "distribute"])
def test_ctrl_c_leaves_a_complete_model(tiny_run, tmp_path, monkeypatch, distribute):
    """A real SIGINT in the middle of training: the best checkpoint so far stays loadable, no partial file."""
    import signal
    import time

    monkeypatch.delenv("TF_CONFIG", raising=False)  # --distribute: MirroredStrategy on this machine
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [*CLI, *train_args(tiny_run, out, "--epochs", "200", *distribute)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A suite started in the background (`make test &`) inherits SIGINT ignored, and Python then never
        # installs its Ctrl-C handler: give the trainer the default disposition a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
    from ecg_app.training.keras_networks import fitted_classifier

    prediction = fitted_classifier(out).predict(synthetic_printout(seed=5))
    assert prediction.label in CLASSES


def test_ensemble_averages_members_and_resumes(tiny_run, capsys):
    from dataclasses import replace

    import keras

    from ecg_app.serving.preprocess import preprocess

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


def test_cross_validate_predicts_every_train_and_val_image_once_and_resumes(tiny_run, tmp_path, capsys):
    import csv
    import shutil

    model_dir, out = tiny_run / "model", tmp_path / "cv"
    args = ["model", "cross-validate", "--model", str(model_dir), "--folds", "2", "--out", str(out)]
    args += ["--epochs", "1", "--samples-per-class", "4", "--batch-size", "4"]
    assert main(args) == 0
    assert "out of fold (2 folds)" in capsys.readouterr().out
    split = {
        s.path.name: s.split
        for s in dataset.read_manifest(
            model_dir / "split.csv", {"mendeley": tiny_run / "ecg", "non_ecg": tiny_run / "other"}
        )
    }
    with (out / "oof.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(Path(r["path"]).name for r in rows) == sorted(n for n, sp in split.items() if sp != "test")
    assert {r["fold"] for r in rows} == {"1", "2"}
    folds_of_group: dict[str, set[str]] = {}
    for r in rows:
        folds_of_group.setdefault(r["group"], set()).add(r["fold"])
    assert len(folds_of_group) < len(rows)  # the byte-identical MI copy and its original are both here
    assert all(len(folds) == 1 for folds in folds_of_group.values())  # ... and held out together
    for r in rows:
        assert sum(float(r[f"p_{c}"]) for c in CLASSES) == pytest.approx(1, abs=1e-4)
    result = json.loads((out / "cv.json").read_text())
    assert result["out_of_fold"]["n"] == len(rows) and result["recipe"]["epochs"] == 1
    assert [f["fold"] for f in result["per_fold"]] == [1, 2]
    assert len(result["errors"]) == sum(
        1 for r in rows if max(CLASSES, key=lambda c: float(r[f"p_{c}"])) != r["label"]
    )
    first = shutil.copytree(out, tmp_path / "first")
    assert main([*args, "--baseline", str(first)]) == 0  # finished folds are reused, not retrained
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 2 and "does not replace the recipe" in printed
    with (out / "oof.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == rows
    verdict = json.loads((out / "cv.json").read_text())["against_baseline"]
    assert verdict["macro_f1"]["gain"] == 0 and verdict["fixed"] == verdict["broken"] == []
    # Without the networks (as the baseline kept in the repo), the folds resume from their held-out files.
    for network in out.glob("fold-*/*.keras"):
        network.unlink()
    assert main(args) == 0
    assert capsys.readouterr().out.count("held-out.csv") == 2
    with (out / "oof.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == rows
    assert not list(out.glob("fold-*/*.keras"))  # nothing retrained


def test_cross_validate_judges_a_new_network_averaged_with_an_earlier_run(tiny_run, tmp_path, capsys):
    import csv

    def read(path: Path) -> dict[str, np.ndarray]:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {r["path"]: np.array([float(r[f"p_{c}"]) for c in CLASSES]) for r in rows}

    args = ["model", "cross-validate", "--model", str(tiny_run / "model"), "--folds", "2"]
    args += ["--epochs", "1", "--samples-per-class", "4", "--batch-size", "4"]
    base, pair = tmp_path / "base", tmp_path / "pair"
    assert main([*args, "--out", str(base)]) == 0
    assert main([*args, "--out", str(pair), "--arch", "seed", "--average-with", str(base)]) == 0
    earlier, alone, judged = read(base / "oof.csv"), read(pair / "oof-network.csv"), read(pair / "oof.csv")
    assert sorted(judged) == sorted(earlier) == sorted(alone)
    for path, probs in judged.items():
        assert probs == pytest.approx((earlier[path] + alone[path]) / 2, abs=2e-6)
    assert any(not np.allclose(alone[p], earlier[p], atol=1e-3) for p in judged)  # two different networks
    result = json.loads((pair / "cv.json").read_text())
    assert result["recipe"]["arch"] == "seed" and result["averaged_with"] == str(base)
    assert result["network_alone"]["n"] == result["out_of_fold"]["n"]
    capsys.readouterr()
    # A run on other folds cannot be averaged with: refused before any network is trained.
    text = (base / "oof.csv").read_text().splitlines()
    header, rows = text[0], [r.replace(",1,", ",9,", 1) for r in text[1:]]
    (base / "oof.csv").write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(ValueError, match="same images in the same folds"):
        main([*args, "--out", str(tmp_path / "refused"), "--arch", "seed", "--average-with", str(base)])
    assert not (tmp_path / "refused").exists()


def test_fit_detector_trains_averages_chooses_a_threshold_and_resumes(tiny_run, tmp_path, capsys):
    import shutil

    import keras

    from ecg_app.serving.ecg_detector import detector_batch
    from ecg_app.training.keras_networks import fitted_classifier

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_run / "model", model_dir)
    args = [
        "model",
        "fit-detector",
        "--model",
        str(model_dir),
        "--members",
        "2",
        "--epochs",
        "1",
        "--renders",
        "3",
    ]
    args += ["--charts", "2", "--data", str(tiny_run / "ecg"), "--non-ecg", str(tiny_run / "other")]
    assert main(args) == 0
    assert "ECG detector: threshold" in capsys.readouterr().out
    record = json.loads((model_dir / "model.json").read_text())["ecg_detector"]
    assert record["members"] == 2 and record["config"]["renders"] == 3 and 0 < record["threshold"] <= 1
    assert record["config"]["charts"] == 2
    assert record["validation"]["non_ecgs"] > 0 and record["validation"]["ecgs"] > 0
    members = [
        keras.saving.load_model(model_dir / "members" / f"detector-seed-{s}" / "ecg_detector.keras")
        for s in (42, 43)
    ]
    x = detector_batch([synthetic_printout(seed=5)])
    expected = np.mean([np.asarray(m.predict_on_batch(x)) for m in members], axis=0)
    classifier = fitted_classifier(model_dir)
    assert classifier.detector_threshold == record["threshold"]
    assert classifier.detect([synthetic_printout(seed=5)]) == pytest.approx(expected[:, 0], abs=1e-5)
    image = synthetic_printout(seed=5)
    features, probs = classifier.embed_proba([image])
    (decided,) = classifier.decide_batch(features, probs, classifier.detect([image]))
    assert decided.ecg_probability == pytest.approx(float(expected[0, 0]), abs=1e-5)
    # `predict` consults the detector only when the softmax says Non-ECG.
    consulted = CLASSES[int(probs[0].argmax())] == "NonECG"
    assert (classifier.predict(image).ecg_probability is not None) == consulted
    assert main(args) == 0  # finished members are reused, not retrained
    assert capsys.readouterr().out.count("reusing") == 2
    # Without the members (they are not shipped), the threshold alone is chosen again on validation:
    # a spoilt record is restored, since the same detector reads the same pictures the same way.
    shutil.rmtree(model_dir / "members")
    info = json.loads((model_dir / "model.json").read_text())
    info["ecg_detector"] = {**record, "threshold": 0.99, "validation": {}}
    (model_dir / "model.json").write_text(json.dumps(info))
    assert main([*args, "--threshold-only"]) == 0
    assert "member" not in capsys.readouterr().out
    assert json.loads((model_dir / "model.json").read_text())["ecg_detector"] == record


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


def test_distribute_on_one_machine_records_the_strategy(tiny_run, tmp_path, monkeypatch, capsys):
    """No TF_CONFIG: MirroredStrategy over the local GPUs, or the CPU as its one replica."""
    import tensorflow as tf

    from ecg_app.training.keras_networks import fitted_classifier

    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "mirrored"
    assert main(train_args(tiny_run, out, "--epochs", "1", "--seed", "1", "--distribute")) == 0
    print(capsys.readouterr().out)
    info = json.loads((out / "model.json").read_text())
    replicas = max(1, len(tf.config.list_physical_devices("GPU")))
    assert info["distribution"] == dict(strategy="MirroredStrategy", replicas=replicas, workers=1, task=None)
    assert info["config"]["distribute"] is True and info["config"]["batch_size"] == 4
    assert fitted_classifier(out).predict(synthetic_printout(seed=5)).label in CLASSES


def _cluster_env(workers: int, index: int, ports: list[int]) -> dict[str, str]:
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports[:workers]]},
        "task": {"type": "worker", "index": index},
    }
    return {**os.environ, "TF_CONFIG": json.dumps(tf_config)}


def test_distribute_with_a_one_worker_tf_config(tiny_run, tmp_path):
    """TF_CONFIG naming one worker: MultiWorkerMirroredStrategy; that worker is the chief and saves."""
    from ecg_app.training.keras_networks import fitted_classifier
    from tests.integration.app_server import free_port

    out = tmp_path / "one-worker"
    result = subprocess.run(
        [*CLI, *train_args(tiny_run, out, "--epochs", "1", "--seed", "1", "--distribute")],
        env=_cluster_env(1, 0, [free_port()]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    info = json.loads((out / "model.json").read_text())
    assert info["distribution"] == {
        "strategy": "MultiWorkerMirroredStrategy",
        "replicas": 1,
        "workers": 1,
        "task": {"type": "worker", "index": 0},
    }
    assert not list(out.glob("*.partial*"))
    assert fitted_classifier(out).predict(synthetic_printout(seed=5)).label in CLASSES


def test_distribute_with_two_workers_only_the_chief_writes(tiny_run, tmp_path):
    """Two workers on this host, one replica each: they train in step (same validation curve) and only
    worker 0 keeps a model directory; worker 1's scratch copy is gone when it exits."""
    from tests.integration.app_server import free_port

    ports = [free_port(), free_port()]
    outs = [tmp_path / f"worker{k}" for k in range(2)]
    processes = [
        subprocess.Popen(
            [*CLI, *train_args(tiny_run, outs[k], "--epochs", "2", "--seed", "1", "--distribute")],
            env=_cluster_env(2, k, ports),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for k in range(2)
    ]
    try:
        logs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    print(logs[0])
    assert [p.returncode for p in processes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    curves = [[line for line in log.splitlines() if "val macro-F1" in line] for log in logs]
    assert len(curves[0]) == 2 and curves[0] == curves[1]
    info = json.loads((outs[0] / "model.json").read_text())
    assert info["distribution"]["replicas"] == 2 and info["distribution"]["workers"] == 2
    assert not outs[1].exists()
    scratch = Path(next(line for line in logs[1].splitlines() if line.startswith("saved ")).split()[1]).parent
    assert scratch != outs[1] and not scratch.exists()


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "needs a 'cluster' object and a 'task'"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "task index 3"),
    ],
)
def test_distribute_rejects_a_malformed_tf_config(tmp_path, monkeypatch, capsys, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    out = tmp_path / "never"
    argv = ["model", "train", "--data", str(tmp_path / "missing"), "--out", str(out), "--distribute"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # rejected before any data was read or anything written


def test_finished_members_are_reused_only_with_the_same_settings(tmp_path, capsys):
    import keras

    from ecg_app.training.training import fit_or_reuse_members

    path, fitted = tmp_path / "seed-1" / "ecg_cnn.keras", []

    def fit(seed: int, to: Path) -> dict:
        to.parent.mkdir(parents=True, exist_ok=True)
        inputs = keras.Input((2,))
        keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(to)
        fitted.append(seed)
        return {"seed": seed}

    def run(settings: dict) -> None:
        fit_or_reuse_members([1], lambda seed: path, lambda seed: settings, fit)

    before = {"arch": "default", "epochs": 1}  # as recorded before `charts` existed (a detector's)
    run(before)
    run(before)
    assert fitted == [1]
    run({**before, "charts": 0})  # the default that older members were trained with
    assert fitted == [1] and capsys.readouterr().out.count("reusing") == 2
    run({**before, "charts": 600})  # a different recipe: trained again
    assert fitted == [1, 1]
    run({**before, "epochs": 2, "charts": 600})
    assert fitted == [1, 1, 1]


def test_a_member_recorded_with_a_retired_candidate_setting_off_is_reused(tmp_path):
    """Members recorded while a candidate's setting existed (`weight_average`, ...) carry it at its off
    value; with the candidate gone from the package they were trained as without it, and are reused.
    Recorded on, they are not."""
    from ecg_app.training.training import MEMBER_RECORD, finished_member

    record = tmp_path / MEMBER_RECORD
    settings = {"arch": "default", "epochs": 1}
    record.write_text(json.dumps({"settings": {**settings, "weight_average": 0.0, "synthetic_ecgs": 0}}))
    assert finished_member(record, settings)
    record.write_text(json.dumps({"settings": {**settings, "weight_average": 0.99}}))
    assert finished_member(record, settings) is None


def test_fit_diagnosis_adds_a_lead_network_that_the_classifier_combines_and_recalibrates(tiny_run, tmp_path):
    import shutil

    from ecg_app.serving.explain import GradCam, PageAndLeads, build_explainer
    from ecg_app.serving.lead_diagnosis import DIAGNOSIS_FILE, combine
    from ecg_app.serving.preprocess import preprocess
    from ecg_app.training.diagnosis_fit import DiagnosisConfig, fit_diagnosis
    from ecg_app.training.keras_networks import KerasNetworks, fitted_classifier
    from ecg_app.training.lead_signals import LeadSignals
    from ecg_app.training.networks import curve_readers

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_run / "model", model_dir)
    before = fitted_classifier(model_dir)
    pages = [synthetic_printout(seed=s) for s in (1, 2)]
    batch = np.stack([preprocess(p) for p in pages])
    page_log_p = before.logits(batch)
    roots = {"mendeley": tiny_run / "ecg", "non_ecg": tiny_run / "other"}
    config = DiagnosisConfig(members=2, epochs=1, draws_per_class=4, batch_size=4, seed=3, page_share=0.25)
    record = fit_diagnosis(model_dir, roots, config)
    assert (model_dir / DIAGNOSIS_FILE).is_file() and record["members"] == 2
    assert sorted(p.name for p in (model_dir / "members").iterdir()) == [
        "diagnosis-seed-3",
        "diagnosis-seed-4",
    ]
    info = json.loads((model_dir / "model.json").read_text())
    assert info["version"].startswith(before.version + "+leads2-")
    assert info["temperature"] == record["temperature"] and info["ecg_diagnosis"]["config"]["epochs"] == 1
    after = fitted_classifier(model_dir)
    assert after.has_diagnosis
    # Both readers behind one digitiser, served without their optimizer state (which would triple the file).
    saved = KerasNetworks(model_dir).network("diagnosis")
    readers = curve_readers(saved)
    assert len(readers) == 2 and not any(getattr(r, "optimizer", None) for r in readers)
    assert sum(isinstance(layer, LeadSignals) for layer in saved.layers) == 1
    diagnosis = saved.predict(batch, verbose=0)
    # Served probabilities: the page network's P(Non-ECG), the rest shared as the recorded mix says.
    expected = combine(np.exp(page_log_p), diagnosis, 0.25)
    np.testing.assert_allclose(np.exp(after.logits(batch)), expected, atol=1e-5)
    # Its explanation adds the lead map to Grad-CAM; the page network alone keeps Grad-CAM alone.
    assert isinstance(build_explainer(after), PageAndLeads) and isinstance(build_explainer(before), GradCam)
    # Re-running reuses the finished members and keeps the page network's version as the stem.
    again = fit_diagnosis(model_dir, roots, config)
    assert again["train_seconds"] == record["train_seconds"]
    version = json.loads((model_dir / "model.json").read_text())["version"]
    assert version.startswith(before.version + "+leads2-") and version.count("+") == 1


def test_cross_validate_judges_the_lead_diagnosis_combined_with_an_earlier_runs_page_networks(
    tiny_run, tmp_path, capsys
):
    import csv

    def read(path: Path) -> dict[str, np.ndarray]:
        with path.open(newline="") as handle:
            return {
                r["path"]: np.array([float(r[f"p_{c}"]) for c in CLASSES]) for r in csv.DictReader(handle)
            }

    args = ["model", "cross-validate", "--model", str(tiny_run / "model"), "--folds", "2"]
    page, judged = tmp_path / "page", tmp_path / "diagnosis"
    assert (
        main([*args, "--out", str(page), "--epochs", "1", "--samples-per-class", "4", "--batch-size", "4"])
        == 0
    )
    capsys.readouterr()
    # The recipe's 60 epochs of 120 draws per class are too slow for a test: a tiny one.
    tiny = ["--diagnosis-epochs", "1", "--diagnosis-draws-per-class", "4", "--diagnosis-batch-size", "4"]
    judge = ["--diagnosis-with", str(page), "--diagnosis-members", "2", "--diagnosis-page-share", "0.5"]
    assert main([*args, "--out", str(judged), *judge, *tiny, "--baseline", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "diagnosis network alone, ECG printouts: accuracy" in printed
    assert f"against {page}: macro-F1" in printed
    pages, pair = read(page / "oof.csv"), read(judged / "oof.csv")
    assert sorted(pair) == sorted(pages)
    non_ecg = CLASSES.index("NonECG")
    for path, probs in pair.items():
        assert probs[non_ecg] == pytest.approx(pages[path][non_ecg], abs=2e-6)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    result = json.loads((judged / "cv.json").read_text())
    assert result["recipe"]["page_run"] == str(page) and "against_baseline" in result
    assert result["recipe"]["diagnosis"]["seed"] == 42  # the networks' seed; the folds are the model's
    assert result["recipe"]["members_per_fold"] == 2 and result["recipe"]["page_share"] == 0.5
    assert {k: result["recipe"]["diagnosis"][k] for k in ("epochs", "draws_per_class")} == {
        "epochs": 1,
        "draws_per_class": 4,
    }
    assert sorted(p.name for p in (judged / "fold-1").iterdir()) == ["seed-42", "seed-43"]
    assert sum(n for _, n in result["diagnosis_alone"]["recalled"].values()) == result["diagnosis_alone"]["n"]
    assert sorted(p.name for p in judged.iterdir()) == ["cv.json", "fold-1", "fold-2", "oof.csv"]
    # Options that change the page recipe make no sense here: refused before any work.
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "x"), "--diagnosis-with", str(page), "--arch", "seed"])
    assert "judges its own recipe" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "x"), "--diagnosis-page-share", "0.5"])
    assert "--diagnosis-page-share needs --diagnosis-with" in capsys.readouterr().err
