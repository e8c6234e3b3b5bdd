"""Write a model directory's networks as the ONNX graphs serving runs (`network_runtime`), with Keras 3's
`model.export(format="onnx")` (tf2onnx underneath; the `train` extra).

Each graph is recorded in model.json under "onnx" with the SHA-256 of the `.keras` file it came from:
a network fitted again afterwards leaves the export stale, and the classifier then reads the Keras file
(`classifier.Classifier`) until `ecg-app model export-onnx` is run again.

    ecg-app model export-onnx --model model
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ecg_app.serving.ecg_detector import DETECTOR_SHAPE
from ecg_app.serving.lead_diagnosis import CURVES_SHAPE
from ecg_app.serving.network_runtime import (
    CURVES_GRAPH,
    DETECTOR_GRAPH,
    ONNX_KEY,
    PAGE_GRAPH,
    PAGE_HEADS,
    READER_GRAPH,
    sha256,
)
from ecg_app.serving.preprocess import INPUT_SHAPE
from ecg_app.training import keras_networks
from ecg_app.training.model_files import record_in_model_info


def _export(model, input_shape: tuple[int, ...], path: Path) -> None:
    """One Keras model as an ONNX graph with a free batch size; called once first so that every layer is
    built (export needs it)."""
    model(np.zeros((1, *input_shape), np.float32))
    with tempfile.TemporaryDirectory() as scratch:
        model.export(str(Path(scratch) / path.name), format="onnx", verbose=False)
        os.replace(Path(scratch) / path.name, path)


def export_model_dir(model_dir: Path) -> dict:
    """Export the page network (with Grad-CAM's maps), the lead digitiser and curve readers when there is
    a diagnosis network, and the detector when there is one; record them in model.json. Returns the
    record."""
    model_dir = Path(model_dir)
    networks = keras_networks.KerasNetworks(model_dir)
    record: dict[str, dict] = {}

    def entry(name: str, graph: str, source: str | None) -> None:
        record[name] = {"file": graph, "source": source}
        if source:
            record[name]["source_sha256"] = sha256(model_dir / source)

    page = networks.network("page")
    _export(keras_networks.served_page(page), INPUT_SHAPE, model_dir / PAGE_GRAPH)
    entry("page", PAGE_GRAPH, keras_networks.PAGE_FILE)
    np.savez(
        model_dir / PAGE_HEADS,
        **{f"member_{k}/{name}": v for k, head in enumerate(networks.heads()) for name, v in head.items()},
    )
    entry("heads", PAGE_HEADS, keras_networks.PAGE_FILE)
    if networks.has_diagnosis:
        _export(keras_networks.lead_curves(INPUT_SHAPE), INPUT_SHAPE, model_dir / CURVES_GRAPH)
        entry("curves", CURVES_GRAPH, None)
        reader = keras_networks.curve_reader(networks.network("diagnosis"))
        _export(reader, CURVES_SHAPE, model_dir / READER_GRAPH)
        entry("reader", READER_GRAPH, keras_networks.DIAGNOSIS_FILE)
    if networks.has_detector:
        _export(networks.network("detector"), DETECTOR_SHAPE, model_dir / DETECTOR_GRAPH)
        entry("detector", DETECTOR_GRAPH, keras_networks.DETECTOR_FILE)

    record_in_model_info(model_dir, ONNX_KEY, record)
    return record
