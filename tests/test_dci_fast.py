"""The fast DCI mode against the reference mode: its booster is the reference's
GradientBoostingClassifier(), to rounding, and its DCI values are the reference's.

Measured |Δ| (fast - oracle, seeds 0-2), informativeness: 0 in every case. Disentanglement and
completeness: `rotated` and `noisy_hash` 0 (all sizes); `perfect`, `partial`,
`perm_scale_nuisance` <= 2.5e-13 (fixed and small inputs), <= 5.7e-12 (study defaults);
`duplicated`: disentanglement <= 1e-13, completeness <= 8.6e-4 (fixed, small), 1.5e-4 (study
defaults): the two copies of a code give identical splits, which the reference tells apart by
rounding noise that follows its introsort's order of repeated values.
"""
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from disentbench import metrics

pytest.importorskip("numba", reason="dci-fast needs numba: pip install \"disentbench[fast]\"")
from disentbench.metrics import boosting  # noqa: E402
from tests import oracle_cases as oc
from tests.test_metrics_oracle import oracle  # noqa: F401  (fixture)

EXACT = 1e-12
DUPLICATED_COMPLETENESS = 2e-3


def data(classes, n, dims, seed, decimals=None):
    rs = np.random.RandomState(seed)
    y = rs.randint(classes, size=n)
    x = y[:, None] * 0.5 + rs.randn(n, dims)
    x_test = rs.randint(classes, size=300)[:, None] * 0.5 + rs.randn(300, dims)
    if decimals is not None:                 # few distinct values: ties everywhere
        x, x_test = np.round(x, decimals), np.round(x_test, decimals)
    return x, y, x_test


@pytest.mark.parametrize("classes, n, dims, decimals", [
    (2, 500, 3, None), (3, 400, 2, None), (6, 600, 5, None), (4, 600, 2, 0)])
def test_booster_is_the_reference_model(classes, n, dims, decimals):
    """Exact on distinct values; with repeated values the reference's sample order can tip
    exact ties by rounding noise (not in the last case, where values repeat)."""
    x, y, x_test = data(classes, n, dims, seed=classes, decimals=decimals)
    importances, train_predicted, test_predicted = boosting.fit_predict(
        x, y, x_test, np.random.RandomState(3))
    reference = GradientBoostingClassifier(random_state=np.random.RandomState(3)).fit(x, y)
    np.testing.assert_allclose(importances, reference.feature_importances_, rtol=0, atol=EXACT)
    np.testing.assert_array_equal(train_predicted, reference.predict(x))
    np.testing.assert_array_equal(test_predicted, reference.predict(x_test))


def test_values_within_1e7_count_as_equal_as_in_the_reference():
    rs = np.random.RandomState(1)
    y = rs.randint(3, size=400)
    x = rs.choice([1.0, 1.5, 3.0], size=(400, 2)).astype(np.float32)
    for _ in range(2):                       # 0-2 float32 ulps up, more often for class 2
        x = np.where(rs.rand(400, 2) < 0.3 + 0.2 * (y[:, None] == 2),
                     np.nextafter(x, np.float32(10)), x)
    x = x.astype(np.float64)
    importances, train_predicted, _ = boosting.fit_predict(x, y, x, np.random.RandomState(0))
    reference = GradientBoostingClassifier(random_state=0).fit(x, y)
    np.testing.assert_allclose(importances, reference.feature_importances_, rtol=0, atol=EXACT)
    np.testing.assert_array_equal(train_predicted, reference.predict(x))


def test_threads_change_nothing():
    x, y, x_test = data(5, 500, 4, seed=0)
    one = boosting.fit_predict(x, y, x_test, np.random.RandomState(0), n_stages=30, threads=1)
    two = boosting.fit_predict(x, y, x_test, np.random.RandomState(0), n_stages=30, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_non_finite_codes_are_refused_as_by_the_reference():
    x, y, x_test = data(3, 100, 2, seed=0)
    x[5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        boosting.fit_predict(x, y, x_test, np.random.RandomState(0))


def check_agreement(oracle, runs, tolerance=EXACT):
    assert runs
    bad = {}
    for run in runs:
        data, represent = oc.case(oracle, run["dataset"], run["representation"], run["size"])
        size = "default" if run["size"] == "study_default" else "quick"
        ours = metrics.compute("dci-fast", data, represent, seed=run["seed"], size=size)
        for key, stored in run["result"].items():
            allowed = tolerance
            if run["representation"] == "duplicated" and key == "completeness":
                allowed = DUPLICATED_COMPLETENESS
            if not abs(ours[key] - oc.value(stored)) <= allowed:
                bad[run["key"], key] = ours[key] - oc.value(stored)
    assert not bad, bad


def test_fast_mode_agrees_with_the_reference_on_the_small_fixed_cases(oracle):  # noqa: F811
    check_agreement(oracle, oc.runs(oracle, size="fixed", metric="dci", dataset="small", seed=0))


@pytest.mark.slow
def test_fast_mode_agrees_with_the_reference_on_all_fixed_and_small_cases(oracle):  # noqa: F811
    check_agreement(oracle, oc.runs(oracle, size="fixed", metric="dci")
                    + oc.runs(oracle, size="small", metric="dci"))


@pytest.mark.slow
def test_fast_mode_agrees_with_the_reference_at_study_defaults(oracle):  # noqa: F811
    check_agreement(oracle, oc.runs(oracle, size="study_default", metric="dci"), tolerance=1e-10)
