"""Metric values known in closed form, checked without ../shared.

Most cases draw their factors from `BalancedGrid`, which hands out the rows of the full factor
grid in order, again and again: with sample sizes that are multiples of the grid size every
factor value occurs equally often and the factors are exactly independent, so plug-in
entropies, mutual informations, covariances and accuracies take their exact textbook values.
Each expected value below is worked out in the test from those definitions, not from the
metric's code.
"""
import math
import warnings

import numpy as np
import pytest

from disentbench import metrics
from disentbench.metrics.dci import completeness, disentanglement
from disentbench.metrics.modularity_explicitness import modularity
from disentbench.metrics.unsupervised import gaussian_total_correlation
from tests.oracle_cases import SyntheticData


class BalancedGrid(SyntheticData):
    """`sample_factors` returns the next rows of the full grid (row-major), cycling."""

    def __init__(self, factor_sizes):
        super().__init__(factor_sizes)
        self.grid = np.stack(np.unravel_index(np.arange(math.prod(factor_sizes)), factor_sizes), 1)
        self.position = 0

    def sample_factors(self, n, random_state):
        rows = self.grid[(self.position + np.arange(n)) % len(self.grid)]
        self.position += n
        return rows


def standardised(factor, size):
    """A factor column with mean 0 and variance 1 over the balanced grid."""
    return (factor - (size - 1) / 2) / math.sqrt((size ** 2 - 1) / 12)


def entropy(p, base=math.e):
    p = [v / sum(p) for v in p]
    return -sum(v * math.log(v) for v in p if v > 0) / math.log(base)


def test_mig_bins_the_codes_but_not_the_factors():
    """Codes (f0, f1), f0 with 40 values, f1 with 2. Code 0 in 20 bins merges pairs of f0's
    values: I(bin z0; f0) = log 20 of H(f0) = log 40, and z1 says nothing about f0. For f1 the
    gap is log 2 / log 2. MIG = (log 20 / log 40 + 1) / 2 (binning the factors too gives 1)."""
    values = metrics.compute("mig", BalancedGrid((40, 2)), lambda x: x, num_train=800)
    expected = (math.log(20) / math.log(40) + 1) / 2
    assert values["discrete_mig"] == pytest.approx(expected, abs=1e-12)


def test_mig_gap_is_to_the_second_best_code():
    """Codes (f0, f1, [f0 >= 2]) with f0 of 4 values, f1 binary: for f0 the codes carry
    log 4, 0 and log 2, a gap of (log 4 - log 2) / log 4 = 1/2; for f1 the gap is 1.
    MIG = 3/4 (a gap to the least informative code would give 1)."""
    values = metrics.compute("mig", BalancedGrid((4, 2)),
                             lambda x: np.stack([x[:, 0], x[:, 1], x[:, 0] >= 2], 1),
                             num_train=800)
    assert values["discrete_mig"] == pytest.approx(0.75, abs=1e-12)


def test_sap_discrete_on_codes_with_known_accuracies():
    """Binary factors, codes (f0, f1, f0 + f1). A threshold on code i predicts its own factor
    always, the other factor half the time (independent and balanced: any rule scores 1/2),
    and from f0 + f1 either factor 3/4 of the time (0 and 2 decide it, 1 is a coin). Top-two
    gaps 1 - 3/4 for both factors: SAP = 1/4."""
    values = metrics.compute("sap", BalancedGrid((2, 2)),
                             lambda x: np.stack([x[:, 0], x[:, 1], x[:, 0] + x[:, 1]], 1),
                             num_train=800, num_test=400)
    assert values["SAP_score"] == pytest.approx(0.25, abs=1e-12)


def test_sap_continuous_is_the_gap_of_squared_correlations():
    """With standardised independent factors u0, u1, code a·u0 + b·u1 has squared correlation
    a² / (a² + b²) with u0. Codes (2u0 + u1, u1, u0 + u1): columns (4/5, 0, 1/2) and
    (1/5, 1, 1/2), gaps 0.3 and 0.5: SAP = 0.4."""
    sizes = (4, 6)

    def represent(x):
        u0, u1 = standardised(x[:, 0], 4), standardised(x[:, 1], 6)
        return np.stack([2 * u0 + u1, u1, u0 + u1], 1)
    values = metrics.compute("sap-continuous", BalancedGrid(sizes), represent, num_train=960)
    assert values["SAP_score"] == pytest.approx(0.4, abs=1e-12)


def test_irs_on_codes_with_known_deviations():
    """Binary factors. z0 = f0 + 2 f1 (values 0..3, largest deviation from its mean 1.5):
    fixing f0 leaves deviations 1 (IRS 1 - 1/1.5), fixing f1 leaves 1/2 (1 - 0.5/1.5): its
    score is 2/3. z1 = f0 (largest deviation 1/2) scores 1. Weighted by the largest
    deviations: (1.5 · 2/3 + 0.5 · 1) / 2 = 3/4."""
    values = metrics.compute("irs", BalancedGrid((2, 2)),
                             lambda x: np.stack([x[:, 0] + 2 * x[:, 1], x[:, 0]], 1),
                             num_train=800)
    assert values["IRS"] == pytest.approx(0.75, abs=1e-12)
    assert values["num_active_dims"] == 2


def test_irs_uses_the_99th_percentile_of_the_deviations():
    """One code z = f0 + 2 f1, f0 binary, f1 of 3 values (z in 0..5, largest deviation 2.5).
    Fixing f0 leaves z in {2 f1 + f0}: deviations 0 (a third) and 2 (two thirds), 99th
    percentile 2: IRS 1 - 2/2.5 = 0.2. Fixing f1 leaves deviations 1/2: 1 - 0.5/2.5 = 0.8.
    IRS = 0.8 (the 0.99th percentile, 0, would give 1)."""
    values = metrics.compute("irs", BalancedGrid((2, 3)),
                             lambda x: (x[:, 0] + 2 * x[:, 1])[:, None], num_train=960)
    assert values["IRS"] == pytest.approx(0.8, abs=1e-12)


def test_factor_vae_score_divides_local_by_global_variance():
    """Codes z0 = 10 (f0 + f1), z1 = f1. Fixing f1 zeroes z1's variance: z1 wins. Fixing f0
    leaves z0 with 100 var(f1) and z1 with var(f1); relative to the global variances
    100 (var f0 + var f1) and var f1, z0 always has the smaller ratio and wins. So each factor
    has its own code and the score is exactly 1 for any sample. Without the division z1 would
    win both: about 1/2."""
    values = metrics.compute("factor-vae", SyntheticData((10, 10)),
                             lambda x: np.stack([10 * (x[:, 0] + x[:, 1]), x[:, 1]], 1),
                             size="quick")
    assert values["train_accuracy"] == 1.0 and values["eval_accuracy"] == 1.0
    assert values["num_active_dims"] == 2


def test_factor_vae_score_prunes_codes_below_the_threshold():
    """A third code of std 0.01 < 0.05 has the least variance whichever factor is fixed; it
    must be left out, or every vote would go to it."""
    values = metrics.compute("factor-vae", SyntheticData((10, 10)),
                             lambda x: np.stack([x[:, 0], x[:, 1], 0.01 * x[:, 0] / 3], 1),
                             size="quick")
    assert values["eval_accuracy"] == 1.0 and values["num_active_dims"] == 2


def replayed_label_counts(seed, num_points, draws_per_point, before=0, sizes=(10, 10),
                          batch_size=8):
    """Counts per factor of the labels the reference's sampling draws: RandomState(seed), first
    `before` factor rows, then per point a label randint(F) and `draws_per_point` batches of
    factor rows (each factor column randint(K, size=batch_size)); for the train points and then
    the eval points."""
    random_state = np.random.RandomState(seed)

    def rows(n):
        for k in sizes:
            random_state.randint(k, size=n)
    if before:
        rows(before)
    counts = []
    for _ in range(2):
        labels = []
        for _ in range(num_points):
            labels.append(random_state.randint(len(sizes)))
            for _ in range(draws_per_point):
                rows(batch_size)
        counts.append(np.bincount(labels, minlength=len(sizes)))
    return counts


@pytest.mark.parametrize("seed", range(4))
def test_factor_vae_score_classifier_comes_from_the_train_votes(seed):
    """One code, f0 + f1: every vote goes to it, so the classifier names the factor fixed most
    often in the train sample. Train accuracy is that factor's share of the train labels, eval
    accuracy its share of the eval labels (seeds 0, 2, 3: the eval majority is the other
    factor)."""
    train, evaluation = replayed_label_counts(seed, 11, 1, before=100)
    values = metrics.compute("factor-vae", SyntheticData((10, 10)),
                             lambda x: (x[:, 0] + x[:, 1])[:, None], seed=seed, num_train=11,
                             num_eval=11, num_variance_estimate=100, batch_size=8)
    chosen = np.argmax(train)
    assert values["train_accuracy"] == train[chosen] / 11
    assert values["eval_accuracy"] == evaluation[chosen] / 11


@pytest.mark.parametrize("seed", range(4))
def test_beta_vae_score_of_a_constant_code_is_the_train_majority(seed):
    """A constant code gives every pair the feature 0: the logistic regression predicts the
    label most frequent in the train sample. Train accuracy is its share there, eval accuracy
    its share of the eval labels."""
    train, evaluation = replayed_label_counts(seed, 11, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = metrics.compute("beta-vae", SyntheticData((10, 10)),
                                 lambda x: np.zeros((len(x), 2)), seed=seed, num_train=11,
                                 num_eval=11, batch_size=8)
    chosen = np.argmax(train)
    assert values["train_accuracy"] == train[chosen] / 11
    assert values["eval_accuracy"] == evaluation[chosen] / 11


class CorrelatedThenIndependent(BalancedGrid):
    """Two binary factors, equal (rows (0, 0), (1, 1)) in the first `switch` rows drawn, then
    the full grid: a train sample where each factor predicts the other, a test sample where
    they are independent."""

    def __init__(self, switch):
        super().__init__((2, 2))
        self.switch = switch

    def sample_factors(self, n, random_state):
        if self.position >= self.switch:
            return super().sample_factors(n, random_state)
        rows = np.repeat((self.position + np.arange(n))[:, None] % 2, 2, axis=1)
        self.position += n
        return rows


def test_sap_scores_are_test_accuracies():
    """Codes (f0, f1). Trained where f0 = f1, a threshold on either code predicts both factors;
    on the independent test sample it predicts its own factor always and the other half the
    time: gaps 1/2, SAP = 1/2 (train accuracies would give 0)."""
    values = metrics.compute("sap", CorrelatedThenIndependent(switch=800), lambda x: x,
                             num_train=800, num_test=400)
    assert values["SAP_score"] == pytest.approx(0.5, abs=1e-12)


IMPORTANCE = np.array([[2.0, 1.0, 0.0],                 # codes x factors
                       [0.0, 1.0, 3.0]])


def test_dci_disentanglement_and_completeness_by_hand():
    """Entropies in base F (3 factors) over each code's row, in base D (2 codes) over each
    factor's column, weighted by the row's / column's share of the total importance."""
    total = IMPORTANCE.sum()
    expected_d = sum(row.sum() / total * (1 - entropy(row, base=3)) for row in IMPORTANCE)
    expected_c = sum(col.sum() / total * (1 - entropy(col, base=2)) for col in IMPORTANCE.T)
    assert disentanglement(IMPORTANCE) == pytest.approx(expected_d, abs=1e-9)
    assert completeness(IMPORTANCE) == pytest.approx(expected_c, abs=1e-9)
    assert expected_d == pytest.approx(3 / 7 * (1 - entropy([2, 1], 3)) + 4 / 7 * (1 - entropy([1, 3], 3)))
    assert expected_c == pytest.approx(2 / 7 + 2 / 7 * (1 - 1) + 3 / 7)   # 1 - H(1/2, 1/2) = 0


def test_dci_of_codes_where_one_split_decides_each_factor():
    """Binary factors, codes (f0, f1, f0 + f1): the first split on a factor's own code leaves
    pure leaves, so no tree ever splits on another code: importances are the identity,
    D = C = 1 (to the 1e-11 smoothing) and both accuracies 1."""
    values = metrics.compute("dci", BalancedGrid((2, 2)),
                             lambda x: np.stack([x[:, 0], x[:, 1], x[:, 0] + x[:, 1]], 1),
                             num_train=800, num_test=400)
    assert values["informativeness_train"] == values["informativeness_test"] == 1.0
    assert values["disentanglement"] == pytest.approx(1.0, abs=1e-8)
    assert values["completeness"] == pytest.approx(1.0, abs=1e-8)


def test_modularity_by_hand():
    """Row [2, 1]: 1 - (4 + 1 - 4) / (4 (F - 1)) = 3/4; a row with one nonzero entry: 1;
    a code with no information: 0."""
    mi = np.array([[2.0, 1.0], [0.0, 3.0], [0.0, 0.0]])
    assert modularity(mi) == pytest.approx((0.75 + 1 + 0) / 3, abs=1e-15)


@pytest.mark.parametrize("rho", [0.0, 0.5, -0.9])
def test_gaussian_total_correlation_of_two_correlated_dims(rho):
    """KL(N(0, Σ) || N(0, diag Σ)) = -½ log(1 - ρ²) for correlation ρ, whatever the scales."""
    cov = np.array([[4.0, rho * 2 * 3], [rho * 2 * 3, 9.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * math.log(1 - rho ** 2),
                                                            abs=1e-12)


def test_unsupervised_scores_of_a_code_with_known_covariance():
    """Codes (u0, u0 + u1), u standardised independent factors: Cov = s [[1, 1], [1, 2]]
    (s = n / (n - 1), the ddof-1 estimate). Total correlation ½ log(1 · 2 / 1) = ½ log 2.
    Wasserstein correlation 2 tr Σ - 2 tr sqrtm(M), M = Σ with row i scaled by Σ_ii; for a 2×2
    M with positive eigenvalues tr sqrtm(M) = sqrt(tr M + 2 sqrt(det M))."""
    n = 960

    def represent(x):
        u0, u1 = standardised(x[:, 0], 4), standardised(x[:, 1], 6)
        return np.stack([u0, u0 + u1], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = metrics.compute("unsupervised", BalancedGrid((4, 6)), represent, num_train=n)
    s = n / (n - 1)
    a, b, c = s, 2 * s, s
    m = np.array([[a * a, a * c], [b * c, b * b]])
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    wasserstein = 2 * (a + b) - 2 * tr_sqrt
    assert values["gaussian_total_correlation"] == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert values["gaussian_wasserstein_correlation"] == pytest.approx(wasserstein, abs=1e-9)
    assert values["gaussian_wasserstein_correlation_norm"] == pytest.approx(
        wasserstein / (a + b), abs=1e-9)


def test_unsupervised_scores_of_independent_codes_are_zero():
    """Codes (f0, f1) of the balanced grid are exactly independent and uncorrelated: total
    correlation, Wasserstein correlation and the mean mutual information between different
    codes (the diagonal, a code's own entropy, left out) are all 0."""
    values = metrics.compute("unsupervised", BalancedGrid((4, 6)), lambda x: x, num_train=960)
    for key in ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
                "mutual_info_score"):
        assert values[key] == pytest.approx(0.0, abs=1e-12), key
