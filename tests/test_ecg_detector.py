"""The whole-picture ECG detector: its input, its training batches, and its say in the Non-ECG call."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import ecg_app
from ecg_app.labels import CLASSES, NON_ECG
from ecg_app.serving.classifier import (
    DETECTOR_DISAGREES,
    GATE_DISAGREES,
    STATUS_NEEDS_REVIEW,
    STATUS_OK,
    Classifier,
    decide,
)
from ecg_app.serving.ecg_detector import (
    DETECTOR_FILE,
    DETECTOR_SHAPE,
    detector_batch,
    detector_input,
    ecg_probability,
    views,
)
from ecg_app.serving.intake import load_image
from ecg_app.serving.page import straighten
from ecg_app.training import dataset
from ecg_app.training.dataset import model_roots
from ecg_app.training.detector_fit import CHART_DRAWS, DetectorBatches, DetectorConfig, make_detector
from ecg_app.training.keras_networks import KerasNetworks
from ecg_app.training.robustness import DEGRADATIONS
from tests.conftest import synthetic_printout

ON_A_DESK = DEGRADATIONS["photographed on a desk"]

EXAMPLES = Path(ecg_app.__file__).parent / "examples"


def probs(**values: float) -> np.ndarray:
    return np.array([values.get(c, 0.0) for c in CLASSES])


def test_detector_input_keeps_the_whole_picture_and_its_colour():
    page = np.full((300, 1000, 3), 255, np.uint8)
    cv2.line(page, (0, 150), (999, 150), (255, 0, 0), 6)  # a red trace: invisible to the brightest channel
    cv2.rectangle(page, (0, 0), (60, 60), (0, 0, 0), -1)  # a corner mark the template crop would drop
    x = detector_input(page)
    assert x.shape == DETECTOR_SHAPE and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    row = x[DETECTOR_SHAPE[0] // 2]
    assert row[:, 0].min() > 0.9 and row[:, 1].max() < 0.5  # red stays red
    assert x[:5, :5].max() < 0.05  # the corner is there
    # Resolution does not matter: an upscaled copy gives (almost) the same input.
    upscaled = cv2.resize(page, (3000, 900), interpolation=cv2.INTER_CUBIC)
    assert np.abs(detector_input(upscaled) - x).mean() < 0.01
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector_input(page[:, :, 0])


def test_detector_batch_and_network_shapes():
    images = [synthetic_printout(seed=1), synthetic_printout(600, 400, seed=2)]
    batch = detector_batch(images)
    assert batch.shape == (2, *DETECTOR_SHAPE)
    assert detector_batch([]).shape == (0, *DETECTOR_SHAPE)
    model = make_detector()
    p = np.asarray(model.predict_on_batch(batch))
    assert p.shape == (2, 1) and ((p >= 0) & (p <= 1)).all()
    assert model.count_params() < 250_000  # a few ms per picture on a CPU


@pytest.mark.parametrize(
    ("p", "distance", "p_ecg", "label", "status", "warnings"),
    [
        # Softmax, gate and detector all say not an ECG: Non-ECG.
        (probs(NonECG=0.9, Normal=0.1), 0.8, 0.2, NON_ECG, STATUS_OK, ()),
        # Only the detector recognises an ECG: the best ECG class, reviewed, with the detector's reason.
        (probs(NonECG=0.9, AHB=0.1), 0.8, 0.99, "AHB", STATUS_NEEDS_REVIEW, (DETECTOR_DISAGREES,)),
        # Gate and detector both recognise an ECG: the gate's reason (the picture resembles training ECGs).
        (probs(NonECG=0.7, HMI=0.2, AHB=0.1), 0.2, 0.99, "HMI", STATUS_NEEDS_REVIEW, (GATE_DISAGREES,)),
        # An ECG class: the detector's opinion changes nothing.
        (probs(MI=0.9, NonECG=0.1), 0.2, 0.1, "MI", STATUS_OK, ()),
    ],
)
def test_decide_needs_every_opinion_to_call_non_ecg(p, distance, p_ecg, label, status, warnings):
    prediction = decide(p, "v", 0.4, distance, 0.5, p_ecg, 0.9)
    assert (prediction.label, prediction.status, prediction.warnings) == (label, status, warnings)
    assert prediction.to_dict()["ecg_probability"] == p_ecg


def test_decide_without_a_detector_is_the_gates_decision():
    p = probs(NonECG=0.9, AHB=0.1)
    assert decide(p, "v", 0.4, 0.8, 0.5, 0.99, None).label == NON_ECG
    assert decide(p, "v", 0.4, 0.8, 0.5).to_dict()["ecg_probability"] is None


def test_batches_draw_a_fixed_number_per_source_and_label_them():
    config = DetectorConfig(draws=(("template", 6), ("other", 2), ("render", 4), ("non_ecg", 12)))
    sources = ["template"] * 3 + ["render"] * 2 + ["non_ecg"] * 5  # no other-layout ECGs: skipped
    images = [np.full((40, 60, 3), 10 * i, np.uint8) for i in range(len(sources))]
    batches = DetectorBatches(images, sources, config, seed=7)
    picked = [sources[i] for i in batches.picks]
    assert picked.count("template") == 6 and picked.count("render") == 4 and picked.count("non_ecg") == 12
    assert all(t == (s != "non_ecg") for s, t in zip(picked, batches.targets, strict=True))
    x, y = batches[0]
    assert x.shape == (min(len(picked), 32), *DETECTOR_SHAPE) and y.shape == (len(x),)
    again = DetectorBatches(images, sources, config, seed=7)
    assert np.array_equal(again.picks, batches.picks) and np.array_equal(again[0][0], x)  # reproducible
    with pytest.raises(ValueError, match="both ECGs and non-ECG"):
        DetectorBatches(images[:5], sources[:5], config, seed=7)


def test_charts_are_drawn_as_non_ecgs_when_there_are_any():
    """`fit-detector --charts`: rendered line charts are a negative source of their own, drawn
    CHART_DRAWS times an epoch; without charts the draws are the recipe's as before."""
    config = DetectorConfig(draws=(("template", 6), ("non_ecg", 6)))
    sources = ["template"] * 3 + ["non_ecg"] * 3 + ["chart"] * 2
    images = [np.full((40, 60, 3), 10 * i, np.uint8) for i in range(len(sources))]
    batches = DetectorBatches(images, sources, config, seed=3)
    picked = [sources[i] for i in batches.picks]
    assert picked.count("chart") == CHART_DRAWS and picked.count("template") == 6
    assert all(t == (s == "template") for s, t in zip(picked, batches.targets, strict=True))
    without = DetectorBatches(images[:6], sources[:6], config, seed=3)
    assert len(without.picks) == 12 and "chart" not in {sources[i] for i in without.picks}
    only_charts = ["template"] * 3 + ["chart"] * 5
    assert (
        DetectorBatches(images, only_charts, config, seed=3).targets.sum() == 6
    )  # charts alone are negatives


@pytest.fixture
def shipped_detector(shipped_model) -> Classifier:
    classifier = Classifier(shipped_model)
    if classifier.detector_threshold is None:
        pytest.skip("the shipped model has no ECG detector")
    return classifier


def test_shipped_detector_is_recorded_and_separates_the_examples(shipped_detector, shipped_model):
    info = json.loads((shipped_model / "model.json").read_text())["ecg_detector"]
    assert info["file"] == DETECTOR_FILE and shipped_detector.detector_threshold == info["threshold"]
    assert info["validation"]["non_ecgs_at_or_above_threshold"] == 0  # chosen so on validation
    ecgs = [load_image(path) for path in sorted(EXAMPLES.glob("*.jpg")) if "coffee" not in path.name]
    photo = load_image(EXAMPLES / "coffee.jpg")
    p_ecg = shipped_detector.detect([*ecgs, photo])
    assert (p_ecg[:-1] >= shipped_detector.detector_threshold).all()
    assert p_ecg[-1] < shipped_detector.detector_threshold
    predictions = shipped_detector.predict_batch([*ecgs, photo])
    # Consulted only where the softmax says Non-ECG, the one case its opinion can change the result.
    assert [p.ecg_probability for p in predictions[:-1]] == [None] * len(ecgs)
    assert predictions[-1].ecg_probability == pytest.approx(p_ecg[-1], abs=1e-6)
    assert predictions[-1].label == NON_ECG


def test_shipped_detector_rescues_a_blurred_printout_the_classifier_rejects(shipped_detector):
    """A heavily blurred real printout: the softmax says Non-ECG and the gate finds it far from the
    training ECGs, but the detector recognises an ECG, so it is shown as an ECG class for review."""
    blurred = cv2.GaussianBlur(load_image(EXAMPLES / "MI(19).jpg"), (0, 0), 4)
    features, calibrated = shipped_detector.embed_proba([blurred])
    assert CLASSES[int(calibrated[0].argmax())] == NON_ECG
    assert shipped_detector.gate.distance(features)[0] > shipped_detector.gate.threshold_
    (prediction,) = shipped_detector.predict_batch([blurred])
    assert prediction.ecg_probability >= shipped_detector.detector_threshold
    assert prediction.label != NON_ECG and prediction.status == STATUS_NEEDS_REVIEW
    assert prediction.warnings == (DETECTOR_DISAGREES,)


def test_a_scan_is_one_view_and_a_photo_of_a_sheet_two():
    """The detector reads a scan as it is, and a photographed sheet also as the sheet straightened."""
    scan = synthetic_printout(seed=2)
    (only,) = views(scan)
    assert only is scan
    photo = ON_A_DESK(scan)
    whole, sheet = views(photo)
    assert whole is photo and np.array_equal(sheet, straighten(photo))
    assert abs(sheet.shape[1] / sheet.shape[0] - scan.shape[1] / scan.shape[0]) < 0.05


def test_ecg_probability_is_the_lowest_call_over_each_pictures_views(shipped_detector):
    """Batched across pictures with one and two views, each picture gets the lower of its own views'
    calls, as `Classifier.detect` serves it."""
    pictures = [
        ON_A_DESK(load_image(EXAMPLES / "MI(19).jpg")),
        load_image(EXAMPLES / "coffee.jpg"),
        ON_A_DESK(synthetic_printout(seed=3)),
    ]
    network = KerasNetworks(shipped_detector.model_dir).network("detector")
    expected = [
        min(float(np.asarray(network.predict_on_batch(detector_batch([view])))[0, 0]) for view in views(p))
        for p in pictures
    ]
    assert [len(views(p)) for p in pictures] == [2, 1, 2]
    for batch_size in (1, 2, 16):
        assert ecg_probability(network.predict_on_batch, pictures, batch_size) == pytest.approx(
            expected, abs=1e-5
        )
    assert shipped_detector.detect(pictures) == pytest.approx(expected, abs=1e-5)
    assert ecg_probability(network.predict_on_batch, []).shape == (0,)


def test_no_validation_non_ecg_photographed_on_a_desk_is_taken_for_an_ecg(shipped_detector, shared_data):
    """Charts and text pages printed and photographed on a desk: the whole photo looks like a printout
    to the detector, the straightened sheet does not, and both must say ECG (docs/experiments.md, "The
    detector reads the sheet too"). The whole photo alone takes some of them for ECGs."""
    samples = dataset.read_manifest(
        shipped_detector.model_dir / "split.csv", model_roots(shipped_detector.info)
    )
    _, images = dataset.load_images([s for s in samples if s.split == "val" and s.label == NON_ECG])
    photos = [ON_A_DESK(image) for image in images]
    threshold = shipped_detector.detector_threshold
    assert (shipped_detector.detect(photos) < threshold).all()
    detector = KerasNetworks(shipped_detector.model_dir).network("detector")
    whole_only = np.asarray(detector.predict(detector_batch(photos), verbose=0))[:, 0]
    assert (whole_only >= threshold).sum() >= 2
