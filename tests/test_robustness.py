import numpy as np

from ecg_app.preprocess import preprocess
from ecg_app.robustness import DEGRADATIONS, robustness_table


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
        """Class 0 when the (degraded) page is bright on average, class 1 otherwise."""
        means = np.array([image.mean() for image in batch])
        return np.stack([means > 220, means <= 220], axis=1).astype(float)

    table = robustness_table(brightness_classifier, images, np.array([0, 0]))
    assert table["clean"] == {"accuracy": 1.0, "drop_points": 0.0}
    assert table["lighting gradient (40%)"]["accuracy"] == 0.0
    assert table["lighting gradient (40%)"]["drop_points"] == 100.0
    assert set(table) == {"clean", *DEGRADATIONS}
