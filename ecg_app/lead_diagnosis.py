"""The lead-reading diagnosis network: which of the four ECG classes, read from the digitised leads.

Why: the page network (`ecg_cnn.keras`) tells ECGs from other pictures well but, given 13 to 16
infarction printouts, reads the diagnosis from where ink lies on the page. This network reads each
lead's curves (`LeadSignals`) with one shared encoder and is trained on ECGs only (`diagnosis_fit`),
so it has no say in whether a picture is an ECG: `combine` keeps the page network's P(Non-ECG) and
shares its P(some ECG) among the four classes in this network's proportions (the fourth candidate
of docs/experiments.md).
"""

from __future__ import annotations

import numpy as np

from ecg_app.labels import CLASSES, ECG_CLASSES, NON_ECG
from ecg_app.preprocess import INPUT_SHAPE

DIAGNOSIS_FILE = "ecg_diagnosis.keras"
# LeadSignals' output for the shared input: 16 cells of 136 columns, 3 curves (top, centre, bottom).
CURVES_SHAPE = (16, INPUT_SHAPE[1] // 4, 3)


def make_curve_reader(serving: bool = False):
    """Curves of one printout's 16 lead cells -> probabilities of the four ECG classes (a Keras model;
    Keras is imported here so that the classifier can import this module without loading it).
    `serving`: the inference-only form (`networks.EachCell`), which `diagnosis_fit` saves."""
    import keras
    from keras import layers

    from ecg_app.networks import lead_features

    cells = keras.Input(CURVES_SHAPE, name="curves")
    outputs = layers.Dense(len(ECG_CLASSES), activation="softmax", name="diagnosis")(
        lead_features(cells, CURVES_SHAPE[1], serving)
    )
    return keras.Model(cells, outputs, name="curve_reader")


def with_lead_signals(*readers):
    """The served network: the shared preprocessing's ink map -> `LeadSignals` -> the reader, or the mean
    of several (an ensemble's readers share one digitiser, which so runs and is traced at start-up once).
    Training digitises each printout once and fits a reader on the curves; this puts the digitiser back."""
    import keras

    from ecg_app.lead_signals import LeadSignals

    inputs = keras.Input(INPUT_SHAPE, name="ink")
    curves = LeadSignals(name="lead_signals")(inputs)
    if len(readers) == 1:
        return keras.Model(inputs, readers[0](curves), name="lead_diagnosis")
    for k, reader in enumerate(readers):
        reader.name = f"curve_reader_{k}"
    averaged = keras.layers.Average(name="probabilities")([reader(curves) for reader in readers])
    return keras.Model(inputs, averaged, name="ecg_diagnosis")


def curve_readers(diagnosis) -> list:
    """The curve readers inside a served diagnosis network (`with_lead_signals`): one, or an ensemble's."""
    readers = [layer for layer in diagnosis.layers if layer.name.startswith("curve_reader")]
    if not readers:
        raise ValueError(
            f"{diagnosis.name} has no curve reader behind its digitiser (saved in an older layout?): "
            "run `ecg-app fit-diagnosis` again, which rebuilds it from its members"
        )
    return readers


def combine(probs: np.ndarray, diagnosis: np.ndarray, page_share: float = 0.0) -> np.ndarray:
    """(N, 5) probabilities: the page network's P(Non-ECG) from `probs` (CLASSES order), the rest shared
    among the ECG classes as `diagnosis` (N, 4, ECG_CLASSES order) shares it, or, with `page_share` > 0,
    as that mix of the page network's own ECG-class proportions and the diagnosis network's does."""
    non_ecg = probs[:, [CLASSES.index(NON_ECG)]]
    if page_share:
        page = probs[:, [CLASSES.index(c) for c in ECG_CLASSES]] + 1e-12
        diagnosis = (1 - page_share) * diagnosis + page_share * page / page.sum(axis=1, keepdims=True)
    combined = np.concatenate([(1.0 - non_ecg) * diagnosis, non_ecg], axis=1)
    return combined[:, [(*ECG_CLASSES, NON_ECG).index(c) for c in CLASSES]]
