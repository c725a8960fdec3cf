"""Aggregate a results folder into tables, plots and an HTML index.

    python -m disentbench.bench.report [results]

Reads only what the run store wrote (status.json, config.json, history.csv, metrics.json), so it
works on results copied from another machine. Writes, under the results folder:
  tables/runs.csv                 one row per run (status, final logged values, metric values)
  tables/summary.csv              mean, std and count over seeds per dataset and method
  tables/table_<dataset>.tex/.md  mean ± std of the headline columns
  plots/training_<dataset>.png    loss terms over training, mean over seeds per method
  plots/beta_hat_trajectories.png β̂ of the L-VAE family over training (one line per seed)
  plots/metrics_<dataset>.png     metric values per method (one dot per seed)
  index.html                      links to all of the above, and the failed runs with reasons
"""
from __future__ import annotations

import argparse
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from disentbench import methods  # noqa: E402
from disentbench.bench.io import atomic_path, read_json_or_empty, write_text  # noqa: E402

HISTORY_COLUMNS = ("loss", "recon", "kl", "beta", "beta_hat", "sigma0", "sigma1")


def metric_values(metrics_json: dict) -> dict[str, float]:
    """Flatten metrics.json's {"metrics": {name: {"values": {key: float}}}} to {"name/key": v}."""
    flat = {}
    for name, entry in metrics_json.get("metrics", {}).items():
        for key, value in (entry.get("values") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{name}/{key}"] = float(value)
    return flat


def collect(out) -> pd.DataFrame:
    """One row per run folder under `out`/runs."""
    rows = []
    for status_file in sorted(Path(out).glob("runs/*/*/seed*/status.json")):
        run = status_file.parent
        status, config = read_json_or_empty(status_file), read_json_or_empty(run / "config.json")
        spec = config.get("spec", {})
        row = {"dataset": run.parts[-3], "method": spec.get("method", run.parts[-2]),
               "label": run.parts[-2], "seed": int(run.name.removeprefix("seed")),
               "status": status.get("status", "unknown"), "step": status.get("step"),
               "seconds": status.get("seconds"), "reason": status.get("reason", ""),
               "run_dir": str(run.relative_to(out))}
        history = run / "history.csv"
        if history.is_file():
            frame = pd.read_csv(history)
            if len(frame):
                last = frame.iloc[-1]
                row.update({c: float(last[c]) for c in HISTORY_COLUMNS if c in frame})
        row.update(metric_values(read_json_or_empty(run / "metrics.json")))
        rows.append(row)
    return pd.DataFrame(rows)


def _order(labels) -> list[str]:
    rank = {name: i for i, name in enumerate(methods.TABLE_ORDER)}
    return sorted(set(labels), key=lambda label: (rank.get(label.split("-")[0], len(rank)),
                                                  rank.get(label, len(rank)), label))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of finished seeds per (dataset, label) for every numeric column."""
    done = runs[runs["status"] == "done"]
    numeric = [c for c in done.select_dtypes("number").columns if c not in ("seed", "step")]
    if done.empty or not numeric:
        return pd.DataFrame()
    grouped = done.groupby(["dataset", "label"])[numeric]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{c}:{stat}" for c, stat in table.columns]
    return table.reset_index()


# The one or two numbers of each metric that papers report (every key is in summary.csv).
HEADLINE_METRICS = (
    "beta-vae/eval_accuracy", "factor-vae/eval_accuracy", "mig/discrete_mig", "sap/SAP_score",
    "dci/disentanglement", "dci-fast/disentanglement", "dci-fast/completeness",
    "dci-fast/informativeness_test", "modularity-explicitness/modularity_score",
    "modularity-explicitness/explicitness_score_test", "irs/IRS",
    "unsupervised/gaussian_total_correlation", "reconstruction/negative_elbo",
    "reconstruction/squared_error")


def headline_columns(summary: pd.DataFrame) -> list[str]:
    """The headline metrics present (plus β̂ where learned), else the final loss terms."""
    names = [c.removesuffix(":mean") for c in summary.columns if c.endswith(":mean")]
    metric = [n for n in HEADLINE_METRICS if n in names]
    if metric:
        return metric + [n for n in ("beta_hat",) if n in names]
    return [n for n in names if n in HISTORY_COLUMNS]


def _mean_std_table(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    part = summary[summary["dataset"] == dataset].set_index("label")
    part = part.loc[_order(part.index)]
    cells = {}
    for column in headline_columns(summary):
        mean, std = part.get(f"{column}:mean"), part.get(f"{column}:std")
        if mean is None:
            continue
        cells[column] = [f"{m:.3g} ± {s:.2g}" if pd.notna(s) else f"{m:.3g}"
                         for m, s in zip(mean, std)]
    table = pd.DataFrame(cells, index=part.index)
    table.insert(0, "seeds", part[[c for c in part.columns if c.endswith(":count")][0]].astype(int)
                 if any(c.endswith(":count") for c in part.columns) else 0)
    table.index.name = "method"
    return table


def write_tables(runs: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[Path]:
    tables = out / "tables"
    written = []
    for name, frame in (("runs.csv", runs), ("summary.csv", summary)):
        with atomic_path(tables / name) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(tables / name)
    if summary.empty:
        return written
    for dataset in sorted(summary["dataset"].unique()):
        table = _mean_std_table(summary, dataset)
        tex = table.style.to_latex(hrules=True, caption=f"{dataset}: mean ± std over seeds")
        write_text(tables / f"table_{dataset}.tex", tex)
        write_text(tables / f"table_{dataset}.md", table.to_markdown() + "\n")
        written += [tables / f"table_{dataset}.tex", tables / f"table_{dataset}.md"]
    return written


def _histories(out: Path, runs: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for run in runs.itertuples():
        path = out / run.run_dir / "history.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            frame["dataset"], frame["label"], frame["seed"] = run.dataset, run.label, run.seed
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot(runs: pd.DataFrame, out: Path) -> list[Path]:
    plots, written = out / "plots", []
    history = _histories(out, runs)
    if history.empty:
        return written
    for dataset, part in history.groupby("dataset"):
        terms = [c for c in ("loss", "recon", "kl") if c in part]
        fig, axes = plt.subplots(1, len(terms), figsize=(5 * len(terms), 3.6), squeeze=False)
        for ax, term in zip(axes[0], terms):
            sns.lineplot(part, x="step", y=term, hue="label", hue_order=_order(part["label"]),
                         errorbar="sd", ax=ax, legend=term == terms[-1])
            ax.set_title(f"{dataset}: {term}")
        if axes[0][-1].get_legend():
            sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1))
        written.append(_save(fig, plots / f"training_{dataset}.png"))
    if "beta_hat" in history and history["beta_hat"].notna().any():
        part = history[history["beta_hat"].notna()]
        fig, ax = plt.subplots(figsize=(6, 4))
        sns.lineplot(part, x="step", y="beta_hat", hue="dataset", style="label",
                     units="seed", estimator=None, lw=0.8, ax=ax)
        if part["beta_hat"].max() > 10 * part["beta_hat"].min() > 0:
            ax.set_yscale("log")
        ax.set_title("learned β̂ = σ0²/σ1² over training")
        written.append(_save(fig, plots / "beta_hat_trajectories.png"))
    metric_columns = [c for c in runs.columns if "/" in c and "/dlib_" not in c]
    for dataset, part in runs[runs["status"] == "done"].groupby("dataset"):
        columns = [c for c in metric_columns if part[c].notna().any()]
        if not columns:
            continue
        long = part.melt(id_vars=["label", "seed"], value_vars=columns, var_name="metric")
        grid = sns.catplot(long, x="value", y="label", col="metric", col_wrap=4, kind="strip",
                           order=_order(long["label"]), sharex=False, height=2.6, aspect=1.3)
        grid.set_titles("{col_name}")
        written.append(_save(grid.figure, plots / f"metrics_{dataset}.png"))
    return written


def write_index(runs: pd.DataFrame, files: list[Path], out: Path) -> Path:
    links = "\n".join(
        f'<li><a href="{html.escape(str(p.relative_to(out)))}">{html.escape(str(p.relative_to(out)))}</a></li>'
        for p in files if p.suffix != ".png")
    images = "\n".join(
        f'<figure><img src="{html.escape(str(p.relative_to(out)))}" style="max-width:100%">'
        f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in files if p.suffix == ".png")
    failed = runs[runs["status"] == "failed"] if not runs.empty else runs
    failures = "\n".join(f"<li>{html.escape(r.run_dir)}: {html.escape(str(r.reason))}</li>"
                         for r in failed.itertuples()) or "<li>none</li>"
    counts = runs["status"].value_counts().to_dict() if not runs.empty else {}
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>disentbench results</title></head>
<body style="font-family:sans-serif;max-width:1100px;margin:auto">
<h1>disentbench results</h1>
<p>{len(runs)} runs: {html.escape(', '.join(f'{v} {k}' for k, v in counts.items()))}</p>
<h2>Tables</h2><ul>{links}</ul>
<h2>Failed runs</h2><ul>{failures}</ul>
<h2>Plots</h2>{images}
</body></html>
"""
    write_text(out / "index.html", page)
    return out / "index.html"


def build(out) -> list[Path]:
    """Write every table, plot and the index for the results folder `out`."""
    out = Path(out)
    runs = collect(out)
    if runs.empty:
        return []
    summary = summarise(runs)
    files = write_tables(runs, summary, out) + plot(runs, out)
    return files + [write_index(runs, files, out)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m disentbench.bench.report", description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=None, help="results folder (default: results)")
    p.add_argument("--results", default=None, help="results folder (same as OUT)")
    args = p.parse_args(argv)
    args.out = args.results or args.out or "results"
    files = build(args.out)
    if not files:
        print(f"no runs under {args.out}/runs")
        return 1
    print("\n".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
