"""Interventional Robustness Score (Suter et al., 2019), as dlib's `irs.compute_irs`."""
import numpy as np

from . import HIGHER, register
from .utils import factor_codes, histogram_discretize


@register("irs", default=dict(num_train=10000, batch_size=16, num_bins=20, diff_quantile=0.99),
          quick=dict(num_train=2000),
          directions=dict(IRS=HIGHER, num_active_dims=None, dlib_num_active_dims=None))
def irs(codes, seed, num_train, batch_size, num_bins, diff_quantile):
    """IRS of the non-constant code dims, factors discretised into `num_bins` bins as dlib does.

    `num_active_dims` is the number of non-constant code dims. dlib reports `np.sum` of the
    active codes' values under that key instead; that number is kept as `dlib_num_active_dims`.
    """
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must lie in [0, 1], got {diff_quantile}")
    mus, ys = factor_codes(codes, num_train, np.random.RandomState(seed), batch_size)
    ys_discrete = histogram_discretize(ys, num_bins)
    active_mus = mus[mus.var(axis=1) > 0.0, :]
    if not active_mus.any():
        score = 0.0
    else:
        score = scalable_disentanglement_score(ys_discrete.T, active_mus.T, diff_quantile)
    return {"IRS": float(score), "num_active_dims": int(active_mus.shape[0]),
            "dlib_num_active_dims": float(np.sum(active_mus))}


def scalable_disentanglement_score(gen_factors, latents, diff_quantile=0.99):
    """Weighted mean over latents of max over factors of 1 - E_k[q-quantile |z - E[z|g=k]|] /
    max |z - E z|, weights max |z - E z| (dlib's function of the same name)."""
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([latents.shape[1], gen_factors.shape[1]])
    for i in range(gen_factors.shape[1]):
        values = np.unique(gen_factors[:, i])
        for value in values:
            group = latents[gen_factors[:, i] == value, :]
            diffs = np.abs(group - np.mean(group, axis=0))
            cum_deviations[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= len(values)
    irs_matrix = 1.0 - cum_deviations / max_deviations[:, np.newaxis]
    scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        return np.average(scores, weights=max_deviations)
    return np.mean(scores)
