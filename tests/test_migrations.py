"""Alembic: empty -> head -> base -> head, and the migrations say exactly what the models say.

Runs on a SQLite file, and on PostgreSQL when ECG_APP_TEST_POSTGRES_URL is set (conftest.BACKENDS).
"""

import io
import uuid
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import DateTime, Uuid, column, insert, inspect, table, text

from ecg_app.cli import main
from ecg_app.config import MIGRATIONS_DIR
from ecg_app.store import AnalysisStore
from ecg_app.store.db import create_engine_for
from ecg_app.store.images import ImageStore
from ecg_app.store.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
    upgrade_to_head,
)
from ecg_app.store.models import Base
from tests.conftest import database_url_for

HEAD = "0006"
IMAGE_COLUMNS = ("sha256", "image_ref", "thumbnail_ref", "media_type", "size_bytes", "width", "height")
ANALYSIS_COLUMNS = (
    "image_sha256", "original_filename", "label", "confidence", "prob_mi", "prob_hmi", "prob_ahb",
    "prob_normal", "prob_nonecg", "risk_level", "model_version", "status",
)  # fmt: skip


@pytest.fixture
def database_url(tmp_path, backend) -> str:
    return database_url_for(tmp_path, backend)


def tables(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url):
    assert current_revision(database_url) is None
    upgrade_to_head(database_url)
    assert current_revision(database_url) == head_revision() == HEAD
    assert tables(database_url) == {"alembic_version", "images", "analyses"}

    downgrade(database_url, "base")
    assert current_revision(database_url) is None
    assert tables(database_url) == {"alembic_version"}

    upgrade_to_head(database_url)
    upgrade_to_head(database_url)  # a second start is a no-op
    assert current_revision(database_url) == HEAD
    assert tables(database_url) == {"alembic_version", "images", "analyses"}


def insert_old_analysis(engine) -> uuid.UUID:
    """One image and one analysis with only the columns of revision 0001 (valid at every revision)."""
    analysis_id, stamp = uuid.uuid4(), datetime(2025, 1, 1, tzinfo=UTC)
    images = table("images", *(column(name) for name in IMAGE_COLUMNS), column("created_at", DateTime(True)))
    analyses = table(
        "analyses",
        column("id", Uuid()),
        column("created_at", DateTime(True)),
        *(column(name) for name in ANALYSIS_COLUMNS),
    )
    with engine.begin() as connection:
        connection.execute(
            insert(images).values(
                sha256="ab01", image_ref="ab/ab01.png", thumbnail_ref="ab/ab01.thumb.jpg",
                media_type="image/png", size_bytes=10, width=900, height=640, created_at=stamp,
            )
        )  # fmt: skip
        connection.execute(
            insert(analyses).values(
                id=analysis_id, created_at=stamp, image_sha256="ab01", original_filename="old.png",
                label="MI", confidence=0.8, prob_mi=0.8, prob_hmi=0.05, prob_ahb=0.05, prob_normal=0.05,
                prob_nonecg=0.05, risk_level="HIGH", model_version="v0", status="ok",
            )
        )  # fmt: skip
    return analysis_id


def test_rows_of_0001_survive_the_upgrade_to_0002_and_back(database_url, tmp_path):
    """0002 only adds nullable columns: older analyses read back with no warnings and no overlay."""
    upgrade(database_url, "0001")
    engine = create_engine_for(database_url)
    try:
        analysis_id = insert_old_analysis(engine)
        upgrade_to_head(engine)
        store = AnalysisStore(engine, ImageStore(tmp_path / "images"))
        old = store.get(analysis_id)
        assert old is not None and old.label == "MI" and old.original_filename == "old.png"
        assert old.quality_warnings is None and old.explanation_path is None
        assert old.to_dict()["quality_warnings"] is None

        downgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        columns = {c["name"] for c in inspect(engine).get_columns("analyses")}
        assert "quality_warnings" not in columns and "explanation_ref" not in columns
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM analyses")) == 1
    finally:
        engine.dispose()


def test_rows_of_0005_are_kept_unmeasured_by_0006_and_back(database_url, tmp_path):
    """0006 adds one nullable column: an analysis stored before it reads back as never measured (None),
    and a downgrade drops the column and keeps the rows."""
    upgrade(database_url, "0005")
    engine = create_engine_for(database_url)
    try:
        analysis_id = insert_old_analysis(engine)
        upgrade(engine, "0006")
        old = AnalysisStore(engine, ImageStore(tmp_path / "images")).get(analysis_id)
        assert old is not None and old.label == "MI" and old.original_filename == "old.png"
        assert old.measurements is None and old.to_dict()["measurements"] is None

        downgrade(engine, "0005")
        assert current_revision(engine) == "0005"
        assert "measurements" not in {c["name"] for c in inspect(engine).get_columns("analyses")}
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM analyses")) == 1
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url):
    upgrade_to_head(database_url)
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        index_names = {index["name"] for index in inspect(engine).get_indexes("analyses")}
        assert {
            "ix_analyses_label_created_at",
            "ix_analyses_created_at",
            "ix_analyses_image_sha256",
        } <= index_names
    finally:
        engine.dispose()


def test_config_is_built_in_code_and_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no alembic.ini here
    config = alembic_config()
    assert config.config_file_name is None
    assert config.get_main_option("script_location") == str(MIGRATIONS_DIR)
    url = database_url_for(tmp_path)
    upgrade_to_head(url)
    assert current_revision(url) == HEAD


def test_offline_sql_generation(tmp_path):
    config = alembic_config(f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE images" in sql and "CREATE TABLE analyses" in sql


def test_db_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ECG_APP_DATABASE_URL", raising=False)
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == "base (empty)"
    assert main(["db", "downgrade"]) == 1  # nothing to downgrade: a message, not a traceback
    assert "error" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"{HEAD} (head)"
    assert (tmp_path / "data" / "ecg_app.sqlite3").is_file()  # the default: a file in the data dir
    assert main(["db", "downgrade"]) == 0
    assert capsys.readouterr().out.strip() == "0005"
    assert main(["db", "downgrade", "base"]) == 0
    assert capsys.readouterr().out.strip() == "base (empty)"

    other = tmp_path / "elsewhere" / "history.db"
    monkeypatch.setenv("ECG_APP_DATABASE_URL", f"sqlite:///{other}")
    assert main(["db", "upgrade", "head"]) == 0
    assert capsys.readouterr().out.strip() == f"{HEAD} (head)"
    assert current_revision(f"sqlite:///{other}") == HEAD
