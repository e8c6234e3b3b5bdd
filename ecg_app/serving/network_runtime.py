"""The served networks run by ONNX Runtime, so that serving needs no TensorFlow.

Why: TensorFlow is about 1 GB installed and `import tensorflow` alone takes seconds; a clinic runs the app
on a small machine or in a container. `onnx_export` (training side) writes each network of `model/` as an
ONNX graph and records which `.keras` file it came from (its SHA-256) in `model.json`; `Networks` is what
the classifier and the explanations ask of them, whichever runtime answers (`keras_networks` runs the
same graphs in Keras, for training and for the check that both agree).

What does not export stays in numpy: turning a page photographed askew (`lead_geometry.turn`), and the
gradients of Grad-CAM (`explain`), which for the page network's pooled linear head have a closed form.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_app.serving.ecg_detector import DETECTOR_FILE
from ecg_app.serving.lead_diagnosis import DIAGNOSIS_FILE
from ecg_app.serving.lead_geometry import turn

# What `onnx_export` writes into the model directory, by network; model.json's "onnx" lists them.
PAGE_GRAPH = "ecg_page.onnx"
CURVES_GRAPH = "ecg_lead_curves.onnx"
READER_GRAPH = "ecg_curve_reader.onnx"
DETECTOR_GRAPH = "ecg_detector.onnx"
PAGE_HEADS = "ecg_page_heads.npz"
ONNX_KEY = "onnx"
LAST_CONV = "s5b_relu"  # Grad-CAM's layer: the page network's last conv maps (`networks._default`)


@dataclass(frozen=True)
class PageOutputs:
    """One pass of the page network (an ensemble of M members) over N ink maps."""

    features: np.ndarray  # (N, F): each member's embedding (what its output layer reads), concatenated
    probs: np.ndarray  # (N, 5): the members' probabilities averaged
    # Grad-CAM's inputs (`explain.GradCam`), None for a network without its layers (`Networks.explains`):
    maps: np.ndarray | None = None  # (N, M, h, w, C): each member's last conv maps
    cells: np.ndarray | None = None  # (N, M, h, w, K): each member's page-cell branch before its ReLU
    member_probs: np.ndarray | None = None  # (N, M, 5)


class Networks(ABC):
    """The served networks behind one interface: the page network, the lead digitiser and curve readers
    (when the model has a diagnosis network) and the ECG detector (when it has one)."""

    @abstractmethod
    def page(self, ink: np.ndarray) -> PageOutputs: ...

    @abstractmethod
    def heads(self) -> list[dict[str, np.ndarray]]:
        """Per member, the weights Grad-CAM's closed form needs (`explain.GradCam`)."""

    @abstractmethod
    def angle_and_curves(self, ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) `lead_signals.skew_angle` and (N, CELLS, W // 4, 3) curves read from the maps as given."""

    @abstractmethod
    def read(self, curves: np.ndarray) -> np.ndarray:
        """(N, 4) ECG-class probabilities of the curve readers, averaged."""

    @abstractmethod
    def detect(self, pictures: np.ndarray) -> np.ndarray:
        """(N, 1) P(ECG) of the detector for (N, 224, 224, 3) pictures in [0, 1]."""

    def explains(self) -> bool:
        """Whether the page network has the layers Grad-CAM reads (`explain.GradCam`); an export always
        does (`onnx_export` writes only such networks)."""
        return True

    def digitise(self, ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(angles, curves) as `LeadSignals` reads them: a map whose traces run askew is turned by its
        angle (numpy: ONNX has no such op) and read again; a straight one is read as it is."""
        angles, curves = self.angle_and_curves(ink)
        askew = np.flatnonzero(angles != 0)
        if askew.size:
            curves = curves.copy()
            curves[askew] = self.angle_and_curves(turn(ink[askew], angles[askew]))[1]
        return angles, curves

    def diagnose(self, ink: np.ndarray) -> np.ndarray:
        """(N, 4) ECG-class probabilities read from the leads' curves."""
        return self.read(self.digitise(ink)[1])


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def onnx_is_current(model_dir: Path, info: dict) -> bool:
    """Whether model.json records an ONNX export whose every graph is present and was made from the
    `.keras` file now in the directory, and that covers every network there (a network fitted since,
    or added since, leaves it stale)."""
    graphs = info.get(ONNX_KEY) or {}
    if not graphs:
        return False
    # A network fitted after the export (a detector, a diagnosis network) has no graph yet.
    for name, source in (("reader", DIAGNOSIS_FILE), ("detector", DETECTOR_FILE)):
        if (model_dir / source).is_file() and name not in graphs:
            return False
    for entry in graphs.values():
        if not (model_dir / entry["file"]).is_file():
            return False
        source = entry.get("source")
        if source and not (
            (model_dir / source).is_file() and sha256(model_dir / source) == entry["source_sha256"]
        ):
            return False
    return True


class OnnxNetworks(Networks):
    """The exported graphs of a model directory, each session opened on first use (thread-safe)."""

    def __init__(self, model_dir: Path, info: dict):
        import onnxruntime

        self._ort = onnxruntime
        self.model_dir = Path(model_dir)
        self.graphs = {name: entry["file"] for name, entry in info[ONNX_KEY].items()}
        self._sessions: dict[str, object] = {}
        self._heads: list[dict[str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        session = self._sessions.get(name)
        if session is None:
            with self._lock:
                session = self._sessions.get(name)
                if session is None:
                    options = self._ort.SessionOptions()
                    options.log_severity_level = 3
                    session = self._ort.InferenceSession(
                        str(self.model_dir / self.graphs[name]), options, providers=["CPUExecutionProvider"]
                    )
                    self._sessions[name] = session
        return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(batch, np.float32)})

    def page(self, ink: np.ndarray) -> PageOutputs:
        return PageOutputs(*self._run("page", ink))

    def heads(self) -> list[dict[str, np.ndarray]]:
        if self._heads is None:
            heads: dict[str, dict[str, np.ndarray]] = {}  # "member_K/name" keys, written in member order
            with np.load(self.model_dir / PAGE_HEADS) as stored:
                for key in stored.files:
                    member, name = key.split("/")
                    heads.setdefault(member, {})[name] = stored[key]
            self._heads = list(heads.values())
        return self._heads

    def angle_and_curves(self, ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        angles, curves = self._run("curves", ink)  # the graph's two outputs
        return angles, curves

    def read(self, curves: np.ndarray) -> np.ndarray:
        return self._run("reader", curves)[0]

    def detect(self, pictures: np.ndarray) -> np.ndarray:
        return self._run("detector", pictures)[0]
