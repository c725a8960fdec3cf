"""The fast DCI mode against the reference mode: its booster is the reference's model (exact
for the first stages on data with few distinct values, where neither bins nor ties matter), and
its DCI values stay close to the reference's on the oracle cases.

Measured |Δ| (fast - reference, fixed inputs, all seeds): `small` grid: informativeness 0,
disentanglement <= 0.002, completeness <= 0.029 (duplicated code: importance shared at random
between two copies, as in the reference, but not the same draws); `dsprites_like` grid (codes
with more than 256 distinct values are binned): informativeness_test 0.016,
disentanglement 0.024, completeness 0.029 (rotated).
"""
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import metrics
from metrics import boosting
from tests import oracle_cases as oc
from tests.test_metrics_oracle import oracle  # noqa: F401  (fixture)

TOLERANCE = {"informativeness_train": 0.005, "informativeness_test": 0.02,
             "disentanglement": 0.03, "completeness": 0.035}


@pytest.mark.parametrize("classes, n, dims", [(2, 500, 3), (3, 300, 2), (4, 1000, 2)])
def test_booster_is_the_reference_model_while_no_ties_arise(classes, n, dims):
    rs = np.random.RandomState(0)
    y = rs.randint(classes, size=n)
    x = np.round((y[:, None] * 0.5 + rs.randn(n, dims)) * 2) / 2     # few distinct values
    x_test = np.round((rs.randint(classes, size=300)[:, None] * 0.5 + rs.randn(300, dims)) * 2) / 2
    importances, train_predicted, test_predicted = boosting.fit_predict(
        x, y, x_test, np.random.RandomState(0), n_stages=20)
    reference = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    np.testing.assert_allclose(importances, reference.feature_importances_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(train_predicted, reference.predict(x))
    np.testing.assert_array_equal(test_predicted, reference.predict(x_test))


def check_close(oracle, runs):
    assert runs
    worst = {}
    for run in runs:
        data, represent = oc.case(oracle, run["dataset"], run["representation"], run["size"])
        ours = metrics.compute("dci-fast", data, represent, seed=run["seed"], size="quick")
        for key, stored in run["result"].items():
            worst[key] = max(worst.get(key, 0.0), abs(ours[key] - oc.value(stored)))
    assert all(worst[k] <= TOLERANCE[k] for k in worst), worst


def test_fast_mode_agrees_with_the_reference_on_the_small_fixed_cases(oracle):  # noqa: F811
    check_close(oracle, oc.runs(oracle, size="fixed", metric="dci", dataset="small", seed=0))


@pytest.mark.slow
def test_fast_mode_agrees_with_the_reference_on_all_fixed_cases(oracle):  # noqa: F811
    check_close(oracle, oc.runs(oracle, size="fixed", metric="dci"))
