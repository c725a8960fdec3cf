"""Statistics of the comparison: each method against L-VAE per metric (Wilcoxon signed-rank over
seeds both ran, Mann–Whitney U where they share fewer than two, Holm-corrected per dataset and
metric), Spearman agreement between metrics, and average ranks over datasets × metrics with the
Friedman test and the Nemenyi post-hoc (Demšar 2006)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats

from disentbench import metrics

REFERENCE = "l-vae"          # the method every other is tested against
ALPHA = 0.05


def holm(p_values) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: the i-th smallest of m is multiplied by m - i
    (i from 0), kept non-decreasing and capped at 1. NaN stays NaN and is not in the family."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    steps = (len(order) - np.arange(len(order))) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def compare(a: pd.Series, b: pd.Series) -> dict:
    """Two-sided test of values `a` vs `b` (each indexed by seed): Wilcoxon signed-rank over the
    seeds both have when they share at least two, else Mann–Whitney U over all values."""
    a, b = a.dropna(), b.dropna()
    shared = a.index.intersection(b.index)
    if len(shared) >= 2:
        difference = a[shared] - b[shared]
        if not difference.any():                      # identical on every seed
            return {"test": "wilcoxon", "n": len(shared), "statistic": 0.0, "p": 1.0}
        result = stats.wilcoxon(a[shared], b[shared])
        return {"test": "wilcoxon", "n": len(shared), "statistic": float(result.statistic),
                "p": float(result.pvalue)}
    if len(a) and len(b) and len(a) + len(b) > 2:
        result = stats.mannwhitneyu(a, b, alternative="two-sided")
        return {"test": "mannwhitneyu", "n": len(a) + len(b),
                "statistic": float(result.statistic), "p": float(result.pvalue)}
    return {"test": "", "n": len(a) + len(b), "statistic": np.nan, "p": np.nan}


def significance(done: pd.DataFrame, metric_columns, comparable, reference: str = REFERENCE):
    """Each label against `reference` per dataset and metric, Holm-corrected over the labels of a
    dataset and metric. `comparable(dataset, label, metric)` says whether a label is ranked on a
    metric (not so for a negative ELBO in another likelihood). One row per test."""
    rows = []
    for dataset, part in done.groupby("dataset"):
        if reference not in set(part["label"]):
            continue
        ref = part[part["label"] == reference].set_index("seed")
        for metric in metric_columns:
            if metric not in part or not comparable(dataset, reference, metric):
                continue
            family = []
            for label, group in part[part["label"] != reference].groupby("label", sort=False):
                if comparable(dataset, label, metric):
                    result = compare(group.set_index("seed")[metric], ref[metric])
                    family.append({"dataset": dataset, "metric": metric, "label": label,
                                   "reference": reference, **result})
            for row, adjusted in zip(family, holm([r["p"] for r in family])):
                row["p_holm"] = adjusted
            rows += family
    columns = ["dataset", "metric", "label", "reference", "test", "n", "statistic", "p", "p_holm"]
    return pd.DataFrame(rows, columns=columns)


def oriented(values: pd.DataFrame, directions: dict) -> pd.DataFrame:
    """Columns turned so that higher is better (lower-is-better metrics negated)."""
    return values.apply(lambda c: -c if directions.get(c.name) == metrics.LOWER else c)


def agreement(done: pd.DataFrame, metric_columns, directions: dict) -> pd.DataFrame:
    """Spearman rank correlation between metrics over the runs of one dataset, each metric
    oriented so that higher is better (so ρ > 0 means the two metrics prefer the same runs).
    Metrics with fewer than three values or no spread are left out."""
    values = done[[c for c in metric_columns if c in done]]
    values = values.loc[:, (values.notna().sum() >= 3) & (values.nunique() > 1)]
    return oriented(values, directions).corr(method="spearman", min_periods=3)


def average_ranks(means: pd.DataFrame, directions: dict):
    """Average ranks of methods over blocks (rows: (dataset, metric); columns: labels; cells: mean
    over seeds; rank 1 = best), on the labels present in every block that has at least half of
    them. Returns (ranks, Friedman p, Nemenyi p-value matrix, number of blocks), or None when
    fewer than 3 methods or 2 blocks remain."""
    means = means.dropna(axis=1, thresh=max(1, len(means) // 2)).dropna(axis=0)
    if means.shape[1] < 3 or means.shape[0] < 2:
        return None
    better_high = means.apply(lambda row: -row if directions.get(row.name[1]) == metrics.LOWER
                              else row, axis=1)
    ranks = better_high.rank(axis=1, ascending=False).mean()
    friedman = stats.friedmanchisquare(*[better_high[c] for c in better_high.columns]).pvalue
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(better_high.reset_index(drop=True))
    return ranks, float(friedman), nemenyi, len(means)
