"""The tables of a report: summary over seeds, the paper's comparison per dataset (best in bold,
second best underlined, significance against L-VAE marked), the fixed-β̂ ablation (paper
Table 3) and the learned β̂ per dataset."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from disentbench import methods, metrics
from disentbench.bench.evaluate import IN_MODEL_LIKELIHOOD, RECONSTRUCTION
from disentbench.methods.base import DEFAULT_RECON

from .stats import ALPHA, REFERENCE, compare

# The one or two numbers of each metric that papers report.
HEADLINE_METRICS = (
    "beta-vae/eval_accuracy", "factor-vae/eval_accuracy", "mig/discrete_mig", "sap/SAP_score",
    "dci/disentanglement", "dci-fast/disentanglement", "dci-fast/completeness",
    "dci-fast/informativeness_test", "modularity-explicitness/modularity_score",
    "modularity-explicitness/explicitness_score_test", "irs/IRS",
    "unsupervised/gaussian_total_correlation", "reconstruction/negative_elbo",
    "reconstruction/squared_error")
CONVENTION = methods.Method.reconstruction_loss      # the likelihood of the suite's loss convention
ARROW = {metrics.HIGHER: "↑", metrics.LOWER: "↓"}


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of finished seeds per (dataset, label, reconstruction convention)
    for every numeric column."""
    done = runs[runs["status"] == "done"]
    keys = ["dataset", "label"] + (["recon_convention"] if "recon_convention" in runs else [])
    numeric = [c for c in done.select_dtypes("number").columns
               if c not in ("seed", "step", "steps")]
    if done.empty or not numeric:
        return pd.DataFrame(columns=keys)
    table = done.groupby(keys)[numeric].agg(["mean", "std", "count"])
    table.columns = [f"{c}:{stat}" for c, stat in table.columns]
    return table.reset_index()


def recon_note(done: pd.DataFrame) -> str:
    """The reconstruction convention(s) of `done`'s labels for a caption: the suite's default
    where a label has it (else the most common one), then each label with another, e.g.
    "reconstruction term: bernoulli-sum (l-vae-recon=mse-mean: mse-mean; sigma-vae: own
    gaussian NLL)"."""
    if "recon_convention" not in done or done.empty:
        return ""
    by_label = done.groupby("label", sort=False)["recon_convention"].first()
    common = DEFAULT_RECON if DEFAULT_RECON in set(by_label) else by_label.value_counts().index[0]
    others = "; ".join(f"{label}: {recon}" for label, recon in by_label.items() if recon != common)
    return f"reconstruction term: {common}" + (f" ({others})" if others else "")


def headline(done: pd.DataFrame) -> list[str]:
    """The headline metrics with at least one value among `done`."""
    return [m for m in HEADLINE_METRICS if m in done and done[m].notna().any()]


def comparability(done: pd.DataFrame):
    """`comparable(dataset, label, metric)`: False for a value in the model's own likelihood
    (reconstruction loss, negative ELBO) of a label that is not in the suite's Bernoulli
    convention (σ-VAE's Gaussian), which is never ranked with the Bernoulli methods."""
    likelihood = done.groupby(["dataset", "label"])["likelihood"].first().to_dict()
    own = {f"{RECONSTRUCTION}/{key}" for key in IN_MODEL_LIKELIHOOD}

    def comparable(dataset, label, metric) -> bool:
        return metric not in own or likelihood.get((dataset, label), CONVENTION) == CONVENTION
    return comparable


def comparable_values(done: pd.DataFrame, metric_columns, comparable) -> pd.DataFrame:
    """`done` with the values that `comparable` rules out (σ-VAE's Gaussian negative ELBO and
    reconstruction loss) set to NaN, for plots and correlations across methods."""
    masked = done.copy()
    for metric in metric_columns:
        ruled_out = [not comparable(d, l, metric) for d, l in zip(done["dataset"], done["label"])]
        masked.loc[ruled_out, metric] = np.nan
    return masked


def comparison(done: pd.DataFrame, labels, metric_columns, directions, comparable,
               tests: pd.DataFrame) -> pd.DataFrame:
    """One dataset's comparison, long: per (label, metric) mean, std, n, whether ranked, mark
    ("best", "second" or ""), and the Holm-corrected p against L-VAE from `tests`."""
    dataset = done["dataset"].iloc[0]
    p_holm = tests.set_index(["label", "metric"])["p_holm"].to_dict() if len(tests) else {}
    rows = []
    for metric in metric_columns:
        summary = done.groupby("label")[metric].agg(["mean", "std", "count"])
        summary = summary[summary["count"] > 0]
        direction = directions.get(metric)
        ranked = [label for label in labels if label in summary.index and direction is not None
                  and comparable(dataset, label, metric)]
        order = summary.loc[ranked, "mean"] * (-1 if direction == metrics.HIGHER else 1)
        dense = order.rank(method="dense")
        for label in [l for l in labels if l in summary.index]:
            rank = dense.get(label, np.nan)
            rows.append({"dataset": dataset, "label": label, "metric": metric,
                         "direction": direction or "", "mean": summary.at[label, "mean"],
                         "std": summary.at[label, "std"], "n": int(summary.at[label, "count"]),
                         "ranked": label in ranked, "rank": rank,
                         "mark": {1: "best", 2: "second"}.get(rank, ""),
                         "p_holm": p_holm.get((label, metric), np.nan)})
    return pd.DataFrame(rows)


LATEX = {"_": "\\_", "%": "\\%", "&": "\\&", "#": "\\#", "±": "$\\pm$", "×": "$\\times$",
         "↑": "$\\uparrow$", "↓": "$\\downarrow$", "β̂": "$\\hat{\\beta}$", "β": "$\\beta$",
         "σ": "$\\sigma$", "–": "--"}


def latex_escape(text: str) -> str:
    """Plain text (with the few symbols the report uses) as LaTeX that pdflatex accepts."""
    for plain, tex in LATEX.items():          # β̂ before β
        text = text.replace(plain, tex)
    return text


STYLES = {
    "markdown": dict(bold="**{}**", underline="<u>{}</u>", star="{}\\*", dagger="{} †",
                     escape=lambda s: s.replace("|", "\\|")),
    "latex": dict(bold="\\textbf{{{}}}", underline="\\underline{{{}}}", star="{}$^{{*}}$",
                  dagger="{}$^{{\\dagger}}$", escape=latex_escape),
    "html": dict(bold="<strong>{}</strong>", underline="<u>{}</u>", star="{}<sup>*</sup>",
                 dagger="{}<sup>†</sup>", escape=html.escape),
}


def cell(row, style) -> str:
    """mean ± std (n), marked in `style` (bold best, underlined second, * and †)."""
    s = STYLES[style]
    text = s["escape"](f"{_pm(row['mean'], row['std'])} ({row['n']})")
    if row["mark"] == "best":
        text = s["bold"].format(text)
    elif row["mark"] == "second":
        text = s["underline"].format(text)
    if pd.notna(row["p_holm"]) and row["p_holm"] < ALPHA:
        text = s["star"].format(text)
    if not row["ranked"] and row["direction"]:
        text = s["dagger"].format(text)
    return text


def grid(long: pd.DataFrame, labels, style: str) -> pd.DataFrame:
    """The comparison as a (label × metric) frame of formatted cells."""
    long = long.assign(cell=[cell(r, style) for r in long.to_dict("records")])
    table = long.pivot(index="label", columns="metric", values="cell")
    table = table.loc[[l for l in labels if l in table.index],
                      [m for m in dict.fromkeys(long["metric"]) if m in table.columns]].fillna("–")
    arrows = long.drop_duplicates("metric").set_index("metric")["direction"]
    table.columns = [f"{m} {ARROW.get(arrows[m], '')}".strip() for m in table.columns]
    table.index.name = "method"
    return table


def footnotes(long: pd.DataFrame, reference: str = REFERENCE) -> list[str]:
    notes = ["Mean ± std over seeds (number of seeds). Bold: best, underlined: second best "
             "(↑ higher, ↓ lower is better)."]
    if reference in set(long["label"]):
        notes.append(f"* differs from {reference} at p < {ALPHA} (two-sided Wilcoxon signed-rank "
                     "over the seeds both ran, Mann–Whitney U where unpaired; Holm-corrected over "
                     "the methods of each metric).")
    if (~long["ranked"] & (long["direction"] != "")).any():
        notes.append("† In the model's own Gaussian likelihood (σ-VAE): not comparable with the "
                     "Bernoulli methods' values and not ranked; reconstruction/squared_error "
                     "compares every method.")
    return notes


def to_markdown(table: pd.DataFrame, notes, caption: str) -> str:
    return f"{caption}\n\n{table.to_markdown()}\n\n" + "\n".join(f"{n}  " for n in notes) + "\n"


def to_latex(table: pd.DataFrame, notes, caption: str) -> str:
    """A booktabs table environment scaled to the line width, ready to \\input."""
    escape = STYLES["latex"]["escape"]
    lines = ["% needs \\usepackage{booktabs} and \\usepackage{graphicx}", "\\begin{table}[t]",
             "\\centering", "\\small", f"\\caption{{{escape(caption)}}}",
             "\\resizebox{\\linewidth}{!}{%",
             f"\\begin{{tabular}}{{l{'c' * len(table.columns)}}}", "\\toprule",
             " & ".join([escape(table.index.name or "")] + [escape(c) for c in table.columns])
             + " \\\\", "\\midrule"]
    lines += [" & ".join([escape(str(label))] + list(row)) + " \\\\"
              for label, row in zip(table.index, table.values)]
    lines += ["\\bottomrule", "\\end{tabular}}", "", "\\footnotesize"]
    lines += [escape(n).replace("*", "$^{*}$", 1).replace("†", "$^{\\dagger}$", 1) + "\\par"
              for n in notes]
    return "\n".join(lines + ["\\end{table}", ""])


def to_html(table: pd.DataFrame, notes, caption: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [table.index.name, *table.columns])
    body = "".join(f"<tr><th>{html.escape(str(label))}</th>" + "".join(f"<td>{c}</td>" for c in row)
                   + "</tr>" for label, row in zip(table.index, table.values))
    foot = "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes)
    return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{foot}")


def ablation_pairs(done: pd.DataFrame, metric_columns) -> pd.DataFrame:
    """Each fixed-β̂ ablation run with the run whose β̂ it used (config "ablation": "source_run",
    else the ablated label's run of the same dataset and seed): one row per pair and metric."""
    ablations = done[done["ablation_of"].notna()] if "ablation_of" in done else done.iloc[:0]
    by_dir = done.set_index("run_dir")
    rows = []
    for run in ablations.to_dict("records"):
        source = run["ablation_source"] if run["ablation_source"] in by_dir.index else None
        if source is None:
            match = done[(done["dataset"] == run["dataset"]) & (done["label"] == run["ablation_of"])
                         & (done["seed"] == run["seed"])]
            source = match["run_dir"].iloc[0] if len(match) else None
        if source is None:
            continue
        learned = by_dir.loc[source]
        for metric in metric_columns:
            rows.append({"dataset": run["dataset"], "of": run["ablation_of"],
                         "label": run["label"], "seed": run["seed"],
                         "source_seed": learned["seed"], "beta_hat_used": run["ablation_beta_hat"],
                         "metric": metric, "learned": learned.get(metric, np.nan),
                         "fixed": run.get(metric, np.nan),
                         "source_run": source, "run_dir": run["run_dir"]})
    columns = ["dataset", "of", "label", "seed", "source_seed", "beta_hat_used", "metric",
               "learned", "fixed", "source_run", "run_dir"]
    return pd.DataFrame(rows, columns=columns).dropna(subset=["learned", "fixed"], how="all")


def ablation_table(pairs: pd.DataFrame, directions) -> pd.DataFrame:
    """Per dataset, ablated label and metric: learned-β̂ and fixed-β̂ mean ± std over the pairs,
    the β̂ used, and a two-sided Wilcoxon signed-rank p over the pairs (paired by seed)."""
    rows = []
    for (dataset, of, label, metric), part in pairs.groupby(
            ["dataset", "of", "label", "metric"], sort=False):
        test = compare(part.set_index("seed")["learned"], part.set_index("seed")["fixed"])
        used = part["beta_hat_used"].astype(float)
        rows.append({"dataset": dataset, "method": of, "ablation": label, "metric": metric,
                     "direction": directions.get(metric) or "", "pairs": len(part),
                     "seeds": " ".join(str(s) for s in sorted(part["seed"])),
                     "beta_hat_used": _pm(used.mean(), used.std()),
                     "learned_mean": part["learned"].mean(), "learned_std": part["learned"].std(),
                     "fixed_mean": part["fixed"].mean(), "fixed_std": part["fixed"].std(),
                     "test": test["test"], "p": test["p"]})
    return pd.DataFrame(rows)


def ablation_grid(table: pd.DataFrame, dataset: str, style: str) -> pd.DataFrame:
    """The ablation of one dataset as formatted cells, the better mean in bold."""
    s = STYLES[style]
    rows = []
    for r in table[table["dataset"] == dataset].to_dict("records"):
        learned = s["escape"](_pm(r["learned_mean"], r["learned_std"]))
        fixed = s["escape"](_pm(r["fixed_mean"], r["fixed_std"]))
        sign = {metrics.HIGHER: 1, metrics.LOWER: -1}.get(r["direction"], 0)
        if sign * (r["learned_mean"] - r["fixed_mean"]) > 0:
            learned = s["bold"].format(learned)
        elif sign * (r["learned_mean"] - r["fixed_mean"]) < 0:
            fixed = s["bold"].format(fixed)
        rows.append({"metric": f"{r['metric']} {ARROW.get(r['direction'], '')}".strip(),
                     f"{r['method']} (learned β̂)": learned,
                     f"{r['ablation']} (β fixed to β̂)": fixed,
                     "β̂ used": s["escape"](r["beta_hat_used"]), "seeds": r["seeds"],
                     "Wilcoxon p": "–" if pd.isna(r["p"]) else f"{r['p']:.3g}"})
    return pd.DataFrame(rows).set_index("metric")


def beta_hat_table(done: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """Final learned β̂ per dataset and L-VAE label over seeds: its reconstruction convention,
    mean ± std, range, whether it lies above or below 1 (the paper finds it can fall below 1),
    the equilibrium β̂* = √(L_R/KL) it chases, and in how many seeds β̂ settled there (the
    method's `history_summary` of each run's history) and from which steps."""
    if "beta_hat" not in done or done["beta_hat"].isna().all():
        return pd.DataFrame()
    rows = []
    for (dataset, label), part in done[done["beta_hat"].notna()].groupby(["dataset", "label"],
                                                                         sort=False):
        values = part["beta_hat"]
        below = int((values < 1).sum())
        side = ("below 1" if below == len(values) else "above 1" if below == 0
                else f"below 1 in {below} of {len(values)} seeds")
        star = part["beta_hat_star"] if "beta_hat_star" in part else pd.Series(dtype=float)
        summaries = [history_summary(histories, run) for run in part.to_dict("records")]
        steps = [s["settled_from_step"] for s in summaries if s.get("beta_hat_settled")]
        rows.append({"dataset": dataset, "method": label,
                     "recon": part["recon_convention"].iloc[0]
                     if "recon_convention" in part else "",
                     "seeds": len(values), "beta_hat": _pm(values.mean(), values.std()),
                     "mean": values.mean(), "std": values.std(), "min": values.min(),
                     "max": values.max(), "relative to 1": side,
                     "beta_hat_star": _pm(star.mean(), star.std()) if star.notna().any() else "–",
                     "settled": (f"{len(steps)} of {len(summaries)}"
                                 if any(summaries) else "–"),
                     "settled from step": (f"{min(steps)}–{max(steps)}" if len(set(steps)) > 1
                                           else str(steps[0]) if steps else "–")})
    return pd.DataFrame(rows)


def history_summary(histories: pd.DataFrame, run: dict) -> dict:
    """The method's `history_summary` of one run's history rows (the columns it logged)."""
    if histories.empty:
        return {}
    part = histories[(histories["dataset"] == run["dataset"]) & (histories["label"] == run["label"])
                     & (histories["seed"] == run["seed"])].dropna(axis=1, how="all")
    try:
        method = methods.get(run["method"])
    except KeyError:
        return {}
    return method.history_summary(part.sort_values("step").to_dict("records"))


def _pm(mean, std) -> str:
    """mean ± std, 3 and 2 significant digits (whole numbers from 1000 and 100 on)."""
    return f"{_number(mean, 3)} ± {_number(std, 2)}" if pd.notna(std) else _number(mean, 3)


def _number(value: float, digits: int) -> str:
    return f"{value:.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"
