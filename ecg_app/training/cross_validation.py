"""Grouped k-fold cross-validation of a model's training recipe: `ecg-app model cross-validate`.

Why: the test split holds 10 History-of-MI printouts, so one image moves HMI recall by 10 points, and
validation is too small to rank recipes. Cross-validation over the training and validation printouts
gives every one of them an out-of-fold prediction from a network that never saw it or its duplicates
(folds are whole duplicate groups, stratified like the split). The test split is never read, so it
stays untouched for the final figure. Each fold trains one network with the recipe recorded in
`model.json` and keeps its best epoch on an inner validation fold, as `ecg-app model train` does.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ecg_app.config import portable_path
from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG
from ecg_app.serving.classifier import MODEL_INFO_FILE
from ecg_app.serving.lead_diagnosis import DIAGNOSIS_FILE, combine
from ecg_app.serving.preprocess import preprocess
from ecg_app.training import dataset
from ecg_app.training.dataset import model_roots
from ecg_app.training.diagnosis_fit import (
    DiagnosisConfig,
    ecg_training_set,
    fit_reader,
    settings_of,
)
from ecg_app.training.keras_networks import PAGE_FILE as MODEL_FILE
from ecg_app.training.metrics import bootstrap_ci, compute_metrics, macro_f1
from ecg_app.training.model_files import write_json_atomic
from ecg_app.training.training import (
    MEMBER_RECORD,
    TrainConfig,
    finished_member,
    fit_member,
    fit_or_reuse_members,
    labelled_arrays,
    member_settings,
)

RESULT_FILE = "cv.json"
PREDICTIONS_FILE = "oof.csv"
NETWORK_PREDICTIONS_FILE = "oof-network.csv"  # with average_with: this run's network alone
HELD_OUT_FILE = "held-out.csv"  # beside each fold network: its probabilities for the held-out fold


def recipe(info: dict, roots: dict[str, Path], **overrides) -> TrainConfig:
    """The `TrainConfig` recorded in a `model.json` (one network, not the ensemble), with `overrides`."""
    stored = info["config"]
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(
        **{k: v for k, v in stored.items() if k in known and not k.endswith("_dir")},
        data_dir=roots["mendeley"],
        non_ecg_dir=roots.get("non_ecg"),
        other_ecg_dir=roots.get("other_ecg"),
    )
    return replace(config, ensemble=1, distribute=False, **overrides)


def assign_folds(samples: list[dataset.Sample], n_folds: int, seed: int) -> np.ndarray:
    """Fold index per sample: duplicate groups never straddle folds; strata as in the split."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    strata = [dataset.stratum(s) for s in samples]
    groups = [s.group for s in samples]
    fold = np.full(len(samples), -1)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(samples)), strata, groups)):
        fold[held] = k
    return fold


def _inner_validation(samples: list[dataset.Sample], val_fraction: float, seed: int) -> np.ndarray:
    """Mask of the fold-training samples kept back to choose the best epoch (whole groups again)."""
    largest_stratum = max(Counter(dataset.stratum(s) for s in samples).values())
    n_splits = min(round(1 / val_fraction), largest_stratum, len({s.group for s in samples}))
    return assign_folds(samples, max(2, n_splits), seed) == 0


def _held_out_digest(samples: list[dataset.Sample]) -> str:
    return hashlib.md5("\n".join(sorted({s.group for s in samples})).encode()).hexdigest()[:12]


def fold_settings(settings: dict, pool, fold: np.ndarray, k: int) -> dict:
    """A network's `settings` plus its fold and a digest of the groups it holds out: what its
    `member.json` must record for the fold to be reused."""
    return {
        **settings,
        "fold": f"{k + 1}/{int(fold.max()) + 1}",
        "held_out_groups": _held_out_digest([pool[i] for i in np.flatnonzero(fold == k)]),
    }


def _fold_predictions(
    settings: dict, pool, fold: np.ndarray, k: int, path: Path, fit, predict, classes, roots
):
    """Fold `k`'s network's probabilities (columns `classes`) for its held-out images.

    They are kept in `HELD_OUT_FILE` beside the network's `member.json` and reused when that records these
    settings on the same held-out groups, even with the network gone: a run resumes from those small
    files (the baseline kept in the repo is such a run). Otherwise the network is `fit(path)`, or reused
    from `path`, and `predict(network)` gives them."""
    held = np.flatnonzero(fold == k)
    settings = fold_settings(settings, pool, fold, k)
    stored = path.with_name(HELD_OUT_FILE)
    paths = [dataset.relative_path(pool[i], roots) for i in held]
    if stored.is_file() and finished_member(path.with_name(MEMBER_RECORD), settings):
        print(f"fold {settings['fold']} (seed {settings['seed']}): reusing {stored}")
        return _probabilities(_read_rows(stored), paths, classes)
    stored.unlink(missing_ok=True)  # another recipe's, which a refit interrupted before predicting would keep
    _, (network,) = fit_or_reuse_members(
        [settings["seed"]],
        lambda _: path,
        lambda _: settings,
        lambda _, target: fit(target),
        label=f"fold {settings['fold']}",
    )
    probs = predict(network)
    keras.backend.clear_session()
    _write_predictions([pool[i] for i in held], fold[held], probs, stored, roots, classes)
    return _probabilities(_read_rows(stored), paths, classes)  # as stored, so a resumed run is identical


def _fold_network(config: TrainConfig, pool, images, fold: np.ndarray, k: int, out_dir: Path, roots):
    """Fold `k`'s held-out probabilities from a network fitted (or reused) on the other folds, its best
    epoch chosen on an inner fold."""

    def fit(path: Path) -> dict:
        rest = np.flatnonzero(fold != k)
        inner_val = _inner_validation([pool[i] for i in rest], config.val_fraction, config.seed)
        fit_idx, val_idx = rest[~inner_val], rest[inner_val]
        x_val, y_val = labelled_arrays([pool[i] for i in val_idx], [images[i] for i in val_idx])
        train_samples = [pool[i] for i in fit_idx]
        train_images = [images[i] for i in fit_idx]
        return fit_member(config, train_samples, train_images, x_val, y_val, path)

    return _fold_predictions(
        member_settings(config),
        pool,
        fold,
        k,
        out_dir / f"fold-{k + 1}" / MODEL_FILE,
        fit,
        lambda network: _predict_held_out(network, images, fold, k),
        CLASSES,
        roots,
    )


def _predict_held_out(network, images, fold: np.ndarray, k: int) -> np.ndarray:
    inputs = np.stack([preprocess(images[i]) for i in np.flatnonzero(fold == k)])
    return network.predict(inputs, batch_size=32, verbose=0)


def _folded_pool(model_dir: Path, roots: dict[str, Path] | None, n_folds: int):
    """What every cross-validation reads: the model's `model.json`, its data roots, the train +
    validation images (never the test split) in the model's folds (its recorded seed), and their class
    indices, -1 for other-layout ECGs, whose diagnosis is unknown (not scored)."""
    info = json.loads((Path(model_dir) / MODEL_INFO_FILE).read_text())
    data_roots = model_roots(info, roots)
    manifest = dataset.read_manifest(Path(model_dir) / "split.csv", data_roots)
    pool, images = dataset.load_images([s for s in manifest if s.split != "test"])
    fold = assign_folds(pool, n_folds, int(info["config"]["seed"]))
    y = np.array([-1 if s.label == dataset.OTHER_ECG else CLASSES.index(s.label) for s in pool])
    return info, data_roots, pool, images, fold, y


def cross_validate(
    model_dir: Path,
    out_dir: Path,
    n_folds: int = 5,
    roots: dict[str, Path] | None = None,
    baseline: Path | None = None,
    average_with: Path | None = None,
    **overrides,
) -> dict:
    """Train one network per fold on the other folds, predict the held-out fold, pool the predictions.

    Writes `out_dir/oof.csv` (one row per image) and `out_dir/cv.json` (pooled metrics with bootstrap
    intervals, per-fold macro-F1, the misclassified images, and with `baseline`, another run on the same
    folds, the rule's verdict from `compare_runs`); finished folds are reused on a re-run, from their
    held-out predictions alone when the networks are gone (`_fold_predictions`). With
    `average_with`, another run on the same folds, the recipe judged is the pair of networks: each
    image's prediction is the mean of the two runs' probabilities (as an ensemble of the two averages
    them), and the new network's own figures are kept under "network_alone".
    """
    info, data_roots, pool, images, fold, y = _folded_pool(model_dir, roots, n_folds)
    config = recipe(info, data_roots, **overrides)
    out_dir = Path(out_dir)
    partner = None if average_with is None else _run_probabilities(Path(average_with), pool, fold, data_roots)
    own = np.full((len(pool), len(CLASSES)), np.nan)
    per_fold = []
    for k in range(n_folds):
        held = np.flatnonzero(fold == k)
        own[held] = _fold_network(config, pool, images, fold, k, out_dir, data_roots)
        scored = held[y[held] >= 0]
        fold_f1 = macro_f1(y[scored], _mean_with(partner, own)[scored].argmax(axis=1))
        per_fold.append({"fold": k + 1, "n": len(scored), "macro_f1": fold_f1})
        print(f"fold {k + 1}/{n_folds}: n={len(scored)} macro-F1 {fold_f1:.3f}")
    probs = _mean_with(partner, own)
    _write_predictions(pool, fold, probs, out_dir / PREDICTIONS_FILE, data_roots)
    result = _summarise(pool, fold, y, probs, per_fold, _as_stored(member_settings(config)), model_dir)
    if partner is not None:
        labelled = y >= 0
        result["averaged_with"] = str(average_with)
        result["network_alone"] = compute_metrics(y[labelled], own[labelled])
        _write_predictions(pool, fold, own, out_dir / NETWORK_PREDICTIONS_FILE, data_roots)
    if baseline is not None:
        result["against_baseline"] = {"baseline": str(baseline), **compare_runs(Path(baseline), out_dir)}
    write_json_atomic(result, out_dir / RESULT_FILE)
    return result


def _as_stored(settings: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}


def _fold_diagnosis(config: DiagnosisConfig, pool, images, fold: np.ndarray, k: int, out_dir: Path, roots):
    """Fold `k`'s held-out diagnosis probabilities: the mean of `config.members` networks (seeds
    `config.seed`, +1, ...) fitted (or reused) on the other folds' ECG printouts."""
    rest = np.flatnonzero(fold != k)

    @functools.cache
    def training_set():  # digitised once, and only if a network has to be fitted
        return ecg_training_set([pool[i] for i in rest], [images[i] for i in rest])

    def fit(path: Path, seed: int) -> dict:
        return fit_reader(*training_set(), config, seed, path)

    seeds = [config.seed + j for j in range(config.members)]
    # One network per fold sits in the fold's folder (as the fourth candidate's run was written).
    folder = [out_dir / f"fold-{k + 1}" / ("" if len(seeds) == 1 else f"seed-{seed}") for seed in seeds]
    return np.mean(
        [
            _fold_predictions(
                settings_of(config, seed),
                pool,
                fold,
                k,
                where / DIAGNOSIS_FILE,
                lambda path, seed=seed: fit(path, seed),
                lambda network: _predict_held_out(network, images, fold, k),
                ECG_CLASSES,
                roots,
            )
            for seed, where in zip(seeds, folder, strict=True)
        ],
        axis=0,
    )


def cross_validate_diagnosis(
    model_dir: Path,
    out_dir: Path,
    page_run: Path,
    n_folds: int = 5,
    roots: dict[str, Path] | None = None,
    baseline: Path | None = None,
    config: DiagnosisConfig | None = None,
) -> dict:
    """Cross-validate the lead-reading diagnosis network (`diagnosis_fit`'s recipe; `config.members`
    networks per fold, averaged, one by default) combined with `page_run`'s page networks, an earlier
    run on the same folds, as the classifier combines them (`lead_diagnosis.combine` with
    `config.page_share`). Each fold's networks are trained on the other folds' ECG printouts and
    predict the held-out fold through the served path (ink map -> `LeadSignals`). Writes `oof.csv`
    and `cv.json` like `cross_validate`; the diagnosis networks' own 4-class figures on the ECG
    printouts go under "diagnosis_alone"."""
    config = config or DiagnosisConfig(members=1)
    share = config.page_share
    # The folds are the model's (its recorded seed), as `page_run`'s; the networks' seed is the config's.
    _, data_roots, pool, images, fold, y = _folded_pool(model_dir, roots, n_folds)
    page = _run_probabilities(Path(page_run), pool, fold, data_roots)
    out_dir = Path(out_dir)
    diagnosis = np.full((len(pool), len(ECG_CLASSES)), np.nan)
    per_fold = []
    for k in range(n_folds):
        held = np.flatnonzero(fold == k)
        diagnosis[held] = _fold_diagnosis(config, pool, images, fold, k, out_dir, data_roots)
        scored = held[y[held] >= 0]
        fold_f1 = macro_f1(y[scored], combine(page[scored], diagnosis[scored], share).argmax(axis=1))
        per_fold.append({"fold": k + 1, "n": len(scored), "macro_f1": fold_f1})
        print(f"fold {k + 1}/{n_folds}: n={len(scored)} macro-F1 {fold_f1:.3f}")
    probs = combine(page, diagnosis, share)
    _write_predictions(pool, fold, probs, out_dir / PREDICTIONS_FILE, data_roots)
    recipe = {
        "diagnosis": settings_of(config, config.seed),
        "members_per_fold": config.members,
        "page_share": share,
        "page_run": str(page_run),
    }
    result = _summarise(pool, fold, y, probs, per_fold, recipe, model_dir)
    result["diagnosis_alone"] = _ecg_figures(y, diagnosis)
    if baseline is not None:
        result["against_baseline"] = {"baseline": str(baseline), **compare_runs(Path(baseline), out_dir)}
    write_json_atomic(result, out_dir / RESULT_FILE)
    return result


def _ecg_figures(y: np.ndarray, probs: np.ndarray) -> dict:
    """A 4-class model's figures on the labelled ECG printouts: accuracy and [recalled, of] per class."""
    ecg = np.isin(y, range(len(ECG_CLASSES)))
    return {
        "n": int(ecg.sum()),
        "accuracy": float((probs[ecg].argmax(axis=1) == y[ecg]).mean()),
        "recalled": {
            c: [int((probs[y == k].argmax(axis=1) == k).sum()), int((y == k).sum())]
            for k, c in enumerate(ECG_CLASSES)
        },
    }


def _summarise(pool, fold, y: np.ndarray, probs: np.ndarray, per_fold, recipe: dict, model_dir) -> dict:
    labelled, predicted = y >= 0, probs.argmax(axis=1)
    other = ~labelled
    return {
        "model_dir": str(model_dir),
        "recipe": recipe,
        "folds": len(per_fold),
        "images": int(len(pool)),
        "decision": "network alone (argmax); the ECG gate and detector were fitted on the whole train split",
        "out_of_fold": compute_metrics(y[labelled], probs[labelled]),
        "other_layout_called_non_ecg": {
            "n": int(other.sum()),
            "rate": float((predicted[other] == CLASSES.index(NON_ECG)).mean()) if other.any() else None,
        },
        "per_fold": per_fold,
        "errors": [
            {"path": s.path.name, "true": s.label, "predicted": CLASSES[p], "fold": int(f) + 1}
            for s, t, p, f in zip(pool, y, predicted, fold, strict=True)
            if t >= 0 and p != t
        ],
    }


SUMMARY_FIGURES = (
    "n",
    "macro_f1",
    "accuracy",
    "ecg_accuracy",
    "mi_recall",
    "non_ecg_recall",
    "per_class",
    "confusion_matrix",
)


def out_of_fold_summary(run_dir: Path) -> dict:
    """A kept run's pooled out-of-fold figures, as `ecg-app model evaluate` puts them beside the test split's.

    Why: the test split holds 4 infarctions, so its MI recall moves 25 points an image; out of fold,
    each of the train and validation printouts is scored by networks that never saw it (one page
    network per fold, with the run's diagnosis networks when it has them; the softmax alone)."""
    result = json.loads((Path(run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    pooled = result["out_of_fold"]
    recipe = result["recipe"]
    return {
        "run": portable_path(run_dir),
        "folds": result["folds"],
        "networks_per_fold": {"page": 1, "diagnosis": int(recipe.get("members_per_fold", 0))},
        "decision": result["decision"],
        **{key: pooled[key] for key in SUMMARY_FIGURES},
        "per_fold_macro_f1": [fold["macro_f1"] for fold in result["per_fold"]],
        "other_layout_called_non_ecg": result["other_layout_called_non_ecg"],
    }


def _write_predictions(pool, fold, probs, path: Path, roots: dict[str, Path], classes=CLASSES) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "label", "group", "fold", *(f"p_{c}" for c in classes)])
        for s, f, p in zip(pool, fold, probs, strict=True):
            row = [dataset.relative_path(s, roots), s.source, s.label, s.group, int(f) + 1]
            writer.writerow([*row, *(f"{v:.6f}" for v in p)])


# The rule for changing the recipe, fixed in the model card before any out-of-fold result was read.
MIN_MACRO_F1_GAIN = 0.02


def _read_predictions(run_dir: Path) -> dict[str, dict]:
    return _read_rows(Path(run_dir) / PREDICTIONS_FILE)


def _read_rows(path: Path) -> dict[str, dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def _run_probabilities(run_dir: Path, pool, fold: np.ndarray, roots: dict[str, Path]) -> np.ndarray:
    """Another run's out-of-fold probabilities in `pool` order; refused unless it scored the same images
    in the same folds."""
    rows = _read_predictions(run_dir)
    paths = [dataset.relative_path(s, roots) for s in pool]
    _check_same_folds(_folds(rows), {p: str(f + 1) for p, f in zip(paths, fold, strict=True)}, str(run_dir))
    return _probabilities(rows, paths)


def _folds(rows: dict[str, dict]) -> dict[str, str]:
    return {path: row["fold"] for path, row in rows.items()}


def _check_same_folds(folds: dict[str, str], other: dict[str, str], what: str) -> None:
    if folds != other:
        raise ValueError(f"{what} did not score the same images in the same folds")


def _probabilities(rows: dict[str, dict], paths: list[str], classes=CLASSES) -> np.ndarray:
    """The stored class probabilities of `paths`, one row each, in `classes` order."""
    return np.array([[float(rows[p][f"p_{c}"]) for c in classes] for p in paths])


def labelled_out_of_fold(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """A run's labelled images (other-layout ECGs left out), sorted by path: their paths, class
    indices, folds (1-based) and out-of-fold probabilities (CLASSES order)."""
    rows = _read_predictions(run_dir)
    paths = sorted(p for p, r in rows.items() if r["label"] != dataset.OTHER_ECG)
    y = np.array([CLASSES.index(rows[p]["label"]) for p in paths])
    return paths, y, np.array([int(rows[p]["fold"]) for p in paths]), _probabilities(rows, paths)


def _mean_with(partner: np.ndarray | None, own: np.ndarray) -> np.ndarray:
    return own if partner is None else (own + partner) / 2


def compare_runs(baseline_dir: Path, candidate_dir: Path, n_boot: int = 1000) -> dict:
    """Apply the rule to two cross-validation runs on the same folds: the candidate recipe replaces the
    baseline only if its out-of-fold macro-F1 is >= MIN_MACRO_F1_GAIN higher and its MI recall no lower.

    The macro-F1 difference gets a paired bootstrap interval (the same resampled images for both runs).
    """
    _check_same_folds(
        _folds(_read_predictions(baseline_dir)), _folds(_read_predictions(candidate_dir)), "the two runs"
    )
    (paths, y, _, base), (_, _, _, cand) = (labelled_out_of_fold(d) for d in (baseline_dir, candidate_dir))
    pred = np.stack([base.argmax(axis=1), cand.argmax(axis=1)], axis=1)
    mi = y == CLASSES.index("MI")
    f1 = [macro_f1(y, pred[:, k]) for k in (0, 1)]
    mi_hits = [int((pred[mi, k] == y[mi]).sum()) for k in (0, 1)]
    gain = f1[1] - f1[0]
    interval = bootstrap_ci(y, pred, lambda t, p: macro_f1(t, p[:, 1]) - macro_f1(t, p[:, 0]), n_boot)
    right = pred == y[:, None]
    return {
        "n": len(paths),
        "macro_f1": {"baseline": f1[0], "candidate": f1[1], "gain": gain, "gain_ci95": interval},
        "mi_recalled": {"baseline": mi_hits[0], "candidate": mi_hits[1], "of": int(mi.sum())},
        "fixed": [paths[i] for i in np.flatnonzero(~right[:, 0] & right[:, 1])],
        "broken": [paths[i] for i in np.flatnonzero(right[:, 0] & ~right[:, 1])],
        "replaces_baseline": bool(gain >= MIN_MACRO_F1_GAIN and mi_hits[1] >= mi_hits[0]),
    }
