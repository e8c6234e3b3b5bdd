import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from ecg_app.serving.intake import DEFAULT_LIMITS, IntakeError, IntakeLimits, load_image
from ecg_app.serving.preprocess import preprocess
from tests.conftest import encode, synthetic_printout


def _code(source, limits=DEFAULT_LIMITS) -> str:
    with pytest.raises(IntakeError) as info:
        load_image(source, limits)
    assert info.value.message  # every rejection carries a human sentence
    return info.value.code


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_accepts_every_listed_format(printout, fmt):
    image = load_image(encode(printout, fmt))
    assert image.shape == printout.shape and image.dtype == np.uint8
    # Lossy formats change pixels a little, never the picture.
    assert np.abs(image.astype(int) - printout.astype(int)).mean() < 12


def test_reads_paths_and_bytes_alike(tmp_path, printout):
    path = tmp_path / "page.png"
    path.write_bytes(encode(printout))
    assert np.array_equal(load_image(path), load_image(path.read_bytes()))


def test_gif_first_frame_is_used():
    frames = [Image.new("RGB", (120, 120), color) for color in [(255, 0, 0), (0, 0, 255)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    image = load_image(buffer.getvalue())
    assert image[60, 60, 0] > 200 and image[60, 60, 2] < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (200, 120), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 20, 20))  # black square top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    upright = load_image(buffer.getvalue())
    assert upright.shape[:2] == (200, 120)
    assert upright[5, -5].mean() < 60  # the square is now top-right


def test_a_full_size_scan_is_decoded_at_half_scale_and_gives_the_same_ink_map():
    scan = synthetic_printout(2213, 1572)
    image = load_image(encode(scan, "JPEG", quality=90))
    # Half scale is the training printouts' size; a quarter (554x393) would be below it.
    assert image.shape == (786, 1107, 3)
    full = np.asarray(Image.open(io.BytesIO(encode(scan, "JPEG", quality=90))).convert("RGB"))
    assert full.shape == scan.shape  # Pillow alone decodes every pixel
    assert np.abs(preprocess(image) - preprocess(full)).mean() < 0.02  # the model sees the same page


def test_reduced_decoding_keeps_the_pictures_orientation_and_spares_other_formats():
    page = synthetic_printout(2213, 1572)
    stored = Image.fromarray(page).transpose(Image.Transpose.ROTATE_90)  # portrait, 1572x2213
    exif = Image.Exif()
    exif[0x0112] = 6  # to be turned 90 degrees clockwise for display: the landscape page again
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif.tobytes(), quality=90)
    upright = load_image(buffer.getvalue())
    assert upright.shape == (786, 1107, 3)  # both sides above the floor, in the displayed orientation
    half = cv2.resize(page, (1107, 786), interpolation=cv2.INTER_AREA)
    assert np.abs(upright.astype(int) - half.astype(int)).mean() < 5  # the page, the right way up
    assert load_image(encode(synthetic_printout(2213, 1572))).shape == (1572, 2213, 3)  # PNG: full size
    photo = load_image(encode(synthetic_printout(4032, 3024), "JPEG", quality=90))
    assert photo.shape == (1512, 2016, 3)  # a quarter (1008x756) would fall below the floor
    strip = load_image(encode(synthetic_printout(5000, 400), "JPEG", quality=90))
    assert strip.shape == (400, 5000, 3)  # already shorter than the floor on one side: untouched


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1"])
def test_converts_modes_to_rgb(printout, mode):
    image = Image.fromarray(printout).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    assert load_image(buffer.getvalue()).shape == printout.shape


def test_alpha_is_composited_on_white():
    rgba = np.zeros((120, 120, 4), np.uint8)  # fully transparent black
    rgba[:10, :10] = (0, 0, 0, 255)
    image = load_image(encode(rgba))
    assert image[60, 60].tolist() == [255, 255, 255]
    assert image[5, 5].tolist() == [0, 0, 0]


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.full((120, 120), 32768, np.uint16)
    image = load_image(encode(values))
    assert 120 <= image[0, 0, 0] <= 135


def test_rejects_empty_input():
    assert _code(b"") == "empty"


def test_rejects_text_renamed_as_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("<html><script>alert(1)</script></html>")
    assert _code(path) == "not_an_image"


def test_rejects_truncated_file(printout):
    data = encode(printout, "JPEG", quality=90)
    assert _code(data[: len(data) // 2]) == "corrupt"


def test_rejects_file_over_size_limit(printout):
    assert _code(encode(printout), IntakeLimits(max_bytes=1000)) == "file_too_large"


def test_rejects_file_over_size_limit_before_reading(tmp_path):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.truncate(21 * 1024 * 1024)  # sparse 21 MB file
    assert _code(path) == "file_too_large"


def test_rejects_too_many_pixels(printout):
    assert _code(encode(printout), IntakeLimits(max_pixels=500_000)) == "too_many_pixels"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions with almost no data (decompression-bomb shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_rejects_decompression_bomb_without_decoding():
    assert _code(_png_header_only(100_000, 100_000)) == "too_many_pixels"


def test_rejects_images_smaller_than_100px():
    assert _code(encode(np.zeros((99, 400, 3), np.uint8))) == "too_small"


def test_rejects_unsupported_format():
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buffer, format="PDF")
    assert _code(buffer.getvalue()) == "not_an_image"


def test_missing_path():
    assert _code("/nonexistent/ecg.png") == "not_found"
