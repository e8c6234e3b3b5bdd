import numpy as np
import pytest

from ecg_app.labels import CLASSES
from ecg_app.serving.preprocess import INPUT_SHAPE, crop_box
from ecg_app.training.augment import PAGE_COLOURS, augment, photographed, reprinted
from ecg_app.training.networks import make_model


@pytest.mark.parametrize("name", ["default", "seed"])
def test_architectures_map_input_to_five_probabilities(name):
    model = make_model(name)
    assert tuple(model.input_shape[1:]) == INPUT_SHAPE
    probs = np.asarray(model(np.random.default_rng(0).random((2, *INPUT_SHAPE), dtype=np.float32)))
    assert probs.shape == (2, len(CLASSES))
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_seed_keeps_the_reference_design():
    model = make_model("seed")
    names = [layer.__class__.__name__ for layer in model.layers]
    assert names.count("Conv2D") == 3 and "Flatten" in names
    assert model.get_layer("to_224").output.shape[1:3] == (224, 224)
    assert [layer.units for layer in model.layers if layer.__class__.__name__ == "Dense"] == [256, 5]


def test_a_saved_diagnosis_network_loads_in_a_fresh_process(tmp_path):
    """Its custom layers (`LeadSignals`, `EachCell`) must be registered before loading, also where
    nothing imported the networks; and it survives the save (safe mode: no lambdas)."""
    import subprocess
    import sys

    from ecg_app.training.networks import make_curve_reader, with_lead_signals

    network = with_lead_signals(make_curve_reader(serving=True))
    network.save(tmp_path / "ecg_diagnosis.keras")
    code = "import sys; from ecg_app.training.keras_networks import load; print(load(sys.argv[1]).name)"
    command = [sys.executable, "-c", code, str(tmp_path / "ecg_diagnosis.keras")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("lead_diagnosis")


def test_default_model_is_small_enough_to_ship():
    assert make_model("default").count_params() * 4 < 8 * 1024 * 1024


def test_unknown_architecture():
    with pytest.raises(ValueError, match="seed"):
        make_model("resnet")


def test_augment_is_reproducible_and_changes_the_picture(printout):
    a = augment(printout, np.random.default_rng(5))
    b = augment(printout, np.random.default_rng(5))
    c = augment(printout, np.random.default_rng(6))
    assert a.shape == printout.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, printout)


def test_augment_never_mirrors(printout):
    """Leads must stay where they are: the trace on the left half stays mostly on the left half."""
    marked = printout.copy()
    marked[300:500, 80:300] = 0
    out = augment(marked, np.random.default_rng(0), strength=1.0)
    left, right = out[:, : out.shape[1] // 2].mean(), out[:, out.shape[1] // 2 :].mean()
    assert left < right


def test_photographed_puts_the_whole_page_inside_the_scene():
    """A bright page on a dark scene: the frame has the requested size, the page covers the requested
    share of it (its corners moved a little), and the scene shows on every side around it."""
    page, scene = np.full((300, 400, 3), 250, np.uint8), np.full((90, 120, 3), 20, np.uint8)
    rng = np.random.default_rng(3)
    photo = photographed(page, scene, rng, frame=(384, 512), cover=(0.6, 0.6), slant=0.02)
    assert photo.shape == (384, 512, 3) and photo.dtype == np.uint8
    bright = photo.mean(axis=2) > 120
    ys, xs = np.nonzero(bright)
    # 0.6 of the tighter side (384 rows, as the page is 3:4 like the frame), give or take the slant.
    assert 0.55 * 384 < ys.max() - ys.min() < 0.65 * 384 and 0.55 * 512 < xs.max() - xs.min() < 0.65 * 512
    assert ys.min() > 0 and xs.min() > 0 and ys.max() < 383 and xs.max() < 511
    assert not bright[:5].any() and not bright[:, :5].any()  # the scene, darkened by the light at most
    again = photographed(
        page, scene, np.random.default_rng(3), frame=(384, 512), cover=(0.6, 0.6), slant=0.02
    )
    assert np.array_equal(again, photo)


@pytest.mark.parametrize("colour", list(PAGE_COLOURS))
def test_reprinted_keeps_the_trace_area_and_changes_the_page_around_it(printout, colour):
    page = reprinted(printout, np.random.default_rng(5), colour)
    assert page.shape == printout.shape and page.dtype == np.uint8
    top, bottom, left, right = crop_box(*printout.shape[:2])
    trace = printout[top:bottom, left:right]
    # The trace area is pasted unchanged, moved by at most 1% of the page each way.
    shifts = [
        (dy, dx)
        for dy in range(-8, 9)
        for dx in range(-12, 13)
        if np.array_equal(page[top + dy : bottom + dy, left + dx : right + dx], trace)
    ]
    assert len(shifts) == 1
    # The page around it has the template's colour; the reference printout's header text is gone.
    assert tuple(page[2, -3]) == PAGE_COLOURS[colour]
    assert not np.array_equal(page[:top], printout[:top])
    assert np.array_equal(reprinted(printout, np.random.default_rng(5), colour), page)
