"""A corpus of malformed, hostile and awkward uploads, built on the fly (nothing here is committed).

Each `HostileCase` says how to make the file's bytes and what intake must do with it: raise IntakeError
with `code`, or (code None) decode it into an (H, W, 3) uint8 array, of `shape` where that is given.
The same corpus runs through intake (tests/test_hostile_inputs.py), the `analyze` command and the running
app's API (tests/integration/test_hostile_api.py).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from ecg_app.serving.intake import DEFAULT_MAX_BYTES
from tests.conftest import encode, synthetic_printout


@dataclass(frozen=True)
class HostileCase:
    name: str
    suffix: str  # the file name's extension when the case is written to disk (may lie about the content)
    make: Callable[[], bytes]
    code: str | None  # the IntakeError code expected, or None when the file must be classified
    shape: tuple[int, int, int] | None = None  # expected decoded shape, when it is worth checking
    sparse_size: int | None = None  # on disk, write a sparse file this big instead (path-only cases)

    @property
    def accepted(self) -> bool:
        return self.code is None

    def write(self, folder: Path, sparse: bool = True) -> Path:
        """Write the case into `folder` as `<name><suffix>`; sparse files only where asked and allowed."""
        path = folder / f"{self.name}{self.suffix}"
        if sparse and self.sparse_size is not None:
            with open(path, "wb") as out:
                out.truncate(self.sparse_size)
        else:
            path.write_bytes(self.make())
        return path


# -- valid pictures to start from -----------------------------------------------------------------------


@cache
def _page(width: int = 1106, height: int = 786) -> np.ndarray:
    page = synthetic_printout(width, height)
    page.flags.writeable = False
    return page


@cache
def _jpeg() -> bytes:
    return encode(_page(), "JPEG", quality=90)


@cache
def _png() -> bytes:
    return encode(_page())


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit RGB) with one tiny IDAT: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


# -- the cases' factories --------------------------------------------------------------------------------


def _truncated_jpeg() -> bytes:
    return _jpeg()[: len(_jpeg()) // 2]


def _truncated_png() -> bytes:
    return _png()[: len(_png()) // 2]


def _html() -> bytes:
    return (
        b"<!DOCTYPE html><html><head><title>ECG</title></head>"
        b"<body><img src=x onerror=alert(1)></body></html>"
    )


def _svg() -> bytes:
    return (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="1000" height="800">'
        b'<rect width="1000" height="800" fill="pink"/><polyline points="0,400 500,100 1000,400" '
        b'stroke="black"/></svg>'
    )


def _pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
        b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
    )


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ecg.png", _png())
    return buffer.getvalue()


def _over_size_limit() -> bytes:
    # A real JPEG padded past the app's limit by one byte (trailing bytes after EOI are legal).
    data = _jpeg()
    return data + b"\x00" * (DEFAULT_MAX_BYTES + 1 - len(data))


def _random_bytes() -> bytes:
    return np.random.default_rng(1234).integers(0, 256, 50_000, dtype=np.uint8).tobytes()


def _jpeg_header_then_garbage() -> bytes:
    # Everything up to and including the start-of-scan header of a real JPEG, then random "scan data".
    data = _jpeg()
    start = data.index(b"\xff\xda")
    header_end = start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")
    garbage = np.random.default_rng(99).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    return data[:header_end] + garbage


def _cmyk_jpeg() -> bytes:
    return _save(Image.fromarray(_page()).convert("CMYK"), "JPEG", quality=90)


def _gray16_png() -> bytes:
    gray = np.asarray(Image.fromarray(_page()).convert("L"), dtype=np.uint16) * 257
    return _save(Image.fromarray(gray, mode="I;16"), "PNG")


def _rgba_png() -> bytes:
    rgba = np.dstack([_page(), np.full(_page().shape[:2], 255, np.uint8)])
    rgba[:, : rgba.shape[1] // 3, 3] = 0  # a transparent band, colour left in it must not show
    rgba[:, : rgba.shape[1] // 3, :3] = (0, 0, 0)
    return encode(rgba)


def _palette_png() -> bytes:
    image = Image.fromarray(_page()).quantize(64)
    colours = np.asarray(image.getpalette()[: 3 * 64]).reshape(-1, 3)
    darkest = int(colours.sum(axis=1).argmin())  # the traces' black: transparent, so it must not show
    return _save(image, "PNG", transparency=darkest)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(synthetic_printout(seed=seed)).quantize(32) for seed in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)


def _exif_rotated_jpeg() -> bytes:
    # The sensor's landscape picture, tagged "rotate 90 CW to view" (orientation 6), as phones write it.
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(_page(800, 600)), "JPEG", quality=90, exif=exif.tobytes())


def _wide_ecg() -> bytes:
    return encode(_page(5000, 400), "JPEG", quality=90)


PAGE = (786, 1106, 3)  # the decoded shape of _page()

# 20 MB and 50 MP limits as shipped (Settings/IntakeLimits defaults).
CASES: list[HostileCase] = [
    # -- refused ------------------------------------------------------------------------------------------
    HostileCase("empty", ".jpg", lambda: b"", "empty"),
    HostileCase("truncated_jpeg", ".jpg", _truncated_jpeg, "corrupt"),
    HostileCase("truncated_png", ".png", _truncated_png, "corrupt"),
    HostileCase("text_as_png", ".png", lambda: b"Patient: 12345\nHR 72 bpm\n" * 40, "not_an_image"),
    HostileCase("html_as_jpg", ".jpg", _html, "not_an_image"),
    HostileCase("svg_as_png", ".png", _svg, "not_an_image"),
    HostileCase("pdf", ".pdf", _pdf, "not_an_image"),
    HostileCase("zip", ".zip", _zip, "not_an_image"),
    HostileCase(
        "png_bomb_100000x100000", ".png", lambda: png_header_only(100_000, 100_000), "too_many_pixels"
    ),
    HostileCase(
        "png_over_pixel_limit_8000x7000", ".png", lambda: png_header_only(8000, 7000), "too_many_pixels"
    ),
    HostileCase("one_pixel", ".png", lambda: encode(np.zeros((1, 1, 3), np.uint8)), "too_small"),
    HostileCase(
        "strip_20000x20", ".png", lambda: encode(np.full((20, 20000, 3), 255, np.uint8)), "too_small"
    ),
    HostileCase("tiny_99x99", ".png", lambda: encode(_page(99, 99)), "too_small"),
    HostileCase(
        "over_size_limit", ".jpg", _over_size_limit, "file_too_large", sparse_size=64 * DEFAULT_MAX_BYTES
    ),
    HostileCase("random_bytes", ".jpg", _random_bytes, "not_an_image"),
    HostileCase("jpeg_header_then_garbage", ".jpg", _jpeg_header_then_garbage, "corrupt"),
    # -- classified ---------------------------------------------------------------------------------------
    HostileCase("cmyk_jpeg", ".jpg", _cmyk_jpeg, None, PAGE),
    HostileCase("gray16_png", ".png", _gray16_png, None, PAGE),
    HostileCase("rgba_png_transparent", ".png", _rgba_png, None, PAGE),
    HostileCase("palette_png_transparent", ".png", _palette_png, None, PAGE),
    HostileCase("animated_gif", ".gif", _animated_gif, None, PAGE),
    HostileCase("exif_rotated_jpeg", ".jpg", _exif_rotated_jpeg, None, (800, 600, 3)),
    HostileCase("webp", ".webp", lambda: encode(_page(), "WEBP", quality=90), None, PAGE),
    HostileCase("bmp", ".bmp", lambda: encode(_page(), "BMP"), None, PAGE),
    HostileCase("tiff", ".tif", lambda: encode(_page(), "TIFF", compression="tiff_lzw"), None, PAGE),
    HostileCase(
        "grayscale_jpeg", ".jpg", lambda: _save(Image.fromarray(_page()).convert("L"), "JPEG"), None, PAGE
    ),
    HostileCase("jpeg_named_png", ".png", _jpeg, None, PAGE),
    HostileCase("smallest_allowed_100x100", ".png", lambda: encode(_page(100, 100)), None, (100, 100, 3)),
    HostileCase("wide_ecg_5000x400", ".jpg", _wide_ecg, None, (400, 5000, 3)),
]

REJECTED = [case for case in CASES if not case.accepted]
ACCEPTED = [case for case in CASES if case.accepted]
