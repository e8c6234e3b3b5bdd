"""Capture-like changes to RGB images: how ECG printouts really reach the app.

The primitives (warp, lighting gradient, blur, downscale, JPEG) are shared by training augmentation
(`augment`, random strengths) and the robustness evaluation (fixed strengths); `photographed` (a sheet
in a photo of something else) by `benchmarks/compare_desk_photos.py`;
`reprinted` (the trace area on another hospital's page template) by the robustness evaluation and
`benchmarks/compare_templates.py`.
No flips: they would move leads. Applied to the RGB picture before the shared preprocessing, so the
network sees augmented pictures exactly as it sees uploads.
"""

from __future__ import annotations

import cv2
import numpy as np

from ecg_app.serving.preprocess import crop_box


def homography(
    height: int,
    width: int,
    angle: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    corner_jitter: np.ndarray | None = None,
) -> np.ndarray:
    """Rotation (degrees), scale, shift (fractions of the size) and corner jitter (fractions) as one 3x3."""
    centre = (width / 2 + shift[0] * width, height / 2 + shift[1] * height)
    affine = np.vstack([cv2.getRotationMatrix2D(centre, angle, scale), [0, 0, 1]])
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = np.zeros((4, 2)) if corner_jitter is None else np.asarray(corner_jitter)
    perspective = cv2.getPerspectiveTransform(corners, np.float32(corners + jitter * [width, height]))
    return perspective @ affine


def warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def lighting_gradient(image: np.ndarray, direction: float, depth: float) -> np.ndarray:
    """Darken linearly across the page by up to `depth` (0-1) along `direction` (radians)."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(direction) * xs / width + np.sin(direction) * ys / height
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return np.clip(image * (1 - depth * ramp)[:, :, None], 0, 255).astype(np.uint8)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Lose detail as a low-resolution capture would, keeping the size."""
    height, width = image.shape[:2]
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else image


def photographed(
    page: np.ndarray,
    scene: np.ndarray,
    rng: np.random.Generator,
    frame: tuple[int, int] = (1200, 1600),
    cover: tuple[float, float] = (0.6, 0.85),
    slant: float = 0.04,
) -> np.ndarray:
    """`page` pasted whole into `scene` (stretched to `frame`, height x width), as a phone sees a sheet held
    up or lying in front of something: it covers a random share `cover` (at most 0.9, so that a margin is
    left) of the frame's tighter side, its corners are moved by up to `slant` of its size (perspective),
    and the light falls off across the frame."""
    frame_h, frame_w = frame
    scene = cv2.resize(scene, (frame_w, frame_h), interpolation=cv2.INTER_AREA)
    height, width = page.shape[:2]
    scale = rng.uniform(*cover) * min(frame_w / width, frame_h / height)
    w, h = width * scale, height * scale
    x0, y0 = rng.uniform(0.05 * w, frame_w - 1.05 * w), rng.uniform(0.05 * h, frame_h - 1.05 * h)
    seen = np.float32([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
    seen += rng.uniform(-slant, slant, (4, 2)).astype(np.float32) * np.float32([w, h])
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [width, 0], [width, height], [0, height]]), seen)
    sheet = cv2.warpPerspective(np.ones((height, width), np.float32), matrix, (frame_w, frame_h))[:, :, None]
    photo = cv2.warpPerspective(page, matrix, (frame_w, frame_h)) * sheet + scene * (1 - sheet)
    light = np.linspace(rng.uniform(0.7, 1.0), 1.0, frame_w, dtype=np.float32)[None, :, None]
    return np.clip(photo * light, 0, 255).astype(np.uint8)


# Page colours of other templates (RGB): the reference printout's white, and tinted papers.
PAGE_COLOURS = {
    "white": (255, 255, 255),
    "pink": (250, 214, 222),
    "blue": (214, 228, 250),
    "yellow": (250, 243, 196),
    "grey": (222, 222, 222),
}
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_ITALIC | cv2.FONT_HERSHEY_SIMPLEX,
)
_HOSPITALS = (
    "St. Mary's Cardiology",
    "City General Hospital",
    "Klinikum Nord - Kardiologie",
    "Hopital Saint-Louis",
    "Regional Heart Centre",
    "University Medical Center",
)


def _text(page: np.ndarray, words: str, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    height, width = page.shape[:2]
    colour = tuple(int(c) for c in rng.integers(0, 90, 3))
    scale = size * width / 1100
    font = _FONTS[rng.integers(len(_FONTS))]
    at = (round(x * width), round(y * height))
    cv2.putText(page, words, at, font, scale, colour, max(1, round(scale * 1.5)), cv2.LINE_AA)


def margin_move(shape: tuple[int, ...], rng: np.random.Generator, margin: float) -> tuple[int, int]:
    """(dy, dx) in pixels: a page of `shape` moved by up to `margin` of its height and width, one draw
    of `rng` (the move `reprinted` gives the trace area, before it is kept on the page)."""
    dy, dx = (round(v) for v in rng.uniform(-1, 1, 2) * margin * np.array(shape[:2]))
    return dy, dx


def reprinted(
    rgb: np.ndarray, rng: np.random.Generator, colour: str | None = None, margin: float = 0.01
) -> np.ndarray:
    """The printout's trace area (the reference template's, `preprocess.crop_box`) on another hospital's
    page of the same size: a page colour of `PAGE_COLOURS` (random when `colour` is None), another title
    block in another font, sometimes a logo and a frame, the footer moved to the top or missing, and the
    trace area moved by up to `margin` of the page (other margins; 0 keeps it in place, the rest of the
    page drawn the same). What the classifier reads, the trace area, is the same printout: its class
    must not change."""
    height, width = rgb.shape[:2]
    top, bottom, left, right = crop_box(height, width)
    page = np.empty_like(rgb)
    page[:] = PAGE_COLOURS[colour or list(PAGE_COLOURS)[rng.integers(len(PAGE_COLOURS))]]
    dy, dx = margin_move(rgb.shape, rng, margin)
    dy, dx = int(np.clip(dy, -top, height - bottom)), int(np.clip(dx, -left, width - right))
    page[top + dy : bottom + dy, left + dx : right + dx] = rgb[top:bottom, left:right]
    header = top / height  # the share of the page above the trace area
    logo = rng.random() < 0.5
    x0 = 0.14 if logo else 0.04
    if logo:
        centre = (round(0.07 * width), round(0.45 * header * height))
        logo_colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        cv2.circle(page, centre, round(0.3 * header * height), logo_colour, -1, cv2.LINE_AA)
    _text(page, _HOSPITALS[rng.integers(len(_HOSPITALS))], x0, 0.25 * header, 0.9, rng)
    patient = f"Name: ____________  Age: {rng.integers(20, 90)}  Sex: {'MF'[rng.integers(2)]}"
    _text(page, patient, x0, 0.55 * header, 0.6, rng)
    day, month = rng.integers(1, 28), rng.integers(1, 12)
    _text(page, f"Ref. {rng.integers(10**5, 10**6)}   {day:02d}.{month:02d}.2024", x0, 0.8 * header, 0.6, rng)
    if rng.random() < 0.4:
        frame_colour = tuple(int(c) for c in rng.integers(0, 120, 3))
        cv2.rectangle(page, (left + dx - 4, top + dy - 4), (right + dx + 3, bottom + dy + 3), frame_colour, 2)
    footer = rng.integers(3)  # 0: at the bottom, 1: moved to the top right, 2: missing
    if footer < 2:
        x, y = (0.05, (bottom / height + 1) / 2 + 0.01) if footer == 0 else (0.62, 0.25 * header)
        _text(page, "25 mm/s  10 mm/mV  0.05-150 Hz", x, y, 0.5, rng)
    return page


def augment(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """One random capture-like variant of an (H, W, 3) uint8 image."""
    height, width = rgb.shape[:2]
    matrix = homography(
        height,
        width,
        angle=rng.uniform(-3, 3) * strength,
        scale=1 + rng.uniform(-0.06, 0.06) * strength,
        shift=tuple(rng.uniform(-0.03, 0.03, size=2) * strength),
        corner_jitter=rng.uniform(-0.025, 0.025, size=(4, 2)) * strength,
    )
    image = warp(rgb, matrix).astype(np.float32)
    tint = 1 - rng.uniform(0, 0.12, size=3) * (rng.random() < 0.5)
    contrast = rng.uniform(0.75, 1.15)
    brightness = rng.uniform(-25, 20)
    image = np.clip(((image - 128) * contrast + 128 + brightness) * tint, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        image = lighting_gradient(image, rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.35))
    if rng.random() < 0.3:
        image = blur(image, rng.uniform(0.4, 1.3))
    if rng.random() < 0.3:
        image = downscale(image, rng.uniform(0.55, 0.9))
    if rng.random() < 0.35:
        image = jpeg(image, int(rng.integers(25, 85)))
    return image
