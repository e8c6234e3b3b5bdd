"""Train a network on the duplicate-safe split: `ecg-app model train` calls `train(TrainConfig(...))`.

Writes into `out_dir`: `split.csv` (the split manifest), `ecg_cnn.keras` (best epoch on validation
macro-F1, written to a temp file then renamed, so Ctrl-C never leaves a corrupt model), `model.json`
(version, temperature fitted on validation, review threshold, training curves, data roots) and, last,
the ECG gate (`ecg_gate.npz`, see `ecg_app.training.gate_fit`).
With `distribute=True` the networks are built and trained under a `tf.distribute` strategy
(see `ecg_app.training.distribute`); without it nothing about training changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import ops  # noqa: E402

from ecg_app.config import REPO_ROOT, portable_path  # noqa: E402
from ecg_app.labels import CLASSES  # noqa: E402
from ecg_app.serving.calibration import choose_review_threshold, fit_temperature, softmax  # noqa: E402
from ecg_app.serving.classifier import MODEL_INFO_FILE  # noqa: E402
from ecg_app.serving.preprocess import INPUT_SHAPE, preprocess  # noqa: E402
from ecg_app.training import dataset  # noqa: E402
from ecg_app.training.augment import augment  # noqa: E402
from ecg_app.training.distribute import (  # noqa: E402
    Placement,
    output_dir,
    patch_keras_for_multi_worker,
    placement_from_env,
)
from ecg_app.training.gate_fit import fit_gate  # noqa: E402
from ecg_app.training.keras_networks import PAGE_FILE as MODEL_FILE  # noqa: E402
from ecg_app.training.model_files import write_json_atomic  # noqa: E402
from ecg_app.training.networks import make_model  # noqa: E402


@dataclass
class TrainConfig:
    data_dir: Path
    non_ecg_dir: Path | None = None
    other_ecg_dir: Path | None = None
    arch: str = "default"
    epochs: int = 40
    out_dir: Path = REPO_ROOT / "model"
    seed: int = 42
    batch_size: int = 16  # global: with --distribute, split evenly across the replicas
    samples_per_class: int = 96  # drawn per class and epoch (class-balanced sampling, with replacement)
    learning_rate: float = 2e-3
    limit_per_class: int | None = None  # for smoke tests: keep only the first N groups per class
    ensemble: int = 1  # >1: average that many networks trained with seeds seed, seed+1, ...
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    distribute: bool = False  # tf.distribute: all local GPUs, or the workers named in TF_CONFIG


def set_cross_entropy(y_mask, y_prob):
    """-log P(true class in mask): ordinary cross-entropy for one-hot masks; for an ECG of unknown
    diagnosis (mask over the four ECG classes) it only asks "this is some ECG"."""
    return -ops.log(ops.clip(ops.sum(y_mask * y_prob, axis=-1), 1e-7, 1.0))


class BalancedAugmentedBatches(keras.utils.PyDataset):
    """Each epoch draws the same number of images from every class, augments and preprocesses them."""

    def __init__(self, samples, images, config: TrainConfig, **kwargs):
        super().__init__(**kwargs)
        self.images = images
        self.targets = np.stack([s.target for s in samples])
        self.groups: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            self.groups.setdefault(s.label, []).append(i)
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        order = []
        for label, indices in sorted(self.groups.items()):
            n = (
                self.config.samples_per_class // 4
                if label == dataset.OTHER_ECG
                else self.config.samples_per_class
            )
            order.append(self.rng.choice(indices, size=n, replace=len(indices) < n))
        self.order = self.rng.permutation(np.concatenate(order))
        # One seed per sample and epoch: reproducible whichever worker thread builds the batch.
        self.sample_seeds = self.rng.integers(0, 2**32, size=len(self.order))

    def __len__(self) -> int:
        return int(np.ceil(len(self.order) / self.config.batch_size))

    def __getitem__(self, index: int):
        start = index * self.config.batch_size
        picks = self.order[start : start + self.config.batch_size]
        seeds = self.sample_seeds[start : start + self.config.batch_size]
        rngs = [np.random.default_rng(seed) for seed in seeds]
        batch = np.stack(
            [preprocess(augment(self.images[i], rng)) for i, rng in zip(picks, rngs, strict=True)]
        )
        return batch, self.targets[picks]


class ValidationCheckpoint(keras.callbacks.Callback):
    """Track validation macro-F1 each epoch and keep the best weights on disk atomically."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray, path: Path):
        super().__init__()
        self.x_val, self.y_val, self.path = x_val, y_val, path
        self.best = (-1.0, -np.inf)
        self.best_epoch = -1
        self.log: dict[str, list[float]] = {"val_macro_f1": [], "val_accuracy": [], "val_loss": []}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        from sklearn.metrics import f1_score

        probs = self.model.predict(self.x_val, batch_size=32, verbose=0)
        pred = probs.argmax(axis=1)
        f1 = float(
            f1_score(self.y_val, pred, average="macro", labels=list(range(len(CLASSES))), zero_division=0)
        )
        loss = float(-np.log(np.clip(probs[np.arange(len(pred)), self.y_val], 1e-7, 1)).mean())
        self.log["val_macro_f1"].append(f1)
        self.log["val_accuracy"].append(float((pred == self.y_val).mean()))
        self.log["val_loss"].append(loss)
        if logs is not None:
            logs.update(val_macro_f1=f1, val_loss=loss)
        if (f1, -loss) > self.best:
            self.best, self.best_epoch = (f1, -loss), epoch
            save_model_atomic(self.model, self.path)
        print(
            f"  epoch {epoch + 1}: val macro-F1 {f1:.3f}, val loss {loss:.3f} "
            f"(best epoch {self.best_epoch + 1})"
        )


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Write to a temp file and rename: an interrupted save never replaces a good model."""
    tmp = path.with_name(path.stem + ".partial.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_uncompiled(path: Path) -> None:
    """Re-save a saved model without its optimizer state: serving never needs it (two thirds of the file)."""
    save_model_atomic(keras.saving.load_model(path, compile=False), path)


def prepare_split(config: TrainConfig) -> tuple[list[dataset.Sample], list[np.ndarray]]:
    """Discover, decode, group duplicates and split; returns samples (with split) and their images."""
    samples = dataset.discover(config.data_dir, config.non_ecg_dir, config.other_ecg_dir)
    if config.limit_per_class:
        per_label: dict[str, int] = {}
        kept = []
        for s in samples:
            per_label[s.label] = per_label.get(s.label, 0) + 1
            if per_label[s.label] <= config.limit_per_class:
                kept.append(s)
        samples = kept
    samples, images = dataset.load_images(samples)
    samples = dataset.assign_groups(samples, images)
    samples = dataset.split_by_group(samples, config.val_fraction, config.test_fraction, config.seed)
    return samples, images


def labelled_arrays(samples: list[dataset.Sample], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and class indices of the samples with a known class (other-layout ECGs left out),
    for choosing the best epoch."""
    keep = [i for i, s in enumerate(samples) if s.label != dataset.OTHER_ECG]
    x = np.stack([preprocess(images[i]) for i in keep])
    return x, np.array([CLASSES.index(samples[i].label) for i in keep])


def data_roots(config: TrainConfig) -> dict[str, Path]:
    roots = {"mendeley": config.data_dir, "non_ecg": config.non_ecg_dir, "other_ecg": config.other_ecg_dir}
    return {k: Path(v) for k, v in roots.items() if v is not None}


def fit_member(
    config: TrainConfig,
    train_samples: list,
    train_images: list,
    x_val: np.ndarray,
    y_val: np.ndarray,
    model_path: Path,
    placement: Placement | None = None,
) -> dict:
    """Fit one network with `config.seed`; keeps its best validation epoch at `model_path`."""
    keras.utils.set_random_seed(config.seed)
    started = time.perf_counter()
    batches = BalancedAugmentedBatches(
        train_samples, train_images, config, workers=2, use_multiprocessing=False
    )
    # Variables and optimizer state must be created under the strategy that trains them.
    with placement.strategy.scope() if placement else nullcontext():
        model = make_model(config.arch, INPUT_SHAPE)
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * len(batches))
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss=set_cross_entropy)
    patch_keras_for_multi_worker(model, placement)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = ValidationCheckpoint(x_val, y_val, model_path)
    try:
        history = model.fit(batches, epochs=config.epochs, callbacks=[checkpoint], verbose=2)
        curves = {"loss": [float(v) for v in history.history["loss"]]}
    except KeyboardInterrupt:
        if checkpoint.best_epoch < 0:
            raise
        print(f"interrupted: keeping the best checkpoint so far (epoch {checkpoint.best_epoch + 1})")
        curves = {"loss": []}
    curves.update(checkpoint.log)
    save_uncompiled(model_path)
    return {
        "seed": config.seed,
        "best_epoch": checkpoint.best_epoch + 1,
        "train_seconds": round(time.perf_counter() - started, 1),
        "history": curves,
    }


# Settings that must match for a finished ensemble member to be reused instead of retrained.
_MEMBER_KEYS = (
    "arch",
    "epochs",
    "batch_size",
    "samples_per_class",
    "learning_rate",
    "seed",
)
# What members recorded before a setting existed were trained with.
_MEMBER_DEFAULTS = {"charts": 0}
# Settings of candidates that were not adopted and left the package (docs/experiments.md): a member
# recorded with one of them at this value was trained as without it.
_RETIRED_SETTINGS = {"synthetic_ecgs": 0, "weight_average": 0.0, "erase_probability": 0.0}


def member_settings(config: TrainConfig) -> dict:
    return {key: getattr(config, key) for key in _MEMBER_KEYS}


def average_models(
    members: list[keras.Model],
    input_shape: tuple[int, ...] = INPUT_SHAPE,
    input_name: str = "ink",
    name: str = "ecg_ensemble",
) -> keras.Model:
    """One Keras model whose output is the mean of the members' outputs (probabilities)."""
    inputs = keras.Input(input_shape, name=input_name)
    outputs = []
    for k, member in enumerate(members):
        member.name = f"member_{k}"
        outputs.append(member(inputs))
    return keras.Model(inputs, keras.layers.Average(name="probabilities")(outputs), name=name)


MEMBER_RECORD = "member.json"  # beside each fitted network: its settings and training history


def _as_stored(settings: dict) -> dict:
    """Settings as `member.json` gives them back (tuples become lists): compared with a record exactly."""
    return json.loads(json.dumps(settings))


def finished_member(record_path: Path, settings: dict) -> dict | None:
    """The record at `record_path` when the network beside it was fitted with `settings`, else None.

    Records written before a training setting existed lack it; they get its default (`_MEMBER_DEFAULTS`).
    Records of a retired setting at its off value (`_RETIRED_SETTINGS`) were trained as without it."""
    if not record_path.is_file():
        return None
    finished = json.loads(record_path.read_text())
    wanted = _as_stored(settings)
    defaults = {key: v for key, v in _MEMBER_DEFAULTS.items() if key in wanted}  # only the record's kind's
    recorded = {
        key: value
        for key, value in finished["settings"].items()
        if not (key in _RETIRED_SETTINGS and key not in wanted and value == _RETIRED_SETTINGS[key])
    }
    return finished if {**defaults, **recorded} == wanted else None


def fit_or_reuse_members(
    seeds: Sequence[int],
    member_path: Callable[[int], Path],
    settings: Callable[[int], dict],
    fit: Callable[[int, Path], dict],
    label: str = "member",
) -> tuple[list[dict], list[keras.Model]]:
    """Fit one network per seed, or reuse a finished one whose `member.json` records the same settings, so
    an interrupted ensemble run resumes where it stopped (`finished_member`); returns the records and the
    loaded networks."""
    records = []
    for k, seed in enumerate(seeds):
        path = member_path(seed)
        wanted = settings(seed)
        finished = finished_member(path.with_name(MEMBER_RECORD), wanted)
        progress = f"{label} {k + 1}/{len(seeds)}" if len(seeds) > 1 else label
        progress += f" (seed {seed})"
        if finished:
            print(f"{progress}: reusing {path.parent}")
            records.append(finished)
            continue
        print(progress)
        record = {**fit(seed, path), "settings": _as_stored(wanted)}
        write_json_atomic(record, path.with_name(MEMBER_RECORD))
        records.append(record)
    return records, [keras.saving.load_model(member_path(seed), compile=False) for seed in seeds]


def _fit_ensemble(
    config: TrainConfig,
    train_samples,
    train_images,
    x_val,
    y_val,
    out_dir: Path,
    placement: Placement | None = None,
) -> list[dict]:
    """Fit `config.ensemble` members (seeds seed, seed+1, ...) on one split and save their average."""
    records, members = fit_or_reuse_members(
        [config.seed + k for k in range(config.ensemble)],
        lambda seed: out_dir / "members" / f"seed-{seed}" / MODEL_FILE,
        lambda seed: member_settings(replace(config, seed=seed)),
        lambda seed, path: fit_member(
            replace(config, seed=seed), train_samples, train_images, x_val, y_val, path, placement
        ),
    )
    save_model_atomic(average_models(members), out_dir / MODEL_FILE)
    return records


def train(config: TrainConfig) -> dict:
    """Train, checkpoint, calibrate on validation and write the model directory; returns model.json."""
    placement = placement_from_env() if config.distribute else None  # first: before any other TF work
    out_dir = output_dir(Path(config.out_dir), placement)  # a scratch dir on non-chief workers
    if placement is not None:
        print(f"distributed training: {json.dumps(placement.describe())}")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    samples, images = prepare_split(config)
    roots = data_roots(config)
    dataset.write_manifest(samples, out_dir / "split.csv", roots)
    sizes = dataset.split_sizes(samples)
    print(f"split (images per class): {json.dumps(sizes)}")

    train_idx = [i for i, s in enumerate(samples) if s.split == "train"]
    val_idx = [i for i, s in enumerate(samples) if s.split == "val"]
    x_val, y_val = labelled_arrays([samples[i] for i in val_idx], [images[i] for i in val_idx])
    train_samples, train_images = [samples[i] for i in train_idx], [images[i] for i in train_idx]

    model_path = out_dir / MODEL_FILE
    if config.ensemble > 1:
        members = _fit_ensemble(config, train_samples, train_images, x_val, y_val, out_dir, placement)
    else:
        members = [fit_member(config, train_samples, train_images, x_val, y_val, model_path, placement)]
    train_seconds = time.perf_counter() - started

    best = keras.saving.load_model(model_path, compile=False)
    val_probs = np.asarray(best.predict(x_val, batch_size=32, verbose=0), dtype=np.float64)
    val_logits = np.log(np.clip(val_probs, 1e-12, 1))
    temperature = fit_temperature(val_logits, y_val)
    threshold = choose_review_threshold(softmax(val_logits / temperature), y_val)
    info = {
        "version": f"{config.arch}{f'x{config.ensemble}' if config.ensemble > 1 else ''}-"
        f"{dataset.file_md5(model_path)[:10]}",
        "arch": config.arch,
        "ensemble": config.ensemble,
        "classes": list(CLASSES),
        "input_shape": list(INPUT_SHAPE),
        "temperature": temperature,
        "review_threshold": threshold,
        "best_epoch": [m["best_epoch"] for m in members] if config.ensemble > 1 else members[0]["best_epoch"],
        "epochs": config.epochs,
        "seed": config.seed,
        "train_seconds": round(train_seconds, 1),
        "member_train_seconds": [m["train_seconds"] for m in members],
        "model_bytes": model_path.stat().st_size,
        "params": int(best.count_params()),
        "sampling": f"class-balanced: {config.samples_per_class} draws per class and epoch (OtherECG 1/4)",
        "data_roots": {k: portable_path(v) for k, v in roots.items()},
        "dataset": {"counts": dataset.counts(samples), "split_sizes": sizes},
        "history": members[0]["history"],
        "member_histories": [m["history"] for m in members] if config.ensemble > 1 else [],
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
    }
    if placement is not None:
        info["distribution"] = placement.describe()
    write_json_atomic(info, out_dir / MODEL_INFO_FILE)
    print(
        f"saved {model_path} ({info['model_bytes'] / 1e6:.1f} MB), version {info['version']}, "
        f"best epoch {info['best_epoch']}, T={temperature:.2f}, review threshold {threshold:.2f}, "
        f"{train_seconds / 60:.1f} min"
    )
    try:
        info["ecg_gate"] = fit_gate(out_dir, roots)
        print(f"ECG gate: threshold {info['ecg_gate']['threshold']:.3f} (chosen on validation)")
    except ValueError as exc:  # too few training ECGs, or a validation split without both kinds
        print(f"no ECG gate: {exc}")
    return info
