"""Check a server's data dir after the fact: SQLite integrity, complete analyses, no orphan files.

Shared by the load test (`benchmarks/load_test.py`) and the crash-safety test, which both need to prove
that what the history shows is whole: every row's image is on disk with the bytes its digest names, and
no file lies in the image folder that no analysis refers to.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
from sqlalchemy import or_, select

from ecg_app.config import Settings
from ecg_app.labels import CLASSES
from ecg_app.store import IMAGES_SUBDIR, StoredAnalysis, open_store
from ecg_app.store.models import Analysis

DB_NAME = "ecg_app.sqlite3"  # the default database of a data dir (config.Settings.from_env)
JPEG_MAGIC = b"\xff\xd8\xff"


def db_path(data_dir: Path) -> Path:
    return data_dir / DB_NAME


def images_dir(data_dir: Path) -> Path:
    return data_dir / IMAGES_SUBDIR


def integrity_check(data_dir: Path) -> str:
    """`PRAGMA integrity_check` of the data dir's database: "ok", or SQLite's list of problems."""
    with closing(sqlite3.connect(db_path(data_dir))) as conn:
        return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


@dataclass(frozen=True)
class StoreAudit:
    integrity: str
    foreign_key_violations: int
    analyses: dict[str, StoredAnalysis]  # by id
    incomplete: list[str]  # one line per defect of a stored analysis
    orphans: list[Path]  # files under images/ that no analysis refers to (temp and trash files included)

    @property
    def problems(self) -> list[str]:
        problems = [] if self.integrity == "ok" else [f"integrity_check: {self.integrity}"]
        if self.foreign_key_violations:
            problems.append(f"{self.foreign_key_violations} foreign key violations")
        problems += self.incomplete
        problems += [f"orphan file {path}" for path in self.orphans]
        return problems


def _defects(analysis: StoredAnalysis) -> list[str]:
    """What is missing or wrong in one stored analysis (empty when it is whole)."""
    defects = []
    if not analysis.image_path.is_file():
        defects.append(f"image {analysis.image_path.name} missing")
    elif cv2.imread(str(analysis.image_path)) is None:
        defects.append(f"image {analysis.image_path.name} does not decode")
    if analysis.original_path is not None and (
        not analysis.original_path.is_file()
        or hashlib.sha256(analysis.original_path.read_bytes()).hexdigest() != analysis.image_sha256
    ):
        defects.append(f"original {analysis.original_path.name} missing or not its recorded digest")
    derived = (("thumbnail", analysis.thumbnail_path), ("Grad-CAM overlay", analysis.explanation_path))
    for kind, path in derived:
        if path is not None and not (path.is_file() and path.read_bytes()[:3] == JPEG_MAGIC):
            defects.append(f"{kind} {path.name} missing or not a JPEG")
    if analysis.label not in CLASSES or not analysis.model_version:
        defects.append(f"label {analysis.label!r} / model version {analysis.model_version!r}")
    if not math.isclose(sum(analysis.probabilities.values()), 1.0, abs_tol=1e-3):
        defects.append(f"probabilities sum to {sum(analysis.probabilities.values())}")
    if analysis.quality_warnings is None:  # every analysis the current app stores has been checked
        defects.append("quality warnings not recorded")
    return [f"analysis {analysis.id}: {defect}" for defect in defects]


def audit_store(data_dir: Path) -> StoreAudit:
    """Audit the SQLite history and image folder of `data_dir` (read-only: no migration, no sweep)."""
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{db_path(data_dir)}")
    integrity = integrity_check(data_dir)
    with closing(sqlite3.connect(db_path(data_dir))) as conn:
        fk_violations = len(conn.execute("PRAGMA foreign_key_check").fetchall())
    required = [column for column in Analysis.__table__.columns if not column.nullable]
    with open_store(settings, migrate=False, sweep_grace_s=None) as store:
        with store.engine.connect() as conn:
            null_ids = conn.scalars(select(Analysis.id).where(or_(*(c.is_(None) for c in required)))).all()
        analyses = {str(analysis.id): analysis for analysis in store.iter_all()}
        root = store.images.root
    incomplete = [f"analysis {key}: a required field is NULL" for key in null_ids]
    referenced: set[Path] = set()
    for analysis in analyses.values():
        incomplete += _defects(analysis)
        files = (
            analysis.image_path,
            analysis.thumbnail_path,
            analysis.explanation_path,
            analysis.original_path,
        )
        referenced.update(path for path in files if path is not None)
    orphans = sorted(path for path in root.rglob("*") if path.is_file() and path not in referenced)
    return StoreAudit(integrity, fk_violations, analyses, incomplete, orphans)
