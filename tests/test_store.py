"""Analysis history on a real SQLite file and PostgreSQL (see conftest.BACKENDS): rows, content-addressed
files, filters, CSV, atomicity."""

import csv
import hashlib
import io
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from ecg_app.clinical.measurements import PARTIAL, Measurements, RhythmStrip
from ecg_app.labels import CLASSES
from ecg_app.serving.classifier import Prediction
from ecg_app.serving.explain import overlay
from ecg_app.serving.quality import assess
from ecg_app.store import AnalysisFilter, PatientInfo, open_store
from ecg_app.store.images import TEMP_PREFIX, TRASH_PREFIX, ImageStore, fit
from ecg_app.store.models import StoredImage
from ecg_app.store.repository import CSV_COLUMNS, csv_safe, sanitize_filename
from tests.conftest import decoded, encode, settings_for, synthetic_printout

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_prediction(label: str = "MI", confidence: float = 0.8, status: str = "ok") -> Prediction:
    rest = (1.0 - confidence) / (len(CLASSES) - 1)
    probabilities = {c: (confidence if c == label else rest) for c in CLASSES}
    return Prediction(label, probabilities, confidence, "test-1.0", status)


@pytest.fixture(scope="module")
def page_rgb() -> np.ndarray:
    return synthetic_printout(width=900, height=640, seed=3)


@pytest.fixture(scope="module")
def page_png(page_rgb) -> bytes:
    return encode(page_rgb)


def stored_files(store) -> list[str]:
    return sorted(
        p.relative_to(store.images.root).as_posix() for p in store.images.root.rglob("*") if p.is_file()
    )


def count_images(store) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(StoredImage))


def test_round_trip_keeps_every_field(store, page_rgb, page_png):
    patient = PatientInfo(name="  Jane\tDoe ", age="54", sex="F", notes="Chest pain\nsince 2 h")
    added = store.add(make_prediction("MI", 0.8), page_png, page_rgb, "C:\\scans\\..\\ecg 1.png", patient)
    got = store.get(added.id)
    assert got == added
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - got.created_at).total_seconds()) < 60
    assert got.label == "MI" and got.display_name == "Myocardial Infarction"
    assert got.confidence == pytest.approx(0.8)
    assert list(got.probabilities) == list(CLASSES)
    assert sum(got.probabilities.values()) == pytest.approx(1.0)
    assert got.risk_level == "HIGH" and got.status == "ok" and got.model_version == "test-1.0"
    assert got.patient == PatientInfo("Jane Doe", 54, "female", "Chest pain\nsince 2 h")
    assert got.original_filename == "ecg 1.png"
    assert got.image_sha256 == hashlib.sha256(page_png).hexdigest()
    # The picture as given, losslessly (a PNG upload), and not the upload's own bytes, which are not kept.
    assert np.array_equal(decoded(got.image_path), page_rgb) and got.image_path.read_bytes() != page_png
    assert got.original_path is None and got.deidentification == "none"
    assert got.media_type == "image/png"
    with Image.open(got.thumbnail_path) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 800
    assert store.get(added.id.hex) == added  # ids as strings work too


def test_sqlite_is_configured_for_a_web_app(store):
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_foreign_key_protects_referenced_images(store, page_rgb, page_png):
    added = store.add(make_prediction(), page_png, page_rgb, "a.png")
    with pytest.raises(IntegrityError, match="(?i)foreign key"), store.engine.begin() as connection:
        connection.execute(text("DELETE FROM images WHERE sha256 = :sha"), {"sha": added.image_sha256})


def test_same_image_is_stored_once_and_removed_with_its_last_analysis(store, page_rgb, page_png):
    first = store.add(make_prediction("MI"), page_png, page_rgb, "a.png")
    second = store.add(make_prediction("AHB"), page_png, page_rgb, "b.png")
    assert first.image_path == second.image_path
    assert len(stored_files(store)) == 2 and count_images(store) == 1  # image + thumbnail, one row
    assert store.delete(first.id)
    assert first.image_path.is_file() and first.thumbnail_path.is_file()  # still used by `second`
    assert store.get(first.id) is None and store.get(second.id) is not None
    assert store.delete(second.id)
    assert stored_files(store) == [] and count_images(store) == 0
    assert not store.delete(second.id)


def test_unknown_or_malformed_ids(store):
    assert store.get("not-a-uuid") is None
    assert store.delete("not-a-uuid") is False
    assert store.get("00000000-0000-0000-0000-000000000000") is None


def _fill(store, page_rgb):
    """Eight analyses one hour apart, newest = index 7; distinct image bytes each."""
    specs = [
        ("MI", "ok", PatientInfo("Alice Smith", 61, "female", "Chest pain, 100% sure")),
        ("HMI", "ok", PatientInfo("Bob Jones", 72, "male", None)),
        ("AHB", "needs_review", PatientInfo("ID-0042", None, None, "palpitations at night")),
        ("Normal", "ok", PatientInfo("Carol", 35, "female", "routine check")),
        ("NonECG", "ok", PatientInfo()),
        ("MI", "needs_review", PatientInfo("alice cooper", 45, "other", "follow-up of Alice")),
        ("Normal", "ok", PatientInfo("Dan_1", 29, None, "under_score")),
        ("AHB", "ok", PatientInfo("Eve", 50, "female", "PALPITATIONS, dizzy")),
    ]
    added = []
    for i, (label, status, patient) in enumerate(specs):
        rgb = page_rgb.copy()
        rgb[0, 0] = (i, i, i)
        added.append(
            store.add(
                make_prediction(label, 0.7, status),
                encode(rgb),
                rgb,
                f"f{i}.png",
                patient,
                T0 + timedelta(hours=i),
            )
        )
    return added


def ids(page) -> list:
    return [item.id for item in page.items]


def test_list_filters_search_and_pagination(store, page_rgb):
    added = _fill(store, page_rgb)
    everything = store.list()
    assert everything.total == 8 and ids(everything) == [a.id for a in reversed(added)]  # newest first

    def matching(**kwargs) -> list:
        return ids(store.list(AnalysisFilter(**kwargs)))

    assert matching(label="MI") == [added[5].id, added[0].id]
    assert matching(risk_level="HIGH") == [added[5].id, added[1].id, added[0].id]
    assert matching(risk_level="none") == [added[4].id]
    assert matching(status="needs_review") == [added[5].id, added[2].id]
    assert matching(since=T0 + timedelta(hours=6)) == [added[7].id, added[6].id]
    assert matching(until=T0 + timedelta(hours=1)) == [added[0].id]
    # Naive bounds are UTC; aware bounds in another zone are converted.
    assert matching(since=datetime(2025, 3, 1, 14), until=datetime(2025, 3, 1, 16)) == [
        added[3].id,
        added[2].id,
    ]
    other_zone = datetime(2025, 3, 1, 15, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert matching(since=other_zone, until=other_zone + timedelta(hours=1)) == [added[3].id]
    # Free text: name and notes, case-insensitive; digits also match the age; % and _ are literal.
    assert matching(search="alice") == [added[5].id, added[0].id]
    assert matching(search="palpitations") == [added[7].id, added[2].id]
    assert matching(search="0042") == [added[2].id]
    assert matching(search="72") == [added[1].id]
    assert matching(search="100%") == [added[0].id]
    assert matching(search="_") == [added[6].id]
    assert matching(search="FEMALE") == [added[7].id, added[3].id, added[0].id]
    assert matching(label="MI", status="needs_review", search="cooper") == [added[5].id]
    assert matching(search="nobody") == []

    first = store.list(limit=3)
    second = store.list(limit=3, offset=3)
    last = store.list(limit=3, offset=6)
    assert (first.total, second.total, last.total) == (8, 8, 8)
    assert ids(first) + ids(second) + ids(last) == ids(everything)
    assert len(last.items) == 2 and store.list(offset=100).items == []
    filtered = store.list(AnalysisFilter(label="Normal"), limit=1)
    assert filtered.total == 2 and ids(filtered) == [added[6].id]


def test_csv_export_has_every_row_and_neutralises_formulas(store, page_rgb, page_png):
    store.add(
        make_prediction("MI"), page_png, page_rgb, "=cmd.png", PatientInfo('=HYPERLINK("x")', notes="+1")
    )
    store.add(make_prediction("Normal"), page_png, page_rgb, "b.png", PatientInfo("-2+3", notes="@SUM(A1)"))
    store.add(make_prediction("AHB"), page_png, page_rgb, "c.png", PatientInfo("Plain Name", 40, "m"))
    out = io.StringIO(newline="")
    assert store.export_csv(out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
    by_label = {row["label"]: row for row in rows}
    assert by_label["MI"]["patient_name"] == '\'=HYPERLINK("x")' and by_label["MI"]["notes"] == "'+1"
    assert by_label["MI"]["file"] == "'=cmd.png"
    assert by_label["Normal"]["patient_name"] == "'-2+3" and by_label["Normal"]["notes"] == "'@SUM(A1)"
    assert by_label["AHB"]["patient_name"] == "Plain Name" and by_label["AHB"]["patient_sex"] == "male"
    assert float(by_label["AHB"]["prob_AHB"]) == pytest.approx(0.8)
    assert by_label["AHB"]["risk_level"] == "MEDIUM"
    filtered = io.StringIO(newline="")
    assert store.export_csv(filtered, AnalysisFilter(label="Normal")) == 1
    assert csv_safe(-1.5) == -1.5 and csv_safe("a=b") == "a=b"


def test_failure_after_the_image_file_is_written_leaves_no_row_and_no_file(store, page_png):
    bad_rgb = np.zeros((10, 10, 7), np.uint8)  # the thumbnail step fails, after the upload file was written
    with pytest.raises((TypeError, ValueError)):
        store.add(make_prediction(), page_png, bad_rgb, "x.png")
    assert store.list().total == 0 and count_images(store) == 0
    assert stored_files(store) == []  # neither the image nor any temporary file


def test_constraint_violation_leaves_no_row_and_no_file(store, page_rgb, page_png):
    impossible = Prediction("MI", dict.fromkeys(CLASSES, 0.2), 1.7, "v", "ok")
    with pytest.raises(IntegrityError, match="(?i)check constraint"):
        store.add(impossible, page_png, page_rgb, "x.png")
    assert store.list().total == 0 and count_images(store) == 0 and stored_files(store) == []


def test_concurrent_first_uploads_of_one_image(store, page_rgb, page_png):
    errors, results = [], []

    def add() -> None:
        try:
            results.append(store.add(make_prediction(), page_png, page_rgb, "same.png"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.list().total == 6 and count_images(store) == 1 and len(stored_files(store)) == 2


def _age(path, seconds: float = 3600) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_start_up_sweeps_what_a_crash_left(tmp_path, backend, page_rgb, page_png):
    settings = settings_for(tmp_path, backend)
    with open_store(settings) as store:
        kept = store.add(make_prediction(), page_png, page_rgb, "kept.png")
        root = store.images.root
    orphan = root / "ab" / ("ab" + "0" * 62 + ".png")  # a file whose row was never committed
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"orphan")
    temp = root / "ab" / f"{TEMP_PREFIX}half-written"
    temp.write_bytes(b"partial")
    fresh = root / "ab" / ("ab" + "1" * 62 + ".png")  # may belong to a request still in flight
    fresh.write_bytes(b"fresh")
    trashed = kept.thumbnail_path.with_name(TRASH_PREFIX + kept.thumbnail_path.name)
    os.replace(kept.thumbnail_path, trashed)  # crash between the rename and a failed delete's rollback
    for path in (orphan, temp, trashed, kept.image_path):
        _age(path)

    with open_store(settings) as store:
        assert store.get(kept.id) is not None
    assert not orphan.exists() and not temp.exists() and not trashed.exists()
    assert fresh.exists()
    assert kept.image_path.is_file() and kept.thumbnail_path.is_file()  # put back from the trash name


def test_two_phase_delete_can_be_undone(tmp_path):
    images = ImageStore(tmp_path / "images")
    path = images.path("ab/abc.png")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    moved = images.trash(["ab/abc.png"])
    assert not path.exists()
    ImageStore.restore(moved)
    assert path.read_bytes() == b"x"
    ImageStore.purge(images.trash(["ab/abc.png"]))
    assert list(images.root.rglob("*.png")) == []
    with pytest.raises(ValueError):
        images.path("../escape.png")


def test_patient_info_is_validated_and_normalised():
    assert PatientInfo("", "", "", "   ") == PatientInfo()
    assert PatientInfo(sex="M").sex == "male" and PatientInfo(sex="Other").sex == "other"
    assert PatientInfo(name="A\x00B\nC").name == "AB C"
    assert len(PatientInfo(name="x" * 200).name) == 200  # longer is refused, never cut: hostile_text.py
    for bad in ({"age": -1}, {"age": 151}, {"age": "old"}, {"sex": "unknown"}):
        with pytest.raises(ValueError):
            PatientInfo(**bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\scan.jpg", "scan.jpg"),
        ("a\x07b.png", "ab.png"),
        ("", "upload"),
    ],
)
def test_file_names_are_sanitised(raw, expected):
    assert sanitize_filename(raw) == expected


# -- explanations: quality warnings and the Grad-CAM overlay (schema revision 0002) ----------------------


def heat_overlay(rgb: np.ndarray) -> np.ndarray:
    """An overlay as analysis.explanation_overlay makes it (a map laid over the thumbnail-sized picture)."""
    preview = fit(rgb)
    page_map = np.zeros(preview.shape[:2], np.float32)
    page_map[preview.shape[0] // 3 : preview.shape[0] // 2, preview.shape[1] // 4 : preview.shape[1] // 2] = 1
    return overlay(preview, page_map)


def test_quality_warnings_and_explanation_round_trip(store, page_rgb):
    blurred = cv2.GaussianBlur(page_rgb, (0, 0), 4)
    warnings = assess(blurred)
    assert "blurry" in {w.code for w in warnings}
    added = store.add(
        make_prediction("MI"),
        encode(blurred),
        blurred,
        "blurred.png",
        quality_warnings=warnings,
        explanation=heat_overlay(blurred),
    )
    got = store.get(added.id)
    assert got == added
    assert got.quality_warnings == tuple(warnings)
    assert got.to_dict()["quality_warnings"] == [{"code": w.code, "message": w.message} for w in warnings]
    # The overlay is a JPEG of the thumbnail's size, beside the thumbnail, named by image and analysis.
    assert got.explanation_path.parent == got.thumbnail_path.parent
    assert got.explanation_path.name == f"{got.image_sha256}.{got.id.hex}.gradcam.jpg"
    with Image.open(got.explanation_path) as cam, Image.open(got.thumbnail_path) as thumb:
        assert cam.format == "JPEG" and cam.size == thumb.size
        diff = np.abs(np.asarray(cam, int) - np.asarray(thumb, int)).sum(axis=2)
    height, width = diff.shape
    assert diff[height // 3 : height // 2, width // 4 : width // 2].mean() > 60  # the heat is drawn ...
    assert diff[height * 2 // 3 :].mean() < 10  # ... over the same picture, nothing elsewhere
    assert len(stored_files(store)) == 3

    plain = store.add(make_prediction("Normal"), encode(page_rgb), page_rgb, "plain.png", quality_warnings=[])
    assert (
        store.get(plain.id).quality_warnings == () and store.get(plain.id).to_dict()["quality_warnings"] == []
    )
    unchecked = store.add(make_prediction("NonECG"), encode(page_rgb), page_rgb, "old-style.png")
    assert unchecked.quality_warnings is None and unchecked.explanation_path is None
    assert store.get(unchecked.id).to_dict()["quality_warnings"] is None

    out = io.StringIO(newline="")
    store.export_csv(out)
    codes = {row["file"]: row["quality_warnings"] for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert codes == {"blurred.png": "; ".join(w.code for w in warnings), "plain.png": "", "old-style.png": ""}


def test_measurements_round_trip_as_their_json_without_the_strip(store, page_rgb, page_png):
    """Kept as `Measurements.to_dict` (rounded), read back equal to that; the strip is never stored. An
    analysis stored without measurements (as before revision 0006) reads back None, empty in the CSV."""
    strip = RhythmStrip(np.linspace(0, 10, 5000), np.zeros(5000), np.array([0.8, 1.6]))
    measured = Measurements(
        heart_rate_bpm=112.345, rr_irregularity=0.04567, qrs_ms=124.0, qt_ms=330.0, qtc_bazett_ms=451.26,
        qtc_fridericia_ms=408.0, qrs_axis_deg=-45.0, quality=PARTIAL, not_measured_reason="no P waves found",
        strip=strip,
    )  # fmt: skip
    added = store.add(make_prediction("AHB"), page_png, page_rgb, "measured.png", measurements=measured)
    got = store.get(added.id)
    assert got == added and got.measurements == Measurements.from_dict(measured.to_dict())
    assert got.measurements.strip is None and got.measurements.heart_rate_bpm == 112.3
    assert got.to_dict()["measurements"] == measured.to_dict()
    older = store.add(make_prediction("Normal"), page_png, page_rgb, "older.png")
    assert older.measurements is None and store.get(older.id).to_dict()["measurements"] is None

    out = io.StringIO(newline="")
    store.export_csv(out)
    rows = {row["file"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    numbers = ("heart_rate_bpm", "rr_irregularity", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms")
    columns = (*numbers, "qtc_fridericia_ms", "qrs_axis_deg", "measurement_quality", "not_measured_reason")
    assert CSV_COLUMNS[-len(columns) :] == columns
    assert [rows["measured.png"][c] for c in numbers] == ["112.3", "0.046", "", "124.0", "330.0", "451.3"]
    assert rows["measured.png"]["qrs_axis_deg"] == "-45.0"  # a number, not a formula: left as it is
    assert rows["measured.png"]["measurement_quality"] == "partial"
    assert rows["measured.png"]["not_measured_reason"] == "no P waves found"
    assert all(rows["older.png"][c] == "" for c in columns)


def test_each_analysis_has_its_own_overlay_deleted_with_it(store, page_rgb, page_png):
    first = store.add(make_prediction("MI"), page_png, page_rgb, "a.png", explanation=heat_overlay(page_rgb))
    second = store.add(
        make_prediction("AHB"), page_png, page_rgb, "b.png", explanation=heat_overlay(page_rgb)
    )
    assert first.explanation_path != second.explanation_path
    assert len(stored_files(store)) == 4 and count_images(store) == 1  # image, thumbnail, two overlays
    assert store.delete(first.id)
    assert not first.explanation_path.exists()  # gone with its analysis ...
    assert second.explanation_path.is_file() and first.image_path.is_file()  # ... the shared image stays
    assert store.delete(second.id)
    assert stored_files(store) == []


def test_failure_after_the_overlay_is_written_leaves_no_row_and_no_file(store, page_rgb, page_png):
    bad_rgb = np.zeros((10, 10, 7), np.uint8)  # the thumbnail step fails, after the overlay was written
    with pytest.raises((TypeError, ValueError)):
        store.add(make_prediction(), page_png, bad_rgb, "x.png", explanation=heat_overlay(page_rgb))
    assert store.list().total == 0 and count_images(store) == 0
    assert stored_files(store) == []  # no overlay, no image, no temporary file
    with pytest.raises(IntegrityError, match="(?i)check constraint"):  # fails before any file is written
        store.add(
            Prediction("MI", dict.fromkeys(CLASSES, 0.2), 1.7, "v", "ok"),
            page_png,
            page_rgb,
            "x.png",
            quality_warnings=assess(page_rgb),
            explanation=heat_overlay(page_rgb),
        )
    assert store.list().total == 0 and stored_files(store) == []


def test_sweep_removes_orphan_overlays_and_keeps_or_restores_referenced_ones(
    tmp_path, backend, page_rgb, page_png
):
    settings = settings_for(tmp_path, backend)
    with open_store(settings) as store:
        kept = store.add(
            make_prediction(), page_png, page_rgb, "kept.png", explanation=heat_overlay(page_rgb)
        )
        trashed_too = store.add(
            make_prediction(), page_png, page_rgb, "other.png", explanation=heat_overlay(page_rgb)
        )
    # An overlay whose row was never committed (a crash between the write and the commit) ...
    orphan = kept.explanation_path.with_name(f"{kept.image_sha256}.{'0' * 32}.gradcam.jpg")
    orphan.write_bytes(b"orphan overlay")
    # ... and one a crashed delete renamed to its trash name although its row survived.
    trash = trashed_too.explanation_path.with_name(TRASH_PREFIX + trashed_too.explanation_path.name)
    os.replace(trashed_too.explanation_path, trash)
    for path in (orphan, trash, kept.explanation_path, kept.image_path, kept.thumbnail_path):
        _age(path)
    with open_store(settings) as store:
        assert store.get(kept.id).explanation_path.is_file()
    assert not orphan.exists() and not trash.exists()
    assert trashed_too.explanation_path.is_file()  # put back: its analysis still refers to it


def test_image_store_write_is_atomic_and_confined(tmp_path):
    images = ImageStore(tmp_path / "images")
    path = images.write("cd/cdef.1.gradcam.jpg", b"jpeg bytes")
    assert path.read_bytes() == b"jpeg bytes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    with pytest.raises(ValueError):
        images.write("../outside.jpg", b"x")


def _with_dates(store, page_png, page_rgb, rows):
    """Store (patient, label, days ago) rows, each on its own upload; returns them by label."""
    out = {}
    for k, (patient, label, days) in enumerate(rows):
        moved = np.roll(page_rgb, k + 1, axis=1)  # a picture of its own, not page_png
        created = datetime.now(UTC) - timedelta(days=days)
        out[label + str(k)] = store.add(
            make_prediction(label), encode(moved), moved, f"{k}.png", PatientInfo(patient), created
        )
    return out


def test_a_patients_timeline_is_their_analyses_oldest_first(store, page_rgb, page_png):
    rows = [("P-100", "MI", 3), ("Other", "AHB", 2), ("p-100 ", "HMI", 10), ("P-1000", "Normal", 1)]
    added = _with_dates(store, page_png, page_rgb, rows)
    timeline = store.list(AnalysisFilter(patient="P-100"))  # a patient's list: oldest first
    assert [a.label for a in timeline.items] == ["HMI", "MI"] and timeline.total == 2  # not P-1000
    newest_first = store.list(AnalysisFilter(patient=" p-100"), oldest_first=False)
    assert [a.label for a in newest_first.items] == ["MI", "HMI"]
    assert [a.label for a in store.list().items][:2] == ["Normal", "AHB"]  # everyone: newest first
    assert store.list(AnalysisFilter(patient="P-10")).total == 0  # the whole ID, not a part of it
    assert added["Normal3"].patient.name == "P-1000"
    # Case is folded for every alphabet, on SQLite as on PostgreSQL.
    _with_dates(store, page_png, page_rgb, [("Émile Ørsted", "AHB", 5), ("ИВАНОВ", "MI", 4)])
    assert store.list(AnalysisFilter(patient="émile ørsted")).total == 1
    assert store.list(AnalysisFilter(patient="иванов")).total == 1


def test_erasing_a_patient_removes_every_row_and_file_and_nothing_else(store, page_rgb, page_png):
    rows = [("Erase Me", "MI", 3), ("Keep Me", "AHB", 2), ("erase me", "HMI", 1)]
    added = _with_dates(store, page_png, page_rgb, rows)
    shared = store.add(make_prediction("Normal"), page_png, page_rgb, "shared.png", PatientInfo("Erase Me"))
    kept_shared = store.add(make_prediction("MI"), page_png, page_rgb, "shared.png", PatientInfo("Keep Me"))
    erased = [added["MI0"], added["HMI2"], shared]
    files_of = {a.id: {a.image_path, a.thumbnail_path} for a in [*erased, added["AHB1"], kept_shared]}

    assert set(store.delete_patient("ERASE ME")) == {a.id for a in erased}
    assert store.list(AnalysisFilter(patient="Erase Me")).total == 0
    assert all(store.get(a.id) is None for a in erased)
    for a in (added["MI0"], added["HMI2"]):
        assert not any(path.exists() for path in files_of[a.id])
    # The other patient's analyses stay whole, including one of the same picture as an erased analysis.
    for a in (added["AHB1"], kept_shared):
        assert store.get(a.id) == a and all(path.is_file() for path in files_of[a.id])
    assert store.delete_patient("Erase Me") == []  # run again: nothing left
    with pytest.raises(ValueError, match="patient"):
        store.delete_patient("  ")
