"""The served networks as ONNX graphs (`network_runtime`, written by `onnx_export`) against the Keras
networks they came from: the same decisions, probabilities within 1e-4."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ecg_app.serving.classifier import Classifier
from ecg_app.serving.lead_geometry import turn
from ecg_app.serving.network_runtime import ONNX_KEY, OnnxNetworks, onnx_is_current
from ecg_app.training import dataset
from ecg_app.training.dataset import model_roots
from ecg_app.training.keras_networks import KerasNetworks, fitted_classifier
from tests.test_lead_signals import baselines_page, turned


def test_the_shipped_model_is_served_from_its_current_onnx_export(shipped_model):
    info = json.loads((shipped_model / "model.json").read_text())
    assert set(info[ONNX_KEY]) == {"page", "heads", "curves", "reader", "detector"}
    assert onnx_is_current(shipped_model, info)
    assert isinstance(Classifier(shipped_model).networks, OnnxNetworks)


def test_a_network_fitted_after_the_export_is_not_served_until_exported_again(shipped_model, tmp_path):
    """A `.keras` file that is no longer the one exported leaves the export stale: serving refuses the
    model with what to run, and training reads its Keras networks (`fitted_classifier`)."""
    model_dir = tmp_path / "model"
    shutil.copytree(shipped_model, model_dir, ignore=shutil.ignore_patterns("cross-validation"))
    assert isinstance(fitted_classifier(model_dir).networks, OnnxNetworks)
    with (model_dir / "ecg_detector.keras").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(RuntimeError, match="export-onnx"):
        Classifier(model_dir).predict(
            baselines_page()[:, :, 0].astype("uint8").repeat(3).reshape(320, 544, 3)
        )
    assert isinstance(fitted_classifier(model_dir).networks, KerasNetworks)
    (model_dir / "ecg_page.onnx").unlink()
    assert not onnx_is_current(model_dir, json.loads((model_dir / "model.json").read_text()))


def test_a_network_added_after_the_export_makes_it_stale(shipped_model, tmp_path):
    """An export made before the detector (or the diagnosis network) was fitted does not cover it."""
    model_dir = tmp_path / "model"
    shutil.copytree(shipped_model, model_dir, ignore=shutil.ignore_patterns("cross-validation"))
    info = json.loads((model_dir / "model.json").read_text())
    assert onnx_is_current(model_dir, info)
    for name in ("detector", "reader"):
        fewer = {**info, ONNX_KEY: {k: v for k, v in info[ONNX_KEY].items() if k != name}}
        assert not onnx_is_current(model_dir, fewer)


@pytest.mark.parametrize("degrees", [4.0, -6.5])
def test_a_page_photographed_askew_is_turned_and_read_as_keras_reads_it(shipped_model, degrees):
    """The turn ONNX cannot run is done in numpy (`lead_geometry.turn`): it matches TensorFlow's
    `affine_transform` and the digitised curves match the `LeadSignals` layer's."""
    from ecg_app.training.lead_signals import LeadSignals
    from ecg_app.training.lead_signals import turn as keras_turn

    page = turned(baselines_page(), degrees)[None]
    angle = np.array([3.5], np.float32)
    np.testing.assert_allclose(turn(page, angle), np.asarray(keras_turn(page, angle)), atol=1e-4)

    info = json.loads((shipped_model / "model.json").read_text())
    angles, curves = OnnxNetworks(shipped_model, info).digitise(page)
    assert angles[0] != 0
    np.testing.assert_allclose(curves, np.asarray(LeadSignals()(page)), atol=1e-4)


@pytest.mark.slow
def test_onnx_and_keras_make_the_same_decisions_on_the_validation_and_test_splits(shipped_model, shared_data):
    onnx, keras = Classifier(shipped_model), Classifier(shipped_model, networks=KerasNetworks(shipped_model))
    assert isinstance(onnx.networks, OnnxNetworks) and isinstance(keras.networks, KerasNetworks)
    samples = [
        s
        for s in dataset.read_manifest(shipped_model / "split.csv", model_roots(onnx.info))
        if s.split in ("val", "test")
    ]
    _, images = dataset.load_images(samples)
    served, reference = onnx.predict_batch(images), keras.predict_batch(images)
    assert len(served) == 268
    for a, b in zip(served, reference, strict=True):
        assert (a.label, a.status, a.warnings) == (b.label, b.status, b.warnings)
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
        assert (a.ecg_probability is None) == (b.ecg_probability is None)
        if a.ecg_probability is not None:
            assert a.ecg_probability == pytest.approx(b.ecg_probability, abs=1e-4)
        assert a.ecg_distance == pytest.approx(b.ecg_distance, rel=1e-4)
