"""Sweep plots: each swept method's metrics against its hyperparameter (median over seeds, the
min–max band, the seeds as points); on the β-VAE curve the L-VAE runs' learned β̂ and the
fixed-β̂ ablation runs, the picture of the L-VAE paper's claim (β found without a search)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from disentbench import methods

from .plots import DIRECTION_NOTE, _axes, save
from .selection import candidates

SOURCE, TARGET = "l-vae", "beta-vae"          # the learned β̂ and the curve it is placed on


PARAM = "param:"                              # the column prefix of a parameter's values


def settings(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with a column `param:<name>` per parameter of its method: the run's value, or the
    default."""
    values = [{**methods.get(m).params, **json.loads(p)} if m in methods.available() else
              json.loads(p) for m, p in zip(runs["method"], runs["params"])]
    return runs.reset_index(drop=True).join(pd.DataFrame(values, dtype=object).add_prefix(PARAM))


def swept(done: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Each method with more than one setting: (its runs with their parameters, the parameters
    that vary)."""
    found = {}
    for method, part in candidates(done).groupby("method", sort=False):
        if part["label"].nunique() < 2:
            continue
        part = settings(part)
        names = [c.removeprefix(PARAM) for c in part.columns
                 if c.startswith(PARAM) and part[c].astype(str).nunique() > 1]
        found[method] = (part, names)
    return found


def _x(part: pd.DataFrame, names: list[str]):
    """(x per run, tick labels or None, axis label): the value of a single numeric parameter,
    else the settings in order."""
    if len(names) == 1 and pd.api.types.is_number(part[PARAM + names[0]].iloc[0]):
        return part[PARAM + names[0]].astype(float).to_numpy(), None, names[0]
    order = list(dict.fromkeys(part["label"]))
    return part["label"].map(order.index).to_numpy(float), order, "setting"


def _learned(done: pd.DataFrame, metric: str) -> list[tuple[str, str, float, float, pd.Series]]:
    """(label, legend text, β mean, β std, metric values) of the L-VAE runs (their final β̂)
    and of the fixed-β̂ ablation runs (the β̂ they were given)."""
    points = []
    source = done[(done["label"] == SOURCE)]
    if "beta_hat" in source and source["beta_hat"].notna().any():
        points.append((SOURCE, r"L-VAE at its learned $\hat\beta$", source["beta_hat"].mean(),
                       source["beta_hat"].std(), source[metric]))
    if "ablation_of" in done:
        ablation = done[done["ablation_of"] == SOURCE]
        if len(ablation):
            beta = ablation["ablation_beta_hat"].astype(float)
            points.append((ablation["label"].iloc[0], r"β-VAE with β fixed to $\hat\beta$",
                           beta.mean(), beta.std(), ablation[metric]))
    return points


def sweep_plot(part: pd.DataFrame, names, done: pd.DataFrame, dataset: str, method: str,
               columns, directions, colours, path: Path) -> Path | None:
    """One panel per metric: the median over seeds per setting joined by a line, the min–max
    band and the seeds; for β-VAE's β the L-VAE and ablation points (mean ± std of β)."""
    columns = [c for c in columns if c in part and part[c].notna().any()]
    if not columns:
        return None
    x, ticks, xlabel = _x(part, names)
    part = part.assign(x=x)
    colour = colours.get(method, colours.get(part["label"].iloc[0], "tab:blue"))
    fig, axes = _axes(len(columns), width=4.4, height=3.4)
    for ax, metric in zip(axes, columns):
        summary = part.groupby("x")[metric].agg(["median", "min", "max"]).dropna()
        ax.plot(summary.index, summary["median"], "-o", color=colour, lw=1.4, ms=4,
                label=f"{method} (median)")
        ax.fill_between(summary.index, summary["min"], summary["max"], color=colour, alpha=0.2,
                        lw=0, label="min–max over seeds")
        ax.scatter(part["x"], part[metric], s=9, color=colour, edgecolor="black", lw=0.3,
                   zorder=3)
        if method == TARGET and names == ["beta"]:
            for (label, what, beta, spread, values), marker in zip(_learned(done, metric),
                                                                   "Ds"):
                if values.notna().any():
                    ax.errorbar(beta, values.median(), xerr=0 if np.isnan(spread) else spread,
                                yerr=[[values.median() - values.min()],
                                      [values.max() - values.median()]],
                                fmt=marker, color=colours.get(label, "black"), ms=6, capsize=3,
                                mec="black", zorder=4,
                                label=f"{what} (β: mean ± std; metric: median, min–max)")
        if ticks is None and (x > 0).all() and x.max() >= 8 * x.min():
            ax.set_xscale("log")
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{metric}\n({DIRECTION_NOTE.get(directions.get(metric), 'not ranked')})",
                     fontsize=9)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize=8)
    fig.suptitle(f"{dataset}: {method} against {', '.join(names) or 'its settings'}")
    return save(fig, path)


def sweep_plots(done: pd.DataFrame, dataset: str, columns, directions, colours,
                pdir: Path) -> list[tuple[Path, str]]:
    """`plots/sweep_<dataset>_<method>.png` for each swept method of one dataset's runs."""
    figures = []
    for method, (part, names) in swept(done).items():
        path = sweep_plot(part, names, done, dataset, method, columns, directions, colours,
                          pdir / f"sweep_{dataset}_{method}.png")
        if path:
            extra = (" with the L-VAE runs' learned β̂ and the fixed-β̂ ablation"
                     if method == TARGET and names == ["beta"] else "")
            figures.append((path, f"{method}: metrics against {', '.join(names) or 'setting'} "
                                  f"(median, min–max over seeds){extra}"))
    return figures
