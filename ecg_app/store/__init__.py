"""Analysis history: database rows plus content-addressed image files. Start with `open_store()`."""

from __future__ import annotations

from ecg_app.config import Settings
from ecg_app.store.db import create_engine_for
from ecg_app.store.images import DEFAULT_SWEEP_GRACE_S, ImageStore
from ecg_app.store.migrate import upgrade_to_head
from ecg_app.store.repository import (
    AnalysisFilter,
    AnalysisStore,
    Page,
    PatientInfo,
    StoredAnalysis,
    warnings_to_json,
)

IMAGES_SUBDIR = "images"

__all__ = [
    "AnalysisFilter",
    "AnalysisStore",
    "Page",
    "PatientInfo",
    "StoredAnalysis",
    "open_store",
    "warnings_to_json",
]


def open_store(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
    sweep_grace_s: float | None = DEFAULT_SWEEP_GRACE_S,
) -> AnalysisStore:
    """The store the app and CLI use: schema upgraded to head, leftovers of crashed writes swept.

    `sweep_grace_s=None` skips the sweep; files younger than the grace period are left alone because
    another process may be between writing them and committing their row.
    """
    settings = settings or Settings.from_env()
    engine = create_engine_for(settings.database_url)
    if migrate:
        upgrade_to_head(engine)
    store = AnalysisStore(
        engine, ImageStore(settings.data_dir / IMAGES_SUBDIR), keep_originals=settings.keep_originals
    )
    if sweep_grace_s is not None:
        store.sweep_orphans(sweep_grace_s)
    return store
