""" "Infarction not ruled out": a flag on an ECG called another class whose probability of myocardial
infarction is still too high to dismiss. The classifier applies it (`classifier.decide`); its threshold
is fitted by `ecg-app model fit-mi-flag` (`training.mi_flag_fit`, where the reasons and the fit are told).
"""

from __future__ import annotations

import numpy as np

from ecg_app.labels import CLASSES, ECG_CLASSES

INFO_KEY = "mi_flag"  # in model.json: {"threshold", "temperature", "false_alarm_rate", "run", ...}
FALSE_ALARM_RATE = 0.02  # the share of ECGs without an infarction the fitted threshold may flag
WARNING_CODE = "mi_not_ruled_out"  # the code of the warning a flagged result carries
MI = CLASSES.index("MI")
OTHER_ECG = [CLASSES.index(c) for c in ECG_CLASSES if c != "MI"]


def not_ruled_out(label: str, p_mi: float, threshold: float) -> bool:
    """Whether a result called `label`, with this P(MI), gets the flag: an ECG class other than MI, and
    P(MI) at or above `threshold`."""
    return CLASSES.index(label) in OTHER_ECG and p_mi >= threshold


def flagged(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) `not_ruled_out` for each probability vector (CLASSES order), called by its top class."""
    return np.array([not_ruled_out(CLASSES[p.argmax()], float(p[MI]), threshold) for p in probs], dtype=bool)
