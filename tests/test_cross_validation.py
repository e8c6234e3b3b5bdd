"""Fold assignment and recipe recovery for `ecg-app cross-validate` (the training run itself is
exercised end to end in test_training_cli.py)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ecg_app import dataset
from ecg_app.cli import main
from ecg_app.cross_validation import assign_folds, recipe


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
    assert (config.synthetic_ecgs, config.weight_average) == (0, 0.0)  # not recorded: trained without
    assert recipe(info, roots, weight_average=0.99).weight_average == 0.99  # a candidate recipe


@pytest.mark.parametrize(("folds", "message"), [("1", "needs at least 2 folds"), ("x", "not a whole number")])
def test_the_fold_count_is_checked_before_any_work(folds, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["cross-validate", "--folds", folds, "--model", "does-not-exist"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
