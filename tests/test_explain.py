import numpy as np
import pytest

from ecg_app.explain import GradCam, mass_inside
from ecg_app.networks import make_model
from ecg_app.preprocess import crop_box


def test_map_lies_inside_the_trace_area_and_overlay_keeps_the_picture(printout):
    cam = GradCam(make_model("default"))
    picture, page_map = cam.explain(printout, class_index=0)
    assert picture.shape == printout.shape and picture.dtype == np.uint8
    assert page_map.shape == printout.shape[:2] and page_map.min() >= 0 and page_map.max() <= 1
    top, bottom, left, right = crop_box(*printout.shape[:2])
    assert page_map[:top].sum() == 0 and page_map[bottom:].sum() == 0  # header and footer get nothing
    assert mass_inside(page_map, (top, bottom, left, right)) == pytest.approx(1.0)
    # Where the map is zero the picture is unchanged.
    assert np.array_equal(picture[:top], printout[:top])


def test_ensemble_maps_average_members(printout):

    from ecg_app.training import average_models

    members = [make_model("default") for _ in range(2)]
    ensemble = average_models(members)
    assert len(GradCam(ensemble).probes) == 2
    assert len(GradCam(members[0]).probes) == 1
    x = np.random.default_rng(0).random((320, 544, 1), dtype=np.float32)
    assert GradCam(ensemble)(x, 1).shape == GradCam(members[0])(x, 1).shape


def test_mass_inside():
    page = np.zeros((10, 10))
    page[0:2] = 1
    assert mass_inside(page, (0, 5, 0, 10)) == 1.0
    assert mass_inside(page, (5, 10, 0, 10)) == 0.0
