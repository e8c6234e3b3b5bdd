import csv
import shutil
from pathlib import Path

import cv2
import pytest

from ecg_app.labels import class_from_folder
from ecg_app.training import dataset
from tests.conftest import encode, synthetic_printout


def test_folder_names_map_to_classes():
    assert class_from_folder("ECG Images of Myocardial Infarction Patients (240x12=2880)") == "MI"
    assert class_from_folder("ECG Images of Patient that have History of MI (172x12=2064)") == "HMI"
    assert class_from_folder("ECG Images of Patient that have abnormal heartbeat (233x12=2796)") == "AHB"
    assert class_from_folder("Normal Person ECG Images (284x12=3408)") == "Normal"
    for short in ("MI", "HMI", "AHB", "Normal"):
        assert class_from_folder(short) == short
    assert class_from_folder("misc") is None


@pytest.fixture
def published_copy(shared_data, tmp_path) -> Path:
    """Recreate the published dataset's duplicate structure from the manifest: every original file
    name, each a byte-identical copy of its group's provided image."""
    root = tmp_path / "published"
    with (shared_data / "mendeley-ecg-manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        source = shared_data / "mendeley-ecg" / row["folder"] / row["duplicate_group"]
        target = root / row["folder"] / row["original_file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return root


def test_exact_duplicate_groups_match_the_published_manifest(published_copy, shared_data):
    samples = dataset.assign_groups(dataset.discover(published_copy))
    found = {s.path.name: s.group.rsplit("/", 1)[1] for s in samples}
    with (shared_data / "mendeley-ecg-manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(found) == len(rows)
    # Same partition as the manifest: two files share a group exactly when the manifest says so.
    expected: dict[str, set[str]] = {}
    ours: dict[str, set[str]] = {}
    for row in rows:
        expected.setdefault(row["duplicate_group"], set()).add(row["original_file"])
        ours.setdefault(found[row["original_file"]], set()).add(row["original_file"])
    assert sorted(map(sorted, expected.values())) == sorted(map(sorted, ours.values()))
    sizes = {row["original_file"]: int(row["group_size"]) for row in rows}
    assert all(len(ours[found[name]]) == size for name, size in sizes.items())


def test_split_keeps_every_group_on_one_side(published_copy):
    samples = dataset.split_by_group(dataset.assign_groups(dataset.discover(published_copy)), seed=3)
    side: dict[str, set[str]] = {}
    for s in samples:
        side.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in side.values())
    for label in ("MI", "HMI", "AHB", "Normal"):  # stratified: every class in every split
        assert {s.split for s in samples if s.label == label} == {"train", "val", "test"}


def test_split_is_deterministic_for_a_seed(published_copy):
    grouped = dataset.assign_groups(dataset.discover(published_copy))
    a = [s.split for s in dataset.split_by_group(grouped, seed=7)]
    b = [s.split for s in dataset.split_by_group(grouped, seed=7)]
    c = [s.split for s in dataset.split_by_group(grouped, seed=8)]
    assert a == b and a != c


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_re_encoded_and_rescaled_copies_are_grouped(tmp_path):
    page = synthetic_printout(seed=1)
    other = synthetic_printout(seed=2)
    _write(tmp_path / "MI" / "a.png", encode(page))
    _write(tmp_path / "MI" / "a_copy.jpg", encode(cv2.resize(page, None, fx=0.7, fy=0.7), "JPEG", quality=60))
    _write(tmp_path / "MI" / "b.png", encode(other))
    samples, images = dataset.load_images(dataset.discover(tmp_path))
    grouped = {s.path.name: s.group for s in dataset.assign_groups(samples, images)}
    assert grouped["a.png"] == grouped["a_copy.jpg"]
    assert grouped["a.png"] != grouped["b.png"]


def test_distinct_real_printouts_are_not_merged(shared_data):
    """The near-duplicate threshold must not merge different patients printed on one template."""
    folder = shared_data / "mendeley-ecg" / "ECG Images of Myocardial Infarction Patients (240x12=2880)"
    samples, images = dataset.load_images(dataset.discover_folder(folder, "MI"))
    groups = {s.group for s in dataset.assign_groups(samples, images)}
    assert len(groups) == len(samples)


def test_manifest_round_trip(tmp_path):
    _write(tmp_path / "data" / "Normal" / "x.png", encode(synthetic_printout()))
    samples = dataset.split_by_group(dataset.assign_groups(dataset.discover(tmp_path / "data")))
    roots = {"mendeley": tmp_path / "data"}
    dataset.write_manifest(samples, tmp_path / "split.csv", roots)
    assert (
        "x.png" in (tmp_path / "split.csv").read_text()
        and str(tmp_path) not in (tmp_path / "split.csv").read_text()
    )
    back = dataset.read_manifest(tmp_path / "split.csv", roots)
    assert [(s.path.resolve(), s.group, s.split) for s in back] == [
        (s.path.resolve(), s.group, s.split) for s in samples
    ]


def test_targets_mark_unknown_ecgs_as_any_ecg_class():
    known = dataset.Sample(path=Path("a"), label="HMI", source="mendeley")
    unknown = dataset.Sample(path=Path("b"), label=dataset.OTHER_ECG, source="other_ecg")
    assert known.target.tolist() == [0, 1, 0, 0, 0]
    assert unknown.target.tolist() == [1, 1, 1, 1, 0]


def test_counts_report_files_and_unique_groups(published_copy, shared_data):
    samples = dataset.assign_groups(dataset.discover(published_copy))
    counts = dataset.counts(samples)
    with (shared_data / "mendeley-ecg-manifest.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if class_from_folder(r["folder"]) == "MI"]
    assert counts["MI"] == {"files": len(rows), "unique": len({r["duplicate_group"] for r in rows})}
    assert counts["MI"]["files"] > 7 * counts["MI"]["unique"]  # MI is copied ~8 times in the published set
