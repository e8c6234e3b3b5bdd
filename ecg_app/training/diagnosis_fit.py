"""Train the lead-reading diagnosis network of a model directory (`ecg-app model fit-diagnosis`).

Training images are the train split's printouts of the four ECG classes (`split.csv`); other-layout
ECGs and non-ECG pictures are left out, since the page network keeps the ECG-or-not decision. Each
printout is digitised once (`digitise`: the shared preprocessing, then `LeadSignals`) and the curve
reader is trained on jittered copies of its curves (`jitter`) for a fixed number of epochs; the last
epoch is kept, with no validation-based epoch choice. Members (seeds seed, seed+1, ...) are averaged
and a finished one is reused. The temperature and review threshold are then refitted on validation
for the combined probabilities, so the test split stays untouched for `ecg-app model evaluate`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from ecg_app.labels import ECG_CLASSES  # noqa: E402
from ecg_app.serving.classifier import MODEL_INFO_FILE  # noqa: E402
from ecg_app.serving.lead_diagnosis import CURVES_SHAPE, DIAGNOSIS_FILE  # noqa: E402
from ecg_app.serving.preprocess import preprocess  # noqa: E402
from ecg_app.training import dataset  # noqa: E402
from ecg_app.training.lead_signals import LeadSignals  # noqa: E402
from ecg_app.training.model_files import record_in_model_info, write_json_atomic  # noqa: E402
from ecg_app.training.networks import make_curve_reader, with_lead_signals  # noqa: E402
from ecg_app.training.recalibration import recalibrate  # noqa: E402
from ecg_app.training.training import (  # noqa: E402
    fit_or_reuse_members,
    save_model_atomic,
)

MEMBERS_DIR = "members"  # under the model directory, beside the page network's members (not shipped)
CHUNK = 32  # printouts preprocessed and digitised at a time: bounds memory


@dataclass(frozen=True)
class DiagnosisConfig:
    members: int = 3
    epochs: int = 60
    draws_per_class: int = 120  # printouts drawn per ECG class and epoch (with replacement)
    seed: int = 42
    learning_rate: float = 2e-3
    batch_size: int = 16
    # Curve jitter per drawn printout: one amplitude factor for all leads, one shift in columns (the
    # curves roll round within each cell), and Gaussian noise in band heights.
    amplitude: tuple[float, float] = (0.85, 1.15)
    max_shift: int = 12
    noise: float = 0.01
    # How the served probabilities mix the two networks (`lead_diagnosis.combine`); not a training setting.
    page_share: float = 0.0


def digitise(images: Sequence[np.ndarray]) -> np.ndarray:
    """(N, CELLS, columns, CURVES) curves of RGB printouts, exactly as the served network reads them."""
    signals = LeadSignals()
    chunks = [
        keras.ops.convert_to_numpy(signals(np.stack([preprocess(i) for i in images[s : s + CHUNK]])))
        for s in range(0, len(images), CHUNK)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, *CURVES_SHAPE), np.float32)


def jitter(curves: np.ndarray, rng: np.random.Generator, config: DiagnosisConfig) -> np.ndarray:
    """A copy of one printout's curves as a slightly different recording might have drawn them."""
    shift = int(rng.integers(-config.max_shift, config.max_shift + 1))
    scaled = np.roll(curves, shift, axis=1) * rng.uniform(*config.amplitude)
    return (scaled + rng.normal(0.0, config.noise, curves.shape)).astype(np.float32)


class CurveBatches(keras.utils.PyDataset):
    """Each epoch draws `draws_per_class` printouts of every ECG class and jitters each afresh."""

    def __init__(self, curves: np.ndarray, labels: np.ndarray, config: DiagnosisConfig, seed: int, **kw):
        super().__init__(**kw)
        self.curves, self.labels, self.config = curves, labels, config
        self.groups = [np.flatnonzero(labels == k) for k in range(len(ECG_CLASSES))]
        if any(len(g) == 0 for g in self.groups):
            raise ValueError("training the diagnosis network needs printouts of all four ECG classes")
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        n = self.config.draws_per_class
        picks = [self.rng.choice(g, size=n, replace=len(g) < n) for g in self.groups]
        self.order = self.rng.permutation(np.concatenate(picks))
        self.seeds = self.rng.integers(0, 2**32, size=len(self.order))

    def __len__(self) -> int:
        return int(np.ceil(len(self.order) / self.config.batch_size))

    def __getitem__(self, index: int):
        part = slice(index * self.config.batch_size, (index + 1) * self.config.batch_size)
        x = np.stack(
            [
                jitter(self.curves[i], np.random.default_rng(seed), self.config)
                for i, seed in zip(self.order[part], self.seeds[part], strict=True)
            ]
        )
        return x, self.labels[self.order[part]]


def served_reader(reader: keras.Model) -> keras.Model:
    """The served form of a fitted curve reader: a fresh reader with `reader`'s weights, so no optimizer
    (a compiled network nested in the served one carries its AdamW state into the file, two thirds of
    its size, and `training.save_uncompiled`, which reloads the outer model uncompiled, does not reach a
    nested one), and built with `serving=True`, which reads the 16 lead cells as one batch
    (`networks.EachCell`): the same outputs, 3x faster."""
    copy = make_curve_reader(serving=True)
    copy.set_weights(reader.get_weights())
    return copy


def fit_reader(
    curves: np.ndarray, labels: np.ndarray, config: DiagnosisConfig, seed: int, path: Path
) -> dict:
    """Fit one curve reader (labels: ECG_CLASSES indices) and save it, behind `LeadSignals`, at `path`."""
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    batches = CurveBatches(curves, labels, config, seed)
    reader = make_curve_reader()
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * len(batches))
    reader.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss="sparse_categorical_crossentropy"
    )
    history = reader.fit(batches, epochs=config.epochs, verbose=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model_atomic(with_lead_signals(served_reader(reader)), path)  # the last epoch: no epoch choice
    return {
        "seed": seed,
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss": [float(v) for v in history.history["loss"]],
    }


def ecg_training_set(samples: Sequence[dataset.Sample], images: Sequence[np.ndarray]):
    """(curves, ECG_CLASSES indices) of the printouts with a known ECG class."""
    keep = [i for i, s in enumerate(samples) if s.label in ECG_CLASSES]
    labels = np.array([ECG_CLASSES.index(samples[i].label) for i in keep])
    return digitise([images[i] for i in keep]), labels


# What does not change how one network trains, so a finished network is reused whatever these say.
_NOT_NETWORK_SETTINGS = ("members", "page_share")


def settings_of(config: DiagnosisConfig, seed: int) -> dict:
    """One network's training settings, as its `member.json` records them."""
    return {**{k: v for k, v in asdict(config).items() if k not in _NOT_NETWORK_SETTINGS}, "seed": seed}


def fit_diagnosis(
    model_dir: Path, roots: dict[str, Path], config: DiagnosisConfig = DiagnosisConfig()
) -> dict:
    """Train (or reuse) the members, save the averaged `ecg_diagnosis.keras`, refit the temperature and
    review threshold on validation for the combined probabilities and record it all in `model.json`."""
    model_dir = Path(model_dir)
    samples = dataset.read_manifest(model_dir / "split.csv", roots)
    train, images = dataset.load_images([s for s in samples if s.split == "train"])
    curves, labels = ecg_training_set(train, images)
    records, members = fit_or_reuse_members(
        [config.seed + k for k in range(config.members)],
        lambda seed: model_dir / MEMBERS_DIR / f"diagnosis-seed-{seed}" / DIAGNOSIS_FILE,
        lambda seed: settings_of(config, seed),
        lambda seed, path: fit_reader(curves, labels, config, seed, path),
        label="diagnosis member",
    )
    # One digitiser in front of every member's reader (members saved before `EachCell` existed are
    # rebuilt in the served form too).
    diagnosis = with_lead_signals(*(served_reader(member.get_layer("curve_reader")) for member in members))
    save_model_atomic(diagnosis, model_dir / DIAGNOSIS_FILE)
    record_in_model_info(
        model_dir,
        "ecg_diagnosis",
        {
            "file": DIAGNOSIS_FILE,
            "members": config.members,
            "config": asdict(config),
            "train_printouts": {c: int((labels == k).sum()) for k, c in enumerate(ECG_CLASSES)},
            "train_seconds": [r["train_seconds"] for r in records],
        },
    )

    info_path = model_dir / MODEL_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8"))
    page_version = info["version"].split("+")[0]
    digest = dataset.file_md5(model_dir / DIAGNOSIS_FILE)[:10]
    info["version"] = f"{page_version}+leads{config.members}-{digest}"
    write_json_atomic(info, info_path)
    # The combined probabilities are what the classifier now serves: calibrate those on validation.
    calibration = recalibrate(model_dir, roots)
    return {**info["ecg_diagnosis"], **calibration}
