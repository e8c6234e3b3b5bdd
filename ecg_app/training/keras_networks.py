"""The served networks in Keras: what training fits and evaluates before `onnx_export` writes them as the
ONNX graphs serving runs, and the reference those graphs are checked against.

`served_page`, `lead_curves` and `curve_reader` build the very Keras models that are exported, so both
runtimes answer `network_runtime.Networks` from one definition.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from ecg_app.serving.ecg_detector import DETECTOR_FILE
from ecg_app.serving.lead_diagnosis import DIAGNOSIS_FILE
from ecg_app.serving.network_runtime import LAST_CONV, Networks, OnnxNetworks, PageOutputs, onnx_is_current

PAGE_FILE = "ecg_cnn.keras"
FILES = {"page": PAGE_FILE, "diagnosis": DIAGNOSIS_FILE, "detector": DETECTOR_FILE}  # by network
CELLS_BRANCH = "cells"  # the page-cell branch read from them (`networks._default`)


def load(path: Path):
    """A saved network, with the project's custom layers registered (`LeadSignals`, `EachCell`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import ecg_app.training.networks  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(path, compile=False)


def ensemble_members(model) -> list:
    """The networks inside an averaged ensemble (`training.average_models`), or [model] for one network."""
    nested = [layer for layer in model.layers if layer.name.startswith("member_")]
    return nested or [model]


def explainable(model) -> bool:
    """Whether every member has the layers Grad-CAM reads (the `default` design; `seed` has not)."""
    names = {LAST_CONV, f"{CELLS_BRANCH}_bn", f"{CELLS_BRANCH}_conv"}
    return all(names <= {layer.name for layer in member.layers} for member in ensemble_members(model))


def served_page(model):
    """The page network with what serving reads of it, in one pass: (features, probabilities[, last conv
    maps, page-cell pre-activations, member probabilities] when `explainable`); see
    `network_runtime.PageOutputs`."""
    import keras
    from keras import ops

    explained = explainable(model)
    inputs = keras.Input(model.input.shape[1:], name="ink")
    parts = [
        keras.Model(
            member.input,
            [member.layers[-1].input, member.output]
            + (
                [member.get_layer(LAST_CONV).output, member.get_layer(f"{CELLS_BRANCH}_bn").output]
                if explained
                else []
            ),
        )(inputs)
        for member in ensemble_members(model)
    ]
    features, probs, *for_cam = (list(column) for column in zip(*parts, strict=True))
    return keras.Model(
        inputs,
        [
            keras.layers.Concatenate(name="features")(features) if len(features) > 1 else features[0],
            keras.layers.Average(name="probabilities")(probs) if len(probs) > 1 else probs[0],
            *(
                [ops.stack(maps, axis=1) for maps in for_cam] + [ops.stack(probs, axis=1)]
                if explained
                else []
            ),
        ],
        name="served_page",
    )


def page_heads(model) -> list[dict[str, np.ndarray]]:
    """Per member: its output layer's kernel, the page-cell branch's 1x1 kernel and batch-norm scale (what
    the closed-form Grad-CAM propagates through; `explain.GradCam`)."""
    heads = []
    for member in ensemble_members(model):
        bn = member.get_layer(f"{CELLS_BRANCH}_bn")
        gamma, _, _, variance = (np.asarray(w, np.float64) for w in bn.get_weights())
        heads.append(
            {
                "dense": np.asarray(member.layers[-1].get_weights()[0], np.float64),
                "cells_kernel": np.asarray(
                    member.get_layer(f"{CELLS_BRANCH}_conv").get_weights()[0][0, 0], np.float64
                ),
                "cells_scale": gamma / np.sqrt(variance + bn.epsilon),
            }
        )
    return heads


def lead_curves(input_shape: tuple[int, int, int]):
    """Ink map -> (skew angle, curves of the map as given): the digitiser without its turn, which
    ONNX cannot run (`network_runtime.Networks.digitise` turns in numpy)."""
    import keras

    from ecg_app.training.lead_signals import LeadCurves

    inputs = keras.Input(input_shape, name="ink")
    return keras.Model(inputs, LeadCurves(name="lead_curves")(inputs), name="lead_curves")


def curve_reader(diagnosis):
    """Curves -> the diagnosis network's curve readers, averaged (its ensemble's mean)."""
    import keras

    from ecg_app.serving.lead_diagnosis import CURVES_SHAPE
    from ecg_app.training.networks import curve_readers

    readers = curve_readers(diagnosis)
    curves = keras.Input(CURVES_SHAPE, name="curves")
    outputs = [reader(curves) for reader in readers]
    return keras.Model(
        curves, keras.layers.Average()(outputs) if len(outputs) > 1 else outputs[0], name="curve_reader"
    )


class KerasNetworks(Networks):
    """Keras networks, given or loaded from a model directory on first use (thread-safe)."""

    def __init__(self, model_dir: Path | None = None, *, page=None, diagnosis=None, detector=None):
        self.model_dir = None if model_dir is None else Path(model_dir)
        self._given = {"page": page, "diagnosis": diagnosis, "detector": detector}
        self._built: dict[str, object] = {}
        self._lock = threading.RLock()
        self.has_diagnosis, self.has_detector = (
            self._given[name] is not None
            or (self.model_dir is not None and (self.model_dir / FILES[name]).is_file())
            for name in ("diagnosis", "detector")
        )

    def network(self, name: str):
        """The saved network `name` (page, diagnosis or detector), loaded once."""
        if self._given[name] is None:
            with self._lock:
                if self._given[name] is None:
                    if self.model_dir is None:
                        raise ValueError(f"no {name} network was given")
                    self._given[name] = load(self.model_dir / FILES[name])
        return self._given[name]

    def _derived(self, name: str, build):
        if name not in self._built:
            with self._lock:
                if name not in self._built:
                    self._built[name] = build()
        return self._built[name]

    def page(self, ink: np.ndarray) -> PageOutputs:
        served = self._derived("page", lambda: served_page(self.network("page")))
        return PageOutputs(*(np.asarray(x) for x in served.predict_on_batch(ink)))

    def heads(self) -> list[dict[str, np.ndarray]]:
        return self._derived("heads", lambda: page_heads(self.network("page")))

    def explains(self) -> bool:
        return explainable(self.network("page"))

    def angle_and_curves(self, ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        digitiser = self._derived("curves", lambda: lead_curves(tuple(ink.shape[1:])))
        angles, curves = digitiser.predict_on_batch(ink)
        return np.asarray(angles), np.asarray(curves)

    def read(self, curves: np.ndarray) -> np.ndarray:
        reader = self._derived("reader", lambda: curve_reader(self.network("diagnosis")))
        return np.asarray(reader.predict_on_batch(curves))

    def detect(self, pictures: np.ndarray) -> np.ndarray:
        return np.asarray(self.network("detector").predict_on_batch(pictures))


def fitted_classifier(model_dir: Path | str):
    """The classifier of a model directory as training sees it: on its ONNX export when that is current
    (what the app serves), else on its Keras networks (fitted since, not yet exported)."""
    from ecg_app.serving.classifier import MODEL_INFO_FILE, Classifier

    model_dir = Path(model_dir)
    info = json.loads((model_dir / MODEL_INFO_FILE).read_text(encoding="utf-8"))
    current = onnx_is_current(model_dir, info)  # hashed once here, not again by the classifier
    networks = OnnxNetworks(model_dir, info) if current else KerasNetworks(model_dir)
    return Classifier(model_dir, networks=networks)
