"""Agreement with disentanglement_lib's own values (../shared/oracle).

Our sampling replays the reference's RandomState call sequence and our estimators are seeded as
the reference seeds them, so every value agrees to rounding (|Δ| <= 1e-12; measured: 0 except
the unsupervised scores, 9e-16) with the scikit-learn the oracle was recorded with (1.9.1;
these tests skip under another minor version, whose estimators can round differently).
Exceptions are the documented ones: dlib's `num_active_dims` is compared with our
`dlib_num_active_dims`, and the cases where dlib crashes or returns NaN are checked against
what we do instead.
"""
import warnings

import numpy as np
import pytest
import sklearn

from disentbench import metrics
from tests import oracle_cases as oc

EXACT = 1e-12
FAST_METRICS = ["beta_vae", "factor_vae", "mig", "sap_discrete", "sap_continuous",
                "modularity_explicitness", "irs", "unsupervised"]


@pytest.fixture(scope="module")
def oracle(shared_dir):
    path = shared_dir / "oracle" / "reference_values.json"
    if not path.is_file():
        pytest.skip(f"oracle values not found at {path}")
    values = oc.load(str(path))
    recorded = values["environments"]["modern"]["scikit-learn"]
    if recorded.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        pytest.skip(f"the oracle's exact values were recorded with scikit-learn {recorded}, whose "
                    f"estimators they depend on; this is {sklearn.__version__} (pip install "
                    f"\"scikit-learn=={recorded}\" to run them)")
    return values


def run_ours(oracle, run):
    data, represent = oc.case(oracle, run["dataset"], run["representation"], run["size"])
    size = "default" if run["size"] == "study_default" else "quick"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return metrics.compute(oc.METRIC_NAMES[run["metric"]], data, represent,
                               seed=run["seed"], size=size)


def differences(oracle, runs):
    """|ours - reference| for every finite reference value of `runs`, keyed by run and key."""
    assert runs, "no oracle runs selected"
    out = {}
    for run in runs:
        if "error" in run:
            continue
        ours = run_ours(oracle, run)
        for key, stored in run["result"].items():
            reference = oc.value(stored)
            if np.isfinite(reference):
                out[run["key"], key] = abs(ours[oc.RESULT_KEYS.get(key, key)] - reference)
    return out


def assert_exact(diffs):
    bad = {k: d for k, d in diffs.items() if not d <= EXACT}
    assert not bad, f"{len(bad)} of {len(diffs)} values differ: {bad}"


def test_representations_match_their_check_points(oracle):
    for dataset in oracle["datasets"].values():
        for definition in dataset["representations"].values():
            represent = oc.representation(dataset, definition)
            points = definition["check_points"]
            codes = represent(np.array(points["factors"], dtype=np.float64))
            np.testing.assert_array_equal(codes, np.array(points["representation"]))


@pytest.mark.parametrize("metric", FAST_METRICS[2:])     # beta_vae/factor_vae have no fixed runs
def test_fixed_inputs_agree_exactly(oracle, metric):
    assert_exact(differences(oracle, oc.runs(oracle, size="fixed", metric=metric)))


@pytest.mark.parametrize("metric", FAST_METRICS)
def test_sampled_small_cases_agree_exactly_seed0(oracle, metric):
    assert_exact(differences(oracle, oc.runs(oracle, size="small", metric=metric, seed=0)))


@pytest.mark.slow
@pytest.mark.parametrize("metric", FAST_METRICS)
def test_sampled_small_cases_agree_exactly_other_seeds(oracle, metric):
    runs = [r for r in oc.runs(oracle, size="small", metric=metric) if r["seed"] != 0]
    assert_exact(differences(oracle, runs))


def test_dci_reference_mode_agrees_exactly_on_two_fixed_cases(oracle):
    runs = [r for r in oc.runs(oracle, size="fixed", metric="dci", seed=0, dataset="small")
            if r["representation"] in ("perfect", "rotated")]
    assert_exact(differences(oracle, runs))


@pytest.mark.slow
def test_dci_reference_mode_agrees_exactly_on_all_fixed_and_small_cases(oracle):
    runs = oc.runs(oracle, size="fixed", metric="dci") + oc.runs(oracle, size="small", metric="dci")
    assert_exact(differences(oracle, runs))


@pytest.mark.slow
@pytest.mark.parametrize("metric", FAST_METRICS)
def test_study_default_cases_agree_exactly(oracle, metric):
    assert_exact(differences(oracle, oc.runs(oracle, size="study_default", metric=metric)))


def test_constant_code_dims_where_dlib_crashes_or_returns_nan(oracle):
    """perm_scale_nuisance has two constant dims: dlib crashes in explicitness and returns NaN
    for the Gaussian total correlation; we give NaN with a warning, and the total correlation
    of the other dims (= that of the perfect code, invariant to permutation and scaling)."""
    assert "error" in oc.runs(oracle, size="fixed", metric="modularity_explicitness",
                              representation="perm_scale_nuisance")[0]
    data, represent = oc.case(oracle, "small", "perm_scale_nuisance", "fixed")
    with pytest.warns(RuntimeWarning, match="constant"):
        values = metrics.compute("modularity-explicitness", data, represent, size="quick")
    assert np.isnan(values["explicitness_score_train"]) and np.isnan(values["explicitness_score_test"])
    assert values["modularity_score"] == pytest.approx(0.6, abs=1e-4)   # 2 dead codes of 5 count 0

    data, represent = oc.case(oracle, "small", "perm_scale_nuisance", "fixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = metrics.compute("unsupervised", data, represent, size="quick")
    perfect = oc.runs(oracle, size="fixed", metric="unsupervised", representation="perfect",
                      dataset="small")[0]["result"]["gaussian_total_correlation"]
    assert ours["gaussian_total_correlation"] == pytest.approx(perfect, rel=1e-9)


def test_active_dims_are_counted(oracle):
    data, represent = oc.case(oracle, "small", "perm_scale_nuisance", "small")
    assert metrics.compute("factor-vae", data, represent, size="quick")["num_active_dims"] == 3
    assert metrics.compute("irs", data, represent, size="quick")["num_active_dims"] == 3
