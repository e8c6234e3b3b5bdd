"""Grad-CAM: which part of the printout drove the prediction, as a heatmap over the uploaded image.

For an ensemble the members' maps are averaged. The network only ever sees the trace area (the crop
in preprocessing), so the map is zero over the printed header and footer by construction; the overlay
puts it back at the trace area's place on the full picture. A model with a lead-reading diagnosis
network (`lead_diagnosis`) reads the ECG class from the leads' curves, which Grad-CAM of the page
network cannot show: `build_explainer` then averages Grad-CAM with `LeadMap`, the weight each lead
cell carried for the diagnosis network (occlusion), painted over that lead's place.

Both need forward passes only, so they run on the ONNX graphs serving uses (`network_runtime`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from ecg_app.labels import CLASSES, ECG_CLASSES
from ecg_app.serving.lead_geometry import CELLS, COLUMNS, band_rows, turn
from ecg_app.serving.network_runtime import LAST_CONV, Networks
from ecg_app.serving.preprocess import crop_box, ink_map, page_as_read


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


def grad_cam_weights(
    head: dict[str, np.ndarray], probs: np.ndarray, cells: np.ndarray, class_index: int
) -> np.ndarray:
    """Grad-CAM's channel weights (Selvaraju et al. 2017): the gradient of one member's probability of
    the class with respect to its last conv maps A (h, w, C), averaged over positions; in closed form,
    so that no gradient (and no TensorFlow) is needed when serving.

    The page network's head (`networks._default`) reads A three ways: global average pooling, global
    max pooling and a page-cell branch (1x1 conv, batch norm, ReLU, 2x4 average pooling), concatenated
    into a softmax layer with kernel W. With p the member's probabilities, the gradient reaching the
    concatenated features is g = p_c (W[:, c] - W p). Averaged over positions, the average pool gives
    back g_avg / hw and the max pool g_max / hw (its gradient reaches one position per channel, or is
    shared among ties); the page-cell branch spreads each cell's gradient over its 2x4 positions, keeps
    it where the branch's pre-activation `cells` (h, w, K) is positive, and returns it through the batch
    norm's scale and the 1x1 kernel.
    """
    dense = head["dense"]
    h, w, k = cells.shape
    channels = head["cells_kernel"].shape[0]
    g = probs[class_index] * (dense[:, class_index] - dense @ probs)
    g_avg, g_max, g_cells = g[:channels], g[channels : 2 * channels], g[2 * channels :]
    grid = g_cells.reshape(h // 2, w // 4, k)
    spread = np.zeros((h, w, k))
    spread[: 2 * (h // 2), : 4 * (w // 4)] = np.repeat(np.repeat(grid, 2, axis=0), 4, axis=1) / 8
    through_cells = ((spread * (cells > 0)) * head["cells_scale"]) @ head["cells_kernel"].T
    return (g_avg + g_max) / (h * w) + through_cells.mean(axis=(0, 1))


class GradCam(PageExplainer):
    """Grad-CAM of the page network: each member's last conv maps weighted by `grad_cam_weights`, the
    positive part, averaged over the members; one forward pass a map."""

    def __init__(self, networks: Networks):
        if not networks.explains():
            raise ValueError(f"the page network has no {LAST_CONV} layer and page-cell branch to read")
        self.networks = networks

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """Map in [0, 1] at the last conv layer's resolution for one preprocessed input."""
        out = self.networks.page(x[None])
        maps = [
            np.maximum(
                out.maps[0, m]
                @ grad_cam_weights(
                    head, out.member_probs[0, m].astype(np.float64), out.cells[0, m], class_index
                ),
                0,
            )
            for m, head in enumerate(self.networks.heads())
        ]
        return _to_unit(np.mean(maps, axis=0))


class LeadMap(PageExplainer):
    """How much each lead cell weighed in the diagnosis network's probability of an ECG class: by
    occlusion (Zeiler & Fergus 2014), the change in that probability when the cell's curves are blanked
    (read as a cell without ink), painted over the cell's band. A cell without ink weighs nothing."""

    def __init__(self, networks: Networks):
        self.networks = networks

    def _run(self, x: np.ndarray, class_index: int) -> tuple[np.ndarray, float]:
        angles, curves = self.networks.digitise(x[None])
        variants = np.repeat(curves, CELLS + 1, axis=0)
        for cell in range(CELLS):
            variants[cell + 1, cell] = 0.0
        probs = np.asarray(self.networks.read(variants), np.float64)[:, class_index]
        weights = np.abs(probs[1:] - probs[0])
        weights[~curves[0].any(axis=(1, 2))] = 0.0
        return _to_unit(weights), float(angles[0])

    def cell_weights(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """(CELLS,) weights in [0, 1], in `LeadSignals`' cell order (row by row, left to right)."""
        return self._run(x, class_index)[0]

    def __call__(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """The cells' weights painted over their bands, and turned with the page when `deskew` had to
        straighten it (the bands are cut from the straightened map)."""
        weights, angle = self._run(x, class_index)
        height, width = x.shape[:2]
        cell_width = width // COLUMNS
        painted = np.zeros((height, width), np.float32)
        for row, (first, last) in enumerate(band_rows(height)):
            for column in range(COLUMNS):
                painted[first:last, column * cell_width : (column + 1) * cell_width] = weights[
                    row * COLUMNS + column
                ]
        return turn(painted[None, :, :, None], np.array([-angle]))[0, :, :, 0] if angle else painted


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
    diagnosis network (its ECG classes are then read from the leads)."""
    cam = GradCam(classifier.networks)
    return (
        PageAndLeads(cam, LeadMap(classifier.networks))
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
