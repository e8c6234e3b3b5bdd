"""De-identification: what is stored and printed shows no patient ID, and the classifier's input is the same.

The privacy check uses the real pipeline (shipped model, store, PDF) on the four bundled Mendeley printouts,
as uploaded and photographed on a desk, and Tesseract as the reader; benchmarks/check_deidentified.py
runs it on every printout of ../shared/data.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import Uuid, column, insert, table

from ecg_app.analysis import analyze_and_store
from ecg_app.cli import main
from ecg_app.clinical.report import render_report_pdf
from ecg_app.config import Settings
from ecg_app.labels import NON_ECG
from ecg_app.serving import deidentify as deid
from ecg_app.serving.classifier import get_classifier
from ecg_app.serving.intake import load_image
from ecg_app.serving.preprocess import crop_box, ink_map, page_as_read
from ecg_app.store import AnalysisFilter, open_store
from ecg_app.store.db import create_engine_for
from ecg_app.store.images import fit, make_thumbnail
from ecg_app.store.migrate import upgrade
from ecg_app.training.robustness import DEGRADATIONS
from ecg_app.ui.analyze_tab import EXAMPLES_DIR
from tests.conftest import database_url_for, decoded, encode
from tests.ocr import pdf_pages, printed_id, read_text, readings, shows_digits

PRINTOUTS = sorted(EXAMPLES_DIR.glob("*(*).jpg"))
OLD_IMAGE_COLUMNS = (
    "sha256",
    "image_ref",
    "thumbnail_ref",
    "media_type",
    "size_bytes",
    "width",
    "height",
    "created_at",
)
OLD_ANALYSIS_COLUMNS = (
    "created_at", "image_sha256", "original_filename", "label", "confidence", "prob_mi", "prob_hmi",
    "prob_ahb", "prob_normal", "prob_nonecg", "risk_level", "model_version", "status", "quality_warnings",
    "explanation_ref", "patient_name",
)  # fmt: skip
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr is not installed"
)


@pytest.fixture
def classifier(shipped_model):
    return get_classifier(shipped_model)  # loaded once per process (get_classifier keeps it)


def _settings(tmp_path, **changes) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'history.db'}", **changes)


def text_picture(words: list[str], size: tuple[int, int] = (600, 900)) -> np.ndarray:
    """A white picture with a wavy line (no pink frame) and the words printed in a column at the left."""
    rgb = np.full((*size, 3), 255, np.uint8)
    xs = np.arange(300, size[1] - 20)
    ys = (size[0] / 2 + 60 * np.sin(xs / 25)).astype(np.int32)
    cv2.polylines(rgb, [np.stack([xs, ys], 1)], False, (0, 0, 0), 2)
    for k, word in enumerate(words):
        cv2.putText(rgb, word, (20, 60 + 50 * k), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    return rgb


@pytest.mark.parametrize("name", ["as uploaded", "rotate +5 deg", "perspective warp", "JPEG quality 30"])
def test_a_printout_keeps_its_trace_area_and_loses_its_header_and_footer(name):
    original = load_image(PRINTOUTS[0].read_bytes())
    page = page_as_read(original if name == "as uploaded" else DEGRADATIONS[name](original))
    clean = deid.deidentify(page)
    assert clean.method == deid.TRACE_FRAME
    height = page.shape[0]
    assert (clean.image[: round(0.07 * height)] == 255).all()  # the header's first lines, even tilted
    assert 0.15 < clean.blanked_share < 0.45
    if name == "as uploaded":  # the networks' input, the trace area, is untouched
        assert (clean.image[: round(0.17 * height)] == 255).all()  # the header: ID, date, rate
        assert (clean.image[round(0.975 * height) :] == 255).all()  # the footer: machine settings
        top, bottom, left, right = crop_box(*page.shape[:2])
        assert np.array_equal(clean.image[top:bottom, left:right], page[top:bottom, left:right])
        assert np.array_equal(ink_map(clean.image), ink_map(page))


@needs_tesseract
@pytest.mark.parametrize("shape", ["pink object", "square frame", "coffee photo"])
def test_only_the_templates_frame_counts_as_one(shape):
    """Pink that is not the template's frame (a pink object, a frame of other proportions, a photo) must
    not pass as one: outside it would be blanked, but text inside it kept."""
    if shape == "coffee photo":
        rgb = load_image((EXAMPLES_DIR / "coffee.jpg").read_bytes())
    else:
        rgb = text_picture(["Patient", "731942"], size=(786, 1106))
        if shape == "pink object":
            cv2.rectangle(rgb, (100, 150), (1000, 740), (217, 174, 177), thickness=-1)
        else:
            cv2.rectangle(rgb, (250, 100), (900, 750), (217, 174, 177), thickness=2)
    assert deid.frame_hull(rgb) is None
    assert deid.deidentify(rgb).method == deid.TEXT


@needs_tesseract
def test_words_are_blanked_where_there_is_no_frame():
    words = ["Patient", "ID", "731942", "Smith"]
    rgb = text_picture(words)
    assert all(word in read_text(rgb) for word in words)  # the reader sees them before
    clean = deid.deidentify(rgb)
    assert clean.method == deid.TEXT
    after = read_text(clean.image, 2.0)
    assert not any(word in after for word in words) and not shows_digits(after, "731942")
    assert clean.keep[:, 300:].mean() > 0.95  # the trace on the right is kept
    assert clean.blanked_share < 0.2


@needs_tesseract
def test_without_tesseract_the_picture_is_stored_as_a_mosaic(monkeypatch):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    rgb = text_picture(["ID", "731942"])
    clean = deid.deidentify(rgb)
    monkeypatch.undo()  # the check below reads with the real Tesseract
    assert clean.method == deid.MOSAIC and not clean.keep.any()
    assert not shows_digits(read_text(clean.image, 2.0), "731942")
    assert len(np.unique(clean.image.reshape(-1, 3), axis=0)) > 1  # a mosaic, not a blank
    overlay = np.zeros((60, 90, 3), np.uint8)
    overlay[:, :45] = 200
    assert deid.mosaic(overlay).shape == overlay.shape


@needs_tesseract
def test_a_failing_frame_search_falls_back_to_the_text_search(monkeypatch):
    def broken(_rgb):
        raise cv2.error("an odd picture")

    monkeypatch.setattr(deid, "frame_hull", broken)
    clean = deid.deidentify(text_picture(["ID", "731942"]))
    assert clean.method == deid.TEXT and not shows_digits(read_text(clean.image, 2.0), "731942")


def test_the_same_blanking_applies_to_a_smaller_picture_of_the_page():
    page = page_as_read(load_image(PRINTOUTS[1].read_bytes()))
    clean = deid.deidentify(page)
    small = fit(np.zeros_like(page), 400)  # e.g. the Grad-CAM overlay at thumbnail size
    blanked = clean.apply_to(small)
    assert blanked.shape == small.shape
    assert (blanked[: round(0.12 * small.shape[0])] == 255).all()  # the header
    assert (blanked[small.shape[0] // 2] == 0).any()  # the trace area


@needs_tesseract
@pytest.mark.slow
@pytest.mark.parametrize("photographed", [False, True], ids=["as-uploaded", "photographed"])
def test_no_printed_id_is_read_in_what_is_stored_or_printed(tmp_path, classifier, photographed):
    """Tesseract reads each printout's ID in its header and in its thumbnail as it used to be stored, and
    nowhere in the stored picture, thumbnail, Grad-CAM overlay or PDF (text and rasterised pages)."""
    with open_store(_settings(tmp_path)) as store:
        for k, path in enumerate(PRINTOUTS):
            original = load_image(path.read_bytes())
            upload = DEGRADATIONS["photographed on a desk"](original) if photographed else original
            number = printed_id(original)
            assert number is not None and len(number) == 6
            assert shows_digits(readings(fit(upload)), number)  # what was stored before shows it
            stored = analyze_and_store(encode(upload, "JPEG", quality=92), path.name, None, store, classifier)
            assert stored.deidentification in deid.METHODS
            kept = [stored.image_path, stored.thumbnail_path, stored.explanation_path]
            for file in filter(None, kept):
                assert not shows_digits(readings(decoded(file)), number), file.name
            if k % 2 == photographed:  # the PDF of half of them (rasterising and reading it is slow)
                pdf = render_report_pdf(stored)
                text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
                assert not shows_digits(text, number)
                assert not any(shows_digits(read_text(page), number) for page in pdf_pages(pdf))


@needs_tesseract
@pytest.mark.slow
def test_exif_is_dropped_and_originals_are_kept_only_when_asked(tmp_path, classifier):
    rgb = load_image(PRINTOUTS[2].read_bytes())
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0132] = "2026:12:01 09:30:00"  # DateTime
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92, exif=exif)
    upload = buffer.getvalue()
    assert Image.open(io.BytesIO(upload)).getexif()[0x010F] == "PhoneMaker"

    with open_store(_settings(tmp_path / "plain")) as store:
        stored = analyze_and_store(upload, "phone.jpg", None, store, classifier)
    files = [p for p in (tmp_path / "plain").rglob("*") if p.is_file() and p.suffix == ".jpg"]
    assert stored.original_path is None and stored.image_path in files
    for file in files:
        assert file.read_bytes() != upload and not Image.open(file).getexif()
        assert b"PhoneMaker" not in file.read_bytes()

    with open_store(_settings(tmp_path / "kept", keep_originals=True)) as store:
        kept = analyze_and_store(upload, "phone.jpg", None, store, classifier)
        assert kept.original_path.read_bytes() == upload  # byte for byte, EXIF included: opted in
        assert not Image.open(kept.image_path).getexif()
        assert store.delete(kept.id) and not kept.original_path.exists()


@needs_tesseract
@pytest.mark.slow
def test_a_non_ecg_picture_is_kept_without_its_words(tmp_path, classifier):
    rgb = text_picture(["Invoice", "Patient", "ID", "555123"], size=(700, 1000))
    with open_store(_settings(tmp_path)) as store:
        stored = analyze_and_store(encode(rgb), "letter.png", None, store, classifier)
    assert stored.deidentification == deid.TEXT
    assert not shows_digits(readings(decoded(stored.image_path)), "555123")
    if stored.label == NON_ECG:
        assert stored.explanation_path is None


@needs_tesseract
@pytest.mark.slow
@pytest.mark.parametrize("keep", [False, True], ids=["originals-dropped", "originals-kept"])
def test_db_deidentify_blanks_a_history_stored_before_it(tmp_path, backend, monkeypatch, capsys, keep):
    """A history as revision 0004 kept it (the upload's own bytes, a legible thumbnail and overlay) stays
    readable after the upgrade; `ecg-app db deidentify` then blanks it, once: a second run does nothing."""
    url = database_url_for(tmp_path, backend)
    upgrade(url, "0004")
    data = PRINTOUTS[0].read_bytes()
    rgb, sha, analysis_id = load_image(data), hashlib.sha256(data).hexdigest(), uuid.uuid4()
    refs = {
        "image_ref": f"{sha[:2]}/{sha}.jpg",
        "thumbnail_ref": f"{sha[:2]}/{sha}.thumb.jpg",
        "explanation_ref": f"{sha[:2]}/{sha}.{analysis_id.hex}.gradcam.jpg",
    }
    contents = [data, make_thumbnail(rgb), make_thumbnail(fit(page_as_read(rgb)))]
    for ref, content in zip(refs.values(), contents, strict=True):
        (tmp_path / "data" / "images" / ref).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "images" / ref).write_bytes(content)
    stamp = datetime(2026, 1, 5, tzinfo=UTC)
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(table("images", *(column(c) for c in OLD_IMAGE_COLUMNS))).values(
                    sha256=sha, image_ref=refs["image_ref"], thumbnail_ref=refs["thumbnail_ref"],
                    media_type="image/jpeg", size_bytes=len(data), width=rgb.shape[1], height=rgb.shape[0],
                    created_at=stamp,
                )
            )  # fmt: skip
            analyses = table("analyses", column("id", Uuid()), *(column(c) for c in OLD_ANALYSIS_COLUMNS))
            connection.execute(
                insert(analyses).values(
                    id=analysis_id, created_at=stamp, image_sha256=sha, original_filename="old.jpg",
                    label="MI", confidence=0.8, prob_mi=0.8, prob_hmi=0.05, prob_ahb=0.05, prob_normal=0.05,
                    prob_nonecg=0.05, risk_level="HIGH", model_version="v0", status="ok",
                    quality_warnings="[]", explanation_ref=refs["explanation_ref"], patient_name="Émile",
                )
            )  # fmt: skip
    finally:
        engine.dispose()
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ECG_APP_DATABASE_URL", url)
    monkeypatch.setenv("ECG_APP_KEEP_ORIGINALS", "yes" if keep else "")
    number = printed_id(rgb)
    with open_store(Settings.from_env()) as store:  # upgraded to head on opening
        old = store.get(analysis_id)
    assert (
        old.deidentification is None
        and old.image_path.read_bytes() == data
        and old.original_path == old.image_path
    )
    with open_store(Settings.from_env()) as store:  # the migration case-folded the patient's name
        assert [a.id for a in store.list(AnalysisFilter(patient="ÉMILE")).items] == [analysis_id]
    assert shows_digits(readings(decoded(old.thumbnail_path)), number)  # legible before

    assert main(["db", "deidentify"]) == 0
    assert "De-identified 1 stored pictures (1 by trace-frame)" in capsys.readouterr().out
    with open_store(Settings.from_env()) as store:
        new = store.get(analysis_id)
    assert new.deidentification == deid.TRACE_FRAME and new.image_path != old.image_path
    for file in (new.image_path, new.thumbnail_path, new.explanation_path):
        assert not shows_digits(readings(decoded(file)), number), file.name
    if keep:
        assert new.original_path.read_bytes() == data
    else:
        assert new.original_path is None and not old.image_path.exists()
    assert main(["db", "deidentify"]) == 0  # idempotent: nothing left to do
    assert "De-identified 0 stored pictures" in capsys.readouterr().out
    out = tmp_path / "stored.png"
    assert main(["history", "image", str(analysis_id), "-o", str(out)]) == 0
    assert "de-identified: trace-frame" in capsys.readouterr().out
    assert np.array_equal(decoded(out), decoded(new.image_path)) and not Image.open(out).getexif()
