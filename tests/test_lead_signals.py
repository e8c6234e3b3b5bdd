import json

import numpy as np
import pytest

from ecg_app.serving.lead_geometry import CELLS, COLUMNS, CURVES, ROW_CENTRES, band_rows
from ecg_app.serving.preprocess import INPUT_HEIGHT, INPUT_SHAPE, INPUT_WIDTH, preprocess
from ecg_app.training.lead_signals import LeadSignals, deskew, read_bands

CELL_WIDTH = INPUT_WIDTH // COLUMNS


def curves(ink: np.ndarray) -> np.ndarray:
    return np.asarray(LeadSignals()(ink[None].astype(np.float32)))[0]


def turned(ink: np.ndarray, degrees: float) -> np.ndarray:
    """The map turned about its centre, as a photo taken askew would put it (paper fills the corners)."""
    import cv2

    height, width = ink.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(ink[:, :, 0], matrix, (width, height), flags=cv2.INTER_LINEAR)[:, :, None]


def baselines_page() -> np.ndarray:
    """A synthetic printout: one wavy trace through the middle of each row band, across the width."""
    ink = np.zeros(INPUT_SHAPE, np.float32)
    columns = np.arange(INPUT_WIDTH)
    for first, last in band_rows(INPUT_HEIGHT):
        rows = (first + last) // 2 + np.round(6 * np.sin(columns / 9)).astype(int)
        ink[rows, columns, 0] = 1.0
        ink[rows + 1, columns, 0] = 1.0
    return ink


def test_bands_are_the_template_rows_inside_the_map():
    bands = band_rows(INPUT_HEIGHT)
    assert len(bands) == len(ROW_CENTRES) and bands[0][0] >= 0 and bands[-1][1] <= INPUT_HEIGHT
    assert all(a[1] <= b[0] for a, b in zip(bands, bands[1:], strict=False))  # rows do not overlap
    assert {last - first for first, last in bands} == {74}


def test_a_trace_reads_as_its_top_centre_and_bottom_above_the_band_middle():
    ink = np.zeros(INPUT_SHAPE, np.float32)
    first, last = band_rows(INPUT_HEIGHT)[1]  # second row: II, aVL, V2, V5
    rows, middle = last - first, first + (last - first) // 2
    ink[middle - 10, :, 0] = 1.0  # a flat line 10 px above the band's middle ...
    ink[middle - 30 : middle + 6, 200, 0] = 0.5  # ... and one column inked from 30 above to 5 below
    out = curves(ink)
    assert out.shape == (CELLS, CELL_WIDTH, CURVES)
    flat = [c for c in range(INPUT_WIDTH) if c != 200]
    row_two = np.concatenate(list(out[4:8]))  # the row's four cells side by side: (544, 3)
    assert np.allclose(row_two[flat], 10 / rows)  # top, centre and bottom all on the line
    # Column 200 (in the second cell, aVL): top 30 above, bottom 5 below, centre the mean of -5..30.
    assert row_two[200] == pytest.approx([30 / rows, 12.5 / rows, -5 / rows], abs=1e-6)
    assert not np.any(out[[0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]])  # the other rows hold no ink


def test_each_cell_is_its_own_lead_in_page_order():
    ink = np.zeros(INPUT_SHAPE, np.float32)
    for row, (first, last) in enumerate(band_rows(INPUT_HEIGHT)):
        for column in range(COLUMNS):
            # Cell (row, column) gets a line (row * 4 + column + 1) px above its band's middle.
            middle = first + (last - first) // 2
            ink[middle - (row * COLUMNS + column + 1), column * CELL_WIDTH : (column + 1) * CELL_WIDTH, 0] = 1
    out = curves(ink)
    rows = band_rows(INPUT_HEIGHT)[0][1] - band_rows(INPUT_HEIGHT)[0][0]
    assert np.allclose(out[:, :, 1], (np.arange(CELLS) + 1)[:, None] / rows)


def test_blank_paper_and_faint_grid_read_as_flat_zero():
    faint = np.full(INPUT_SHAPE, 0.2, np.float32)  # below the ink threshold everywhere
    assert not curves(np.zeros(INPUT_SHAPE, np.float32)).any() and not curves(faint).any()


def test_the_bands_sit_on_the_real_template_rows(shared_data):
    """On real printouts of every class each cell finds its trace in most pixel columns (thin flat
    stretches fade below the ink threshold at 320x544), and the trace's baseline (median centre) is
    near its band's middle: ROW_CENTRES match the template (bands 0.06 off would put it ~0.26 away)."""
    import cv2

    folders = sorted((shared_data / "mendeley-ecg").iterdir())
    for folder in folders:
        path = sorted(folder.glob("*.jpg"))[0]
        out = curves(preprocess(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)))
        inked = (out != 0).any(axis=2).mean(axis=1)  # share of each cell's columns with a trace
        assert inked.mean() > 0.7 and inked.min() > 0.4, (path.name, inked.round(2))
        baselines = np.median(out[:, :, 1], axis=1)
        assert np.abs(baselines).max() < 0.15, (path.name, baselines.round(2))


def test_a_straight_map_is_left_exactly_as_it_is():
    page = baselines_page()
    assert np.array_equal(np.asarray(deskew(page[None]))[0], page)


@pytest.mark.parametrize("degrees", [5.0, -5.0, 3.0, -7.5])
def test_a_map_turned_a_few_degrees_is_turned_back_before_the_bands_are_read(degrees):
    """Turned by 5 degrees, the traces leave their bands at both ends (544 px wide: +-24 px); the
    digitiser first turns the map back, so each cell reads nearly what the straight page reads."""
    page = baselines_page()
    straight, askew = curves(page), curves(turned(page, degrees))
    raw = np.asarray(read_bands(turned(page, degrees)[None]))  # the bands read without turning back
    assert np.abs(askew - straight).mean() < 0.01
    assert np.abs(askew - straight).mean() * 5 < np.abs(raw[0] - straight).mean()


def test_every_labelled_printout_of_the_split_reads_as_straight(shared_data, shipped_model):
    """`deskew` leaves all 393 labelled ECG printouts of train, validation and test exactly as they
    were: the diagnosis networks trained on them and the cross-validation kept in the repo, made before
    `deskew` existed, read the same curves as the digitiser does now."""
    from ecg_app.labels import ECG_CLASSES
    from ecg_app.training import dataset
    from ecg_app.training.dataset import model_roots

    info = json.loads((shipped_model / "model.json").read_text())
    samples = dataset.read_manifest(
        shipped_model / "split.csv", model_roots(info, {"mendeley": shared_data / "mendeley-ecg"})
    )
    printouts, images = dataset.load_images([s for s in samples if s.label in ECG_CLASSES])
    assert len(printouts) == 393
    for start in range(0, len(images), 32):
        pages = np.stack([preprocess(image) for image in images[start : start + 32]])
        assert np.array_equal(np.asarray(deskew(pages)), pages)


def test_printouts_photographed_askew_are_turned_back(shared_data):
    """The same printouts turned by 5 degrees either way (the robustness table's rotations) are turned
    back to nearly the straight page's curves: at least twice as close as the bands read unturned."""
    import cv2

    from ecg_app.training.robustness import DEGRADATIONS

    for folder in sorted((shared_data / "mendeley-ecg").iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(sorted(folder.glob("*.jpg"))[1])), cv2.COLOR_BGR2RGB)
        straight = curves(preprocess(rgb))
        for name in ("rotate +5 deg", "rotate -5 deg"):
            askew = preprocess(DEGRADATIONS[name](rgb))
            raw = np.asarray(read_bands(askew[None]))[0]
            assert np.abs(curves(askew) - straight).mean() * 2 < np.abs(raw - straight).mean(), (
                folder.name,
                name,
            )
