"""Properties every metric should have, on synthetic codes (no model): a perfect code scores
about 1 where the metric allows it, a code independent of the factors scores about chance, a
rotated code scores below the perfect one, constant code dims do not crash anything."""
import math
import warnings

import numpy as np
import pytest

from disentbench import metrics
from disentbench.metrics.utils import Codes, sample_factors
from tests.oracle_cases import SyntheticData, splitmix64

SMALL = (2, 5, 10)
LARGE = (3, 6, 40, 32, 32)          # dSprites-sized grid: a hash code cannot be memorised
ROTATION = np.linalg.qr(np.random.RandomState(1234).randn(3, 3))[0]
DCI_SIZES = dict(num_train=500, num_test=250)


def standardised(x, sizes=SMALL):
    k = np.array(sizes, dtype=np.float64)
    return (x - (k - 1) / 2) / np.sqrt((k ** 2 - 1) / 12)


def perfect(x):
    return standardised(x)


def rotated(x):
    return standardised(x) @ ROTATION.T


def with_constant_dims(x):
    return np.concatenate([standardised(x), np.zeros((len(x), 2)), np.full((len(x), 1), 3.0)], 1)


def hash_noise(sizes, dim):
    """A code in [0, 1)^dim that is a hash of the whole factor row: no factor is predictable
    from it on a grid much larger than the sample."""
    strides = np.array([math.prod(sizes[i + 1:]) for i in range(len(sizes))])

    def represent(x):
        flat = (x.astype(np.int64) @ strides).astype(np.uint64)
        with np.errstate(over="ignore"):
            bits = splitmix64(np.uint64(16) * flat[:, None] + np.arange(dim, dtype=np.uint64))
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return represent


def score(name, represent, sizes=SMALL, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return metrics.compute(name, SyntheticData(sizes), represent, size="quick", **params)


def test_perfect_code_scores_one():
    assert score("beta-vae", perfect)["eval_accuracy"] == 1.0
    assert score("factor-vae", perfect)["eval_accuracy"] == 1.0
    assert score("mig", perfect)["discrete_mig"] > 0.99
    assert score("sap-continuous", perfect)["SAP_score"] > 0.99
    assert score("irs", perfect)["IRS"] > 0.99
    values = score("modularity-explicitness", perfect)
    assert min(values.values()) > 0.99
    values = score("dci", perfect, **DCI_SIZES)
    assert values["informativeness_test"] == 1.0
    assert values["disentanglement"] > 0.99 and values["completeness"] > 0.99


def test_code_independent_of_factors_scores_chance():
    noise = hash_noise(LARGE, 5)
    assert score("beta-vae", noise, LARGE)["eval_accuracy"] == pytest.approx(0.2, abs=0.05)
    assert score("factor-vae", noise, LARGE)["eval_accuracy"] < 0.3
    assert score("mig", noise, LARGE)["discrete_mig"] < 0.01
    assert score("sap", noise, LARGE)["SAP_score"] < 0.01
    assert score("sap-continuous", noise, LARGE)["SAP_score"] < 0.01
    assert score("irs", noise, LARGE)["IRS"] < 0.05
    values = score("modularity-explicitness", noise, LARGE)
    assert values["explicitness_score_test"] == pytest.approx(0.5, abs=0.02)
    binary = (2,) * 14              # many factors with few classes keep the booster quick
    values = score("dci", hash_noise(binary, 5), binary, **DCI_SIZES)
    assert values["informativeness_test"] == pytest.approx(0.5, abs=0.05)
    assert values["disentanglement"] < 0.05 and values["completeness"] < 0.05


@pytest.mark.parametrize("name, key", [("beta-vae", "eval_accuracy"),
                                       ("factor-vae", "eval_accuracy"), ("mig", "discrete_mig"),
                                       ("sap", "SAP_score"), ("sap-continuous", "SAP_score"),
                                       ("irs", "IRS"), ("modularity-explicitness",
                                                        "modularity_score")])
def test_rotated_code_scores_below_perfect(name, key):
    assert score(name, rotated)[key] < score(name, perfect)[key] - 0.01


def test_rotated_code_dci_below_perfect():
    ours, best = score("dci", rotated, **DCI_SIZES), score("dci", perfect, **DCI_SIZES)
    assert ours["disentanglement"] < best["disentanglement"] - 0.1
    assert ours["completeness"] < best["completeness"] - 0.1


def test_constant_code_dims_do_not_crash():
    for name in metrics.available():
        params = DCI_SIZES if name.startswith("dci") else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = metrics.compute(name, SyntheticData(SMALL), with_constant_dims,
                                     size="quick", **params)
        messages = [str(w.message) for w in caught]
        if name == "modularity-explicitness":
            assert np.isnan(values["explicitness_score_test"])
            assert any("constant" in m for m in messages)
        else:
            assert all(np.isfinite(v) for v in values.values()), (name, values)
            assert not messages, (name, messages)
    assert score("factor-vae", with_constant_dims)["num_active_dims"] == 3
    assert score("irs", with_constant_dims)["num_active_dims"] == 3


def test_collinear_codes_give_infinite_total_correlation_with_a_warning():
    data = SyntheticData(SMALL)
    with pytest.warns(RuntimeWarning, match="singular"):
        values = metrics.compute("unsupervised", data, lambda x: np.concatenate(
            [perfect(x), 0.5 * perfect(x)], 1), size="quick")
    assert values["gaussian_total_correlation"] == math.inf


def test_bad_names_and_sizes_are_refused_with_the_valid_choices():
    data = SyntheticData(SMALL)
    with pytest.raises(ValueError, match="unknown metric 'migg'; valid metrics: beta-vae"):
        metrics.compute("migg", data, perfect)
    with pytest.raises(ValueError, match="no parameter num_eval; valid parameters: batch_size"):
        metrics.compute("mig", data, perfect, num_eval=10)
    with pytest.raises(ValueError, match="num_train must be an integer of at least 2"):
        metrics.compute("mig", data, perfect, num_train=0)
    with pytest.raises(ValueError, match="unknown size 'tiny'; valid sizes: default, quick"):
        metrics.compute("mig", data, perfect, size="tiny")


def test_quick_sizes_replace_only_sample_sizes():
    factor_vae = metrics.get("factor-vae")
    assert factor_vae.params("default") == dict(num_train=10000, num_eval=5000,
                                                num_variance_estimate=10000, batch_size=64,
                                                prune_threshold=0.05)
    assert factor_vae.params("quick") == dict(num_train=2000, num_eval=1000,
                                              num_variance_estimate=2000, batch_size=64,
                                              prune_threshold=0.05)


class CountingRepresentation:
    """`represent` that records how many observations each call got."""

    def __init__(self, represent=perfect):
        self.represent, self.rows = represent, []

    def __call__(self, x):
        self.rows.append(len(x))
        return self.represent(x)


@pytest.mark.parametrize("index", ["dense", "sparse"])
def test_codes_encode_each_distinct_row_once_in_chunks(index, monkeypatch):
    if index == "sparse":  # the index used for grids too large for a dense one
        monkeypatch.setattr(Codes, "DENSE_LIMIT", 10)
    data, represent = SyntheticData(SMALL), CountingRepresentation()
    codes = Codes(data, represent, chunk_size=30)
    assert (codes._row is None) == (index == "sparse")
    factors = data.sample_factors(500, np.random.RandomState(0))
    np.testing.assert_array_equal(codes(factors), perfect(factors.astype(np.float64)))
    distinct = len(np.unique(factors, axis=0))
    assert codes.encoded == sum(represent.rows) == distinct
    assert max(represent.rows) == 30
    np.testing.assert_array_equal(codes(factors[::-1]), perfect(factors[::-1].astype(np.float64)))
    assert codes.encoded == distinct and codes.requested == 1000


def test_metrics_sharing_codes_encode_the_shared_sample_once():
    data, represent = SyntheticData(LARGE), CountingRepresentation(hash_noise(LARGE, 5))
    codes = Codes(data, represent)
    for name in ("mig", "irs", "unsupervised"):
        metrics.compute(name, data, represent, size="quick", codes=codes)
    sample = sample_factors(data, 2000, np.random.RandomState(0), batch_size=16)
    assert codes.requested == 3 * 2000
    assert codes.encoded == sum(represent.rows) == len(np.unique(sample, axis=0))


def test_represent_must_return_one_row_per_observation():
    with pytest.raises(ValueError, match=r"represent\(\) must return an array \(n, D\)"):
        metrics.compute("mig", SyntheticData(SMALL), lambda x: x[:1], size="quick")


def test_a_seeded_generator_works_as_the_seed():
    data, compute = SyntheticData(SMALL), lambda seed: metrics.compute(
        "sap", data, rotated, seed=seed, size="quick")
    drawn = np.random.RandomState(3).randint(2**31 - 1)
    assert compute(np.random.RandomState(3)) == compute(drawn)
    assert compute(np.random.default_rng(3)) == compute(np.random.default_rng(3))
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match="seed must be an int"):
            compute(bad)
