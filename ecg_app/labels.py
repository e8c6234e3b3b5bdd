"""The five classes, in the one order used by the model, the database, the JSON and the UI."""

from __future__ import annotations

import re

CLASSES: tuple[str, ...] = ("MI", "HMI", "AHB", "Normal", "NonECG")
ECG_CLASSES: tuple[str, ...] = CLASSES[:4]
NON_ECG = "NonECG"

DISPLAY_NAMES: dict[str, str] = {
    "MI": "Myocardial Infarction",
    "HMI": "History of MI",
    "AHB": "Abnormal Heartbeat",
    "Normal": "Normal ECG",
    "NonECG": "Non-ECG Image",
}

# Fixed colours so every chart and the PDF show a class the same way.
COLORS: dict[str, str] = {
    "MI": "#c0392b",
    "HMI": "#e67e22",
    "AHB": "#d4ac0d",
    "Normal": "#27ae60",
    "NonECG": "#7f8c8d",
}

# Folder names of the published Mendeley dataset (kept verbatim there) and the short names.
_FOLDER_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^MI$|myocardial infarction patients", "MI"),
    (r"^HMI$|history of mi", "HMI"),
    (r"^AHB$|abnormal heartbeat", "AHB"),
    (r"^normal$|normal person", "Normal"),
)


def index(label: str) -> int:
    """Position of a class in the model's output vector."""
    return CLASSES.index(label)


def display_name(label: str) -> str:
    return DISPLAY_NAMES[label]


def class_from_folder(name: str) -> str | None:
    """Map a dataset folder name (published long name or short name) to a class, or None."""
    text = name.strip().lower()
    for pattern, label in _FOLDER_PATTERNS:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return label
    return None
