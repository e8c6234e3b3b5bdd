"""Two analyses side by side (usually one patient's, an earlier and a later ECG): what changed."""

from __future__ import annotations

from dataclasses import dataclass

from ecg_app.clinical.measurements import FIELDS
from ecg_app.labels import CLASSES, display_name
from ecg_app.store import StoredAnalysis
from ecg_app.store.repository import patient_key


@dataclass(frozen=True)
class Comparison:
    """`earlier` and `later` by date (whatever order they were given in), and how the result moved."""

    earlier: StoredAnalysis
    later: StoredAnalysis

    @property
    def days_apart(self) -> float:
        return (self.later.created_at - self.earlier.created_at).total_seconds() / 86400

    @property
    def same_patient(self) -> bool:
        key = patient_key(self.earlier.patient.name)
        return key is not None and key == patient_key(self.later.patient.name)

    def probability_changes(self) -> dict[str, float]:
        """Later minus earlier probability of each class, in labels.CLASSES order."""
        return {c: self.later.probabilities[c] - self.earlier.probabilities[c] for c in CLASSES}

    def measurement_changes(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        """(earlier, later, later minus earlier) of each measured field, in measurements.FIELDS order;
        a value is None where that analysis did not measure it (or was stored before measurements), and
        the change is None unless both were measured."""
        out = {}
        for name, *_ in FIELDS:
            then, now = (
                getattr(a.measurements, name) if a.measurements else None for a in (self.earlier, self.later)
            )
            out[name] = (then, now, None if then is None or now is None else now - then)
        return out

    def summary(self) -> str:
        """One sentence: the class and the risk, then and now."""
        a, b = self.earlier, self.later
        if a.label == b.label:
            what = f"Both read as {display_name(a.label)}"
        else:
            what = f"{display_name(a.label)} then, {display_name(b.label)} now"
        risk = (
            f"risk {a.risk_level}"
            if a.risk_level == b.risk_level
            else f"risk {a.risk_level} → {b.risk_level}"
        )
        return f"{what}; {risk}; {self.days_apart:.1f} days apart."

    def to_dict(self) -> dict:
        """JSON-ready, as `ecg-app history compare --json` prints it."""
        return {
            "earlier": self.earlier.to_dict(),
            "later": self.later.to_dict(),
            "days_apart": round(self.days_apart, 3),
            "same_patient": self.same_patient,
            "label_changed": self.earlier.label != self.later.label,
            "risk_changed": self.earlier.risk_level != self.later.risk_level,
            "probability_changes": {c: round(v, 6) for c, v in self.probability_changes().items()},
            "measurement_changes": {
                name: None if change is None else round(change, 3)
                for name, (_, _, change) in self.measurement_changes().items()
            },
            "summary": self.summary(),
        }


def compare(first: StoredAnalysis, second: StoredAnalysis) -> Comparison:
    """The two analyses in time order."""
    if (second.created_at, str(second.id)) < (first.created_at, str(first.id)):
        first, second = second, first
    return Comparison(first, second)
