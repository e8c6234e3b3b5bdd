"""Content-addressed image and thumbnail files: atomic writes, two-phase deletes, sweeping of leftovers.

Files live under `<data dir>/images/<first two hex digits>/`, named by the SHA-256 of the upload, so the
same upload is stored once: `<sha256>.stored.jpg` (or `.png`), the de-identified picture the caller gives,
`<sha256>.thumb.jpg`, and `<sha256><ext>`, the upload's own bytes, only where originals are kept. Re-encoded
from pixels, the stored picture and thumbnail carry no EXIF or other metadata. Each analysis may add one
derived file beside them, its Grad-CAM overlay `<sha256>.<analysis id>.gradcam.jpg` (it depends on the
model and the predicted class, so it belongs to the analysis, not to the image). A file is only ever
created whole (temporary file in the same folder, fsync, `os.replace`), and a delete first renames the
files to a trash name, so the database transaction can still be rolled back and the files put back.

Several processes may share the folder (and one database): a file's mtime says when a process last wrote
or reused it, and the sweep leaves alone anything younger than its grace period, because the row that
will refer to it may not be committed yet.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".del-"
THUMBNAIL_MAX_SIDE = 800
THUMBNAIL_QUALITY = 85
STORED_JPEG_QUALITY = 95  # the stored picture of a JPEG upload; other uploads are stored as PNG
# Leftovers younger than this may belong to a request still in flight in another process.
DEFAULT_SWEEP_GRACE_S = 15 * 60

_FORMATS = {  # Pillow format -> (extension, media type)
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
    "BMP": (".bmp", "image/bmp"),
    "TIFF": (".tif", "image/tiff"),
    "GIF": (".gif", "image/gif"),
}


@dataclass(frozen=True)
class ImageInfo:
    """What the database records about an image file (paths relative to the image folder)."""

    sha256: str
    image_ref: str
    thumbnail_ref: str
    media_type: str
    size_bytes: int  # of the upload
    width: int  # of the stored picture
    height: int
    original_ref: str | None = None  # the upload's own file, only where originals are kept


@dataclass(frozen=True)
class SweepResult:
    removed: tuple[Path, ...]
    restored: tuple[Path, ...]


def describe(data: bytes, rgb: np.ndarray, *, keep_original: bool = False) -> ImageInfo:
    """Hash the upload and name its files; `rgb` is the picture to store (for its dimensions). A JPEG
    upload is stored as JPEG, anything else as PNG (lossless, as screenshots come)."""
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as image:
        ext, media_type = _FORMATS.get(image.format or "", (".bin", "application/octet-stream"))
    stored_ext, stored_type = (".jpg", "image/jpeg") if ext == ".jpg" else (".png", "image/png")
    height, width = rgb.shape[:2]
    return ImageInfo(
        sha256=sha,
        image_ref=f"{sha[:2]}/{sha}.stored{stored_ext}",
        thumbnail_ref=f"{sha[:2]}/{sha}.thumb.jpg",
        media_type=stored_type,
        size_bytes=len(data),
        width=int(width),
        height=int(height),
        original_ref=f"{sha[:2]}/{sha}{ext}" if keep_original else None,
    )


def encode_picture(rgb: np.ndarray, media_type: str) -> bytes:
    """The stored picture's file: JPEG (quality 95) or PNG, from pixels alone, so without metadata."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB picture, got {rgb.shape} {rgb.dtype}")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if media_type == "image/jpeg":
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, STORED_JPEG_QUALITY])
    else:
        ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # fast: 40 ms, not 70
    if not ok:
        raise ValueError(f"could not encode the picture as {media_type}")
    return encoded.tobytes()


def explanation_ref(sha256: str, analysis_id: uuid.UUID) -> str:
    """Name of an analysis's Grad-CAM overlay, beside its image's thumbnail."""
    return f"{sha256[:2]}/{sha256}.{analysis_id.hex}.gradcam.jpg"


def fit(rgb: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> np.ndarray:
    """The picture scaled down (never up) so its longest side is at most `max_side`, as thumbnails are.

    Area averaging (OpenCV) keeps thin trace lines visible and is ~3x faster than Pillow's Lanczos here,
    which matters because it runs inside every upload."""
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def make_thumbnail(rgb: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A JPEG small enough for lists and the PDF, large enough that the ECG traces stay legible."""
    rgb = fit(rgb, max_side)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


def claim(path: Path) -> bool:
    """Mark an existing file as in use now (fresh mtime) so that no sweep removes it while the row that
    will refer to it is not yet committed; False if there is no such file (the caller writes it)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def atomic_write(path: Path, data: bytes) -> None:
    """Write `path` so that readers and crashes only ever see no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ImageStore:
    """The image folder. It never decides what is referenced: the repository tells it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, ref: str) -> Path:
        """Absolute path of a stored reference; refuses references that would leave the folder."""
        path = self.root / ref
        if ".." in Path(ref).parts or Path(ref).is_absolute():
            raise ValueError(f"invalid image reference {ref!r}")
        return path

    def ensure(self, files: Iterable[tuple[str, Callable[[], bytes]]]) -> list[Path]:
        """Write whichever of an image's files (reference, content) is missing and claim those already
        there (they may be another process's leftovers, old enough to be swept); return the files
        written. All or nothing: no picture without its thumbnail."""
        written: list[Path] = []
        try:
            for ref, content in files:
                path = self.path(ref)
                if not claim(path):
                    atomic_write(path, content())
                    written.append(path)
        except BaseException:
            self.discard(written)
            raise
        return written

    def write(self, ref: str, data: bytes) -> Path:
        """Write one derived file (e.g. an analysis's Grad-CAM overlay) atomically; returns its path."""
        path = self.path(ref)
        atomic_write(path, data)
        return path

    @staticmethod
    def discard(paths: Iterable[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def trash(self, refs: Iterable[str]) -> list[tuple[Path, Path]]:
        """First phase of a delete: rename files to trash names; returns (original, trash) pairs."""
        moved = []
        for ref in refs:
            path = self.path(ref)
            trash = path.with_name(TRASH_PREFIX + path.name)
            if path.is_file():
                os.replace(path, trash)
                claim(trash)  # a rename keeps the old mtime: no sweep may act on a delete still in flight
                moved.append((path, trash))
        return moved

    @staticmethod
    def restore(moved: Iterable[tuple[Path, Path]]) -> None:
        """Undo `trash` (the transaction that deleted the rows failed)."""
        for original, trash in moved:
            if trash.exists():
                os.replace(trash, original)

    @staticmethod
    def purge(moved: Iterable[tuple[Path, Path]]) -> None:
        """Second phase of a delete, after the commit."""
        for _original, trash in moved:
            trash.unlink(missing_ok=True)

    def sweep(self, referenced: set[str], grace_s: float = DEFAULT_SWEEP_GRACE_S) -> SweepResult:
        """Remove temp files, trash and unreferenced files older than `grace_s`; put back trashed files
        whose row survived (a crash between the rename and a rolled-back commit).

        `referenced` is a snapshot: another process may commit a row for an old unreferenced file after
        it was taken, but it claims the file first (`ensure`), so the file is no longer old."""
        cutoff = time.time() - grace_s
        removed, restored = [], []
        for path in sorted(self.root.rglob("*")):
            try:
                if not path.is_file() or path.stat().st_mtime > cutoff:
                    continue
                if path.name.startswith(TRASH_PREFIX):
                    original = path.with_name(path.name[len(TRASH_PREFIX) :])
                    if self._ref(original) in referenced and not original.exists():
                        os.replace(path, original)
                        restored.append(original)
                        continue
                elif not path.name.startswith(TEMP_PREFIX):
                    if self._ref(path) not in referenced and self._remove_unless_claimed(path, cutoff):
                        removed.append(path)
                    continue
                path.unlink()
                removed.append(path)
            except FileNotFoundError:  # another process swept it first
                continue
        return SweepResult(tuple(removed), tuple(restored))

    @staticmethod
    def _remove_unless_claimed(path: Path, cutoff: float) -> bool:
        """Remove an unreferenced file unless a process claimed it since it was found old. The rename
        first closes the race: a claim either came before it (the renamed file is fresh, so it is put
        back) or finds no file (and that process writes a new one)."""
        trash = path.with_name(TRASH_PREFIX + path.name)
        os.replace(path, trash)
        if trash.stat().st_mtime > cutoff:
            os.replace(trash, path)
            return False
        trash.unlink()
        return True

    def _ref(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
