from types import SimpleNamespace

import numpy as np
import pytest

from ecg_app.labels import CLASSES
from ecg_app.training.evaluation import heatmap_placement
from ecg_app.training.keras_networks import KerasNetworks
from ecg_app.training.metrics import bootstrap_ci, compute_metrics
from ecg_app.training.networks import make_model


def _probs_for(pred: list[int], confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(pred), 5), (1 - confidence) / 4)
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_metrics_on_a_known_confusion():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    y_pred = [0, 2, 1, 1, 2, 2, 3, 4, 4, 4]
    m = compute_metrics(y_true, _probs_for(y_pred))
    assert m["n"] == 10
    assert m["accuracy"]["value"] == pytest.approx(0.8)
    assert m["per_class"]["MI"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["mi_recall"]["value"] == 0.5
    assert m["ecg_accuracy"]["value"] == pytest.approx(6 / 8)
    assert m["non_ecg_recall"]["value"] == 1.0
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == 10 and cm[0, 2] == 1 and cm[3, 4] == 1 and np.trace(cm) == 8
    lo, hi = m["macro_f1"]["ci95"]
    assert lo <= m["macro_f1"]["value"] <= hi
    assert set(m["roc"]) == set(CLASSES)
    assert all(0 <= c["auc"] <= 1 for c in m["roc"].values())
    assert m["ece"] == pytest.approx(0.0, abs=0.05)  # 80% confident, 80% right


def test_perfect_predictions_have_degenerate_interval():
    y = np.array([0, 1, 2, 3, 4] * 4)
    m = compute_metrics(y, _probs_for(y.tolist(), 0.99))
    assert m["macro_f1"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert all(c["auc"] == 1.0 for c in m["roc"].values())


def test_bootstrap_interval_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def width(n):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < 0.8, y, 1 - y)
        lo, hi = bootstrap_ci(y, pred, lambda t, p: float((t == p).mean()), n_boot=300)
        return hi - lo

    assert width(2000) < width(50)


def test_placement_check_reports_a_network_grad_cam_cannot_read_instead_of_failing(printout):
    # The reference `seed` design has no `s5b_relu`: `ecg-app model evaluate` (and compare_seed.py) crashed
    # on it.
    seed = SimpleNamespace(networks=KerasNetworks(page=make_model("seed")), has_diagnosis=False)
    report = heatmap_placement(seed, [printout], np.array([0]))
    assert report["n"] == 0 and report["share_mostly_inside_trace_area"] is None
    assert "s5b_relu" in report["note"]
    default = SimpleNamespace(networks=KerasNetworks(page=make_model("default")), has_diagnosis=False)
    assert heatmap_placement(default, [printout], np.array([0]))["n"] == 1
