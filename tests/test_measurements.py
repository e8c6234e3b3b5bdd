"""Measurements: their JSON form (stored, printed by `--json`), the out-of-range flags beside each number,
and the QT corrections. Built by hand: what `rhythm.measure` reads off a trace is tested with it."""

import json
from dataclasses import fields, replace

import numpy as np
import pytest

from ecg_app.clinical.measurements import (
    FIELDS,
    MEASURED,
    NOT_MEASURED,
    Measurements,
    RhythmStrip,
    flags,
    not_measured,
    qtc_bazett,
    qtc_fridericia,
    shown,
)

MEASUREMENT_KEYS = {
    "heart_rate_bpm", "rr_irregularity", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
    "qrs_axis_deg", "quality", "not_measured_reason",
}  # fmt: skip
NORMAL = Measurements(
    heart_rate_bpm=72.0, rr_irregularity=0.04, pr_ms=160.0, qrs_ms=96.0, qt_ms=380.0, qtc_bazett_ms=416.0,
    qtc_fridericia_ms=404.0, qrs_axis_deg=45.0, quality=MEASURED,
)  # fmt: skip


def test_to_dict_has_every_field_but_the_strip_rounded_for_reading():
    strip = RhythmStrip(np.linspace(0, 10, 50), np.zeros(50), np.array([1.0, 2.0]))
    m = Measurements(heart_rate_bpm=72.3456, rr_irregularity=0.123456, qrs_axis_deg=-12.34, strip=strip)
    data = m.to_dict()
    assert set(data) == MEASUREMENT_KEYS
    assert (data["heart_rate_bpm"], data["rr_irregularity"], data["qrs_axis_deg"]) == (72.3, 0.123, -12.3)
    assert data["pr_ms"] is None and data["quality"] == NOT_MEASURED
    assert json.loads(json.dumps(data)) == data  # plain JSON


def test_from_dict_round_trips_and_none_stays_none():
    again = Measurements.from_dict(json.loads(json.dumps(NORMAL.to_dict())))
    assert again == NORMAL and again.strip is None
    assert Measurements.from_dict(None) is None
    assert Measurements.from_dict({**NORMAL.to_dict(), "added_later": 1}) == NORMAL  # unknown keys ignored
    reason = not_measured("no rhythm strip found")
    assert Measurements.from_dict(reason.to_dict()) == reason
    assert reason.quality == NOT_MEASURED and reason.not_measured_reason == "no rhythm strip found"


def test_fields_table_names_every_number():
    numbers = {f.name for f in fields(Measurements)} - {"quality", "not_measured_reason", "strip"}
    assert [name for name, *_ in FIELDS] == [f.name for f in fields(Measurements) if f.name in numbers]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"heart_rate_bpm": 120.0}, "heart_rate_bpm", "tachycardia"),
        ({"heart_rate_bpm": 45.0}, "heart_rate_bpm", "bradycardia"),
        ({"qrs_ms": 130.0}, "qrs_ms", "wide QRS"),
        ({"pr_ms": 240.0}, "pr_ms", "long PR"),
        ({"rr_irregularity": 0.3}, "rr_irregularity", "irregular"),
        ({"qrs_axis_deg": -60.0}, "qrs_axis_deg", "left axis deviation"),
    ],
)
def test_an_out_of_range_value_is_flagged_alone(change, field, words):
    found = flags(replace(NORMAL, **change), "female")
    assert list(found) == [field] and words in found[field]


def test_qtc_is_judged_against_the_limit_for_the_patients_sex():
    m = Measurements(qtc_bazett_ms=460.0, qtc_fridericia_ms=440.0, quality=MEASURED)
    assert flags(m, "female") == {}
    assert list(flags(m, "male")) == ["qtc_bazett_ms"] and "450" in flags(m, "male")["qtc_bazett_ms"]
    assert "no sex given" in flags(m)["qtc_bazett_ms"]  # the lower limit when the sex is unknown


def test_values_in_range_and_values_not_measured_are_never_flagged():
    assert flags(NORMAL, "male") == {}
    assert flags(Measurements(quality=MEASURED), "male") == {}
    assert flags(not_measured("the picture was not recognised as an ECG")) == {}


def test_qt_corrections():
    # RR 1 s (60 bpm): no correction; RR 0.64 s: QT / 0.8 (Bazett); RR 0.512 s: QT / 0.8 (Fridericia).
    assert qtc_bazett(400.0, 1.0) == pytest.approx(400.0) == qtc_fridericia(400.0, 1.0)
    assert qtc_bazett(400.0, 0.64) == pytest.approx(500.0)
    assert qtc_fridericia(400.0, 0.512) == pytest.approx(500.0)
    assert qtc_fridericia(400.0, 0.64) < qtc_bazett(400.0, 0.64)  # Bazett over-corrects at fast rates


def test_a_value_is_shown_with_its_unit_and_a_change_with_its_sign():
    assert shown("heart_rate_bpm", 72.4) == "72 bpm" and shown("rr_irregularity", 0.123) == "0.12"
    assert shown("qrs_axis_deg", -12.6) == "-13 deg" and shown("pr_ms", None) == "—"
    assert shown("qt_ms", 12.2, signed=True) == "+12 ms" and shown("qt_ms", -0.3, signed=True) == "+0 ms"
    assert shown("rr_irregularity", -0.05, signed=True) == "-0.05"
