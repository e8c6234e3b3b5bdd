"""What a clinician reads first: heart rate, rhythm regularity and intervals, with their normal ranges.

Why: a class and its probability say nothing of the rate or the QT. `rhythm.measure` reads them off the
trace; this module holds the result, its JSON form (`predict --json`, the history, the CSV export) and
the flags a reader needs beside each number. A value is None when it was not measured,
and `not_measured_reason` then says why: a number is reported only where the digitisation supports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

# Quality of a measurement set: every number the gate allowed, some of them, or none.
MEASURED, PARTIAL, NOT_MEASURED = "measured", "partial", "not measured"
QUALITIES: tuple[str, ...] = (MEASURED, PARTIAL, NOT_MEASURED)

# Normal adult ranges (low, high), as commonly taught (e.g. AHA/ACCF/HRS 2009 recommendations for the
# standardisation and interpretation of the ECG); QTc's upper limit depends on sex.
RATE_RANGE_BPM = (50.0, 100.0)
PR_RANGE_MS = (120.0, 200.0)
QRS_WIDE_MS = 120.0
QTC_LIMIT_MS = {"female": 470.0, "male": 450.0}
AXIS_RANGE_DEG = (-30.0, 90.0)
IRREGULAR_RR = 0.15  # RR coefficient of variation above which the rhythm is called irregular


@dataclass(frozen=True)
class RhythmStrip:
    """The digitised rhythm strip as it was read, for plotting what was measured (not stored)."""

    seconds: np.ndarray  # sample times (s)
    millivolts: np.ndarray  # the trace (mV), baseline near 0
    beats: np.ndarray  # detected R peaks (s)


@dataclass(frozen=True)
class Measurements:
    """Numbers read off one ECG's trace; None where not measured (see `not_measured_reason`)."""

    heart_rate_bpm: float | None = None
    rr_irregularity: float | None = None  # coefficient of variation of the RR intervals
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_bazett_ms: float | None = None
    qtc_fridericia_ms: float | None = None
    qrs_axis_deg: float | None = None
    quality: str = NOT_MEASURED
    not_measured_reason: str | None = None
    strip: RhythmStrip | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        """The JSON fields (`"measurements"` of `predict --json`), numbers rounded for reading."""
        out: dict = {}
        for f in fields(self):
            if f.name == "strip":
                continue
            value = getattr(self, f.name)
            if isinstance(value, float):
                value = round(value, 3 if f.name == "rr_irregularity" else 1)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> Measurements | None:
        """Back from `to_dict` (the stored JSON); None for None (an analysis stored before measurements)."""
        if data is None:
            return None
        names = {f.name for f in fields(cls)} - {"strip"}
        return cls(**{k: v for k, v in data.items() if k in names})


NOT_MEASURED_BEFORE = "Not measured (analysed before measurements were added)"


def not_measured(reason: str) -> Measurements:
    return Measurements(quality=NOT_MEASURED, not_measured_reason=reason)


def qtc_bazett(qt_ms: float, rr_s: float) -> float:
    """QTc by Bazett (1920): QT / sqrt(RR), RR in seconds.

    >>> round(qtc_bazett(400.0, 0.64))
    500
    """
    return qt_ms / np.sqrt(rr_s)


def qtc_fridericia(qt_ms: float, rr_s: float) -> float:
    """QTc by Fridericia (1920): QT / cbrt(RR), RR in seconds; less over-corrected at fast rates.

    >>> round(qtc_fridericia(400.0, 0.512))
    500
    """
    return qt_ms / np.cbrt(rr_s)


def flags(m: Measurements, sex: str | None = None) -> dict[str, str]:
    """Out-of-range findings by field name (e.g. {"heart_rate_bpm": "tachycardia (> 100 bpm)"}).

    QTc is judged against the limit for the given sex, or the lower (male) one when none is given."""
    out: dict[str, str] = {}
    low, high = RATE_RANGE_BPM
    if m.heart_rate_bpm is not None:
        if m.heart_rate_bpm > high:
            out["heart_rate_bpm"] = f"fast: tachycardia (> {high:.0f} bpm)"
        elif m.heart_rate_bpm < low:
            out["heart_rate_bpm"] = f"slow: bradycardia (< {low:.0f} bpm)"
    if m.rr_irregularity is not None and m.rr_irregularity > IRREGULAR_RR:
        out["rr_irregularity"] = "irregular rhythm (RR varies by more than 15%)"
    if m.pr_ms is not None:
        if m.pr_ms > PR_RANGE_MS[1]:
            out["pr_ms"] = f"long PR (> {PR_RANGE_MS[1]:.0f} ms): first-degree AV block?"
        elif m.pr_ms < PR_RANGE_MS[0]:
            out["pr_ms"] = f"short PR (< {PR_RANGE_MS[0]:.0f} ms)"
    if m.qrs_ms is not None and m.qrs_ms >= QRS_WIDE_MS:
        out["qrs_ms"] = f"wide QRS (>= {QRS_WIDE_MS:.0f} ms)"
    limit = QTC_LIMIT_MS.get(sex or "", QTC_LIMIT_MS["male"])
    for name in ("qtc_bazett_ms", "qtc_fridericia_ms"):
        value = getattr(m, name)
        if value is not None and value > limit:
            out[name] = f"long QTc (> {limit:.0f} ms{'' if sex in QTC_LIMIT_MS else ', no sex given'})"
    if m.qrs_axis_deg is not None and not AXIS_RANGE_DEG[0] <= m.qrs_axis_deg <= AXIS_RANGE_DEG[1]:
        out["qrs_axis_deg"] = (
            "left axis deviation" if m.qrs_axis_deg < AXIS_RANGE_DEG[0] else "right axis deviation"
        )
    return out


# What each field is, for tables (UI, PDF): label, unit, normal range as printed.
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("heart_rate_bpm", "Heart rate", "bpm", "50-100"),
    ("rr_irregularity", "RR irregularity (CV)", "", "< 0.15"),
    ("pr_ms", "PR interval", "ms", "120-200"),
    ("qrs_ms", "QRS duration", "ms", "< 120"),
    ("qt_ms", "QT interval", "ms", ""),
    ("qtc_bazett_ms", "QTc (Bazett)", "ms", "<= 450 men, <= 470 women"),
    ("qtc_fridericia_ms", "QTc (Fridericia)", "ms", "<= 450 men, <= 470 women"),
    ("qrs_axis_deg", "QRS axis", "deg", "-30 to 90"),
)
LABELS: dict[str, str] = {name: label for name, label, _, _ in FIELDS}
_UNITS: dict[str, str] = {name: unit for name, _, unit, _ in FIELDS}


@dataclass(frozen=True)
class MeasurementRow:
    """One line of the measurements table, worded for reading (Analyze and History tabs, PDF)."""

    label: str
    value: str  # with its unit; "—" when this value was not measured
    normal_range: str
    flag: str  # the out-of-range finding (`flags`), "" when in range


def measurement_rows(measurements: Measurements | None, sex: str | None) -> list[MeasurementRow]:
    """Every field of a measured analysis, flagged against its normal range (QTc's for the patient's
    sex); no rows when nothing was measured (`measurements_note` says why)."""
    if measurements is None or measurements.quality == NOT_MEASURED:
        return []
    found = flags(measurements, sex)
    return [
        MeasurementRow(label, shown(name, getattr(measurements, name)), normal_range, found.get(name, ""))
        for name, label, _, normal_range in FIELDS
    ]


def shown(name: str, value: float | None, signed: bool = False) -> str:
    """One field's value as read, with its unit ("72 bpm", "0.04", "+12 ms" when `signed`); "—" for None.

    The RR coefficient of variation is a fraction and keeps two decimals; the rest read in whole units.
    """
    if value is None:
        return "—"
    unit = _UNITS[name]
    digits = 2 if name == "rr_irregularity" else 0
    value = round(value, digits) or 0.0  # no "-0"
    text = f"{value:{'+' if signed else ''}.{digits}f}"
    return f"{text} {unit}" if unit else text


def measurements_note(measurements: Measurements | None) -> str | None:
    """Why some or all values are missing, shown with (or instead of) the table; None when all were
    measured."""
    if measurements is None:
        return NOT_MEASURED_BEFORE
    reason = measurements.not_measured_reason
    if measurements.quality == NOT_MEASURED:
        return f"Not measured: {reason}" if reason else "Not measured"
    return f"Partly measured: {reason}" if reason else None
