"""Crash safety: SIGKILL `ecg-app serve` in the middle of a burst of analyses, then restart on the same data.

After the restart the database must pass SQLite's integrity check, every analysis a client got back must
still be there, every visible analysis must be whole (image hashing to its digest, thumbnail, overlay),
and the start-up sweep must have removed every file no analysis refers to: the kill's leftovers and ones
planted here (a stray image and a temp file, as a crash mid-write leaves them), and put back a file a
crash in the middle of a delete left renamed to its trash name.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from app_server import app_process, has_model
from gradio_client import Client, handle_file
from PIL import Image
from store_audit import audit_store, images_dir

from ecg_app.serving.intake import load_image
from ecg_app.store.images import DEFAULT_SWEEP_GRACE_S, TEMP_PREFIX, TRASH_PREFIX, describe
from ecg_app.ui.analyze_tab import EXAMPLES_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_model(), reason="no trained model in model/ yet"),
]

CLIENTS = 4  # twice the server's analysis concurrency: requests are always in flight
PER_CLIENT = 12  # bounded burst; the kill comes long before it ends
DONE_BEFORE_KILL = 3
TIMEOUT_S = 120


def unique_uploads(folder: Path, count: int) -> list[Path]:
    """`count` distinct JPEGs (the examples with one pixel changed), so every analysis writes new image
    files and a kill can land in the middle of writing them."""
    bases = [Image.open(path).convert("RGB") for path in sorted(EXAMPLES_DIR.glob("*.jpg"))]
    folder.mkdir()
    uploads = []
    for i in range(count):
        image = bases[i % len(bases)].copy()
        image.putpixel((0, 0), (i % 256, i // 256, 7))
        path = folder / f"burst-{i:03d}.jpg"
        image.save(path, quality=90)
        uploads.append(path)
    return uploads


class Burst:
    """Clients that keep analysing until stopped; records what the server acknowledged."""

    def __init__(self, url: str, uploads: list[Path]):
        self.url, self.uploads = url, uploads
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.acknowledged: dict[str, Path] = {}  # analysis id -> upload
        self.in_flight = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _run(self, n: int) -> None:
        client = Client(self.url, verbose=False)
        try:
            for upload in self.uploads[n * PER_CLIENT : (n + 1) * PER_CLIENT]:
                if self.stop.is_set():
                    return
                with self.lock:
                    self.in_flight += 1
                try:
                    job = client.submit(
                        image=handle_file(str(upload)), patient_name=upload.stem, api_name="/analyze"
                    )
                    result = job.result(timeout=TIMEOUT_S)
                    with self.lock:
                        self.acknowledged[result["id"]] = upload
                except Exception as exc:  # noqa: BLE001 - the kill makes in-flight requests fail
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    with self.lock:
                        self.in_flight -= 1
        finally:
            client.close()


def thumbnail_ref(upload: Path) -> str:
    """Where the store keeps an upload's thumbnail (content-addressed, relative to the image folder)."""
    return describe(upload.read_bytes(), load_image(upload)).thumbnail_ref


def jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 120), "white").save(out, format="JPEG")
    return out.getvalue()


def test_sigkill_mid_burst_then_restart_leaves_a_whole_store(tmp_path):
    data_dir = tmp_path / "data"
    uploads = unique_uploads(tmp_path / "uploads", CLIENTS * PER_CLIENT)

    with app_process(data_dir) as app:
        burst = Burst(app.url, uploads)
        burst.start()
        deadline = time.monotonic() + TIMEOUT_S
        while len(burst.acknowledged) < DONE_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.05)
        with burst.lock:
            done, in_flight = len(burst.acknowledged), burst.in_flight
            os.kill(app.proc.pid, signal.SIGKILL)  # the `ecg-app serve` process itself
        burst.stop.set()
        assert app.proc.wait(timeout=30) == -signal.SIGKILL
        for thread in burst.threads:
            thread.join(timeout=TIMEOUT_S)
    assert done >= DONE_BEFORE_KILL, f"only {done} analyses before the deadline: {burst.errors[:3]}"
    assert in_flight > 0, "the kill must land while requests are in flight"
    assert not any(thread.is_alive() for thread in burst.threads)
    assert burst.errors, "the requests in flight at the kill should have failed"
    acknowledged = dict(burst.acknowledged)

    # Leftovers of crashed writes, planted in case the kill left none: a stray image and a temp file.
    images = images_dir(data_dir)
    stray = images / "ff" / f"{'f' * 64}.jpg"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(jpeg_bytes())
    temp = images / "ff" / f"{TEMP_PREFIX}crashed"
    temp.write_bytes(jpeg_bytes()[:100])
    # A delete that crashed between renaming a file to its trash name and the (never made) commit.
    kept = images / thumbnail_ref(next(iter(acknowledged.values())))
    trashed = kept.with_name(TRASH_PREFIX + kept.name)
    os.replace(kept, trashed)
    files_before = {path for path in images.rglob("*") if path.is_file()}
    # The start-up sweep leaves files younger than its grace period alone (another process may be
    # writing them): age everything beyond it, as if the restart came later.
    old = time.time() - DEFAULT_SWEEP_GRACE_S - 60
    for path in files_before:
        os.utime(path, (old, old))

    with app_process(data_dir) as app:
        client = Client(app.url, verbose=False)
        fresh = client.predict(
            image=handle_file(str(EXAMPLES_DIR / "MI(19).jpg")), patient_name="After restart", age="58",
            sex="Female", api_name="/analyze",
        )  # fmt: skip
        assert fresh["label"] in ("MI", "HMI", "AHB", "Normal")
        assert Path(client.predict(fresh["id"], api_name="/report")).read_bytes().startswith(b"%PDF")
        listed = client.predict(limit=500, api_name="/history")
        client.close()

    audit = audit_store(data_dir)
    assert audit.integrity == "ok"
    assert audit.foreign_key_violations == 0
    assert audit.incomplete == []  # no half-written analysis is visible
    assert audit.orphans == []  # the sweep removed every unreferenced file
    assert set(acknowledged) <= set(audit.analyses), "an analysis a client got back was lost"
    assert fresh["id"] in audit.analyses
    assert listed["total"] == len(audit.analyses)
    assert {item["id"] for item in listed["items"]} == set(audit.analyses)
    assert len(audit.analyses) <= len(uploads) + 1
    assert not stray.exists() and not temp.exists()
    assert kept.is_file() and not trashed.exists()  # put back: its analysis survived
    left_by_kill = (
        files_before
        - {stray, temp, trashed}
        - {
            path
            for analysis in audit.analyses.values()
            for path in (analysis.image_path, analysis.thumbnail_path, analysis.explanation_path)
        }
    )
    print(
        f"acknowledged before the kill: {len(acknowledged)}, in flight: {in_flight}, stored after restart: "
        f"{len(audit.analyses)} (incl. 1 new), files the kill left unreferenced and the sweep removed: "
        f"{len(left_by_kill)}"
    )
