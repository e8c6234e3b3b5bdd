"""Score the model on a labelled collection it was not built from (`ecg-app model validate`).

Why: a research group that wants to know how the model does on its own printouts needs the figures the
test split gets (bootstrap intervals, the app's whole decision: ECG gate, detector, review threshold,
infarction flag), and needs to know its images are really new to the model. The published dataset is
about half byte-identical copies, and a re-encoded copy of a training printout would flatter the model.
So every image is checked against the images the model was built from (`split.csv`): identical bytes
always (the MD5s recorded there), near-identical pictures (`dataset.fingerprint`, the test that formed
the duplicate groups) when those images are on this machine. Copies of training or validation images
are left out of the figures; copies of test images stay, as the model never learnt from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecg_app.labels import CLASSES
from ecg_app.serving.intake import IntakeError
from ecg_app.training import dataset
from ecg_app.training.dataset import model_roots
from ecg_app.training.evaluation import score_images
from ecg_app.training.keras_networks import fitted_classifier

BUILT_FROM = ("train", "val")  # splits the model was fitted or chosen on


def copies_of_model_images(
    model_dir: Path,
    info: dict,
    samples: list[dataset.Sample],
    images: list[np.ndarray],
    roots: dict[str, Path] | None = None,
) -> tuple[list[str | None], dict]:
    """For each sample, the split of a model image it copies ("train", "val" or "test"), or None; and how
    many of the model's images each test could compare against (near-duplicates need the files).
    `info` is the model's `model.json` (where its data roots are recorded)."""
    manifest = dataset.read_manifest(Path(model_dir) / "split.csv", model_roots(info, roots))
    split_of_md5 = {s.md5: s.split for s in manifest}  # a duplicate group keeps to one split
    found = [split_of_md5.get(dataset.file_md5(s.path)) for s in samples]
    present, prints = [], []
    for sample in manifest if samples else []:
        # One model image at a time: their fingerprints are small, the decoded pictures are not.
        try:
            prints.append(dataset.fingerprint(dataset.load_rgb(sample.path)))
        except (OSError, IntakeError):  # not on this machine, or unreadable (then it trained nothing)
            continue
        present.append(sample)
    if present:
        similarity = np.stack([dataset.fingerprint(image) for image in images]) @ np.stack(prints).T
        for i, row in enumerate(similarity):
            if found[i] is None and row.max() > dataset.NEAR_DUPLICATE_THRESHOLD:
                found[i] = present[int(row.argmax())].split
    # Every model image is compared by its bytes; by its picture only when its file is here.
    return found, {"model_images": len(manifest), "compared_by_picture": len(present)}


def validate(
    model_dir: Path,
    samples: list[dataset.Sample],
    roots: dict[str, Path] | None = None,
    keep_copies: bool = False,
) -> dict:
    """The model's figures on `samples` (`dataset.discover` of a labelled collection), copies of the
    images it was built from left out unless `keep_copies`; with one row per image. The pictures are
    held in memory together (at most 1280 px a side, as for evaluation): a few thousand at a time."""
    classifier = fitted_classifier(model_dir)
    listed = samples
    samples, images = dataset.load_images(listed)  # a file intake refuses is reported and not scored
    readable = {s.path for s in samples}
    copies, checked = copies_of_model_images(model_dir, classifier.info, samples, images, roots)
    leave_out = [not keep_copies and copy in BUILT_FROM for copy in copies]
    kept = [i for i, out in enumerate(leave_out) if not out]
    if not kept:
        raise ValueError(
            f"nothing to score: {len(samples)} images found, "
            f"{sum(leave_out)} of them copies of images the model was built from"
        )
    if all(samples[i].label == dataset.OTHER_ECG for i in kept):
        raise ValueError("nothing to score: no image with a class (only ECGs of other layouts) is left")
    scored = score_images(classifier, [samples[i] for i in kept], [images[i] for i in kept])
    return _without_nan(
        {
            "model_version": classifier.version,
            "classes": list(CLASSES),
            "images": {
                "found": len(samples),
                "unreadable": [str(s.path) for s in listed if s.path not in readable],
                "scored": len(kept),
                "copies_of_model_images": {split: copies.count(split) for split in dataset.SPLITS},
                "left_out": [str(s.path) for s, out in zip(samples, leave_out, strict=True) if out],
                "checked_against": checked,
            },
            "metrics": scored.metrics,
            "per_image": [
                {
                    "path": str(samples[i].path),
                    "label": samples[i].label,
                    "predicted": prediction.label,
                    "confidence": prediction.confidence,
                    "status": prediction.status,
                    "warnings": [w.code for w in prediction.warnings],
                    "copy_of": copies[i],
                }
                for i, prediction in zip(kept, scored.predictions, strict=True)
            ],
        }
    )


def _without_nan(value):
    """`value` with every NaN as None: a collection without infarctions has no MI recall, and its JSON
    should say null (NaN is not JSON)."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and value != value else value
