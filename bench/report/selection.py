"""Model selection: per dataset and method, one hyperparameter setting chosen by a named rule,
and how the method ranking changes between rules.

Rules (each scores a setting on the median over its seeds; the best setting wins, the earlier
label in report order on a tie):
  a named metric (`--select beta-vae`, the L-VAE paper's rule and the default): its median;
  `mean-rank`: the setting's rank among the method's settings, averaged over the headline metrics
      (a single metric biases the choice; this rule spreads it);
  `udr`: the median UDR score (Duan et al. 2020) of the setting's runs among themselves, which
      needs no ground truth (disentbench.bench.udr_setting).
The chosen setting enters the comparison with all its seeds: no best-seed picking.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from disentbench import metrics
from disentbench.bench.udr_setting import setting_scores

from .plots import DISENTANGLEMENT
from .tables import HEADLINE_METRICS

MEAN_RANK, UDR = "mean-rank", "udr"
DEFAULT_METRIC = "beta-vae"
NOTE = ("Setting chosen per method by {rule}, on the median over seeds; the table shows every "
        "seed of the chosen setting (no best-seed picking).")


def candidates(done: pd.DataFrame) -> pd.DataFrame:
    """The runs that are hyperparameter settings of a method (the fixed-β̂ ablation's runs, whose
    β differs by seed, are none)."""
    return done[done["ablation_of"].isna()] if "ablation_of" in done else done


def metric_key(name: str, columns) -> str:
    """`beta-vae` -> its headline key `beta-vae/eval_accuracy`; a full `metric/key` as it is."""
    if "/" in name:
        return name
    return next((m for m in (*HEADLINE_METRICS, *columns) if m.startswith(name + "/")),
                f"{name}/")


def metric_rule(done: pd.DataFrame, name: str) -> tuple[str, str]:
    """(the metric key rule `name` selects by, a note when it falls back): a metric without values
    (beta-vae is not computed by default on a CPU) gives way to the first disentanglement metric
    present."""
    key = metric_key(name, done.columns)
    if key in done and done[key].notna().any():
        return key, ""
    present = [m for m in DISENTANGLEMENT if m in done and done[m].notna().any()]
    if not present:
        return key, f"{key} has no values and no disentanglement metric has: nothing selected."
    return present[0], (f"{key} has no values (on a CPU the default metrics leave beta-vae "
                        f"out; --metrics all computes it): selected by {present[0]} instead.")


def oriented_medians(done: pd.DataFrame, columns, directions) -> pd.DataFrame:
    """Per (dataset, method, label) the median over seeds of each column, turned so that higher
    is better."""
    medians = done.groupby(["dataset", "method", "label"], sort=False)[list(columns)].median()
    return medians.apply(lambda c: -c if directions.get(c.name) == metrics.LOWER else c)


def by_metric(done: pd.DataFrame, key: str, directions) -> pd.Series:
    """Each setting's score: its median of `key`, oriented (higher is better)."""
    return oriented_medians(done, [key], directions)[key]


def by_mean_rank(done: pd.DataFrame, columns, directions) -> pd.Series:
    """Each setting's score: minus its rank among the method's settings (1 = best median),
    averaged over the ranked `columns` that have a value."""
    ranked = [c for c in columns if directions.get(c)]
    medians = oriented_medians(done, ranked, directions)
    ranks = medians.groupby(level=["dataset", "method"], sort=False).rank(ascending=False)
    return -ranks.mean(axis=1)


def by_udr(done: pd.DataFrame, out: Path) -> pd.Series:
    """Each setting's score: the median over its runs of their UDR among the setting's runs."""
    scores = {}
    for (dataset, method, label), part in done.groupby(["dataset", "method", "label"],
                                                       sort=False):
        dirs = [out / d for d in part["run_dir"]]
        found = setting_scores(dirs)
        values = np.array([found.get(d, np.nan) for d in dirs], dtype=float)
        scores[(dataset, method, label)] = (np.nanmedian(values) if np.isfinite(values).any()
                                            else np.nan)
    index = pd.MultiIndex.from_tuples(scores, names=["dataset", "method", "label"])
    return pd.Series(list(scores.values()), index=index, dtype=float)


def choose(scores: pd.Series, labels) -> tuple[pd.DataFrame, list[str]]:
    """The best-scoring setting of each (dataset, method) (`labels`: report order, which breaks
    ties), and a note for each method left out because no setting of several has a score; a
    method with one setting keeps it whatever its score."""
    order = {label: i for i, label in enumerate(labels)}
    rows, left_out = [], []
    for (dataset, method), part in scores.groupby(level=["dataset", "method"], sort=False):
        part = part.droplevel(["dataset", "method"])
        part = part.iloc[np.argsort([order.get(l, len(order)) for l in part.index], kind="stable")]
        if part.notna().any():
            label = part.idxmax()
        elif len(part) == 1:
            label = part.index[0]
        else:
            left_out.append(f"{dataset}/{method}: no setting of {len(part)} has a score")
            continue
        rows.append({"dataset": dataset, "method": method, "label": label,
                     "score": part[label], "settings": len(part)})
    return pd.DataFrame(rows, columns=["dataset", "method", "label", "score", "settings"]), left_out


def select(done: pd.DataFrame, out: Path, rule: str, columns, directions,
           labels) -> tuple[pd.DataFrame, list[str]]:
    """(the chosen settings of `rule` — a metric name, MEAN_RANK or UDR —, notes for the table)."""
    done = candidates(done)
    if rule == MEAN_RANK:
        scores, notes = by_mean_rank(done, columns, directions), [
            NOTE.format(rule="the mean rank over the headline metrics")]
    elif rule == UDR:
        scores, notes = udr_scores(done, out)
    else:
        key, fallback = metric_rule(done, rule)
        scores = (by_metric(done, key, directions) if key in done
                  else pd.Series(np.nan, index=oriented_medians(done, [], directions).index))
        notes = [NOTE.format(rule=key)] + ([fallback] if fallback else [])
    chosen, left_out = choose(scores, labels)
    swept = chosen[chosen["settings"] > 1]
    if len(swept):
        notes.append("Chosen: " + "; ".join(f"{r.method}: {r.label} (of {r.settings} settings)"
                                            for r in swept.itertuples()) + ".")
    return chosen, notes + [f"Left out: {'; '.join(left_out)}."] * bool(left_out)


def udr_scores(done: pd.DataFrame, out: Path) -> tuple[pd.Series, list[str]]:
    """by_udr's scores and the table's note (and why, where no setting has a UDR score)."""
    scores = by_udr(done, out)
    notes = [NOTE.format(rule="UDR (lasso, over the setting's seeds)")]
    if len(scores) and scores.isna().all():
        notes.append("No setting has a UDR score: UDR needs at least two runs of a setting with "
                     "their udr_codes.npz (written at evaluation) and an active latent.")
    return scores, notes


def method_ranking(selected: pd.DataFrame, columns, directions) -> pd.DataFrame:
    """Per metric (columns) the rank of each method (rows; 1 = best mean over the chosen
    setting's seeds), and their mean over the metrics as the column "mean rank"."""
    ranked = [c for c in columns if directions.get(c) and c in selected]
    means = selected.groupby("method")[ranked].mean()
    means = means.apply(lambda c: -c if directions.get(c.name) == metrics.LOWER else c)
    ranks = means.rank(ascending=False)
    ranks["mean rank"] = ranks.mean(axis=1)
    return ranks


def agreement(rankings: dict[str, pd.DataFrame], dataset: str) -> pd.DataFrame:
    """Kendall's τ between the method rankings of every two rules (`rankings`: rule ->
    method_ranking), per metric and for the mean rank, over the methods both rank."""
    rows = []
    for (a, first), (b, second) in itertools.combinations(rankings.items(), 2):
        for column in [c for c in first.columns if c in second.columns]:
            both = pd.concat([first[column], second[column]], axis=1, join="inner").dropna()
            tau, p = (scipy_stats.kendalltau(both.iloc[:, 0], both.iloc[:, 1])
                      if len(both) >= 2 else (np.nan, np.nan))
            rows.append({"dataset": dataset, "rule_a": a, "rule_b": b, "ranking": column,
                         "methods": len(both), "kendall_tau": tau, "p": p})
    return pd.DataFrame(rows, columns=["dataset", "rule_a", "rule_b", "ranking", "methods",
                                       "kendall_tau", "p"])
