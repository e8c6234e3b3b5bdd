"""Turn uploaded bytes or a file path into an 8-bit RGB array, or raise IntakeError with a human message.

Every entry point (CLI, app, training) goes through `load_image`, so what the model sees in training is
decoded exactly as what it sees in the app.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Formats a user may upload (Pillow's JPEG reader also opens the MPO files many phone cameras write).
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE = 100
# The training printouts are 1106x786 (the dataset's copies are half the scanner's 2213x1572), and the
# model shrinks the trace area to 544x320 anyway. A larger JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8
# scale (DCT scaling: fewer pixels decoded, not a resize afterwards), the smallest that keeps both sides
# at least this size (longer, shorter): a full-size scan decodes in about half the time, and every
# later step handles a quarter of the pixels.
DECODE_AT_LEAST = (1100, 780)


class IntakeError(ValueError):
    """An upload that cannot be analysed; `code` is stable for programs, `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE


DEFAULT_LIMITS = IntakeLimits()


def read_bytes(source: bytes | str | Path, limits: IntakeLimits = DEFAULT_LIMITS) -> bytes:
    """Read the raw upload, checking the size limit before the whole file is read into memory."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise IntakeError("not_found", f"File not found: {path.name}")
        if path.stat().st_size > limits.max_bytes:
            raise IntakeError("file_too_large", _too_large_message(path.stat().st_size, limits.max_bytes))
        data = path.read_bytes()
    if not data:
        raise IntakeError("empty", "The file is empty. Please upload a photo or scan of an ECG printout.")
    if len(data) > limits.max_bytes:
        raise IntakeError("file_too_large", _too_large_message(len(data), limits.max_bytes))
    return data


def load_image(source: bytes | str | Path, limits: IntakeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode an upload into an (H, W, 3) uint8 RGB array, upright, with transparency on white."""
    data = read_bytes(source, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise IntakeError("too_many_pixels", _too_many_pixels_message(None, limits.max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise IntakeError(
            "not_an_image",
            "This file is not an image we can read. Please upload a JPEG, PNG, WebP, BMP, TIFF or GIF "
            "picture of an ECG printout.",
        ) from exc
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            raise IntakeError("too_many_pixels", _too_many_pixels_message((width, height), limits.max_pixels))
        if min(width, height) < limits.min_side:
            raise IntakeError(
                "too_small",
                f"The image is only {width}x{height} pixels; at least {limits.min_side}x{limits.min_side} "
                "is needed to read an ECG. Please upload a larger picture.",
            )
        try:
            image.seek(0)  # first frame of animated GIF/WebP/TIFF
            image.draft(None, _decode_size(width, height))  # a no-op for formats other than JPEG
            # Re-assert per call: WeasyPrint sets this Pillow-global flag to True when it is imported.
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            image.load()
            # In place: a full-size scan's copy costs ~9 ms, and most uploads need no turning at all.
            ImageOps.exif_transpose(image, in_place=True)
            return _to_rgb(image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise IntakeError(
                "corrupt",
                "The image file is damaged or incomplete (it could not be fully decoded). "
                "Please upload the original file again.",
            ) from exc


def _decode_size(width: int, height: int) -> tuple[int, int]:
    """The least size to decode at (`Image.draft` picks the smallest scale at or above it): both sides
    at least `DECODE_AT_LEAST`, in the picture's orientation, and never more than the picture."""
    longer, shorter = DECODE_AT_LEAST
    least = (longer, shorter) if width >= height else (shorter, longer)
    return min(width, least[0]), min(height, least[1])


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode (grey, palette, alpha, CMYK, 16-bit, float) to 8-bit RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in image.info or mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    # An RGB image needs no `convert`, which would copy it (~9 ms for a full-size scan).
    return np.asarray(image if mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def _too_large_message(size: int, limit: int) -> str:
    # Binary megabytes, as the limit is set (20 * 1024 * 1024 is "20 MB"); the size is rounded up so a file
    # just over the limit never reads as within it ("20.1 MB; the limit is 20 MB").
    mib = 1024 * 1024
    return (
        f"The file is {math.ceil(size * 10 / mib) / 10:.1f} MB; the limit is {limit / mib:g} MB. "
        "Please upload a smaller photo or scan."
    )


def _too_many_pixels_message(size: tuple[int, int] | None, limit: int) -> str:
    what = f"is {size[0]}x{size[1]} pixels" if size else "has too many pixels"
    return f"The image {what}; the limit is {limit / 1e6:.0f} megapixels. Please upload a smaller picture."


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def image_files(root: Path) -> list[Path]:
    """Every picture file under `root` (by its suffix), sorted: a folder to score or a dataset."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
