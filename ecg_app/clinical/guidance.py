"""Clinical guidance for each class, read from guidance.yaml (the single source of that wording)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from ecg_app.labels import CLASSES

GUIDANCE_FILE = Path(__file__).with_name("guidance.yaml")
RISK_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
RISK_COLORS = {"NONE": "#7f8c8d", "LOW": "#27ae60", "MEDIUM": "#e67e22", "HIGH": "#c0392b"}


@dataclass(frozen=True)
class Guidance:
    label: str
    risk_level: str
    interpretation: str
    suggested_tests: tuple[str, ...]
    monitoring: str
    lifestyle: tuple[str, ...]
    emergency: str

    @property
    def is_high_risk(self) -> bool:
        return self.risk_level == "HIGH"


@dataclass(frozen=True)
class GuidanceBook:
    disclaimer: str
    low_confidence_message: str
    classes: dict[str, Guidance]

    def for_label(self, label: str) -> Guidance:
        return self.classes[label]


@cache
def load_guidance(path: Path = GUIDANCE_FILE) -> GuidanceBook:
    """Parse and check the guidance file once; a missing class or risk level is a packaging error."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    classes = {}
    for label in CLASSES:
        entry = raw["classes"][label]
        if entry["risk_level"] not in RISK_LEVELS:
            raise ValueError(f"{path}: unknown risk level {entry['risk_level']!r} for {label}")
        classes[label] = Guidance(
            label=label,
            risk_level=entry["risk_level"],
            interpretation=entry["interpretation"].strip(),
            suggested_tests=tuple(entry["suggested_tests"]),
            monitoring=entry["monitoring"].strip(),
            lifestyle=tuple(entry["lifestyle"]),
            emergency=(entry.get("emergency") or "").strip(),
        )
    return GuidanceBook(
        disclaimer=raw["disclaimer"].strip(),
        low_confidence_message=raw["low_confidence_message"].strip(),
        classes=classes,
    )


def disclaimer() -> str:
    return load_guidance().disclaimer
