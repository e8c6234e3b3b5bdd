"""Grad-CAM: which part of the printout drove the prediction, as a heatmap over the uploaded image.

For an ensemble the members' maps are averaged. The network only ever sees the trace area (the crop
in preprocessing), so the map is zero over the printed header and footer by construction; the overlay
puts it back at the trace area's place on the full picture. A model with a lead-reading diagnosis
network (`lead_diagnosis`) reads the ECG class from the leads' curves, which Grad-CAM of the page
network cannot show: `build_explainer` then averages Grad-CAM with `LeadMap`, the weight each lead
cell carried for the diagnosis network (gradient times input), painted over that lead's place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from ecg_app.classifier import ensemble_members
from ecg_app.labels import CLASSES, ECG_CLASSES
from ecg_app.lead_diagnosis import curve_readers
from ecg_app.preprocess import crop_box, ink_map, page_as_read

LAST_CONV = "s5b_relu"


class PageExplainer(ABC):
    """A map in [0, 1] over the ink map for one preprocessed input and class, laid over the upload."""

    @abstractmethod
    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray: ...

    def explain(self, rgb: np.ndarray, class_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(overlay RGB image, full-size map in [0, 1]) for one upload and the class to explain, both on
        the page as the networks read it (`preprocess.page_as_read`: a photographed page straightened,
        the trace area moved to its place)."""
        page = page_as_read(rgb)
        page_map = heatmap_on_page(page, self(ink_map(page), class_index))
        return overlay(page, page_map), page_map


class GradCam(PageExplainer):
    """Grad-CAM for a loaded model; the probe models are built once, then each map costs one pass."""

    def __init__(self, model):
        import keras
        import tensorflow as tf

        self.probes = [
            keras.Model(member.input, [member.get_layer(LAST_CONV).output, member.output])
            for member in ensemble_members(model)
        ]
        # One traced graph for all members: taped eagerly, op by op, a map took ~350 ms on 2 cores.
        self._maps = tf.function(self._member_maps)

    def _member_maps(self, x, class_index):
        import tensorflow as tf

        maps = []
        for probe in self.probes:
            with tf.GradientTape() as tape:
                features, probs = probe(x, training=False)
                score = tf.gather(probs, class_index, axis=1)
            weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
            maps.append(tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0])
        return tf.stack(maps)

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """Map in [0, 1] at the last conv layer's resolution for one preprocessed input."""
        import tensorflow as tf

        maps = self._maps(tf.constant(x[None], tf.float32), tf.constant(class_index, tf.int32))
        return _to_unit(np.mean(maps.numpy(), axis=0))


class LeadMap(PageExplainer):
    """How much each lead cell weighed in the diagnosis network's probability of an ECG class: |gradient
    x input| over the cell's curves, summed, averaged over the members, painted over the cell's band."""

    def __init__(self, diagnosis):
        import tensorflow as tf

        self.readers = curve_readers(diagnosis)
        self._weights = tf.function(self._weights_and_angle)  # one graph, as for `GradCam`

    def _weights_and_angle(self, x, class_index):
        import tensorflow as tf

        from ecg_app.lead_signals import deskew, read_bands, skew_angle

        angle = skew_angle(x)  # found once: the digitiser's turn and the painted map's turn back
        curves = read_bands(deskew(x, angle))
        total = 0.0
        for reader in self.readers:
            with tf.GradientTape() as tape:
                tape.watch(curves)
                score = tf.gather(reader(curves, training=False), class_index, axis=1)
            total += tf.reduce_sum(tf.abs(tape.gradient(score, curves) * curves), axis=(2, 3))[0]
        return total, angle[0]

    def _run(self, x: np.ndarray, class_index: int) -> tuple[np.ndarray, float]:
        import tensorflow as tf

        weights, angle = self._weights(tf.constant(x[None], tf.float32), tf.constant(class_index, tf.int32))
        return _to_unit(weights.numpy().astype(np.float64)), float(angle)

    def cell_weights(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """(CELLS,) weights in [0, 1], in `LeadSignals`' cell order (row by row, left to right)."""
        return self._run(x, class_index)[0]

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """The cells' weights painted over their bands, and turned with the page when `deskew` had to
        straighten it (the bands are cut from the straightened map)."""
        from ecg_app.lead_signals import COLUMNS, band_rows, turn

        weights, angle = self._run(x, class_index)
        height, width = x.shape[:2]
        cell_width = width // COLUMNS
        painted = np.zeros((height, width), np.float32)
        for row, (first, last) in enumerate(band_rows(height)):
            for column in range(COLUMNS):
                painted[first:last, column * cell_width : (column + 1) * cell_width] = weights[
                    row * COLUMNS + column
                ]
        return (
            np.asarray(turn(painted[None, :, :, None], np.array([-angle], np.float32)))[0, :, :, 0]
            if angle
            else painted
        )


class PageAndLeads(PageExplainer):
    """The page network's Grad-CAM and the diagnosis network's lead map, averaged at the ink map's size;
    Grad-CAM alone for Non-ECG, which the page network decides alone (`lead_diagnosis.combine`)."""

    def __init__(self, cam: GradCam, leads: LeadMap):
        self.cam, self.leads = cam, leads

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray:
        cam = cv2.resize(self.cam(x, class_index), (x.shape[1], x.shape[0]), interpolation=cv2.INTER_CUBIC)
        if CLASSES[class_index] not in ECG_CLASSES:
            return _to_unit(np.clip(cam, 0, 1))
        return _to_unit((np.clip(cam, 0, 1) + self.leads(x, class_index)) / 2)


def build_explainer(classifier) -> PageExplainer:
    """A classifier's explanation: Grad-CAM of its page network, averaged with the lead map when it has a
    diagnosis network (its ECG classes are then read from the leads). ValueError if the page network has
    no layer Grad-CAM can use."""
    cam = GradCam(classifier.model)
    return (
        PageAndLeads(cam, LeadMap(classifier.diagnosis))
        if getattr(classifier, "has_diagnosis", False)
        else cam
    )


def _to_unit(values: np.ndarray) -> np.ndarray:
    return values / values.max() if values.max() > 0 else values


def heatmap_on_page(rgb: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The map at full picture size: the trace area gets the upsampled map, the rest zero."""
    top, bottom, left, right = crop_box(*rgb.shape[:2])
    page = np.zeros(rgb.shape[:2], np.float32)
    page[top:bottom, left:right] = cv2.resize(
        cam.astype(np.float32), (right - left, bottom - top), interpolation=cv2.INTER_CUBIC
    )
    return np.clip(page, 0, 1)


def overlay(rgb: np.ndarray, page_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a JET-coloured map onto the picture, more where the map is stronger."""
    jet = cv2.applyColorMap((page_map * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(jet, cv2.COLOR_BGR2RGB)
    weight = (alpha * page_map)[:, :, None]
    return (rgb * (1 - weight) + colours * weight).astype(np.uint8)


def mass_inside(page_map: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of the map's total mass inside a (top, bottom, left, right) box."""
    total = float(page_map.sum(dtype=np.float64))
    top, bottom, left, right = box
    inside = float(page_map[top:bottom, left:right].sum(dtype=np.float64))
    return min(inside / total, 1.0) if total > 0 else 1.0
