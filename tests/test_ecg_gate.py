"""The embedding-space ECG gate and how the classifier combines it with the softmax."""

import json

import numpy as np
import pytest

from ecg_app.config import REPO_ROOT
from ecg_app.labels import CLASSES, NON_ECG
from ecg_app.serving.classifier import (
    GATE_DISAGREES,
    STATUS_NEEDS_REVIEW,
    STATUS_OK,
    UNFAMILIAR_IMAGE,
    Classifier,
    decide,
)
from ecg_app.serving.ecg_gate import GATE_FILE, EcgGate, best_threshold
from ecg_app.serving.intake import load_image

EXAMPLES = REPO_ROOT / "ecg_app" / "examples"


def clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ECG-like rows around one direction, non-ECG rows around another (64-d, like a small embedding)."""
    rng = np.random.default_rng(seed)
    ecg_centre, other_centre = np.zeros(64), np.zeros(64)
    ecg_centre[:8], other_centre[8:16] = 3.0, 3.0
    ecgs = ecg_centre + rng.normal(size=(n, 64))
    others = other_centre + rng.normal(size=(n, 64))
    return np.vstack([ecgs, others]), np.r_[np.ones(n, bool), np.zeros(n, bool)]


def test_distance_separates_ecgs_from_other_pictures():
    features, is_ecg = clusters(40, seed=0)
    gate = EcgGate(k=5).fit(features, is_ecg)
    assert gate.references_.shape == (40, 64) and gate.references_.dtype == np.float32
    queries, truth = clusters(20, seed=1)
    distances = gate.distance(queries)
    assert distances[truth].max() < distances[~truth].min()
    threshold = gate.choose_threshold(queries, truth)
    assert distances[truth].max() < threshold < distances[~truth].min()
    assert (distances <= gate.threshold_).tolist() == truth.tolist()


def test_threshold_sits_in_the_middle_of_the_widest_gap():
    assert best_threshold([0.1, 0.2, 0.9, 1.0], [True, True, False, False]) == pytest.approx(0.55)
    # Overlap: the cut with the best balanced accuracy wins (one non-ECG at 0.3 is let through).
    distances, is_ecg = [0.1, 0.3, 0.35, 0.8, 0.9], [True, False, True, False, False]
    assert best_threshold(distances, is_ecg) == pytest.approx(0.575)


def test_gate_round_trips_through_its_file(tmp_path):
    features, is_ecg = clusters(30, seed=2)
    gate = EcgGate(k=3).fit(features, is_ecg)
    gate.choose_threshold(*clusters(10, seed=3))
    gate.save(tmp_path / GATE_FILE)
    loaded = EcgGate.load(tmp_path / GATE_FILE)
    assert loaded.k == 3 and loaded.threshold_ == gate.threshold_
    np.testing.assert_array_equal(loaded.distance(features), gate.distance(features))


def test_gate_refuses_what_it_cannot_fit():
    features, is_ecg = clusters(3, seed=4)
    with pytest.raises(ValueError, match="at least k=5"):
        EcgGate(k=5).fit(features, is_ecg)
    gate = EcgGate(k=2).fit(features, is_ecg)
    with pytest.raises(ValueError, match="both"):
        gate.choose_threshold(features[is_ecg], is_ecg[is_ecg])
    with pytest.raises(RuntimeError, match="not fitted"):
        EcgGate().distance(features)


def probs(**values: float) -> np.ndarray:
    vector = np.array([values.get(c, 0.0) for c in CLASSES])
    return vector / vector.sum()


@pytest.mark.parametrize(
    "p, distance, label, status, warnings",
    [
        # Both opinions agree: the softmax's answer stands.
        (probs(NonECG=0.9, Normal=0.1), 0.9, NON_ECG, STATUS_OK, ()),
        (probs(MI=0.8, AHB=0.2), 0.2, "MI", STATUS_OK, ()),
        # Softmax says not an ECG, the embedding sits among the training ECGs: the best ECG class, reviewed.
        (probs(NonECG=0.7, AHB=0.2, Normal=0.1), 0.2, "AHB", STATUS_NEEDS_REVIEW, (GATE_DISAGREES,)),
        # An ECG class far from every training ECG: kept, but reviewed.
        (probs(Normal=0.95, NonECG=0.05), 0.9, "Normal", STATUS_NEEDS_REVIEW, (UNFAMILIAR_IMAGE,)),
        # No gate distance: the softmax alone, below the review threshold.
        (probs(HMI=0.35, Normal=0.33, AHB=0.32), None, "HMI", STATUS_NEEDS_REVIEW, ()),
    ],
)
def test_decide_needs_both_opinions_to_call_non_ecg(p, distance, label, status, warnings):
    prediction = decide(p, "v", review_threshold=0.4, ecg_distance=distance, gate_threshold=0.5)
    assert (prediction.label, prediction.status, prediction.warnings) == (label, status, warnings)
    assert prediction.confidence == pytest.approx(p[CLASSES.index(label)])
    assert prediction.to_dict()["ecg_distance"] == distance


def test_shipped_gate_accepts_example_ecgs_and_rejects_a_photo(shipped_model):
    classifier = Classifier(shipped_model)
    info = json.loads((shipped_model / "model.json").read_text())
    assert classifier.gate is not None and classifier.gate.threshold_ == info["ecg_gate"]["threshold"]
    ecgs = [load_image(path) for path in sorted(EXAMPLES.glob("*.jpg")) if "coffee" not in path.name]
    photo = load_image(EXAMPLES / "coffee.jpg")
    predictions = classifier.predict_batch([*ecgs, photo])
    assert all(p.ecg_distance <= classifier.gate.threshold_ for p in predictions[:-1])
    assert all(p.label != NON_ECG and not p.warnings for p in predictions[:-1])
    assert predictions[-1].label == NON_ECG and predictions[-1].ecg_distance > classifier.gate.threshold_


def test_one_pass_gives_the_saved_models_probabilities(shipped_model):
    """The per-member heads reproduce the saved ensemble's own output (its Average layer), combined with
    the shipped diagnosis networks' own output as `combine` says: one pass, the saved networks' numbers."""
    from ecg_app.serving.lead_diagnosis import combine
    from ecg_app.serving.preprocess import preprocess_batch
    from ecg_app.training.keras_networks import KerasNetworks

    classifier = Classifier(shipped_model)
    assert classifier.has_diagnosis and classifier.page_share == 0.5
    batch = preprocess_batch([load_image(path) for path in sorted(EXAMPLES.glob("*.jpg"))])
    features, log_probs = classifier.embed(batch)
    keras_networks = KerasNetworks(shipped_model)
    saved = np.asarray(keras_networks.network("page").predict_on_batch(batch), dtype=np.float64)
    diagnosis = np.asarray(keras_networks.network("diagnosis").predict_on_batch(batch), dtype=np.float64)
    np.testing.assert_allclose(np.exp(log_probs), combine(saved, diagnosis, 0.5), atol=1e-6)
    assert features.shape[0] == len(batch) and features.shape[1] == classifier.gate.mean_.shape[0]
