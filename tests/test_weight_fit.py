"""The infarction weight: chosen on out-of-fold predictions, judged nested, recorded only by the rule
(the end-to-end run through the classifier is in test_training_cli.py)."""

import csv
from pathlib import Path

import numpy as np
import pytest

from ecg_app.labels import CLASSES
from ecg_app.serving.decision_weight import log_weights, version_tag
from ecg_app.training.metrics import macro_f1
from ecg_app.training.weight_fit import choose_weight, judge_weight, nested_predictions, weighted_predictions

MI, HMI, AHB = (CLASSES.index(c) for c in ("MI", "HMI", "AHB"))


def probabilities(true: list[int], p_true: list[float], rival: int = AHB) -> np.ndarray:
    """One row per image: `p_true` on its class (the rest on `rival`, or on AHB for AHB's own rival)."""
    probs = np.zeros((len(true), len(CLASSES)))
    for i, (k, p) in enumerate(zip(true, p_true, strict=True)):
        other = HMI if k == rival else rival
        probs[i, k], probs[i, other] = p, 1 - p
    return probs


def write_oof(run: Path, y: np.ndarray, fold: np.ndarray, probs: np.ndarray) -> Path:
    """An `ecg-app model cross-validate` oof.csv (plus one other-layout ECG, which is never scored)."""
    run.mkdir(parents=True)
    with (run / "oof.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "label", "group", "fold", *(f"p_{c}" for c in CLASSES)])
        for i, (k, f, p) in enumerate(zip(y, fold, probs, strict=True)):
            writer.writerow([f"{i}.jpg", "mendeley", CLASSES[k], f"{i}.jpg", f, *p])
        writer.writerow(["other.jpg", "other_ecg", "OtherECG", "other.jpg", 1, 0, 0, 0, 0, 1])
    return run


def test_weighting_moves_only_the_weighted_class():
    probs = np.array([[0.4, 0.0, 0.6, 0.0, 0.0], [0.1, 0.0, 0.9, 0.0, 0.0]])
    assert weighted_predictions(probs, MI, 1.0).tolist() == [AHB, AHB]
    assert weighted_predictions(probs, MI, 2.0).tolist() == [MI, AHB]  # 0.8 > 0.6; 0.2 < 0.9
    assert weighted_predictions(probs, MI, 16.0).tolist() == [MI, MI]
    np.testing.assert_array_equal(probs[:, 0], [0.4, 0.1])  # the input is not changed in place


def test_the_chosen_weight_recovers_the_under_called_class_and_is_the_smallest_that_does():
    # Infarctions at P(MI) 0.35 against AHB 0.65; AHB printouts at P(MI) 0.15: weights 2 and 3 both
    # recall every infarction without a false one (tie: the smaller, 2); 6 calls the AHB ones MI too.
    y = np.array([MI] * 4 + [AHB] * 8)
    probs = probabilities(y.tolist(), [0.35] * 4 + [0.85] * 8)
    probs[y == AHB] = [0.15, 0.0, 0.85, 0.0, 0.0]
    assert choose_weight(probs, y, MI) == 2.0
    assert macro_f1(y, weighted_predictions(probs, MI, 2.0)) == 1.0
    assert macro_f1(y, weighted_predictions(probs, MI, 6.0)) < 1.0
    # Already right: no weight.
    assert choose_weight(probabilities(y.tolist(), [0.9] * 12), y, MI) == 1.0


def test_each_fold_is_weighted_by_what_the_other_folds_chose():
    """Fold 1's infarctions need a weight of 4; folds 2 and 3's need 1.5, and their AHB printouts
    (P(MI) 0.3) are called MI from 3 on. Chosen nested, fold 1 gets 1.5 and keeps its misses, where a
    choice that saw fold 1 alone would take 4 and fix them: the nested figure is the honest one."""
    y = np.array([MI, MI, AHB, AHB] * 3)
    fold = np.repeat([1, 2, 3], 4)
    rows = {1: [[0.2, 0.8], [0.2, 0.8], [0.1, 0.9], [0.1, 0.9]]}
    rows[2] = rows[3] = [[0.45, 0.55], [0.45, 0.55], [0.3, 0.7], [0.3, 0.7]]
    probs = np.zeros((12, len(CLASSES)))
    probs[:, [MI, AHB]] = np.concatenate([rows[f] for f in (1, 2, 3)])
    predictions, weights = nested_predictions(probs, y, fold, MI)
    assert weights == {1: 1.5, 2: 1.5, 3: 1.5}
    assert choose_weight(probs[fold == 1], y[fold == 1], MI) == 4.0
    assert predictions.tolist() == [AHB, AHB, AHB, AHB] + [MI, MI, AHB, AHB] * 2


def test_the_rule_adopts_a_weight_that_recalls_more_infarctions_at_no_cost(tmp_path):
    y = np.array([MI, MI, HMI, HMI, AHB, AHB] * 4)
    fold = np.tile([1, 2, 3, 4], 6)
    probs = probabilities(y.tolist(), [0.35, 0.35, 0.9, 0.9, 0.9, 0.9] * 4)
    probs[y == AHB, MI], probs[y == AHB, HMI] = 0.05, 0.05  # AHB rows: 0.9 AHB
    judged = judge_weight(write_oof(tmp_path / "under", y, fold, probs))
    assert judged["n"] == 24 and judged["adopted"] and judged["weight"] == 2.0
    assert judged["unweighted"]["recalled"] == 0 and judged["nested"]["recalled"] == 8
    assert judged["nested"]["macro_f1"] >= judged["unweighted"]["macro_f1"]
    assert judged["nested"]["fold_weights"] == {1: 2.0, 2: 2.0, 3: 2.0, 4: 2.0}
    # Every infarction already recalled: no more to gain, no weight recorded.
    right = probabilities(y.tolist(), [0.9] * 24)
    judged = judge_weight(write_oof(tmp_path / "right", y, fold, right))
    assert not judged["adopted"] and judged["weight"] == 1.0


def test_the_rule_refuses_a_weight_that_recalls_more_infarctions_but_costs_macro_f1(tmp_path):
    """Every fold has one infarction at P(MI) 0.35 (a weight of 2 recalls it). Fold 1's ten AHB printouts
    sit at P(MI) 0.4, so a weight of 2 calls them MI; the other folds' at 0.05. Nested, fold 1 gets 2
    (chosen on folds 2 and 3) and recalls its infarction but loses ten AHB printouts; folds 2 and 3 get
    1 (fold 1's printouts weigh against 2). More infarctions, lower macro-F1: not adopted."""
    y, fold, probs = [], [], []
    for f in (1, 2, 3):
        p_mi = 0.4 if f == 1 else 0.05
        rows = [(MI, [0.35, 0, 0.65, 0, 0])] + [(HMI, [0, 0.9, 0.1, 0, 0])] * 2
        rows += [(AHB, [p_mi, 0, 1 - p_mi, 0, 0])] * 10
        y += [k for k, _ in rows]
        fold += [f] * len(rows)
        probs += [p for _, p in rows]
    judged = judge_weight(write_oof(tmp_path / "costly", np.array(y), np.array(fold), np.array(probs)))
    assert judged["nested"]["fold_weights"] == {1: 2.0, 2: 1.0, 3: 1.0}
    assert judged["nested"]["recalled"] == 1 > judged["unweighted"]["recalled"] == 0
    assert judged["nested"]["wrongly_called"] == 10
    assert judged["nested"]["macro_f1"] < judged["unweighted"]["macro_f1"]
    assert not judged["adopted"] and judged["weight"] == 1.0


@pytest.mark.parametrize("weight", [1.5, 4.0])
def test_a_recorded_weight_is_a_log_shift_on_its_class_and_tags_the_version(weight):
    info = {"decision_weight": {"class": "MI", "weight": weight}}
    expected = np.zeros(len(CLASSES))
    expected[MI] = np.log(weight)
    np.testing.assert_array_equal(log_weights(info), expected)
    assert version_tag(info) == f"+wMI{weight:g}"
    assert not log_weights({}).any() and version_tag({}) == ""


def test_the_sixth_candidates_kept_judgement_is_what_its_predictions_give():
    """`class-weight.json` beside the four-seed run (written by `ecg-app model fit-class-weight`, quoted in
    the model card) is `judge_weight` of that run's `oof.csv`: the weight was not adopted, and the shipped
    model records none."""
    import json

    from tests.conftest import MODEL_DIR

    run = MODEL_DIR / "cross-validation" / "diagnosis-mix4"
    kept = json.loads((run / "class-weight.json").read_text())
    judged = json.loads(json.dumps(judge_weight(run)))
    assert {k: v for k, v in kept.items() if k != "cv_run"} == {
        k: v for k, v in judged.items() if k != "cv_run"
    }
    assert not kept["adopted"] and kept["nested"]["macro_f1"] < kept["unweighted"]["macro_f1"]
    assert "decision_weight" not in json.loads((MODEL_DIR / "model.json").read_text())
