import numpy as np

from ecg_app.serving.calibration import choose_review_threshold, fit_temperature, reliability, softmax


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    true_logits = rng.normal(0, 1, (2000, 5))
    true_logits[np.arange(2000), y] += 1.5
    # Sample labels from the true model so it is calibrated, then make it 3x overconfident.
    probs = softmax(true_logits)
    y = np.array([rng.choice(5, p=p) for p in probs])
    temperature = fit_temperature(true_logits * 3, y)
    assert 2.5 < temperature < 3.5
    assert (
        reliability(softmax(true_logits * 3 / temperature), y)["ece"]
        < reliability(softmax(true_logits * 3), y)["ece"]
    )


def test_reliability_of_a_perfectly_calibrated_toy():
    probs = np.array([[0.9, 0.1]] * 10)
    y = np.array([0] * 9 + [1])
    result = reliability(probs, y)
    assert abs(result["ece"]) < 1e-9
    assert sum(b["count"] for b in result["bins"]) == 10


def test_review_threshold_reaches_target_accuracy():
    confident_right = np.tile([0.95, 0.05], (50, 1))
    unsure_wrong = np.tile([0.55, 0.45], (10, 1))
    probs = np.vstack([confident_right, unsure_wrong])
    y = np.array([0] * 50 + [1] * 10)
    threshold = choose_review_threshold(probs, y, target_accuracy=0.95)
    assert 0.55 < threshold <= 0.95
    assert choose_review_threshold(confident_right, np.zeros(50, int)) == 0.4
