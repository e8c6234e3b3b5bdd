"""Grad-CAM: which part of the printout drove the prediction, as a heatmap over the uploaded image.

For an ensemble the members' maps are averaged. The network only ever sees the trace area (the crop
in preprocessing), so the map is zero over the printed header and footer by construction; the overlay
puts it back at the trace area's place on the full picture.
"""

from __future__ import annotations

import cv2
import numpy as np

from ecg_app.classifier import ensemble_members
from ecg_app.preprocess import crop_box, preprocess

LAST_CONV = "s5b_relu"


class GradCam:
    """Grad-CAM for a loaded model; the probe models are built once, then each map costs one pass."""

    def __init__(self, model):
        import keras

        self.probes = [
            keras.Model(member.input, [member.get_layer(LAST_CONV).output, member.output])
            for member in ensemble_members(model)
        ]

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """Map in [0, 1] at the last conv layer's resolution for one preprocessed input."""
        import tensorflow as tf

        maps = []
        for probe in self.probes:
            with tf.GradientTape() as tape:
                features, probs = probe(x[None], training=False)
                score = probs[:, class_index]
            weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
            maps.append(tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy())
        cam = np.mean(maps, axis=0)
        return cam / cam.max() if cam.max() > 0 else cam

    def explain(self, rgb: np.ndarray, class_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(overlay RGB image, full-size map in [0, 1]) for one upload and the class to explain."""
        page_map = heatmap_on_page(rgb, self(preprocess(rgb), class_index))
        return overlay(rgb, page_map), page_map


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
