import numpy as np

from ecg_app.serving.classifier import decide
from ecg_app.serving.preprocess import preprocess
from ecg_app.training.robustness import DEGRADATIONS, robustness_table


def test_every_degradation_keeps_an_rgb_picture_and_changes_it(printout):
    for name, degrade in DEGRADATIONS.items():
        out = degrade(printout)
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8, name
        assert not np.array_equal(out, printout), name


def test_header_blanking_is_invisible_to_the_model(printout):
    assert np.array_equal(preprocess(DEGRADATIONS["header blanked"](printout)), preprocess(printout))


def test_table_reports_drops_against_clean(printout):
    images = [printout, printout.copy()]

    def brightness_classifier(batch):
        """Class 0 (sure) when the (degraded) page is bright on average, class 1 (unsure) otherwise."""
        means = np.array([image.mean() for image in batch])
        probs = [[0.9, 0.1, 0, 0, 0] if mean > 220 else [0.3, 0.35, 0.35, 0, 0] for mean in means]
        return [decide(np.array(p), "test", review_threshold=0.5) for p in probs]

    table = robustness_table(brightness_classifier, images, np.array([0, 0]))
    assert table["clean"] == {"accuracy": 1.0, "drop_points": 0.0, "needs_review": 0.0}
    assert table["lighting gradient (40%)"]["needs_review"] == 1.0
    assert table["lighting gradient (40%)"]["accuracy"] == 0.0
    assert table["lighting gradient (40%)"]["drop_points"] == 100.0
    assert set(table) == {"clean", *DEGRADATIONS}


def test_table_reports_other_layout_ecgs_called_non_ecg_per_degradation(printout):
    """Unlabelled other-layout ECGs get their own column: the share called Non-ECG under each degradation."""

    def bright_is_ecg(batch):
        """Normal when the (degraded) page is bright on average, Non-ECG otherwise."""
        probs = [[0, 0, 0, 0.9, 0.1] if image.mean() > 220 else [0, 0, 0, 0.1, 0.9] for image in batch]
        return [decide(np.array(p), "test", review_threshold=0.5) for p in probs]

    table = robustness_table(bright_is_ecg, [printout], np.array([3]), other_layout=[printout, printout])
    assert table["clean"]["other_layout_called_non_ecg"] == 0.0
    assert table["lighting gradient (40%)"]["other_layout_called_non_ecg"] == 1.0
    assert all("other_layout_called_non_ecg" in row for row in table.values())
    assert (
        "other_layout_called_non_ecg"
        not in robustness_table(bright_is_ecg, [printout], np.array([3]))["clean"]
    )


def test_another_template_keeps_the_traces_and_is_the_same_every_run(printout):
    reprint = DEGRADATIONS["printed on another template"]
    page = reprint(printout)
    assert np.array_equal(reprint(printout.copy()), page)
    assert not np.array_equal(reprint(printout[::-1].copy()), page)  # another picture, another page
    # The trace area is the printout's, moved by at most 1%: the model's input barely changes.
    ink, original = preprocess(page)[:, :, 0], preprocess(printout)[:, :, 0]
    assert np.corrcoef(ink.ravel(), original.ravel())[0, 1] > 0.5
