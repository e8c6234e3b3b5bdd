import cv2
import numpy as np
import pytest

from ecg_app.labels import CLASSES, NON_ECG
from ecg_app.serving.explain import GradCam, LeadMap, mass_inside
from ecg_app.serving.preprocess import crop_box
from ecg_app.training.keras_networks import LAST_CONV, KerasNetworks, ensemble_members
from ecg_app.training.networks import make_model


def page_cam(model) -> GradCam:
    return GradCam(KerasNetworks(page=model))


def lead_map_of(diagnosis) -> LeadMap:
    return LeadMap(KerasNetworks(diagnosis=diagnosis))


def test_map_lies_inside_the_trace_area_and_overlay_keeps_the_picture(printout):
    cam = page_cam(make_model("default"))
    picture, page_map = cam.explain(printout, class_index=0)
    assert picture.shape == printout.shape and picture.dtype == np.uint8
    assert page_map.shape == printout.shape[:2] and page_map.min() >= 0 and page_map.max() <= 1
    top, bottom, left, right = crop_box(*printout.shape[:2])
    assert page_map[:top].sum() == 0 and page_map[bottom:].sum() == 0  # header and footer get nothing
    assert mass_inside(page_map, (top, bottom, left, right)) == pytest.approx(1.0)
    # Where the map is zero the picture is unchanged.
    assert np.array_equal(picture[:top], printout[:top])


def test_ensemble_maps_average_members():
    from ecg_app.training.training import average_models

    members = [make_model("default") for _ in range(2)]
    ensemble = average_models(members)
    assert len(page_cam(ensemble).networks.heads()) == 2
    assert len(page_cam(members[0]).networks.heads()) == 1
    x = np.random.default_rng(0).random((320, 544, 1), dtype=np.float32)
    assert page_cam(ensemble)(x, 1).shape == page_cam(members[0])(x, 1).shape


@pytest.mark.parametrize("class_index", range(len(CLASSES)))
def test_grad_cam_in_closed_form_is_the_gradient_tapes(class_index):
    """`grad_cam_weights` (no gradients, so it runs on the ONNX graphs) against Grad-CAM as TensorFlow's
    gradient tape computes it, on an ensemble of two untrained members whose batch norms have been given
    statistics (so the page-cell branch's ReLU cuts somewhere)."""
    import keras
    import tensorflow as tf

    from ecg_app.serving.explain import _to_unit
    from ecg_app.training.training import average_models

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    members = [make_model("default") for _ in range(2)]
    for member in members:
        bn = member.get_layer("cells_bn")
        gamma, beta, _, _ = bn.get_weights()
        bn.set_weights(
            [
                gamma,
                rng.normal(0, 0.5, beta.shape),
                rng.normal(0, 0.2, beta.shape),
                rng.uniform(0.5, 2, beta.shape),
            ]
        )
    ensemble = average_models(members)
    x = rng.random((320, 544, 1), dtype=np.float32)
    maps = []
    for member in ensemble_members(ensemble):
        probe = keras.Model(member.input, [member.get_layer(LAST_CONV).output, member.output])
        with tf.GradientTape() as tape:
            features, probs = probe(tf.constant(x[None]), training=False)
            score = probs[:, class_index]
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
        maps.append(tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy())
    expected = _to_unit(np.mean(maps, axis=0))
    assert expected.max() == 1.0
    np.testing.assert_allclose(page_cam(ensemble)(x, class_index), expected, atol=1e-5)


def test_a_network_without_grad_cams_layers_is_refused():
    with pytest.raises(ValueError, match="s5b_relu"):
        page_cam(make_model("seed"))


def test_mass_inside():
    page = np.zeros((10, 10))
    page[0:2] = 1
    assert mass_inside(page, (0, 5, 0, 10)) == 1.0
    assert mass_inside(page, (5, 10, 0, 10)) == 0.0


def _ink_with_one_lead(row: int, column: int) -> np.ndarray:
    """An ink map (320x544) with a trace drawn in one lead cell only."""
    from ecg_app.serving.lead_geometry import COLUMNS, band_rows

    x = np.zeros((320, 544, 1), np.float32)
    first, last = band_rows(320)[row]
    width = 544 // COLUMNS
    cols = np.arange(column * width, (column + 1) * width)
    ys = ((first + last) // 2 + 8 * np.sin(cols / 5)).astype(int)
    x[ys, cols, 0] = 1.0
    x[ys + 1, cols, 0] = 1.0
    return x


def test_lead_map_lights_the_lead_that_carries_ink_and_nothing_else():
    import keras

    from ecg_app.serving.lead_geometry import COLUMNS, band_rows
    from ecg_app.training.networks import make_curve_reader, with_lead_signals

    keras.utils.set_random_seed(0)
    leads = lead_map_of(with_lead_signals(make_curve_reader(), make_curve_reader()))
    x = _ink_with_one_lead(row=1, column=2)
    weights = leads.cell_weights(x, class_index=0)
    assert weights.argmax() == 1 * COLUMNS + 2 and weights.max() == 1.0
    assert np.count_nonzero(weights) == 1  # blanking a blank cell changes nothing: no weight
    painted = leads(x, class_index=0)
    first, last = band_rows(320)[1]
    assert painted.shape == (320, 544) and painted.max() == 1.0
    assert np.all(painted[first:last, 272:408] == 1.0) and painted.sum() == (last - first) * 136


def test_a_diagnosis_network_saved_in_the_older_layout_is_refused_with_what_to_do():
    """Before the members shared one digitiser, each had its own in front of its reader; such a file
    has no curve reader at its top level, and the lead map says how to rebuild it instead of failing
    on the first explanation."""
    from ecg_app.training.networks import make_curve_reader, with_lead_signals
    from ecg_app.training.training import average_models

    older = average_models([with_lead_signals(make_curve_reader()) for _ in range(2)])
    with pytest.raises(ValueError, match="fit-diagnosis"):
        lead_map_of(older).cell_weights(_ink_with_one_lead(0, 0), 0)


@pytest.mark.parametrize("degrees", [5.0, -5.0])
def test_the_lead_map_of_a_page_photographed_askew_is_turned_with_the_page(degrees):
    """The digitiser reads the bands of the straightened page (`deskew`), so the lead map paints each
    cell's weight over that cell turned back to where it lies on the picture, not over the straight
    band: at 5 degrees the bands' ends move by about 24 px, a third of a band's height."""
    import keras

    from ecg_app.training.networks import make_curve_reader, with_lead_signals
    from tests.test_lead_signals import baselines_page, turned

    keras.utils.set_random_seed(0)
    leads = lead_map_of(with_lead_signals(make_curve_reader()))
    page = baselines_page()
    straight = leads(page, class_index=1) > 0
    askew = leads(turned(page, degrees), class_index=1) > 0
    expected = turned(straight[:, :, None].astype(np.float32), degrees)[:, :, 0] > 0.5

    def overlap(a, b):
        return (a & b).sum() / (a | b).sum()

    assert straight.mean() > 0.4  # all 16 cells carry ink and are painted
    # The bands cover most of the map, so even unturned bands overlap the turned ones by ~0.87.
    assert overlap(askew, expected) > 0.97 and overlap(askew, straight) < 0.9


def test_page_and_leads_averages_grad_cam_with_the_lead_map():
    from ecg_app.serving.explain import PageAndLeads
    from ecg_app.training.networks import make_curve_reader, with_lead_signals

    cam, leads = page_cam(make_model("default")), lead_map_of(with_lead_signals(make_curve_reader()))
    x = _ink_with_one_lead(row=0, column=0)
    both, lead_map = PageAndLeads(cam, leads)(x, 2), leads(x, 2)
    assert cam(x, 2).shape != both.shape == lead_map.shape  # Grad-CAM is resized to the ink map first
    assert both.max() == pytest.approx(1.0) and both.min() >= 0
    assert both[lead_map == 1].mean() > both[lead_map == 0].mean()  # the lead that mattered stands out
    # Non-ECG is the page network's call alone: its explanation is Grad-CAM's, at the ink map's size.
    non_ecg = CLASSES.index(NON_ECG)
    cam_only = np.clip(cv2.resize(cam(x, non_ecg), (544, 320), interpolation=cv2.INTER_CUBIC), 0, 1)
    expected = cam_only / cam_only.max() if cam_only.max() > 0 else cam_only
    np.testing.assert_allclose(PageAndLeads(cam, leads)(x, non_ecg), expected, atol=1e-6)


def test_a_photographed_page_is_explained_on_the_page_as_the_network_read_it(printout):
    """The map belongs to the straightened page (`page.straighten`), not to the photo around it: it is
    laid over that page, and its mass stays inside that page's trace area."""
    from ecg_app.serving.page import straighten
    from ecg_app.training.robustness import DEGRADATIONS

    photo = DEGRADATIONS["photographed on a desk"](printout)
    page = straighten(photo)
    assert page is not photo and page.shape != photo.shape
    picture, page_map = page_cam(make_model("default")).explain(photo, class_index=0)
    assert picture.shape == page.shape and page_map.shape == page.shape[:2]
    assert mass_inside(page_map, crop_box(*page.shape[:2])) == pytest.approx(1.0)
