"""SQLAlchemy models of the analysis history: one row per stored image file, one row per analysis.

Images get their own table so that a picture uploaded many times is stored once and the database itself
(foreign key, RESTRICT) refuses to forget an image that an analysis still points at. Types are the
portable SQLAlchemy ones, so the same models work on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Probability columns, in labels.CLASSES order.
PROBABILITY_COLUMNS: dict[str, str] = {
    "MI": "prob_mi",
    "HMI": "prob_hmi",
    "AHB": "prob_ahb",
    "Normal": "prob_normal",
    "NonECG": "prob_nonecg",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class StoredImage(Base):
    """An uploaded picture, keyed by the SHA-256 of the upload's bytes (so a re-upload is recognised);
    paths are relative to the image dir. `image_ref` is the de-identified picture (`serving.deidentify`);
    the upload itself is kept (`original_ref`) only where the deployment opts in."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    image_ref: Mapped[str] = mapped_column(String(255))
    thumbnail_ref: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Revision 0005. The original upload's file, NULL unless originals are kept (ECG_APP_KEEP_ORIGINALS);
    # for images stored before it, the same as image_ref until `ecg-app db deidentify` has run.
    original_ref: Mapped[str | None] = mapped_column(String(255))
    # How the stored picture was de-identified (deidentify.METHODS, or "none" when a caller stored a
    # picture as given); NULL: stored before revision 0005, not de-identified.
    deidentification: Mapped[str | None] = mapped_column(String(16))

    # passive_deletes: the database (RESTRICT) guards references; never null them out from Python.
    analyses: Mapped[list[Analysis]] = relationship(back_populates="image", passive_deletes="all")


class Analysis(Base):
    """One classification of one image, with the optional patient details entered with it."""

    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint("label IN ('MI', 'HMI', 'AHB', 'Normal', 'NonECG')", name="label"),
        CheckConstraint("risk_level IN ('NONE', 'LOW', 'MEDIUM', 'HIGH')", name="risk_level"),
        CheckConstraint("status IN ('ok', 'needs_review')", name="status"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
        CheckConstraint("patient_age IS NULL OR (patient_age >= 0 AND patient_age <= 150)", name="age"),
        # Listing is "newest first, optionally one label / risk / status": these make it an index scan.
        Index("ix_analyses_label_created_at", "label", "created_at"),
        Index("ix_analyses_risk_level_created_at", "risk_level", "created_at"),
        Index("ix_analyses_status_created_at", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    image_sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("images.sha256", ondelete="RESTRICT"), index=True
    )
    original_filename: Mapped[str] = mapped_column(String(255))
    label: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    prob_mi: Mapped[float] = mapped_column(Float)
    prob_hmi: Mapped[float] = mapped_column(Float)
    prob_ahb: Mapped[float] = mapped_column(Float)
    prob_normal: Mapped[float] = mapped_column(Float)
    prob_nonecg: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(8))
    model_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    patient_name: Mapped[str | None] = mapped_column(String(200))
    # Revision 0005: the name or ID case-folded in Python (`patient_key`), what a patient's timeline and
    # erasure match on: SQL's lower() folds only ASCII on SQLite ("Émile"), and depends on the locale on
    # PostgreSQL.
    patient_key: Mapped[str | None] = mapped_column(String(200), index=True)
    patient_age: Mapped[int | None] = mapped_column(Integer)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    notes: Mapped[str | None] = mapped_column(Text)
    # Added in revision 0002; NULL in rows stored before it. A JSON list of {"code", "message"} objects
    # ("[]": checked, nothing found; NULL: never checked).
    quality_warnings: Mapped[str | None] = mapped_column(Text)
    # The Grad-CAM overlay of the predicted class (a derived JPEG beside the thumbnail, one per analysis,
    # path relative to the image dir); NULL for Non-ECG results, older rows, or models without Grad-CAM.
    explanation_ref: Mapped[str | None] = mapped_column(String(255))
    # The ECG gate's embedding distance to the training ECGs (revision 0003; None without a gate).
    ecg_distance: Mapped[float | None] = mapped_column(Float)
    # The ECG detector's P(ECG) for the whole picture (revision 0004; None without a detector).
    ecg_probability: Mapped[float | None] = mapped_column(Float)
    # Heart rate, intervals and axis read off the trace (revision 0006): JSON of `Measurements.to_dict`;
    # NULL for rows stored before it (never measured).
    measurements: Mapped[str | None] = mapped_column(Text)

    image: Mapped[StoredImage] = relationship(back_populates="analyses")
