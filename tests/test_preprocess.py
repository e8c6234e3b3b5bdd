import cv2
import numpy as np
import pytest

from ecg_app.serving.preprocess import INPUT_SHAPE, crop_box, preprocess, preprocess_batch
from tests.conftest import synthetic_printout


def test_output_shape_range_and_dtype(printout):
    x = preprocess(printout)
    assert x.shape == INPUT_SHAPE and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() > 0.5  # the traces are there


def test_header_and_footer_never_reach_the_model(printout):
    """The shortcut guard: anything printed outside the trace area (ID, date, heart rate, machine
    settings) must not change the model input at all."""
    top, bottom, _, _ = crop_box(*printout.shape[:2])
    altered = printout.copy()
    altered[:top] = np.random.default_rng(1).integers(0, 255, altered[:top].shape, dtype=np.uint8)
    altered[bottom:] = 0
    assert np.array_equal(preprocess(printout), preprocess(altered))


def test_inside_trace_area_does_change_the_input(printout):
    top, bottom, left, right = crop_box(*printout.shape[:2])
    altered = printout.copy()
    altered[(top + bottom) // 2 - 20 : (top + bottom) // 2 + 20, left:right] = 0
    assert not np.array_equal(preprocess(printout), preprocess(altered))


@pytest.mark.parametrize(("scale", "min_corr"), [(0.5, 0.8), (2.0, 0.9), (2213 / 1106, 0.9)])
def test_independent_of_input_resolution(scale, min_corr):
    """Users upload full 2213x1572 scans, screenshots and photos: the same page at another size
    must give (nearly) the same input; below the input size some detail is lost."""
    page = synthetic_printout()
    resized = cv2.resize(
        page, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    )
    a, b = preprocess(page), preprocess(resized)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > min_corr


def test_pink_grid_is_suppressed_but_black_trace_kept():
    page = np.full((786, 1106, 3), 255, np.uint8)
    page[:, ::10] = (240, 190, 190)  # pink grid
    page[400:403, 100:1000] = 0  # a black horizontal trace
    x = preprocess(page)[:, :, 0]
    trace_rows = x[x.shape[0] * (400 - 141) // (759 - 141) - 3 : x.shape[0] * (400 - 141) // (759 - 141) + 4]
    assert trace_rows.max() > 0.6
    assert np.percentile(x, 90) < 0.1  # grid fades to (almost) nothing


def test_uneven_lighting_is_normalised(printout):
    ramp = np.linspace(1.0, 0.55, printout.shape[1])[None, :, None]
    shaded = (printout * ramp).astype(np.uint8)
    a, b = preprocess(printout), preprocess(shaded)
    assert np.abs(a - b).mean() < 0.02


def test_rejects_wrong_array():
    with pytest.raises(ValueError):
        preprocess(np.zeros((100, 100), np.uint8))


def test_batch_stacks(printout):
    assert preprocess_batch([printout, printout]).shape == (2, *INPUT_SHAPE)
    assert preprocess_batch([]).shape == (0, *INPUT_SHAPE)
