"""Honest metrics on the held-out split: `ecg-app model evaluate` writes model/metrics.json (and
`score_images` scores any labelled collection the same way, for `ecg-app model validate`).

Everything is computed on the test split of the manifest written at training time (duplicate groups
never cross splits), with bootstrap 95% intervals because the split is small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_app.labels import CLASSES, NON_ECG
from ecg_app.serving.classifier import STATUS_OK, UNFAMILIAR_IMAGE, Classifier
from ecg_app.serving.explain import build_explainer, mass_inside
from ecg_app.serving.mi_flag import INFO_KEY as MI_FLAG_KEY
from ecg_app.serving.preprocess import crop_box
from ecg_app.training import dataset
from ecg_app.training.cross_validation import out_of_fold_summary
from ecg_app.training.dataset import model_roots
from ecg_app.training.keras_networks import fitted_classifier
from ecg_app.training.metrics import compute_metrics
from ecg_app.training.mi_flag_fit import caught
from ecg_app.training.robustness import robustness_table

METRICS_FILE = "metrics.json"


def _rate(flags: np.ndarray) -> dict:
    return {"n": int(len(flags)), "rate": float(np.mean(flags)) if len(flags) else None}


def gate_report(
    predictions, gate_only, probs: np.ndarray, labelled: np.ndarray, y_true: np.ndarray, classifier
) -> dict:
    """The ECG/non-ECG decision with the softmax alone, with the embedding gate (`gate_only`: decided
    without the detector) and, when the model has one, with the gate and the detector, side by side."""
    non_ecg = CLASSES.index(NON_ECG)
    softmax_non_ecg = probs.argmax(axis=1) == non_ecg
    gated_non_ecg = np.array([p.label == NON_ECG for p in gate_only], dtype=bool)
    decided_non_ecg = np.array([p.label == NON_ECG for p in predictions], dtype=bool)
    unfamiliar = np.array([UNFAMILIAR_IMAGE in p.warnings for p in predictions], dtype=bool)
    true_non_ecg = np.zeros(len(predictions), dtype=bool)
    true_non_ecg[np.flatnonzero(labelled)[y_true == non_ecg]] = True
    true_ecg = labelled & ~true_non_ecg
    other = ~labelled
    gate = classifier.gate
    has_detector = classifier.detector_threshold is not None

    def rates(mask: np.ndarray) -> dict:
        out = {"softmax_only": _rate(softmax_non_ecg[mask]), "with_gate": _rate(gated_non_ecg[mask])}
        if has_detector:
            out["with_gate_and_detector"] = _rate(decided_non_ecg[mask])
        return out

    return {
        "fitted": gate is not None and gate.threshold_ is not None,
        "threshold": None if gate is None else gate.threshold_,
        "non_ecg_recall": rates(true_non_ecg),
        "other_layout_called_non_ecg": rates(other),
        "marked_unfamiliar": {
            "template_ecgs": _rate(unfamiliar[true_ecg]),
            "other_layout_ecgs": _rate(unfamiliar[other]),
            "non_ecgs": _rate(unfamiliar[true_non_ecg]),
        },
        "distance": {
            "template_ecgs_max": _extreme(predictions, true_ecg, np.max, "ecg_distance"),
            "other_layout_ecgs_max": _extreme(predictions, other, np.max, "ecg_distance"),
            "non_ecgs_min": _extreme(predictions, true_non_ecg, np.min, "ecg_distance"),
        },
        "detector": {
            "fitted": has_detector,
            "threshold": classifier.detector_threshold,
            "ecg_probability": {
                "template_ecgs_min": _extreme(predictions, true_ecg, np.min, "ecg_probability"),
                "other_layout_ecgs_min": _extreme(predictions, other, np.min, "ecg_probability"),
                "non_ecgs_max": _extreme(predictions, true_non_ecg, np.max, "ecg_probability"),
            },
        },
    }


def _extreme(predictions, mask: np.ndarray, reduce, field: str) -> float | None:
    values = [getattr(p, field) for p, keep in zip(predictions, mask, strict=True) if keep]
    return float(reduce(values)) if values and None not in values else None


def heatmap_placement(classifier: Classifier, images: list[np.ndarray], predicted: np.ndarray) -> dict:
    """Shortcut detector: where the explanation's mass (Grad-CAM, with the lead map when the model has a
    diagnosis network) of each prediction lies on the full page. A network without the layer Grad-CAM
    reads (the reference `seed` design) gets no figures and the reason, as the app shows it no map."""
    try:
        cam = build_explainer(classifier)
    except ValueError as exc:
        return {
            "n": 0,
            "share_mostly_inside_trace_area": None,
            "mean_mass_inside_trace_area": None,
            "note": f"Grad-CAM is not available for this network: {exc}",
        }
    inside = []
    for image, label in zip(images, predicted, strict=True):
        _, page_map = cam.explain(image, int(label))
        inside.append(mass_inside(page_map, crop_box(*page_map.shape)))  # the page as read (straightened)
    inside = np.asarray(inside)
    return {
        "n": int(len(inside)),
        "share_mostly_inside_trace_area": float((inside > 0.5).mean()) if len(inside) else None,
        "mean_mass_inside_trace_area": float(inside.mean()) if len(inside) else None,
        "note": "The network only sees the trace area (preprocessing crops the header and footer away), "
        "so the header/footer mass is zero by construction; this checks the pipeline end to end.",
    }


@dataclass(frozen=True)
class Scored:
    """What `score_images` decided for a set of images, and its figures."""

    predictions: list  # the classifier's `Prediction`s, as the app would show them
    probs: np.ndarray  # (N, 5) served probabilities
    labelled: np.ndarray  # (N,) whether an image has a class (other-layout ECGs do not)
    y_true: np.ndarray  # class indices of the labelled images
    metrics: dict


def score_images(classifier: Classifier, samples: list[dataset.Sample], images: list[np.ndarray]) -> Scored:
    """Classify `images` as the app does (ECG gate, detector, review threshold, infarction flag) and
    compute the metrics on the labelled ones, with other-layout ECGs' Non-ECG rate beside them."""
    features, probs = classifier.embed_proba(images)
    ecg_probability = classifier.detect(images)
    predictions = classifier.decide_batch(features, probs, ecg_probability)
    gate_only = classifier.decide_batch(features, probs) if ecg_probability is not None else predictions
    decided = np.array([CLASSES.index(p.label) for p in predictions], dtype=int)
    labelled = np.array([s.label != dataset.OTHER_ECG for s in samples], dtype=bool)
    y_true = np.array([CLASSES.index(s.label) for s, keep in zip(samples, labelled, strict=True) if keep])
    metrics = compute_metrics(y_true, probs[labelled], decided[labelled])
    metrics["other_layout_called_non_ecg"] = _rate(decided[~labelled] == CLASSES.index(NON_ECG))
    covered = np.array([p.status == STATUS_OK for p in predictions], dtype=bool)[labelled]
    metrics["needs_review"] = {
        "threshold": classifier.review_threshold,
        "coverage": float(covered.mean()) if len(covered) else None,
        "accuracy_on_covered": float((decided[labelled][covered] == y_true[covered]).mean())
        if covered.any()
        else None,
    }
    metrics["ecg_gate"] = gate_report(predictions, gate_only, probs, labelled, y_true, classifier)
    if classifier.mi_flag_threshold is not None:
        flags = np.array([p.infarction_not_ruled_out for p in predictions], dtype=bool)
        metrics["mi_flag"] = {
            "threshold": classifier.mi_flag_threshold,
            **caught(y_true, decided[labelled], flags[labelled]),
            "other_layout_flagged": {"n": int((~labelled).sum()), "flagged": int(flags[~labelled].sum())},
        }
    return Scored(predictions, probs, labelled, y_true, metrics)


def evaluate_model_dir(
    model_dir: Path,
    split: str = "test",
    roots: dict[str, Path] | None = None,
    cross_validation: Path | None = None,
) -> dict:
    """Predict the split of `model_dir/split.csv` and write `model_dir/metrics.json`; returns the metrics.
    With `cross_validation`, a kept cross-validation run of the model's recipe, its out-of-fold figures
    go beside the split's (`cross_validation.out_of_fold_summary`)."""
    classifier = fitted_classifier(model_dir)
    info = classifier.info
    samples = dataset.read_manifest(Path(model_dir) / "split.csv", model_roots(info, roots))
    chosen, images = dataset.load_images([s for s in samples if s.split == split])
    scored = score_images(classifier, chosen, images)
    metrics, labelled, y_true, probs = scored.metrics, scored.labelled, scored.y_true, scored.probs
    labelled_images = [image for image, keep in zip(images, labelled, strict=True) if keep]
    other_layout = [image for image, keep in zip(images, labelled, strict=True) if not keep]
    robustness = robustness_table(classifier.predict_batch, labelled_images, y_true, other_layout)
    shortcut_check = heatmap_placement(classifier, labelled_images, probs[labelled].argmax(axis=1))
    result = {
        "model_version": classifier.version,
        "arch": info.get("arch"),
        "classes": list(CLASSES),
        "split": split,
        "test": metrics,
        "history": info.get("history", {}),
        "dataset": info.get("dataset", {}),
        "calibration": {
            "temperature": classifier.temperature,
            "ece": metrics["ece"],
            "reliability": metrics["reliability"],
        },
        "robustness": robustness,
        "gradcam": shortcut_check,
    }
    if MI_FLAG_KEY in info:
        result["mi_flag"] = info[MI_FLAG_KEY]  # its threshold's fit on cross-validation (`mi_flag`)
    if cross_validation is not None:
        result["cross_validation"] = out_of_fold_summary(cross_validation)
    if split == "test":
        from ecg_app.training.model_files import write_json_atomic

        write_json_atomic(result, Path(model_dir) / METRICS_FILE)
    return result
