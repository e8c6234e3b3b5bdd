"""Per-lead statistics of the digitised curves, read by a linear model (docs/experiments.md, seventh
candidate).

Why: the diagnosis networks learn infarction from 13 to 16 printouts per fold, and two seeds of one
recipe find different ones. Q waves, shifted ST segments and tall or inverted T waves change a lead's
amplitude distribution, which a few numbers per lead describe (`statistics`), and a penalised linear
model (`LeadStatisticsModel`, its penalty chosen by inner cross-validation) reads them with no seed
and little room to overfit. `statistics` uses Keras ops, so the same code can run on the curves of the
served `LeadSignals` layer and on the numpy curves that training digitises once.
"""

from __future__ import annotations

import numpy as np
from keras import ops
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

# Percentiles of each cell's centre curve: baseline level, how far the deflections reach either way.
PERCENTILES: tuple[int, ...] = (2, 10, 25, 50, 75, 90, 98)
PER_CELL = len(PERCENTILES) + 4  # + mean thickness, highest top, lowest bottom, roughness
PENALTIES = np.logspace(-3, 1, 9)  # C tried by the inner cross-validation
INNER_FOLDS = 5
# Weight of this model's ECG-class proportions beside the page and diagnosis networks' mix (which keeps
# the rest): a third each, fixed before the cross-validation ran.
STATISTICS_SHARE = 1 / 3


def statistics(curves):
    """(N, cells, columns, 3) curves (top, centre, bottom; `LeadSignals`) -> (N, cells * PER_CELL)."""
    curves = ops.convert_to_tensor(curves, dtype="float32")
    top, centre, bottom = curves[..., 0], curves[..., 1], curves[..., 2]
    columns = centre.shape[-1]
    ranked = ops.sort(centre, axis=-1)
    picks = [round(q / 100 * (columns - 1)) for q in PERCENTILES]
    parts = [
        ops.take(ranked, picks, axis=-1),
        ops.mean(top - bottom, axis=-1, keepdims=True),
        ops.max(top, axis=-1, keepdims=True),
        ops.min(bottom, axis=-1, keepdims=True),
        ops.std(centre[..., 1:] - centre[..., :-1], axis=-1, keepdims=True),
    ]
    features = ops.concatenate(parts, axis=-1)
    return ops.reshape(features, (-1, features.shape[1] * PER_CELL))


class LeadStatisticsModel:
    """Standardised `statistics` -> multinomial logistic regression with balanced class weights, the L2
    penalty chosen by log-loss on `INNER_FOLDS` folds of whole duplicate groups (so near-copies of one
    printout never sit on both sides of the choice). Fitted attribute: `pipeline_`."""

    def __init__(self, seed: int = 42):
        self.seed = seed

    def fit(self, curves: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> LeadStatisticsModel:
        x = ops.convert_to_numpy(statistics(curves))
        inner = StratifiedGroupKFold(INNER_FOLDS, shuffle=True, random_state=self.seed)
        regression = LogisticRegressionCV(
            Cs=PENALTIES,
            l1_ratios=(0.0,),
            cv=list(inner.split(x, labels, groups)),
            scoring="neg_log_loss",
            class_weight="balanced",
            max_iter=5000,
            use_legacy_attributes=False,
        )
        self.pipeline_: Pipeline = make_pipeline(StandardScaler(), regression).fit(x, labels)
        return self

    @property
    def penalty_(self) -> float:
        """The C the inner cross-validation chose."""
        return float(np.ravel(self.pipeline_[-1].C_)[0])

    def predict_proba(self, curves: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(ops.convert_to_numpy(statistics(curves)))
