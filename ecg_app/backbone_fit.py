"""Fine-tuning the pretrained EfficientNet-Lite0 on the printouts, within 2 CPU cores.

Why this shape: the early blocks of an ImageNet network detect edges and strokes, which a printout has
too, while its last stages are tuned to objects. So blocks 0 to `frozen_through` stay frozen and their
output is computed once per picture and kept (`cache_features`: the clean picture and `views` - 1
capture-like augmented copies of it); only the blocks after them, up to `cut` (mid-network features
beat the last layer in the linear probe of shared/EXPERIMENTS.md), and a small head are trained, on the
cached features. A fold then trains in minutes instead of hours. BatchNorm keeps ImageNet's statistics
(batches of 16 are too small to estimate them). The head averages the feature map over the 3x4 grid of
lead cells, so it can tell which lead a pattern is in.

The backbone reads the same ink map as every other network (`preprocess`: the trace area, grid and
lighting removed), drawn back as dark ink on white paper in three channels.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from ecg_app.augment import augment  # noqa: E402
from ecg_app.backbone import pretrained_lite0  # noqa: E402
from ecg_app.cross_validation import (  # noqa: E402
    NETWORK_PREDICTIONS_FILE,
    PREDICTIONS_FILE,
    RESULT_FILE,
    _fold_predictions,
    _folded_pool,
    _mean_with,
    _run_probabilities,
    _summarise,
    _write_predictions,
    compare_runs,
)
from ecg_app.evaluation import compute_metrics, macro_f1  # noqa: E402
from ecg_app.labels import CLASSES  # noqa: E402
from ecg_app.preprocess import preprocess  # noqa: E402
from ecg_app.training import set_cross_entropy, write_json_atomic  # noqa: E402

HEAD_FILE = "backbone_head.keras"
LEAD_GRID = (3, 4)  # rows x columns of lead cells on the template


@dataclass(frozen=True)
class BackboneConfig:
    input_size: tuple[int, int] = (384, 640)  # the ink map's height x width fed to the backbone
    frozen_through: int = 7  # blocks 0..7 frozen and cached (stride 16, 80 channels)
    cut: int = 10  # the last block used (stride 16, 112 channels); blocks 8..10 are trained
    views: int = 8  # cached per picture: the clean one and 7 augmented copies
    epochs: int = 20
    draws_per_class: int = 96  # class-balanced draws per epoch (other-layout ECGs: a quarter of that)
    batch_size: int = 16
    learning_rate: float = 3e-4
    dropout: float = 0.3
    seed: int = 42


def as_picture(ink: keras.KerasTensor) -> keras.KerasTensor:
    """The (h, w, 1) ink map as a (h, w, 3) 0-255 picture of dark ink on white paper, what ImageNet's
    features expect to see."""
    paper = keras.layers.Rescaling(-255.0, offset=255.0, name="ink_to_paper")(ink)
    return keras.layers.Concatenate(name="gray_to_rgb")([paper, paper, paper])


def frozen_part(config: BackboneConfig) -> keras.Model:
    """Ink map -> the output of block `frozen_through`, ImageNet weights, never trained."""
    ink = keras.Input((*config.input_size, 1), name="ink")
    lite = pretrained_lite0((*config.input_size, 3), cut=config.frozen_through)
    return keras.Model(ink, lite(as_picture(ink)), name="frozen_backbone")


def make_head(config: BackboneConfig, feature_shape: tuple[int, int, int]) -> keras.Model:
    """Cached features -> blocks `frozen_through + 1`..`cut` (ImageNet weights, BatchNorm frozen) ->
    mean over each lead cell of the 3x4 grid -> dropout -> 5-class softmax."""
    tail = pretrained_lite0(feature_shape, cut=config.cut, start=config.frozen_through + 1)
    for layer in tail.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    features = keras.Input(feature_shape, name="frozen_features")
    x = tail(features)
    height, width = x.shape[1:3]
    x = keras.layers.AveragePooling2D((height // LEAD_GRID[0], width // LEAD_GRID[1]), name="lead_cells")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(features, outputs, name="backbone_head")


def _view(rgb: np.ndarray, config: BackboneConfig, index: int, view: int) -> np.ndarray:
    if view == 0:
        return preprocess(rgb, config.input_size)
    rng = np.random.default_rng([config.seed, index, view])
    return preprocess(augment(rgb, rng), config.input_size)


def cache_features(images: list[np.ndarray], config: BackboneConfig, path: Path) -> np.ndarray:
    """(N, views, h, w, c) float16 outputs of the frozen blocks; computed once and kept at `path`
    (keyed by the settings that shape them and the pictures' bytes, so a stale cache is never read)."""
    digest = hashlib.md5(
        json.dumps([config.input_size, config.frozen_through, config.views, config.seed]).encode()
        + b"".join(hashlib.md5(image.tobytes()).digest() for image in images)
    ).hexdigest()[:12]
    path = Path(path) / f"features-{digest}.npy"
    if path.is_file():
        print(f"reusing cached features {path}")
        return np.load(path, mmap_mode="r")
    frozen = frozen_part(config)
    features = None
    start = time.time()
    for i, rgb in enumerate(images):
        batch = np.stack([_view(rgb, config, i, v) for v in range(config.views)])
        out = frozen.predict(batch, batch_size=config.views, verbose=0).astype(np.float16)
        if features is None:
            features = np.zeros((len(images), config.views, *out.shape[1:]), np.float16)
        features[i] = out
        if (i + 1) % 50 == 0:
            print(f"cached {i + 1}/{len(images)} pictures ({time.time() - start:.0f} s)", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), features)
    os.replace(path.with_suffix(".tmp.npy"), path)
    return features


def balanced_draws(labels: list[str], rng: np.random.Generator, per_class: int) -> np.ndarray:
    """One epoch's indices: `per_class` draws from each label (other-layout ECGs a quarter), shuffled."""
    order = []
    for label in sorted(set(labels)):
        members = [i for i, name in enumerate(labels) if name == label]
        n = per_class // 4 if label not in CLASSES else per_class
        order.append(rng.choice(members, size=n, replace=len(members) < n))
    return rng.permutation(np.concatenate(order))


def fit_head(
    features: np.ndarray, targets: np.ndarray, labels: list[str], config: BackboneConfig, path: Path
) -> dict:
    """Train `make_head` for `config.epochs` epochs (fixed: no inner validation to choose one) on random
    views of class-balanced draws, and save it to `path`. Returns the training record."""
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = make_head(config, features.shape[2:])
    head.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=set_cross_entropy)
    losses, start = [], time.time()
    for epoch in range(config.epochs):
        picks = balanced_draws(labels, rng, config.draws_per_class)
        views = rng.integers(0, features.shape[1], size=len(picks))
        x = np.asarray(features[picks, views], np.float32)
        history = head.fit(x, targets[picks], batch_size=config.batch_size, epochs=1, verbose=0)
        losses.append(float(history.history["loss"][-1]))
        print(f"  epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    head.save(path)
    return {"loss": losses, "train_seconds": round(time.time() - start, 1)}


def settings_of(config: BackboneConfig) -> dict:
    return {"kind": "backbone-lite0", **asdict(config)}


def cross_validate_backbone(
    model_dir: Path,
    out_dir: Path,
    config: BackboneConfig,
    n_folds: int = 5,
    roots: dict[str, Path] | None = None,
    baseline: Path | None = None,
    cache_dir: Path | None = None,
    average_with: Path | None = None,
) -> dict:
    """The fine-tuned backbone on the model's folds of train + validation (never test): per fold, a head
    trained on the other folds' cached features predicts the held-out pictures (clean view). Writes
    `oof.csv` and `cv.json` like `cross_validation.cross_validate`; a re-run resumes from the folds'
    `held-out.csv`. With `average_with`, another run on the same folds, the pair is judged (each image's
    probabilities the mean of the two runs'), and the backbone's own figures go under "network_alone"."""
    _, data_roots, pool, images, fold, y = _folded_pool(model_dir, roots, n_folds)
    partner = None if average_with is None else _run_probabilities(Path(average_with), pool, fold, data_roots)
    out_dir = Path(out_dir)
    features = cache_features(images, config, Path(cache_dir or out_dir / "cache"))
    targets = np.stack([s.target for s in pool])
    labels = [s.label for s in pool]
    probs = np.full((len(pool), len(CLASSES)), np.nan)
    per_fold = []
    for k in range(n_folds):
        held, rest = np.flatnonzero(fold == k), np.flatnonzero(fold != k)

        def fit(path: Path, rest=rest) -> dict:
            return fit_head(features[rest], targets[rest], [labels[i] for i in rest], config, path)

        def predict(network, held=held) -> np.ndarray:
            return network.predict(np.asarray(features[held, 0], np.float32), batch_size=32, verbose=0)

        settings = {**settings_of(config), "seed": config.seed}
        path = out_dir / f"fold-{k + 1}" / HEAD_FILE
        probs[held] = _fold_predictions(settings, pool, fold, k, path, fit, predict, CLASSES, data_roots)
        scored = held[y[held] >= 0]
        fold_f1 = macro_f1(y[scored], _mean_with(partner, probs)[scored].argmax(axis=1))
        per_fold.append({"fold": k + 1, "n": len(scored), "macro_f1": fold_f1})
        print(f"fold {k + 1}/{n_folds}: n={len(scored)} macro-F1 {fold_f1:.3f}", flush=True)
    judged = _mean_with(partner, probs)
    _write_predictions(pool, fold, judged, out_dir / PREDICTIONS_FILE, data_roots)
    result = _summarise(pool, fold, y, judged, per_fold, settings_of(config), model_dir)
    if partner is not None:
        labelled = y >= 0
        result["averaged_with"] = str(average_with)
        result["network_alone"] = compute_metrics(y[labelled], probs[labelled])
        _write_predictions(pool, fold, probs, out_dir / NETWORK_PREDICTIONS_FILE, data_roots)
    if baseline is not None:
        result["against_baseline"] = {"baseline": str(baseline), **compare_runs(Path(baseline), out_dir)}
    write_json_atomic(result, out_dir / RESULT_FILE)
    return result
