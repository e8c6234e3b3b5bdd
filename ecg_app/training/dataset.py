"""Find the training images, group duplicates, and split by group so no image leaks across splits.

Raw data is never modified: this module only reads it and writes a split manifest (CSV) next to the
model, from which every later step (evaluation, benchmarks) reloads exactly the same split.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ecg_app.config import resolve_path
from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG, class_from_folder
from ecg_app.serving.intake import IntakeError, image_files, load_image
from ecg_app.serving.preprocess import ink_map

OTHER_ECG = "OtherECG"  # an ECG of another layout whose diagnosis is unknown ("some ECG class")
SPLITS = ("train", "val", "test")
# Correlation between 32x64 ink fingerprints above which two images count as one picture re-encoded or
# rescaled. Measured on ../shared/data (docs/dataset.md): distinct pictures correlate at most 0.965
# (distinct ECG printouts at most 0.947); JPEG-50 + 0.6x rescaled copies at least 0.988.
NEAR_DUPLICATE_THRESHOLD = 0.98
_FINGERPRINT_SIZE = (32, 64)


@dataclass(frozen=True)
class Sample:
    """One image file: where it is, what it is, and which duplicate group it belongs to."""

    path: Path
    label: str  # one of CLASSES, or OTHER_ECG
    source: str  # "mendeley", "non_ecg" or "other_ecg"
    md5: str = ""
    group: str = ""
    split: str = ""

    @property
    def target(self) -> np.ndarray:
        """Mask of classes the sample may belong to; the loss maximises the probability of the mask."""
        mask = np.zeros(len(CLASSES), dtype=np.float32)
        if self.label == OTHER_ECG:
            mask[: len(ECG_CLASSES)] = 1.0
        else:
            mask[CLASSES.index(self.label)] = 1.0
        return mask


def discover(
    ecg_dir: Path, non_ecg_dir: Path | None = None, other_ecg_dir: Path | None = None
) -> list[Sample]:
    """List labelled images: class folders (published long names or MI/HMI/AHB/Normal) plus extras."""
    samples: list[Sample] = []
    class_dirs = [d for d in sorted(Path(ecg_dir).iterdir()) if d.is_dir() and class_from_folder(d.name)]
    if not class_dirs:
        raise ValueError(f"No class folders (MI, HMI, AHB, Normal or the published names) in {ecg_dir}")
    for folder in class_dirs:
        samples += discover_folder(folder, class_from_folder(folder.name), "mendeley")
    if non_ecg_dir:
        samples += discover_folder(non_ecg_dir, NON_ECG, "non_ecg")
    if other_ecg_dir:
        samples += discover_folder(other_ecg_dir, OTHER_ECG, "other_ecg")
    return samples


def discover_folder(folder: Path, label: str, source: str = "mendeley") -> list[Sample]:
    """Every image below `folder`, all with one label."""
    return [Sample(path=p, label=label, source=source) for p in image_files(Path(folder))]


def file_md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def fingerprint(rgb: np.ndarray) -> np.ndarray:
    """A tiny ink map of the trace area, centred and unit-length: its dot product is a correlation.
    The file's own picture, not a straightened page: duplicates are judged on what was published."""
    vector = ink_map(rgb, size=_FINGERPRINT_SIZE).ravel().astype(np.float64)
    vector -= vector.mean()
    return vector / (np.linalg.norm(vector) + 1e-12)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def near_duplicate_pairs(
    prints: np.ndarray, threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose fingerprints correlate above `threshold`."""
    similarity = np.triu(prints @ prints.T, k=1)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(similarity > threshold), strict=True)]


def assign_groups(samples: Sequence[Sample], images: Iterable[np.ndarray] | None = None) -> list[Sample]:
    """Give every sample a duplicate group: identical bytes, or (with `images`) a near-identical picture.

    The group is named after its first file (sorted by path), like the published manifest does.
    """
    samples = [replace(s, md5=s.md5 or file_md5(s.path)) for s in samples]
    union = _UnionFind(len(samples))
    first_by_md5: dict[str, int] = {}
    for i, sample in enumerate(samples):
        union.union(i, first_by_md5.setdefault(sample.md5, i))
    if images is not None:
        prints = np.stack([fingerprint(image) for image in images])
        for i, j in near_duplicate_pairs(prints):
            union.union(i, j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(samples)):
        members[union.find(i)].append(i)
    group_of: dict[int, str] = {}
    for indices in members.values():
        name = min(samples[i].path.name for i in indices)
        first = min(indices, key=lambda i: str(samples[i].path))
        for i in indices:
            group_of[i] = f"{samples[first].source}/{samples[first].label}/{name}"
    return [replace(s, group=group_of[i]) for i, s in enumerate(samples)]


def stratum(sample: Sample) -> str:
    """What a split is stratified on: the class, and for non-ECG images also their kind (sub-folder)."""
    if sample.source == "non_ecg":
        return f"{NON_ECG}/{sample.path.parent.name}"
    return sample.label


def split_by_group(
    samples: Sequence[Sample], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 42
) -> list[Sample]:
    """Stratified train/val/test split in which every duplicate group lands on one side only."""
    rng = np.random.default_rng(seed)
    groups_by_stratum: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        groups = groups_by_stratum[stratum(sample)]
        if sample.group not in groups:
            groups.append(sample.group)
    split_of_group: dict[str, str] = {}
    for key in sorted(groups_by_stratum):
        groups = sorted(groups_by_stratum[key])
        rng.shuffle(groups)
        n = len(groups)
        n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
        n_val = max(1, round(n * val_fraction)) if n >= 3 else 0
        for k, group in enumerate(groups):
            # A group seen in an earlier stratum keeps its side.
            split_of_group.setdefault(
                group, "test" if k < n_test else "val" if k < n_test + n_val else "train"
            )
    return [replace(s, split=split_of_group[s.group]) for s in samples]


MANIFEST_FIELDS = ("path", "source", "label", "md5", "group", "split")


def relative_path(sample: Sample, roots: dict[str, Path]) -> str:
    """The sample's path below its source's root, so manifests and prediction files move with the data."""
    return Path(sample.path).resolve().relative_to(Path(roots[sample.source]).resolve()).as_posix()


def write_manifest(samples: Sequence[Sample], path: Path, roots: dict[str, Path]) -> None:
    """Write the split as CSV with paths relative to each source's root, so it moves with the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for s in samples:
            writer.writerow({**{f: getattr(s, f) for f in MANIFEST_FIELDS}, "path": relative_path(s, roots)})
    tmp.replace(path)


def read_manifest(path: Path, roots: dict[str, Path]) -> list[Sample]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            Sample(**{**row, "path": Path(roots[row["source"]]) / row["path"]})  # type: ignore[arg-type]
            for row in csv.DictReader(handle)
        ]


def load_rgb(path: Path, max_side: int = 1280) -> np.ndarray:
    """Decode through the app's intake and cap the size, so training holds the set in memory."""
    image = load_image(path)
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def load_images(samples: Sequence[Sample], max_side: int = 1280) -> tuple[list[Sample], list[np.ndarray]]:
    """Decode every sample, dropping (and reporting) files that fail intake."""
    kept, images = [], []
    for sample in samples:
        try:
            images.append(load_rgb(sample.path, max_side))
            kept.append(sample)
        except IntakeError as exc:
            print(f"skipping {sample.path}: {exc.message}")
    return kept, images


def counts(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    """Files and distinct groups per label (duplicates removed), for metrics.json and the model card."""
    files: dict[str, int] = defaultdict(int)
    groups: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        files[s.label] += 1
        groups[s.label].add(s.group)
    return {label: {"files": files[label], "unique": len(groups[label])} for label in sorted(files)}


def split_sizes(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    sizes: dict[str, dict[str, int]] = {split: defaultdict(int) for split in SPLITS}
    for s in samples:
        sizes[s.split][s.label] += 1
    return {split: dict(sorted(v.items())) for split, v in sizes.items()}


def model_roots(info: dict, overrides: dict[str, Path] | None = None) -> dict[str, Path]:
    """Where the model's training data lies: model.json's recorded roots, with `overrides` where given."""
    roots = {k: resolve_path(v) for k, v in info.get("data_roots", {}).items()}
    roots.update({k: Path(v) for k, v in (overrides or {}).items() if v is not None})
    return roots
