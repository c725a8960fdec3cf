"""Unsupervised scores of dlib's `unsupervised_metrics.unsupervised_metrics`: Gaussian total
correlation, Gaussian Wasserstein correlation and mean pairwise mutual information of the codes."""
import warnings

import numpy as np
import scipy.linalg

from . import LOWER, register
from .utils import discrete_mutual_info, factor_codes, histogram_discretize


@register("unsupervised", default=dict(num_train=10000, batch_size=16, num_bins=20),
          quick=dict(num_train=2000),
          # less dependence between code dimensions is better (the codes are more factorised)
          directions=dict(gaussian_total_correlation=LOWER, gaussian_wasserstein_correlation=LOWER,
                          gaussian_wasserstein_correlation_norm=LOWER, mutual_info_score=LOWER))
def unsupervised(codes, seed, num_train, batch_size, num_bins):
    """Scores of the code covariance (ddof 1) and of the discretised codes (nats).

    Differences from dlib: a constant code dim (independent of everything) is left out of the
    total correlation, where dlib returns NaN (log 0); a singular covariance of the other dims
    (exactly collinear codes) gives +inf with a warning, as in dlib. `scipy.linalg.sqrtm` can
    return a complex matrix with a tiny imaginary part for a singular covariance, which dlib
    passes on; the Wasserstein values here are its real part.
    """
    mus, _ = factor_codes(codes, num_train, np.random.RandomState(seed), batch_size)
    num_codes = mus.shape[0]
    if num_codes < 2:
        raise ValueError(f"the unsupervised scores need at least 2 code dimensions, got {num_codes}")
    cov = np.cov(mus)
    wasserstein = gaussian_wasserstein_correlation(cov)
    discrete = histogram_discretize(mus, num_bins)
    mi = discrete_mutual_info(discrete, discrete)
    np.fill_diagonal(mi, 0)
    return {"gaussian_total_correlation": gaussian_total_correlation(cov),
            "gaussian_wasserstein_correlation": wasserstein,
            "gaussian_wasserstein_correlation_norm": float(wasserstein / np.sum(np.diag(cov))),
            "mutual_info_score": float(np.sum(mi) / (num_codes ** 2 - num_codes))}


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """KL(N(0, cov) || N(0, diag(cov))) over the dims of nonzero variance."""
    active = np.diag(cov) > 0
    cov = cov[np.ix_(active, active)]
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        warnings.warn("singular code covariance (collinear codes): Gaussian total correlation "
                      "is infinite", RuntimeWarning, stacklevel=3)
        return float("inf")
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """2 tr(cov) - 2 tr(sqrtm(cov * diag(cov)[:, None])) (real part)."""
    with warnings.catch_warnings():     # singular input: the result is still the one dlib gets
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return float(np.real(2 * np.trace(cov) - 2 * np.trace(sqrtm)))
