"""Train the ECG detector of a model directory (`ecg-app model fit-detector`; `make train` runs it).

Training images are the model's own train split (`split.csv`): ECGs of the reference template and the
other-layout ECGs, plus pictures rendered here (`synth_ecg`, the training seeds), against the non-ECG
pictures. Members are trained with seeds seed, seed+1, ... and averaged like the diagnosis ensemble; a
finished member is reused. The threshold is chosen on the validation split, so the test split stays
untouched for `ecg-app model evaluate`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from ecg_app.labels import NON_ECG  # noqa: E402
from ecg_app.serving.classifier import Classifier  # noqa: E402
from ecg_app.serving.ecg_detector import (  # noqa: E402
    DETECTOR_FILE,
    DETECTOR_SHAPE,
    choose_threshold,
    detector_input,
    ecg_probability,
)
from ecg_app.store.images import fit  # noqa: E402
from ecg_app.training import dataset  # noqa: E402
from ecg_app.training.augment import augment  # noqa: E402
from ecg_app.training.keras_networks import KerasNetworks  # noqa: E402
from ecg_app.training.model_files import record_in_model_info  # noqa: E402
from ecg_app.training.synth_charts import chart_seeds, render_chart  # noqa: E402
from ecg_app.training.synth_ecg import render_ecg, synthetic_seeds  # noqa: E402
from ecg_app.training.training import (  # noqa: E402
    average_models,
    fit_or_reuse_members,
    save_model_atomic,
    save_uncompiled,
)

MEMBERS_DIR = "members"  # under the model directory, beside the diagnosis members (not shipped)
WORKING_SIDE = 512  # training pictures are shrunk to this long side once: augmentation stays cheap
BATCH_SIZE = 32
NEGATIVE_SOURCES = ("non_ecg", "chart")  # what the detector learns to call "not an ECG"
CHART_DRAWS = 96  # chart draws per epoch when there are charts: the non-ECG side's other 320 are photos etc.
# What `model.json` records of how the detector was trained (`--threshold-only` keeps it).
TRAINING_RECORD = ("file", "members", "config", "train_seconds")


@dataclass(frozen=True)
class DetectorConfig:
    members: int = 3
    epochs: int = 60
    renders: int = 600  # rendered ECGs of many layouts (synth_ecg.synthetic_seeds)
    charts: int = 600  # line charts that are not ECGs (synth_charts.chart_seeds), drawn CHART_DRAWS an epoch
    seed: int = 42
    learning_rate: float = 2e-3
    # Draws per epoch: as many non-ECGs as ECGs, the ECG side spread over its three sources.
    draws: tuple[tuple[str, int], ...] = (("template", 128), ("other", 64), ("render", 128), ("non_ecg", 320))

    def member_settings(self, seed: int) -> dict:
        """What one member is fitted with (its `member.json`)."""
        return {**{k: v for k, v in asdict(self).items() if k != "members"}, "seed": seed}


def _source(sample: dataset.Sample) -> str:
    if sample.label == NON_ECG:
        return "non_ecg"
    return "other" if sample.label == dataset.OTHER_ECG else "template"


class DetectorBatches(keras.utils.PyDataset):
    """Each epoch draws a fixed number of pictures per source (with replacement) and augments each
    afresh."""

    def __init__(self, images: list[np.ndarray], sources: list[str], config: DetectorConfig, seed: int, **kw):
        super().__init__(**kw)
        self.images = images
        wanted = (*config.draws, ("chart", CHART_DRAWS))
        groups = {name: [i for i, s in enumerate(sources) if s == name] for name, _ in wanted}
        # A source without pictures (no other-layout ECGs, no charts) is skipped; both kinds are required.
        self.draws = tuple((name, n) for name, n in wanted if groups[name])
        if {name in NEGATIVE_SOURCES for name, _ in self.draws} != {True, False}:
            raise ValueError("training the ECG detector needs both ECGs and non-ECG pictures")
        self.groups = {name: groups[name] for name, _ in self.draws}
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        picks, targets = [], []
        for name, n in self.draws:
            indices = self.groups[name]
            picks.append(self.rng.choice(indices, size=n, replace=len(indices) < n))
            targets.append(np.full(n, 0.0 if name in NEGATIVE_SOURCES else 1.0, np.float32))
        order = self.rng.permutation(sum(n for _, n in self.draws))
        self.picks, self.targets = np.concatenate(picks)[order], np.concatenate(targets)[order]
        self.seeds = self.rng.integers(0, 2**32, size=len(order))

    def __len__(self) -> int:
        return int(np.ceil(len(self.picks) / BATCH_SIZE))

    def _picture(self, k: int) -> np.ndarray:
        rng = np.random.default_rng(self.seeds[k])
        return detector_input(augment(self.images[self.picks[k]], rng))

    def __getitem__(self, index: int):
        part = range(index * BATCH_SIZE, min((index + 1) * BATCH_SIZE, len(self.picks)))
        return np.stack([self._picture(k) for k in part]), self.targets[part.start : part.stop]


def _train(
    model: keras.Model, batches: DetectorBatches, epochs: int, learning_rate: float, path: Path
) -> dict:
    """Fit `model` for `epochs` (cosine decay from `learning_rate`) and save the last epoch: no
    validation-based epoch choice."""
    started = time.perf_counter()
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * len(batches))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss="binary_crossentropy")
    history = model.fit(batches, epochs=epochs, verbose=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model_atomic(model, path)
    save_uncompiled(path)
    return {
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss": [float(v) for v in history.history["loss"]],
    }


def _fit_member(images, sources, config: DetectorConfig, seed: int, path: Path) -> dict:
    keras.utils.set_random_seed(seed)
    batches = DetectorBatches(images, sources, config, seed, workers=2, use_multiprocessing=False)
    return {"seed": seed, **_train(make_detector(), batches, config.epochs, config.learning_rate, path)}


@dataclass
class TrainingPictures:
    """The train split's pictures at the working size, with renders and charts."""

    samples: list[dataset.Sample]
    images: list[np.ndarray]
    sources: list[str]


def _training_pictures(model_dir: Path, roots: dict[str, Path], config: DetectorConfig) -> TrainingPictures:
    samples = dataset.read_manifest(model_dir / "split.csv", roots)
    train, images = dataset.load_images([s for s in samples if s.split == "train"])
    images = [fit(image, WORKING_SIDE) for image in images]
    sources = [_source(s) for s in train]
    images += [fit(render_ecg(seed), WORKING_SIDE) for seed in synthetic_seeds(config.renders)]
    sources += ["render"] * config.renders
    images += [fit(render_chart(seed), WORKING_SIDE) for seed in chart_seeds(config.charts)]
    sources += ["chart"] * config.charts
    return TrainingPictures(samples, images, sources)


def _install(model_dir: Path, members: list[keras.Model]) -> keras.Model:
    detector = (
        average_models(members, DETECTOR_SHAPE, "picture", "ecg_detector") if len(members) > 1 else members[0]
    )
    save_model_atomic(detector, model_dir / DETECTOR_FILE)
    return detector


def fit_detector(model_dir: Path, roots: dict[str, Path], config: DetectorConfig = DetectorConfig()) -> dict:
    """Train (or reuse) the members, save the averaged `ecg_detector.keras`, choose its threshold on the
    validation split and record both in `model.json`; returns that record."""
    model_dir = Path(model_dir)
    pictures = _training_pictures(model_dir, roots, config)
    seeds = [config.seed + k for k in range(config.members)]
    records, members = fit_or_reuse_members(
        seeds,
        lambda seed: model_dir / MEMBERS_DIR / f"detector-seed-{seed}" / DETECTOR_FILE,
        lambda seed: config.member_settings(seed),
        lambda seed, path: _fit_member(pictures.images, pictures.sources, config, seed, path),
        label="detector member",
    )
    trained = _training_record(config, [r["train_seconds"] for r in records])
    return _record_threshold(model_dir, pictures.samples, _install(model_dir, members), trained)


def _training_record(config: DetectorConfig, train_seconds: list[float]) -> dict:
    return {
        "file": DETECTOR_FILE,
        "members": config.members,
        "config": asdict(config),
        "train_seconds": train_seconds,
    }


def rechoose_threshold(classifier: Classifier, roots: dict[str, Path]) -> dict:
    """Choose the installed detector's threshold again on the validation split, without training: what a
    change in how the detector reads a picture (`ecg_probability`) needs. Its training record is kept."""
    trained = classifier.info["ecg_detector"]
    samples = dataset.read_manifest(classifier.model_dir / "split.csv", roots)
    kept = {key: trained[key] for key in TRAINING_RECORD if key in trained}
    return _record_threshold(
        classifier.model_dir, samples, KerasNetworks(classifier.model_dir).network("detector"), kept
    )


def _record_threshold(model_dir: Path, samples: list[dataset.Sample], detector, trained: dict) -> dict:
    """Choose the threshold on the validation split's pictures, read as served, and record it with
    `trained` in `model.json`; returns that record."""
    val, val_images = dataset.load_images([s for s in samples if s.split == "val"])
    p_ecg = ecg_probability(detector.predict_on_batch, val_images, BATCH_SIZE)
    is_ecg = np.array([s.label != NON_ECG for s in val])
    threshold = choose_threshold(p_ecg, is_ecg)
    record = {
        **trained,
        "threshold": threshold,
        "validation": {
            "ecgs": int(is_ecg.sum()),
            "ecgs_below_threshold": int((p_ecg[is_ecg] < threshold).sum()),
            "non_ecgs": int((~is_ecg).sum()),
            "non_ecgs_at_or_above_threshold": int((p_ecg[~is_ecg] >= threshold).sum()),
            "max_non_ecg_p": float(p_ecg[~is_ecg].max()),
        },
    }
    record_in_model_info(model_dir, "ecg_detector", record)
    return record


def make_detector():
    """Compact BatchNorm CNN ending in P(ECG), on the diagnosis network's trunk (`conv_stages`); 177,041
    parameters (about 9 ms per picture on 2 CPU cores)."""
    from keras import layers

    from ecg_app.training.networks import conv_bn, conv_stages

    inputs = keras.Input(DETECTOR_SHAPE, name="picture")
    x = conv_bn(conv_stages(inputs), 96, name="s5")  # 224x224 -> 7x7
    x = layers.Concatenate(name="features")(
        [layers.GlobalAveragePooling2D(name="gap")(x), layers.GlobalMaxPooling2D(name="gmp")(x)]
    )
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="p_ecg")(x)
    return keras.Model(inputs, outputs, name="ecg_detector")
