"""Fold assignment and recipe recovery for `ecg-app model cross-validate` (the training run itself is
exercised end to end in test_training_cli.py)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ecg_app.cli import main
from ecg_app.labels import CLASSES, ECG_CLASSES
from ecg_app.serving.classifier import MODEL_INFO_FILE
from ecg_app.serving.lead_diagnosis import combine
from ecg_app.training import dataset
from ecg_app.training.cross_validation import (
    HELD_OUT_FILE,
    MIN_MACRO_F1_GAIN,
    PREDICTIONS_FILE,
    RESULT_FILE,
    _fold_predictions,
    _probabilities,
    _read_rows,
    assign_folds,
    compare_runs,
    fold_settings,
    out_of_fold_summary,
    recipe,
)
from ecg_app.training.metrics import compute_metrics, macro_f1
from ecg_app.training.training import MEMBER_RECORD, finished_member, member_settings
from tests.conftest import MODEL_DIR

# The shipped recipe's out-of-fold predictions, kept beside the model as the rule's baseline.
BASELINE_RUN = MODEL_DIR / "cross-validation" / "default"


def _samples() -> list[dataset.Sample]:
    """60 HMI and 40 AHB printouts in groups of one to three duplicates, plus two kinds of non-ECG."""
    samples = []
    for label, n_groups in (("HMI", 30), ("AHB", 20)):
        for g in range(n_groups):
            for copy in range(1 + g % 3):
                path = Path(f"/data/{label}/{label}({g})-{copy}.jpg")
                samples.append(dataset.Sample(path, label, "mendeley", group=f"mendeley/{label}/{g}"))
    for kind in ("photos", "xrays"):
        for g in range(10):
            path = Path(f"/non/{kind}/{g}.jpg")
            samples.append(dataset.Sample(path, "NonECG", "non_ecg", group=f"non_ecg/{kind}/{g}"))
    return samples


def test_folds_keep_duplicate_groups_together_and_cover_every_sample():
    samples = _samples()
    fold = assign_folds(samples, 5, seed=42)
    assert set(fold.tolist()) == set(range(5))
    folds_of_group: dict[str, set[int]] = {}
    for s, f in zip(samples, fold, strict=True):
        folds_of_group.setdefault(s.group, set()).add(int(f))
    assert all(len(folds) == 1 for folds in folds_of_group.values())


def test_folds_are_stratified_and_deterministic():
    samples = _samples()
    fold = assign_folds(samples, 5, seed=42)
    first_copies = [(s, f) for s, f in zip(samples, fold, strict=True) if s.path.name.endswith("-0.jpg")]
    hmi_groups_per_fold = Counter(int(f) for s, f in first_copies if s.label == "HMI")
    assert sorted(hmi_groups_per_fold.values()) == [6] * 5  # 30 groups, 6 in each fold
    xray_folds = {int(f) for s, f in zip(samples, fold, strict=True) if "xrays" in str(s.path)}
    assert len(xray_folds) == 5  # every kind of non-ECG image is spread over the folds
    assert np.array_equal(fold, assign_folds(samples, 5, seed=42))
    assert not np.array_equal(fold, assign_folds(samples, 5, seed=7))


def test_recipe_is_the_recorded_single_network_config():
    info = {
        "config": {
            "data_dir": "elsewhere",
            "out_dir": "runs/ens",
            "arch": "default",
            "epochs": 40,
            "seed": 42,
            "batch_size": 16,
            "ensemble": 3,
            "learning_rate": 0.002,
            "a_setting_from_a_later_version": 1,
        }
    }
    roots = {"mendeley": Path("/data/m"), "non_ecg": Path("/data/n")}
    config = recipe(info, roots, epochs=2)
    assert config.data_dir == Path("/data/m") and config.non_ecg_dir == Path("/data/n")
    assert config.other_ecg_dir is None
    assert (config.epochs, config.seed, config.batch_size, config.ensemble) == (2, 42, 16, 1)
    assert recipe(info, roots, samples_per_class=48).samples_per_class == 48  # a candidate recipe


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (["--folds", "1"], "needs at least 2 folds"),
        (["--folds", "x"], "not a whole number"),
        (["--diagnosis-page-share", "1.5"], "a number in [0, 1]"),
        (["--diagnosis-page-share", "x"], "not a number"),
        (["--arch", "resnet"], "unknown network 'resnet'; choose one of default, seed"),
    ],
)
def test_settings_are_checked_before_any_work(argument, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["model", "cross-validate", *argument, "--model", "does-not-exist"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def write_oof(run: Path, rows: list[tuple[str, str, int, str]]) -> Path:
    """oof.csv rows (path, true label, fold, predicted class) with all probability on the prediction."""
    import csv

    run.mkdir(parents=True)
    with (run / "oof.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "label", "group", "fold", *(f"p_{c}" for c in CLASSES)])
        for path, label, fold, predicted in rows:
            writer.writerow([path, "mendeley", label, path, fold, *(float(c == predicted) for c in CLASSES)])
    return run


# 10 images per class, all right, except the ones each test changes (other-layout ECGs are not scored).
RIGHT = [(f"{c}/{k}.jpg", c, k % 2 + 1, c) for c in CLASSES for k in range(10)] + [
    ("other/0.jpg", dataset.OTHER_ECG, 1, "NonECG")
]


def with_errors(errors: dict[str, str]) -> list[tuple[str, str, int, str]]:
    return [(p, label, f, errors.get(p, pred)) for p, label, f, pred in RIGHT]


def test_a_candidate_replaces_the_recipe_only_by_the_rule(tmp_path):
    baseline = write_oof(tmp_path / "base", with_errors({f"HMI/{k}.jpg": "AHB" for k in range(3)}))
    better = write_oof(tmp_path / "better", with_errors({"HMI/0.jpg": "AHB"}))
    verdict = compare_runs(baseline, better, n_boot=200)
    assert verdict["n"] == 50 and verdict["fixed"] == ["HMI/1.jpg", "HMI/2.jpg"] and verdict["broken"] == []
    assert verdict["macro_f1"]["gain"] >= MIN_MACRO_F1_GAIN and verdict["replaces_baseline"]
    low, high = verdict["macro_f1"]["gain_ci95"]
    assert 0 <= low <= verdict["macro_f1"]["gain"] <= high
    # Better on macro-F1 but one infarction fewer: the rule refuses it.
    misses_mi = write_oof(tmp_path / "mi", with_errors({"HMI/0.jpg": "AHB", "MI/0.jpg": "AHB"}))
    assert compare_runs(baseline, misses_mi, n_boot=200)["macro_f1"]["gain"] > MIN_MACRO_F1_GAIN
    assert not compare_runs(baseline, misses_mi, n_boot=200)["replaces_baseline"]
    # No gain at all: not replaced.
    assert not compare_runs(baseline, baseline, n_boot=200)["replaces_baseline"]


def test_runs_on_different_folds_are_not_compared(tmp_path):
    baseline = write_oof(tmp_path / "base", RIGHT)
    refolded = write_oof(tmp_path / "other", [(p, label, 3 - f, pred) for p, label, f, pred in RIGHT])
    with pytest.raises(ValueError, match="same folds"):
        compare_runs(baseline, refolded)


def test_the_baseline_kept_in_the_repo_is_the_model_recipe_on_the_model_folds():
    """The shipped recipe's cross-validation kept in the repo (the rule's baseline; only `member.json`
    and `held-out.csv` per finished fold, not the networks): every fold there records the recipe in
    `model.json` on the model's folds, so `cross-validate --out` that folder reuses it instead of
    retraining, and its predictions cover exactly that fold's train + validation images."""
    info = json.loads((MODEL_DIR / MODEL_INFO_FILE).read_text())
    roots = {source: Path(f"/data/{source}") for source in ("mendeley", "non_ecg", "other_ecg")}
    pool = [s for s in dataset.read_manifest(MODEL_DIR / "split.csv", roots) if s.split != "test"]
    fold = assign_folds(pool, 5, int(info["config"]["seed"]))
    settings = member_settings(recipe(info, roots))
    kept = sorted(BASELINE_RUN.glob("fold-*"))
    assert kept  # the networks a run leaves beside them are gitignored, never committed
    for folder in kept:
        k = int(folder.name.removeprefix("fold-")) - 1
        assert finished_member(folder / MEMBER_RECORD, fold_settings(settings, pool, fold, k))
        rows = _read_rows(folder / HELD_OUT_FILE)
        held = [dataset.relative_path(pool[i], roots) for i in np.flatnonzero(fold == k)]
        assert sorted(rows) == sorted(held)
        assert {row["fold"] for row in rows.values()} == {str(k + 1)}
        np.testing.assert_allclose(_probabilities(rows, held).sum(axis=1), 1.0, atol=1e-4)


def test_the_kept_baselines_pooled_figures_are_its_folds_predictions():
    """`oof.csv` is the five folds' `held-out.csv` put together, and `cv.json`'s out-of-fold figures
    (the ones the model card quotes) are what `compute_metrics` makes of it, bootstrap intervals included."""
    pooled = _read_rows(BASELINE_RUN / PREDICTIONS_FILE)
    folds = [_read_rows(folder / HELD_OUT_FILE) for folder in sorted(BASELINE_RUN.glob("fold-*"))]
    assert len(folds) == 5 and pooled == {path: row for rows in folds for path, row in rows.items()}
    scored = sorted(path for path, row in pooled.items() if row["label"] != dataset.OTHER_ECG)
    y = np.array([CLASSES.index(pooled[path]["label"]) for path in scored])
    probs = _probabilities(pooled, scored)
    result = json.loads((BASELINE_RUN / RESULT_FILE).read_text())
    assert result["out_of_fold"] == json.loads(json.dumps(compute_metrics(y, probs)))
    fold = np.array([int(pooled[path]["fold"]) for path in scored])
    per_fold = [macro_f1(y[fold == k], probs[fold == k].argmax(axis=1)) for k in range(1, 6)]
    assert [f["macro_f1"] for f in result["per_fold"]] == pytest.approx(per_fold, abs=1e-9)


def _kept_figures_match(result: dict, run: Path) -> None:
    """`cv.json`'s out-of-fold figures are what `compute_metrics` makes of the run's `oof.csv` (written
    after them, rounded to six decimals: the decided classes are the same, the calibration error nearly)."""
    rows = _read_rows(run / PREDICTIONS_FILE)
    scored = sorted(path for path, row in rows.items() if row["label"] != dataset.OTHER_ECG)
    y = np.array([CLASSES.index(rows[path]["label"]) for path in scored])
    expected = json.loads(json.dumps(compute_metrics(y, _probabilities(rows, scored))))
    assert result["out_of_fold"]["ece"] == pytest.approx(expected.pop("ece"), abs=1e-5)
    skip = ("ece", "roc", "reliability")
    assert {k: v for k, v in result["out_of_fold"].items() if k not in skip} == {
        k: v for k, v in expected.items() if k not in skip
    }


@pytest.mark.parametrize(
    ("name", "members", "baseline", "replaces"),
    [("diagnosis-mix", 2, "default", True), ("diagnosis-mix4", 4, "diagnosis-mix", False)],
)
def test_a_diagnosis_candidates_verdict_follows_from_its_kept_predictions(name, members, baseline, replaces):
    """The fifth candidate (`diagnosis-mix`: passed the rule, shipped) and the sixth (`diagnosis-mix4`:
    four seeds per fold, judged against the fifth; did not pass), see docs/experiments.md: each `oof.csv` is
    the kept baseline's page probabilities combined with the mean of each fold's diagnosis networks'
    `held-out.csv`, and `cv.json`'s figures and verdict are what that gives."""
    run = MODEL_DIR / "cross-validation" / name
    result = json.loads((run / RESULT_FILE).read_text())
    share = result["recipe"]["page_share"]
    page, judged = _read_rows(BASELINE_RUN / PREDICTIONS_FILE), _read_rows(run / PREDICTIONS_FILE)
    assert sorted(judged) == sorted(page) and share == 0.5
    assert result["recipe"]["members_per_fold"] == members
    for folder in sorted(run.glob("fold-*")):
        kept = [_read_rows(seed / HELD_OUT_FILE) for seed in sorted(folder.glob("seed-*"))]
        held = sorted(kept[0])
        assert len(kept) == members and all(sorted(m) == held for m in kept)
        diagnosis = np.mean([_probabilities(m, held, ECG_CLASSES) for m in kept], axis=0)
        expected = combine(_probabilities(page, held), diagnosis, share)
        np.testing.assert_allclose(_probabilities(judged, held), expected, atol=1.5e-6)
    _kept_figures_match(result, run)
    verdict = json.loads(json.dumps(compare_runs(MODEL_DIR / "cross-validation" / baseline, run)))
    assert result["against_baseline"] == {"baseline": f"model/cross-validation/{baseline}", **verdict}
    assert verdict["replaces_baseline"] is replaces
    assert (verdict["macro_f1"]["gain"] >= MIN_MACRO_F1_GAIN) is replaces


def test_the_pretrained_backbones_kept_runs_give_their_verdicts():
    """The eighth candidate (EfficientNet-Lite0 fine-tuned, see docs/experiments.md) and its pair with
    the kept recipe, neither adopted: the backbone's `oof.csv` is its five folds' `held-out.csv`, the
    pair's is the mean of the kept recipe's and the backbone's probabilities, and each `cv.json`'s
    figures and verdict follow from them."""
    mix = MODEL_DIR / "cross-validation" / "diagnosis-mix"
    alone, pair = (MODEL_DIR / "cross-validation" / f"backbone-lite0{end}" for end in ("", "-pair"))
    folds = [_read_rows(folder / HELD_OUT_FILE) for folder in sorted(alone.glob("fold-*"))]
    own = _read_rows(alone / PREDICTIONS_FILE)
    assert len(folds) == 5 and own == {path: row for rows in folds for path, row in rows.items()}
    paths, kept = sorted(own), _read_rows(mix / PREDICTIONS_FILE)
    mean = (_probabilities(kept, paths) + _probabilities(own, paths)) / 2
    np.testing.assert_allclose(_probabilities(_read_rows(pair / PREDICTIONS_FILE), paths), mean, atol=1.5e-6)
    for run, gain in ((alone, -0.050), (pair, -0.005)):
        result = json.loads((run / RESULT_FILE).read_text())
        _kept_figures_match(result, run)
        verdict = json.loads(json.dumps(compare_runs(mix, run)))
        assert result["against_baseline"] == {"baseline": "model/cross-validation/diagnosis-mix", **verdict}
        assert verdict["macro_f1"]["gain"] == pytest.approx(gain, abs=5e-4)
        assert verdict["replaces_baseline"] is False


def test_the_dashboards_out_of_fold_figures_are_the_shipped_recipes_kept_run():
    """metrics.json's "cross_validation" (the Model Performance tab shows it) is `out_of_fold_summary` of
    the kept run of the recipe the shipped model was built with: its diagnosis networks' settings
    (seed and count apart), the same page share, and the kept baseline as its page networks."""
    metrics = json.loads((MODEL_DIR / "metrics.json").read_text())
    run = MODEL_DIR / "cross-validation" / "diagnosis-mix"
    assert metrics["cross_validation"] == json.loads(json.dumps(out_of_fold_summary(run)))
    assert metrics["cross_validation"]["run"] == "model/cross-validation/diagnosis-mix"
    shipped = json.loads((MODEL_DIR / MODEL_INFO_FILE).read_text())["ecg_diagnosis"]["config"]
    kept = json.loads((run / RESULT_FILE).read_text())["recipe"]
    ignored = ("seed", "members", "page_share")
    assert {k: v for k, v in kept["diagnosis"].items() if k not in ignored} == {
        k: v for k, v in shipped.items() if k not in ignored
    }
    assert kept["page_share"] == shipped["page_share"]
    assert kept["page_run"] == "model/cross-validation/default"
    summary = out_of_fold_summary(BASELINE_RUN)
    assert summary["networks_per_fold"] == {"page": 1, "diagnosis": 0}
    assert summary["n"] == sum(row["support"] for row in summary["per_class"].values())


def test_a_fold_resumes_from_its_held_out_predictions_and_never_from_another_recipes(tmp_path):
    import keras

    pool, roots = _samples(), {"mendeley": Path("/data"), "non_ecg": Path("/non")}
    fold = assign_folds(pool, 5, seed=42)
    n_held, path = int((fold == 0).sum()), tmp_path / "fold-1" / "net.keras"
    fitted = []

    def fit(target: Path) -> dict:
        fitted.append(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        keras.Sequential([keras.Input((1,)), keras.layers.Dense(len(CLASSES))]).save(target)
        return {}

    def says(c: int):
        return lambda network: np.eye(len(CLASSES))[[c] * n_held]

    def fold_one(settings, predict):
        return _fold_predictions(settings, pool, fold, 0, path, fit, predict, CLASSES, roots)

    first, second = {"seed": 1, "epochs": 1}, {"seed": 1, "epochs": 2}
    assert fold_one(first, says(0)).argmax(axis=1).tolist() == [0] * n_held and len(fitted) == 1
    path.unlink()  # as in the repo: member.json and held-out.csv only
    assert fold_one(first, says(3)).argmax(axis=1).tolist() == [0] * n_held and len(fitted) == 1

    def interrupted(network):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the new recipe's network is fitted, but never predicts
        fold_one(second, interrupted)
    # member.json now records the new recipe: the old recipe's predictions must not pass for its.
    assert fold_one(second, says(2)).argmax(axis=1).tolist() == [2] * n_held and len(fitted) == 2
