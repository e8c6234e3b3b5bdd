"""The analysis history API: add, get, list (filters + pagination), a patient's timeline, delete (one
analysis or all of a patient's), CSV export, and de-identifying pictures stored before revision 0005.

Callers get plain frozen dataclasses, never ORM objects, so nothing outside this module touches a
session. Every write is one transaction that also covers the image files (see `add` and `delete`).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TextIO

import numpy as np
from PIL import Image
from sqlalchemy import Engine, Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.exc import StaleDataError

from ecg_app.clinical.measurements import FIELDS, Measurements
from ecg_app.labels import CLASSES, NON_ECG, display_name
from ecg_app.serving.classifier import PREDICTION_WARNING_CODES, STATUS_NEEDS_REVIEW, Prediction
from ecg_app.serving.quality import QualityWarning
from ecg_app.store.db import session_factory
from ecg_app.store.images import (
    DEFAULT_SWEEP_GRACE_S,
    ImageInfo,
    ImageStore,
    SweepResult,
    describe,
    encode_picture,
    explanation_ref,
    make_thumbnail,
)
from ecg_app.store.models import PROBABILITY_COLUMNS, Analysis, StoredImage

SEXES = ("female", "male", "other")
_SEX_ALIASES = {"f": "female", "w": "female", "m": "male", "o": "other", "x": "other", "d": "other"}
MAX_NAME_CHARS = 200
MAX_NOTES_CHARS = 10_000
MAX_FILENAME_CHARS = 255
MAX_PAGE_SIZE = 500
# Concurrent first uploads of the same image race on its primary key, an add and a delete on the image
# row: the loser simply tries again.
_WRITE_ATTEMPTS = 3
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Removed from every text field: C0/C1 control characters except tab and line breaks (PostgreSQL cannot
# store NUL; none of them is visible), the bidi embedding/override/isolate controls (they make text display
# in another order than it is stored, e.g. "scan\u202egnp.exe" shows as "scanexe.png") and lone
# surrogates (not encodable as UTF-8). See docs/security.md.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _clean_text(value: str | None, limit: int | None, *, single_line: bool) -> str | None:
    """NFC, no control characters (nor line breaks in one-line fields), cut to `limit`; empty is absent."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", _CONTROL_CHARS.sub("", str(value)))
    if single_line:
        text = " ".join(text.split())
    text = text.strip()
    if limit is not None:
        text = text[:limit].strip()
    return text or None


def _patient_text(value: str | None, limit: int, what: str, *, single_line: bool) -> str | None:
    """Cleaned as `_clean_text`, but refused rather than cut when too long: notes are never lost silently."""
    text = _clean_text(value, None, single_line=single_line)
    if text is not None and len(text) > limit:
        raise ValueError(f"{what} must be at most {limit:,} characters, got {len(text):,}")
    return text


def patient_key(name: str | None) -> str | None:
    """A patient's name or ID as the timeline and erasure match it: cleaned as stored, case-folded."""
    text = _clean_text(name, MAX_NAME_CHARS, single_line=True)
    return text.casefold() if text else None


def sanitize_filename(name: str | None) -> str:
    """The upload's base name, fit for display only (files are named by content, never by this): no
    folders, no control characters, not "." or "..", at most 255 characters keeping the extension."""
    base = _clean_text(PureWindowsPath(PurePosixPath(str(name or "")).name).name, None, single_line=True)
    if not base or not base.strip("."):
        return "upload"
    if len(base) > MAX_FILENAME_CHARS:
        suffix = PurePosixPath(base).suffix[:16]
        base = base[: MAX_FILENAME_CHARS - len(suffix)].strip() + suffix
    return base


@dataclass(frozen=True)
class PatientInfo:
    """Optional details typed in with an upload; validated and normalised on construction."""

    name: str | None = None
    age: int | None = None
    sex: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        name = _patient_text(self.name, MAX_NAME_CHARS, "name or ID", single_line=True)
        notes = _patient_text(self.notes, MAX_NOTES_CHARS, "notes", single_line=False)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "notes", notes)
        if self.age is not None and self.age != "":
            try:
                age = int(self.age)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"age must be a whole number, got {self.age!r}") from exc
            if not 0 <= age <= 150:
                raise ValueError(f"age must be between 0 and 150, got {age}")
            object.__setattr__(self, "age", age)
        else:
            object.__setattr__(self, "age", None)
        sex = _clean_text(self.sex, 16, single_line=True)
        if sex is not None:
            sex = _SEX_ALIASES.get(sex.lower(), sex.lower())
            if sex not in SEXES:
                raise ValueError(f"sex must be one of {', '.join(SEXES)}, got {self.sex!r}")
        object.__setattr__(self, "sex", sex)


@dataclass(frozen=True)
class StoredAnalysis:
    """One analysis as read back from the history."""

    id: uuid.UUID
    created_at: datetime
    original_filename: str
    image_sha256: str
    image_path: Path
    thumbnail_path: Path
    media_type: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    risk_level: str
    model_version: str
    status: str
    patient: PatientInfo = field(default_factory=PatientInfo)
    # None: stored before quality checks existed (schema revision 0001); () means checked, nothing found.
    quality_warnings: tuple[QualityWarning, ...] | None = None
    # The Grad-CAM overlay (a JPEG the size of the thumbnail); None for Non-ECG results and older rows.
    explanation_path: Path | None = None
    # The ECG gate's distance to the training ECGs; None for rows of a model without a gate (or older).
    ecg_distance: float | None = None
    # The ECG detector's P(ECG); None when it was not consulted (an ECG call), without a detector, or older.
    ecg_probability: float | None = None
    # How the stored picture was de-identified (`deidentify.METHODS`, "none": stored as the caller gave
    # it); None: stored before de-identification, `image_path` is then the original upload.
    deidentification: str | None = None
    # The upload's own bytes, kept only where the deployment opts in (ECG_APP_KEEP_ORIGINALS).
    original_path: Path | None = None
    # Rate, intervals and axis read off the trace; None: stored before measurements (revision 0006). As
    # read back, without the digitised strip: only `analysis.analyze_and_store`'s own result carries it.
    measurements: Measurements | None = None

    @property
    def display_name(self) -> str:
        return display_name(self.label)

    @property
    def is_ecg(self) -> bool:
        return self.label != NON_ECG

    @property
    def needs_review(self) -> bool:
        return self.status == STATUS_NEEDS_REVIEW

    @property
    def prediction(self) -> Prediction:
        """The result as the classifier gave it, with its own warnings (not the image-quality ones)
        picked back out of the stored list."""
        return Prediction(
            self.label,
            dict(self.probabilities),
            self.confidence,
            self.model_version,
            self.status,
            warnings=tuple(w for w in self.quality_warnings or () if w.code in PREDICTION_WARNING_CODES),
            ecg_distance=self.ecg_distance,
            ecg_probability=self.ecg_probability,
        )

    def to_dict(self) -> dict:
        """JSON-ready fields, as `ecg-app history list --json` prints them."""
        return {
            "id": str(self.id),
            "created_at": self.created_at.isoformat(),
            "file": self.original_filename,
            "image_sha256": self.image_sha256,
            **self.prediction.to_dict(),
            "risk_level": self.risk_level,  # as stored: the guidance in force when it was analysed
            "patient_name": self.patient.name,
            "patient_age": self.patient.age,
            "patient_sex": self.patient.sex,
            "notes": self.patient.notes,
            "quality_warnings": warnings_to_json(self.quality_warnings),
            "deidentification": self.deidentification,
            "measurements": self.measurements.to_dict() if self.measurements else None,
        }


def warnings_to_json(warnings: Sequence[QualityWarning] | None) -> list[dict] | None:
    """Quality warnings as JSON-ready `{"code", "message"}` objects (None stays None: never checked)."""
    if warnings is None:
        return None
    return [{"code": w.code, "message": w.message} for w in warnings]


def _warnings_column(warnings: Sequence[QualityWarning] | None) -> str | None:
    payload = warnings_to_json(warnings)
    return None if payload is None else json.dumps(payload, ensure_ascii=False)


def _warnings_from_column(value: str | None) -> tuple[QualityWarning, ...] | None:
    if value is None:
        return None
    return tuple(QualityWarning(str(item["code"]), str(item["message"])) for item in json.loads(value))


def _measurements_column(measurements: Measurements | None) -> str | None:
    return None if measurements is None else json.dumps(measurements.to_dict(), ensure_ascii=False)


def _measurements_from_column(value: str | None) -> Measurements | None:
    return None if value is None else Measurements.from_dict(json.loads(value))


@dataclass(frozen=True)
class AnalysisFilter:
    """History filters; all optional. `since` is inclusive, `until` exclusive; naive times mean UTC."""

    label: str | None = None
    risk_level: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    # One patient's analyses: the name or ID as typed with them (case and surrounding spaces ignored).
    patient: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[StoredAnalysis]
    total: int
    limit: int
    offset: int


def utc(moment: datetime) -> datetime:
    """Aware UTC datetime; naive values (as SQLite returns them) are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(filters: AnalysisFilter) -> list:
    conditions = []
    if filters.label:
        conditions.append(Analysis.label == filters.label)
    if filters.risk_level:
        conditions.append(Analysis.risk_level == filters.risk_level.upper())
    if filters.status:
        conditions.append(Analysis.status == filters.status)
    if filters.since:
        conditions.append(Analysis.created_at >= utc(filters.since))
    if filters.until:
        conditions.append(Analysis.created_at < utc(filters.until))
    patient = patient_key(filters.patient)
    if patient:
        conditions.append(Analysis.patient_key == patient)
    search = (filters.search or "").strip()
    if search:
        pattern = _like_pattern(search)
        matches = [
            column.ilike(pattern, escape="\\")
            for column in (Analysis.patient_name, Analysis.patient_sex, Analysis.notes)
        ]
        if search.isdigit():
            matches.append(Analysis.patient_age == int(search))
        conditions.append(or_(*matches))
    return conditions


def csv_safe(value: object) -> object:
    """Neutralise spreadsheet formulas (CSV injection): text starting with = + - @ gets a leading quote."""
    if isinstance(value, str) and value.startswith(_CSV_FORMULA_START):
        return "'" + value
    return value


# Measurements' JSON fields -> CSV columns; "quality" renamed, not to be read as the picture's quality.
_MEASUREMENT_COLUMNS = {
    **{name: name for name, *_ in FIELDS},
    "quality": "measurement_quality",
    "not_measured_reason": "not_measured_reason",
}
CSV_COLUMNS = (
    "id",
    "created_at",
    "file",
    "image_sha256",
    "label",
    "display_name",
    "confidence",
    *(f"prob_{label}" for label in CLASSES),
    "risk_level",
    "status",
    "ecg_distance",
    "ecg_probability",
    "model_version",
    "patient_name",
    "patient_age",
    "patient_sex",
    "notes",
    "quality_warnings",
    *_MEASUREMENT_COLUMNS.values(),
)


def _csv_row(analysis: StoredAnalysis) -> list[object]:
    record = analysis.to_dict()
    for label, probability in record.pop("probabilities").items():
        record[f"prob_{label}"] = probability
    # Codes only ("blurry; low_resolution"), empty when there were none or they were never checked.
    record["quality_warnings"] = "; ".join(w.code for w in analysis.quality_warnings or ())
    measured = record.pop("measurements") or {}  # empty cells for an analysis stored before them
    record.update({column: measured.get(key) for key, column in _MEASUREMENT_COLUMNS.items()})
    return [csv_safe(record[column]) for column in CSV_COLUMNS]


class AnalysisStore:
    """Analysis rows plus their image files, kept consistent with each other. The upload's own bytes are
    only hashed (to recognise a re-upload), and written to disk only when `keep_originals`."""

    def __init__(self, engine: Engine, images: ImageStore, *, keep_originals: bool = False):
        self.engine = engine
        self.images = images
        self.keep_originals = keep_originals
        self._sessions = session_factory(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AnalysisStore:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------------------

    def add(
        self,
        prediction: Prediction,
        image_bytes: bytes,
        rgb: np.ndarray,
        filename: str | None,
        patient: PatientInfo | None = None,
        created_at: datetime | None = None,
        *,
        quality_warnings: Sequence[QualityWarning] | None = None,
        explanation: np.ndarray | None = None,
        deidentification: str = "none",
        measurements: Measurements | None = None,
    ) -> StoredAnalysis:
        """Store an analysis: the files are written (atomically) inside the transaction, before its
        commit; if anything fails, the row is rolled back and files written by this call are removed.

        `rgb` is the picture to keep (`deidentify.deidentify` of the upload's page, and `deidentification`
        its method); `image_bytes`, the upload, is hashed and kept only with `keep_originals`.
        `quality_warnings` (from `quality.assess`) are kept with the row; `explanation` is the Grad-CAM
        overlay (RGB), saved as a JPEG of at most the thumbnail's size beside the thumbnail; `measurements`
        are kept as their JSON (`Measurements.to_dict`, rounded), without the strip."""
        patient = patient or PatientInfo()
        info = describe(image_bytes, rgb, keep_original=self.keep_originals)
        # Made only when a file is missing (a re-upload usually finds them), once even across retries.
        contents: dict[str, Callable[[], bytes]] = {
            info.image_ref: cache(lambda: encode_picture(rgb, info.media_type)),
            info.thumbnail_ref: cache(lambda: make_thumbnail(rgb)),
        }
        # Encoded before the transaction: the write lock is held only for the file writes themselves.
        explanation_jpeg = None if explanation is None else make_thumbnail(explanation)
        warnings_json = _warnings_column(quality_warnings)
        measurements_json = _measurements_column(measurements)
        created = utc(created_at or datetime.now(UTC))
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            written: list[Path] = []
            first_upload = False
            try:
                with self._sessions.begin() as session:
                    image = session.get(StoredImage, info.sha256)
                    if image is None:
                        first_upload = True
                        image = _image_row(info, created, deidentification)
                        session.add(image)
                    row = _analysis_row(prediction, image, filename, patient, created)
                    row.quality_warnings = warnings_json
                    row.measurements = measurements_json
                    if explanation_jpeg is not None:
                        row.explanation_ref = explanation_ref(info.sha256, row.id)
                    session.add(row)
                    # The flush takes SQLite's write lock (PostgreSQL: a lock on the image row), so a
                    # concurrent delete of the same image cannot remove the files between here and commit.
                    session.flush()
                    if row.explanation_ref is not None:  # a new file, of this analysis alone
                        written.append(self.images.write(row.explanation_ref, explanation_jpeg))
                    written += self.images.ensure(self._files(image, contents, image_bytes))
                return self._record(row, image)
            except IntegrityError:
                ImageStore.discard(written)
                # Worth retrying only if the image row changed under this call: a concurrent first upload
                # of the same image won the race for its primary key, or a concurrent delete removed the
                # image between our read and our insert (foreign key). Anything else is the caller's bug.
                image_changed = self._image_exists(info.sha256) == first_upload
                if not image_changed or attempt == _WRITE_ATTEMPTS:
                    raise
            except BaseException:
                ImageStore.discard(written)
                raise
        raise AssertionError("unreachable")

    def delete(self, analysis_id: uuid.UUID | str) -> bool:
        """Delete an analysis with its Grad-CAM overlay, and its image files when no other analysis uses
        them. False if not found."""
        key = _as_uuid(analysis_id)
        if key is None:
            return False
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            moved: list[tuple[Path, Path]] = []
            deleting_image = False
            try:
                with self._sessions.begin() as session:
                    row = session.get(Analysis, key)
                    if row is None:
                        return False
                    sha = row.image_sha256
                    # PostgreSQL: lock the image row first, so that deletes of analyses of one image take
                    # turns (otherwise each could count the other's analysis, and the image would be kept
                    # with none left) and an add of it waits for the outcome. SQLite: its write lock does.
                    image = session.get(StoredImage, sha, with_for_update=True)
                    refs = [row.explanation_ref] if row.explanation_ref else []  # the analysis's own file
                    session.delete(row)
                    session.flush()
                    still_used = session.scalar(
                        select(func.count()).select_from(Analysis).where(Analysis.image_sha256 == sha)
                    )
                    if not still_used and image is not None:
                        deleting_image = True
                        session.delete(image)
                        session.flush()  # RESTRICT: fails if a concurrent add just started using it
                        refs += [image.image_ref, image.thumbnail_ref]
                        if image.original_ref and image.original_ref != image.image_ref:
                            refs.append(image.original_ref)
                    moved = self.images.trash(refs)
            except StaleDataError:  # another process deleted it between our read and our delete
                return False
            except IntegrityError:
                ImageStore.restore(moved)
                # A concurrent add started using the image: try again, and this time keep the image.
                if not deleting_image or attempt == _WRITE_ATTEMPTS:
                    raise
                continue
            except BaseException:
                ImageStore.restore(moved)
                raise
            ImageStore.purge(moved)
            return True
        raise AssertionError("unreachable")

    def delete_patient(self, patient: str) -> list[uuid.UUID]:
        """Erase a patient: every analysis stored with this name or ID (as the `patient` filter matches
        it), with its files. Each analysis goes in its own transaction, as `delete`; run again after an
        interruption, it removes what is left. Returns the IDs deleted."""
        if patient_key(patient) is None:
            raise ValueError("a patient name or ID is required")
        filters = AnalysisFilter(patient=patient)
        with self._sessions() as session:
            ids = session.scalars(select(Analysis.id).where(*_conditions(filters))).all()
        return [key for key in ids if self.delete(key)]

    def sweep_orphans(self, grace_s: float = DEFAULT_SWEEP_GRACE_S) -> SweepResult:
        """Remove files no row refers to (and stale temp files): what a crash mid-write leaves behind."""
        with self._sessions() as session:
            referenced = set()
            for refs in session.execute(
                select(StoredImage.image_ref, StoredImage.thumbnail_ref, StoredImage.original_ref)
            ):
                referenced.update(ref for ref in refs if ref)
            referenced.update(
                session.scalars(select(Analysis.explanation_ref).where(Analysis.explanation_ref.is_not(None)))
            )
        return self.images.sweep(referenced, grace_s)

    def pictures_to_deidentify(self) -> list[tuple[str, Path]]:
        """(SHA-256, original file) of each image stored before de-identification (revision 0005)."""
        with self._sessions() as session:
            rows = session.execute(
                select(StoredImage.sha256, StoredImage.image_ref)
                .where(StoredImage.deidentification.is_(None))
                .order_by(StoredImage.created_at, StoredImage.sha256)
            ).all()
        return [(sha, self.images.path(ref)) for sha, ref in rows]

    def replace_picture(
        self,
        sha256: str,
        original: bytes,
        picture: np.ndarray,
        method: str,
        blank: Callable[[np.ndarray], np.ndarray],
    ) -> bool:
        """Replace an image stored before de-identification by its de-identified `picture`: a new picture
        file and thumbnail, each of its analyses' Grad-CAM overlays passed through `blank`, and the
        original removed after the commit (kept with `keep_originals`). False when there is nothing to
        do (already done, e.g. by another process, or deleted meanwhile)."""
        info = describe(original, picture, keep_original=self.keep_originals)
        if info.sha256 != sha256:
            raise ValueError(f"the original's bytes do not hash to {sha256}")
        written: list[Path] = []
        try:
            with self._sessions.begin() as session:
                image = session.get(StoredImage, sha256, with_for_update=True)
                if image is None or image.deidentification is not None:
                    return False
                old_ref = image.image_ref
                written.append(self.images.write(info.image_ref, encode_picture(picture, info.media_type)))
                self.images.write(image.thumbnail_ref, make_thumbnail(picture))  # in place: either is whole
                overlays = session.scalars(
                    select(Analysis.explanation_ref).where(
                        Analysis.image_sha256 == sha256, Analysis.explanation_ref.is_not(None)
                    )
                ).all()
                for ref in overlays:
                    path = self.images.path(ref)
                    if path.is_file():
                        with Image.open(path) as shown:
                            overlay = np.asarray(shown.convert("RGB"))
                        self.images.write(ref, make_thumbnail(blank(overlay)))
                image.image_ref, image.media_type = info.image_ref, info.media_type
                image.width, image.height = info.width, info.height
                image.deidentification = method
                image.original_ref = old_ref if self.keep_originals else None
        except StaleDataError:  # deleted by another process meanwhile (SQLite has no row lock)
            ImageStore.discard(written)
            return False
        except BaseException:
            ImageStore.discard(written)
            raise
        if not self.keep_originals and old_ref != info.image_ref:
            self.images.path(old_ref).unlink(missing_ok=True)
        return True

    # -- reads --------------------------------------------------------------------------------------

    def _image_exists(self, sha256: str) -> bool:
        with self._sessions() as session:
            return session.get(StoredImage, sha256) is not None

    def get(self, analysis_id: uuid.UUID | str) -> StoredAnalysis | None:
        key = _as_uuid(analysis_id)
        if key is None:
            return None
        with self._sessions() as session:
            row = session.get(Analysis, key, options=[joinedload(Analysis.image)])
            return None if row is None else self._record(row, row.image)

    def list(
        self,
        filters: AnalysisFilter | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        oldest_first: bool | None = None,
    ) -> Page:
        """One page and the total number of matches (for "page 2 of 9"): newest first, but a patient's
        timeline (the `patient` filter) oldest first unless `oldest_first` says otherwise."""
        filters = filters or AnalysisFilter()
        if oldest_first is None:
            oldest_first = patient_key(filters.patient) is not None
        conditions = _conditions(filters)
        limit = max(1, min(int(limit), MAX_PAGE_SIZE))
        offset = max(0, int(offset))
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(Analysis).where(*conditions)) or 0
            query = self._query(conditions, oldest_first=oldest_first)
            rows = session.scalars(query.limit(limit).offset(offset)).all()
            items = [self._record(row, row.image) for row in rows]
        return Page(items=items, total=total, limit=limit, offset=offset)

    def iter_all(
        self, filters: AnalysisFilter | None = None, batch_size: int = 500
    ) -> Iterator[StoredAnalysis]:
        """Every matching analysis, newest first, streamed (for exports of a large history)."""
        stmt = self._query(_conditions(filters or AnalysisFilter())).execution_options(yield_per=batch_size)
        with self._sessions() as session:
            for row in session.scalars(stmt):
                yield self._record(row, row.image)

    def export_csv(self, out: TextIO, filters: AnalysisFilter | None = None) -> int:
        """Write the (filtered) history as CSV to an open text file (newline=""); returns the row count."""
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        count = 0
        for analysis in self.iter_all(filters):
            writer.writerow(_csv_row(analysis))
            count += 1
        return count

    # -- helpers ------------------------------------------------------------------------------------

    def _files(
        self, image: StoredImage, contents: dict[str, Callable[[], bytes]], upload: bytes
    ) -> list[tuple[str, Callable[[], bytes]]]:
        """The files an image row refers to, each with what to write should it be missing: the picture
        and thumbnail as made now; the upload's bytes for its original (and for the picture of a row
        stored before de-identification, which is the original) only where originals are kept. Without
        that, such a missing file stays missing: the upload's bytes are never written."""
        refs = dict.fromkeys(ref for ref in (image.image_ref, image.thumbnail_ref, image.original_ref) if ref)
        files = []
        for ref in refs:
            if ref in contents:
                files.append((ref, contents[ref]))
            elif self.keep_originals:
                files.append((ref, lambda: bytes(upload)))
        return files

    @staticmethod
    def _query(conditions: list, *, oldest_first: bool = False) -> Select:
        order = (
            (Analysis.created_at, Analysis.id)
            if oldest_first
            else (Analysis.created_at.desc(), Analysis.id.desc())
        )
        return select(Analysis).options(joinedload(Analysis.image)).where(*conditions).order_by(*order)

    def _record(self, row: Analysis, image: StoredImage) -> StoredAnalysis:
        return StoredAnalysis(
            id=row.id,
            created_at=utc(row.created_at),
            original_filename=row.original_filename,
            image_sha256=row.image_sha256,
            image_path=self.images.path(image.image_ref),
            thumbnail_path=self.images.path(image.thumbnail_ref),
            media_type=image.media_type,
            label=row.label,
            confidence=row.confidence,
            probabilities={label: getattr(row, PROBABILITY_COLUMNS[label]) for label in CLASSES},
            risk_level=row.risk_level,
            model_version=row.model_version,
            status=row.status,
            patient=PatientInfo(row.patient_name, row.patient_age, row.patient_sex, row.notes),
            quality_warnings=_warnings_from_column(row.quality_warnings),
            explanation_path=self.images.path(row.explanation_ref) if row.explanation_ref else None,
            ecg_distance=row.ecg_distance,
            ecg_probability=row.ecg_probability,
            deidentification=image.deidentification,
            original_path=self.images.path(image.original_ref) if image.original_ref else None,
            measurements=_measurements_from_column(row.measurements),
        )


def _image_row(info: ImageInfo, created: datetime, deidentification: str) -> StoredImage:
    return StoredImage(
        sha256=info.sha256,
        image_ref=info.image_ref,
        thumbnail_ref=info.thumbnail_ref,
        media_type=info.media_type,
        size_bytes=info.size_bytes,
        width=info.width,
        height=info.height,
        created_at=created,
        original_ref=info.original_ref,
        deidentification=deidentification,
    )


def _analysis_row(
    prediction: Prediction, image: StoredImage, filename: str | None, patient: PatientInfo, created: datetime
) -> Analysis:
    return Analysis(
        id=uuid.uuid4(),
        created_at=created,
        image=image,
        original_filename=sanitize_filename(filename),
        label=prediction.label,
        confidence=float(prediction.confidence),
        risk_level=prediction.risk_level,
        model_version=prediction.model_version,
        status=prediction.status,
        ecg_distance=prediction.ecg_distance,
        ecg_probability=prediction.ecg_probability,
        patient_name=patient.name,
        patient_key=patient_key(patient.name),
        patient_age=patient.age,
        patient_sex=patient.sex,
        notes=patient.notes,
        **{PROBABILITY_COLUMNS[label]: float(prediction.probabilities[label]) for label in CLASSES},
    )


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None
