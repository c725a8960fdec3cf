"""The plots of a report (PNG), one colour per run label in every plot (`palette`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs
import seaborn as sns
from matplotlib.figure import Figure

from disentbench import metrics
from disentbench.bench.io import atomic_path

from .manifest import naming

DIRECTION_NOTE = {metrics.HIGHER: "higher is better", metrics.LOWER: "lower is better"}
# Disentanglement metrics for the trade-off plot, in order of preference.
DISENTANGLEMENT = ("mig/discrete_mig", "dci-fast/disentanglement", "dci/disentanglement",
                   "sap/SAP_score", "factor-vae/eval_accuracy", "beta-vae/eval_accuracy",
                   "modularity-explicitness/modularity_score", "irs/IRS")
TRADEOFF_X = "reconstruction/squared_error"


def palette(labels) -> dict:
    """A fixed colour per label, by its place in the report order (dark qualitative colours
    first: tab10, Dark2, Set1; evenly spaced hues beyond those 27)."""
    colours = (sns.color_palette("tab10") + sns.color_palette("Dark2")
               + sns.color_palette("Set1"))
    if len(labels) > len(colours):
        colours = sns.color_palette("husl", len(labels))
    return dict(zip(labels, colours))


def save(fig, path: Path) -> Path:
    """`fig` as the PNG `path` (an OSError names `path`)."""
    with naming(path), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return path


def subplots(rows: int = 1, cols: int = 1, *, figsize, layout=None, **kwargs):
    """A figure and its axes without pyplot: no backend switch and no global figure registry
    (importing the report changes nothing in a notebook)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(rows, cols, **kwargs)


def _figure(rows: int, cols: int, width: float, height: float):
    """A figure of rows × cols panels whose layout (legends outside included) is solved in the
    one draw that saving does."""
    return subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                        layout="constrained")


def _axes(n: int, width: float = 4.2, height: float = 3.4, cols: int = 4):
    cols = min(cols, n)
    fig, axes = _figure(-(-n // cols), cols, width, height)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _bands(ax, data: pd.DataFrame, column: str, labels, colours, legend: bool = False) -> None:
    """Per label the mean over seeds of `column` against step, with the min–max band."""
    summary = data.groupby(["label", "step"])[column].agg(["mean", "min", "max"])
    for label in labels:
        if label not in summary.index.get_level_values(0):
            continue
        line = summary.loc[label]
        ax.plot(line.index, line["mean"], color=colours[label], lw=1.3, label=label)
        ax.fill_between(line.index, line["min"], line["max"], color=colours[label], alpha=0.2,
                        lw=0)
    ax.set_xlabel("training step")
    if legend:
        ax.legend(title="method", loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)


def metric_boxes(done: pd.DataFrame, dataset: str, metric_columns, labels, colours, directions,
                 left_out, path: Path) -> Path:
    """One panel per metric: a box per method, the seeds as points; `left_out`: metrics whose
    values in another likelihood than the suite's Bernoulli are not shown."""
    fig, axes = _axes(len(metric_columns), width=4.6, height=max(2.6, 0.9 + 0.32 * len(labels)))
    jitter = np.random.RandomState(0)
    for ax, metric in zip(axes, metric_columns):
        values = done.dropna(subset=[metric]).groupby("label")[metric]
        order = [l for l in labels if l in values.groups][::-1]          # first label on top
        groups = [values.get_group(l).to_numpy() for l in order]
        boxes = ax.boxplot(groups, orientation="horizontal", showfliers=False, patch_artist=True, widths=0.6)
        for patch, label in zip(boxes["boxes"], order):
            patch.set(facecolor=colours[label], alpha=0.45)
        for y, (group, label) in enumerate(zip(groups, order), start=1):
            ax.scatter(group, y + jitter.uniform(-0.15, 0.15, len(group)), s=12,
                       color=colours[label], edgecolor="black", linewidth=0.4, zorder=3)
        ax.set_yticks(range(1, len(order) + 1), order, fontsize=8)
        note = DIRECTION_NOTE.get(directions.get(metric), "not ranked")
        if metric in left_out:
            note += "; Bernoulli-likelihood models only"
        ax.set_title(f"{metric}\n({note})", fontsize=9)
        ax.set_xlabel("value (box: quartiles over seeds; points: seeds)", fontsize=8)
    fig.suptitle(f"{dataset}: metrics per method")
    return save(fig, path)


def sigma_beta_hat(histories: pd.DataFrame, labels, colours, path: Path) -> Path | None:
    """σ0, σ1 and β̂ = σ0²/σ1² of the L-VAE family over training: mean over seeds with the
    min–max band, one row of panels per dataset; beside β̂, dashed, the mean of the equilibrium
    it chases, β̂* = √(L_R/KL) of each logged batch."""
    columns = ("sigma0", "sigma1", "beta_hat")
    if histories.empty or not set(columns) <= set(histories):
        return None
    part = histories.dropna(subset=list(columns))
    if part.empty:
        return None
    datasets = sorted(part["dataset"].unique())
    fig, axes = _figure(len(datasets), 3, 4.8, 3.4)
    titles = {"sigma0": "σ0 (weight 1/σ0² on reconstruction)",
              "sigma1": "σ1 (weight 1/σ1² on KL)",
              "beta_hat": "learned β̂ = σ0²/σ1² (dashed: β̂* = √(L_R/KL))"}
    for row, dataset in zip(axes, datasets):
        data = part[part["dataset"] == dataset]
        order = [l for l in labels if l in set(data["label"])]
        for ax, column in zip(row, columns):
            _bands(ax, data, column, order, colours, legend=column == "beta_hat")
            if column == "beta_hat":
                _equilibrium(ax, data, order, colours)
                ax.axhline(1.0, color="grey", ls=":", lw=1)
                if data[column].max() > 10 * data[column].min() > 0:
                    ax.set_yscale("log")
            ax.set_title(f"{dataset}: {titles[column]}", fontsize=9)
            ax.set_ylabel(column)
    fig.suptitle("L-VAE σ and β̂ over training (line: mean over seeds; band: min–max)")
    return save(fig, path)


def _equilibrium(ax, data: pd.DataFrame, labels, colours) -> None:
    """Per label the mean over seeds of beta_hat_star against step, dashed."""
    if "beta_hat_star" not in data:
        return
    for label in labels:
        star = data[data["label"] == label].groupby("step")["beta_hat_star"].mean().dropna()
        ax.plot(star.index, star.values, ls="--", color=colours[label], lw=1)


def controllers(histories: pd.DataFrame, labels, colours, path: Path) -> Path | None:
    """β and KL of the KL-controlled methods (ControlVAE, DynamicVAE) against their set-point C:
    mean over seeds with the min–max band, one row per dataset."""
    if histories.empty or not {"C", "beta", "kl"} <= set(histories):
        return None
    part = histories.dropna(subset=["C", "beta", "kl"])
    if part.empty:
        return None
    datasets = sorted(part["dataset"].unique())
    fig, axes = _figure(len(datasets), 2, 5.0, 3.4)
    for (beta_ax, kl_ax), dataset in zip(axes, datasets):
        data = part[part["dataset"] == dataset]
        order = [l for l in labels if l in set(data["label"])]
        _bands(beta_ax, data, "beta", order, colours)
        for label in order:
            target = data[data["label"] == label].groupby("step")["C"].mean()
            kl_ax.plot(target.index, target.values, ls="--", color=colours[label], lw=1)
        _bands(kl_ax, data, "kl", order, colours, legend=True)
        beta_ax.set_title(f"{dataset}: β set by the controller", fontsize=9)
        beta_ax.set_ylabel("β")
        kl_ax.set_title(f"{dataset}: KL (solid) and its set-point C (dashed)", fontsize=9)
        kl_ax.set_ylabel("KL (nats)")
    return save(fig, path)


def tradeoff(done: pd.DataFrame, dataset: str, labels, colours, directions, path: Path):
    """Reconstruction (squared error of the decoder mean) against each disentanglement metric
    present: one point per run, colour = method."""
    wanted = [m for m in DISENTANGLEMENT if m in done and done[m].notna().any()][:4]
    if TRADEOFF_X not in done or done[TRADEOFF_X].isna().all() or not wanted:
        return None
    fig, axes = _axes(len(wanted), width=4.6, height=3.8)
    for ax, metric in zip(axes, wanted):
        part = done.dropna(subset=[TRADEOFF_X, metric])
        for label in [l for l in labels if l in set(part["label"])]:
            runs = part[part["label"] == label]
            ax.scatter(runs[TRADEOFF_X], runs[metric], s=20, color=colours[label], label=label)
        ax.set_xlabel("squared error per image (lower is better)", fontsize=8)
        ax.set_ylabel(f"{metric} ({DIRECTION_NOTE.get(directions.get(metric), '')})", fontsize=8)
        ax.set_title(f"{dataset}: reconstruction vs {metric.split('/')[0]}", fontsize=9)
    axes[-1].legend(title="method", loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
    return save(fig, path)


def agreement_heatmap(correlation: pd.DataFrame, dataset: str, path: Path):
    if correlation.shape[0] < 2:
        return None
    size = 1.5 + 0.55 * len(correlation)
    fig, ax = subplots(figsize=(size + 1.5, size), layout="constrained")
    sns.heatmap(correlation, vmin=-1, vmax=1, cmap="vlag", annot=True, fmt=".2f",
                cbar_kws={"label": "Spearman ρ"}, ax=ax, annot_kws={"fontsize": 7})
    ax.set_title(f"{dataset}: rank agreement between metrics over runs\n"
                 "(each metric oriented so that higher is better)", fontsize=9)
    ax.tick_params(labelsize=7)
    return save(fig, path)


def critical_difference(ranks: pd.Series, nemenyi: pd.DataFrame, friedman_p: float, blocks: int,
                        colours, path: Path) -> Path:
    fig, ax = subplots(figsize=(9, 0.9 + 0.28 * len(ranks)), layout="constrained")
    scikit_posthocs.critical_difference_diagram(
        ranks, nemenyi, ax=ax, color_palette={k: colours[k] for k in ranks.index},
        label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}")
    ax.set_title(f"Average rank over {blocks} dataset × metric blocks (1 = best), Friedman "
                 f"p = {friedman_p:.2g}\nbars join methods that the Nemenyi test (α = 0.05) "
                 f"cannot separate", fontsize=9)
    return save(fig, path)


def kl_per_dim(sheets: list[dict], dataset: str, path: Path) -> Path | None:
    """KL per latent dimension of the traversal run of each method, each row sorted (largest
    first) as its traversal rows are."""
    sheets = [s for s in sheets if s.get("kl")]
    if not sheets:
        return None
    width = max(len(s["kl"]) for s in sheets)
    table = np.full((len(sheets), width), np.nan)
    for row, sheet in zip(table, sheets):
        row[:len(sheet["kl"])] = sorted(sheet["kl"], reverse=True)
    fig, ax = subplots(figsize=(max(7.0, 2.5 + 0.55 * width), 1.2 + 0.32 * len(sheets)),
                           layout="constrained")
    sns.heatmap(pd.DataFrame(table, index=[f"{s['label']} (seed {s['seed']})" for s in sheets],
                             columns=range(1, width + 1)),
                annot=True, fmt=".2g", cmap="viridis", cbar_kws={"label": "KL (nats)"}, ax=ax,
                annot_kws={"fontsize": 7})
    ax.set_xlabel("latent dimension, by KL (1 = largest)")
    ax.set_title(f"{dataset}: KL per latent dimension of the traversal runs", fontsize=9)
    return save(fig, path)


def training(histories: pd.DataFrame, dataset: str, labels, colours, path: Path) -> Path | None:
    """Loss, reconstruction and KL over training: mean over seeds with the min–max band."""
    part = histories[histories["dataset"] == dataset] if len(histories) else histories
    terms = [c for c in ("loss", "recon", "kl") if c in part and part[c].notna().any()]
    if part.empty or not terms:
        return None
    fig, axes = _figure(1, len(terms), 4.6, 3.6)
    names = {"loss": "loss (minimised)", "recon": "reconstruction term", "kl": "KL (nats)"}
    for ax, term in zip(axes[0], terms):
        _bands(ax, part, term, labels, colours, legend=term == terms[-1])
        ax.set_title(names[term], fontsize=9)       # short: the panels' titles must not meet
    fig.suptitle(f"{dataset}: training curves (line: mean over seeds; band: min–max)",
                 fontsize=10)
    return save(fig, path)
