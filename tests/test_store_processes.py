"""Several app processes sharing one database and one image folder (docs/deployment.md).

The interleavings that matter are forced with SQLAlchemy events: a second store with its own engine (as
another process has) acts in the middle of this store's transaction. They run on each backend; the last
test starts two real processes against PostgreSQL.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, text

from ecg_app.config import REPO_ROOT, Settings
from ecg_app.store import AnalysisStore, open_store
from ecg_app.store.db import create_engine_for
from ecg_app.store.images import ImageStore, atomic_write, describe, encode_picture, make_thumbnail
from ecg_app.store.migrate import MIGRATION_LOCK_KEY, current_revision, head_revision, upgrade_to_head
from tests.conftest import POSTGRES_URL, database_url_for, decoded, encode, settings_for, synthetic_printout
from tests.test_store import _age, count_images, heat_overlay, make_prediction, stored_files


@contextmanager
def another_process(store: AnalysisStore) -> Iterator[AnalysisStore]:
    """A second store on the same database and image folder, with its own engine and connections."""
    engine = create_engine_for(store.engine.url.render_as_string(hide_password=False))
    other = AnalysisStore(engine, ImageStore(store.images.root))
    try:
        yield other
    finally:
        other.close()


@contextmanager
def during_transaction(store: AnalysisStore, name: str, handler: Callable) -> Iterator[None]:
    """Run `handler` at a session event (`before_flush`, `before_commit`) of this store's writes."""
    sessions = store._sessions  # the tests' way into the middle of a transaction
    event.listen(sessions, name, handler)
    try:
        yield
    finally:
        event.remove(sessions, name, handler)


@pytest.fixture(scope="module")
def page():
    rgb = synthetic_printout(width=900, height=640, seed=3)
    return rgb, encode(rgb)


def test_add_survives_another_process_deleting_its_image_meanwhile(store, page):
    """The image row is read, then deleted and committed elsewhere, then this add inserts its analysis:
    the foreign key fails, and the add tries again as a first upload (writing the files anew)."""
    rgb, data = page
    first = store.add(make_prediction("MI"), data, rgb, "first.png")
    deleted = []
    with another_process(store) as other:

        def delete_first(*_args) -> None:
            if not deleted:  # only during the first attempt
                deleted.append(other.delete(first.id))

        with during_transaction(store, "before_flush", delete_first):
            second = store.add(make_prediction("AHB"), data, rgb, "second.png")
    assert deleted == [True]
    assert [item.id for item in store.list().items] == [second.id] and count_images(store) == 1
    assert np.array_equal(decoded(second.image_path), rgb) and second.thumbnail_path.is_file()
    assert len(stored_files(store)) == 2


def test_deleting_the_last_two_analyses_of_an_image_at_once_removes_it(store, page):
    """Each delete counts the image's other analyses: without taking turns, each would still see the
    other's analysis, and the image would be kept with no analysis left (rows and files forever)."""
    rgb, data = page
    first = store.add(make_prediction("MI"), data, rgb, "first.png")
    second = store.add(make_prediction("AHB"), data, rgb, "second.png")
    results, threads = [], []
    with another_process(store) as other:

        def delete_second_meanwhile(_connection, _cursor, statement, *_args) -> None:
            if "count(" in statement.lower() and not threads:  # this delete has just counted
                thread = threading.Thread(target=lambda: results.append(other.delete(second.id)))
                threads.append(thread)
                thread.start()
                thread.join(timeout=1.0)  # it either waits for our transaction or races through it

        event.listen(store.engine, "after_cursor_execute", delete_second_meanwhile)
        try:
            assert store.delete(first.id)
        finally:
            event.remove(store.engine, "after_cursor_execute", delete_second_meanwhile)
        threads[0].join(timeout=60)
    assert results == [True]
    assert store.list().total == 0 and count_images(store) == 0 and stored_files(store) == []


@pytest.mark.parametrize("leftover", [False, True], ids=["new-files", "reused-leftover"])
def test_a_sweep_elsewhere_spares_files_whose_row_is_not_committed_yet(store, page, leftover):
    """Another process starts (and sweeps) while an add has written its files but not committed its row.
    New files are spared by the grace period; an old leftover of a crash that the add reuses instead of
    rewriting (same content) is spared because the add claims it (fresh mtime) first."""
    rgb, data = page
    if leftover:
        info = describe(data, rgb)
        atomic_write(store.images.path(info.image_ref), encode_picture(rgb, info.media_type))
        atomic_write(store.images.path(info.thumbnail_ref), make_thumbnail(rgb))
        for ref in (info.image_ref, info.thumbnail_ref):
            _age(store.images.path(ref))
    sweeps = []
    with another_process(store) as other:

        def sweep_elsewhere(_session) -> None:
            sweeps.append(other.sweep_orphans())

        with during_transaction(store, "before_commit", sweep_elsewhere):
            added = store.add(make_prediction(), data, rgb, "scan.png", explanation=heat_overlay(rgb))
    assert [(sweep.removed, sweep.restored) for sweep in sweeps] == [((), ())]
    assert store.get(added.id) == added
    assert np.array_equal(decoded(added.image_path), rgb)
    assert added.thumbnail_path.is_file() and added.explanation_path.is_file()


def test_a_sweep_elsewhere_leaves_a_delete_in_flight_alone(store, page):
    """A delete renames the files to trash names before its commit. Renaming keeps the files' old mtime,
    so a sweep elsewhere, still seeing the row, would put them back as orphans; the delete marks them
    fresh, so the sweep leaves them to it."""
    rgb, data = page
    added = store.add(make_prediction(), data, rgb, "old.png", explanation=heat_overlay(rgb))
    for path in (added.image_path, added.thumbnail_path, added.explanation_path):
        _age(path)
    sweeps = []
    with another_process(store) as other:

        def sweep_elsewhere(_session) -> None:
            sweeps.append(other.sweep_orphans())

        with during_transaction(store, "before_commit", sweep_elsewhere):
            assert store.delete(added.id)
    assert [(sweep.removed, sweep.restored) for sweep in sweeps] == [((), ())]
    assert store.list().total == 0 and count_images(store) == 0 and stored_files(store) == []


@pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL advisory lock; set ECG_APP_TEST_POSTGRES_URL")
def test_processes_starting_together_migrate_one_at_a_time(tmp_path):
    url = database_url_for(tmp_path, "postgresql")
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:  # another process is migrating
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            starting = threading.Thread(target=upgrade_to_head, args=(url,))
            starting.start()
            starting.join(timeout=1.0)
            assert starting.is_alive() and current_revision(url) is None  # waits for its turn
        starting.join(timeout=60)
        assert not starting.is_alive() and current_revision(url) == head_revision()
    finally:
        engine.dispose()


# -- two real processes ------------------------------------------------------------------------------

ADDS_PER_PROCESS = 12


def worker(tag: str, data_dir: str, url: str, count: str, barrier: str) -> None:
    """One app process: start (migrate, sweep), wait for the others, then add `count` analyses, every
    other one of an image all processes upload, deleting some of those as it goes and sweeping as a
    restarting process would. Prints the ids it kept as JSON."""
    shared = synthetic_printout(width=900, height=640, seed=3)
    overlay = heat_overlay(shared)
    with open_store(Settings(data_dir=Path(data_dir), database_url=url)) as store:
        ready = Path(barrier)
        (ready / tag).touch()
        deadline = time.monotonic() + 120
        while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        kept = []
        for i in range(int(count)):
            rgb = shared.copy()
            if i % 2:  # an image of this process alone
                rgb[0, 0] = (ord(tag), i, 7)
            added = store.add(make_prediction(), encode(rgb), rgb, f"{tag}-{i}.png", explanation=overlay)
            kept.append(str(added.id))
            if i % 4 == 2:  # delete the shared-image analysis added two steps ago
                assert store.delete(kept.pop(-3))
            if i % 5 == 4:
                store.sweep_orphans()
    print(json.dumps(kept))


@pytest.mark.skipif(not POSTGRES_URL, reason="needs ECG_APP_TEST_POSTGRES_URL (make test starts a server)")
def test_two_processes_write_one_database_and_one_image_folder(tmp_path):
    """Two processes start on an empty PostgreSQL database and one image folder and write at once: every
    row they kept is there, each image once, and the files are exactly those the rows refer to."""
    settings = settings_for(tmp_path, "postgresql")  # empty: both processes migrate it on start
    orphan = settings.data_dir / "images" / "ff" / ("f" * 64 + ".png")  # left by an earlier crash
    atomic_write(orphan, b"orphan")
    _age(orphan)
    barrier = tmp_path / "ready"
    barrier.mkdir()
    code = "import sys; from tests.test_store_processes import worker; worker(*sys.argv[1:])"
    args = [str(settings.data_dir), settings.database_url, str(ADDS_PER_PROCESS), str(barrier)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, tag, *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    kept = {item for out, _err in outputs for item in json.loads(out.splitlines()[-1])}

    with open_store(settings) as store:
        items = store.list(limit=500).items
        deletes = len(range(2, ADDS_PER_PROCESS, 4))
        assert {str(item.id) for item in items} == kept and len(kept) == 2 * (ADDS_PER_PROCESS - deletes)
        assert count_images(store) == 1 + 2 * (ADDS_PER_PROCESS // 2)  # the shared image once
        expected = set()
        for item in items:
            expected |= {item.image_path, item.thumbnail_path, item.explanation_path}
            assert decoded(item.image_path).ndim == 3  # whole: it decodes
        root = store.images.root
        assert set(stored_files(store)) == {path.relative_to(root).as_posix() for path in expected}
    assert not orphan.exists()
