"""De-identify the pictures a history kept before de-identification existed (`ecg-app db deidentify`).

Each image is done in its own transaction (`AnalysisStore.replace_picture`), so the command can be
stopped at any point and run again: it picks up the images still left and never touches one twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from ecg_app.serving.deidentify import deidentify
from ecg_app.serving.intake import IntakeError, IntakeLimits, load_image
from ecg_app.serving.preprocess import page_as_read
from ecg_app.store import AnalysisStore


@dataclass
class Outcome:
    """What one run did: images de-identified (by method), skipped, and those that could not be read."""

    done: Counter = field(default_factory=Counter)
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def deidentify_history(
    store: AnalysisStore, limits: IntakeLimits | None = None, *, progress: bool = True
) -> Outcome:
    """De-identify every picture stored before revision 0005, as `analysis.analyze_and_store` does now;
    a picture the intake refuses today (`limits`) is listed in `failed` and left as it is."""
    outcome = Outcome()
    todo = store.pictures_to_deidentify()
    for sha256, path in tqdm(todo, desc="de-identifying", unit="image", disable=not progress or not todo):
        try:
            original = path.read_bytes()
            clean = deidentify(page_as_read(load_image(original, limits or IntakeLimits())))
            replaced = store.replace_picture(sha256, original, clean.image, clean.method, clean.apply_to)
        except (OSError, ValueError, IntakeError) as exc:  # a missing or damaged file: the others go on
            outcome.failed.append(f"{sha256[:12]}: {exc}")
            continue
        if replaced:
            outcome.done[clean.method] += 1
        else:
            outcome.skipped += 1
    return outcome
