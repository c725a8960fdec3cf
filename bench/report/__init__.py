"""Rebuild a results folder's report from its run folders: tables, plots and index.html.

    python -m disentbench.bench.report [results]

Reads only what the run store wrote (status.json, config.json, history.csv, metrics.json and the
traversal images and kl_per_dim.json of evaluation), so it works on results copied from another
machine. A run's metrics.json is shown only where the checkpoint checksum and step it scored
are those of the run's model.pt; other runs are listed as stale. The report deletes only files
an earlier report wrote (listed in .disentbench-report.json; see manifest.py) and refuses a
folder without runs/. Writes, under the results folder:
  tables/runs.csv                 one row per run: label, params, seed, status (done, stale,
                                  failed, ...), reason, warnings, final logged values (β, β̂, σ,
                                  C), every trusted metric value
  tables/summary.csv              mean, std and count over finished seeds per dataset and label
  tables/comparison_<dataset>.*   methods × headline metrics, mean ± std (n), best bold, second
                                  underlined, * significant against l-vae (.tex, .md, .csv)
  tables/significance.csv         each label vs l-vae per dataset and metric: test, p, Holm p
  tables/ablation.csv, ablation_pairs.csv, ablation_<dataset>.tex/.md
                                  L-VAE vs β-VAE with β fixed to its β̂, paired by seed
  tables/beta_hat.csv/.md         learned β̂ per dataset: mean ± std, above or below 1
  tables/agreement_<dataset>.csv  Spearman ρ between metrics over the runs of a dataset
  tables/ranks.csv                average ranks over datasets × metrics (Friedman, Nemenyi)
  plots/*.png                     metrics, trade-off, agreement, KL per dimension and training per
                                  dataset; L-VAE σ and β̂, controllers' β and KL against C,
                                  critical-difference diagram
  index.html                      all of the above with the traversal sheets, failed runs
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from disentbench import metrics
from disentbench.bench.evaluate import IN_MODEL_LIKELIHOOD, RECONSTRUCTION
from disentbench.bench.io import atomic_path, read_json_or_empty, write_text

from . import manifest, page, plots, stats, tables
from .load import label_order, read_results
from .manifest import ReportError, check_targets

__all__ = ["ReportError", "build", "check_targets", "main"]


def _csv(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    with manifest.naming(path), atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)
    return path


def _text(path: Path, text: str) -> None:
    with manifest.naming(path):
        write_text(path, text)


def median_run(done: pd.DataFrame, metric: str | None) -> pd.Series:
    """The run of the median seed by `metric` (the lower one of an even count; NaN last), or the
    lowest seed without a metric."""
    if metric is None or metric not in done or done[metric].isna().all():
        return done.sort_values("seed").iloc[0]
    ranked = done.sort_values([metric, "seed"], na_position="last")
    return ranked.iloc[(done[metric].notna().sum() - 1) // 2]


def build(out) -> list[Path]:
    """Write every table, plot and the index for the results folder `out`; returns the written
    paths ([] when `out` holds no run folder). ReportError (one line) where `out` is not a
    results folder, links out of it or a write fails (a full disk)."""
    return _build(Path(out))[0]


def _build(out: Path):
    """The files written and the runs read; deletes the files of the last build that this one
    did not write again, and nothing else."""
    manifest.check_folder(out)
    old = manifest.written(out)
    results, files = read_results(out), []
    try:
        if len(results.runs):
            _write(out, results, files)
        manifest.replace(out, old, set(files))
    except OSError as err:
        with contextlib.suppress(OSError):       # list what was written before it stopped
            manifest.replace(out, old, old | set(files))
        raise manifest.write_failed(err, out) from None
    return files, results


def _write(out: Path, results, files: list[Path]) -> None:
    """Write the report, adding each file to `files` as soon as it is written."""
    runs = results.runs
    labels = label_order(runs)
    colours = plots.palette(labels)
    directions = metrics.directions()
    rank = {label: i for i, label in enumerate(labels)}
    runs = runs.sort_values(["dataset", "label", "seed"],
                            key=lambda c: c.map(rank) if c.name == "label" else c)
    done = runs[runs["status"] == "done"]
    tdir = out / "tables"
    files += [_csv(runs, tdir / "runs.csv"), _csv(tables.summarise(runs), tdir / "summary.csv")]
    metric_columns = tables.headline(done)
    comparable = tables.comparability(done)
    tests = stats.significance(done, metric_columns, comparable)
    if len(tests):
        files.append(_csv(tests, tdir / "significance.csv"))
    pairs = tables.ablation_pairs(done, metric_columns)
    ablation = tables.ablation_table(pairs, directions)
    beta_hat = tables.beta_hat_table(done)
    if len(pairs):
        files += [_csv(pairs, tdir / "ablation_pairs.csv"), _csv(ablation, tdir / "ablation.csv")]
    overall = {"tables": [], "figures": []}
    if len(beta_hat):
        shown = beta_hat.drop(columns=["mean", "std"]).set_index("dataset")
        shown[["min", "max"]] = shown[["min", "max"]].map(lambda v: f"{v:.3g}")
        files += [_csv(beta_hat, tdir / "beta_hat.csv")]
        _text(tdir / "beta_hat.md", shown.to_markdown() + "\n")
        files.append(tdir / "beta_hat.md")
        overall["tables"].append("<h3>Learned β̂ (final value, over seeds)</h3>"
                                 + shown.to_html(border=0))
    histories = results.histories
    if len(histories):
        histories = histories[histories["status"] == "done"]
    sections = [_dataset_section(out, dataset, done[done["dataset"] == dataset], histories,
                                 labels, colours, directions, metric_columns, comparable, tests,
                                 ablation, files)
                for dataset in sorted(runs["dataset"].unique())]
    files += _overall_figures(out, done, histories, labels, colours, directions, metric_columns,
                              overall)
    header = {"profile": ", ".join(sorted(p for p in runs["profile"].dropna().unique() if p)),
              "device": ", ".join(sorted(d for d in runs["device"].dropna().unique() if d)),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    with manifest.naming(out / "index.html"):
        files.append(page.write(out, runs, results.problems, header, overall, sections, files))


def _dataset_section(out, dataset, done, histories, labels, colours, directions,
                     metric_columns, comparable, tests, ablation, files) -> dict:
    tdir, pdir = out / "tables", out / "plots"
    section = {"dataset": dataset, "tables": [], "figures": [], "sheets": []}
    present = [l for l in labels if l in set(done["label"])]
    columns = [m for m in metric_columns if m in done and done[m].notna().any()]
    if done.empty:
        return section
    if columns:
        long = tables.comparison(done, present, columns, directions, comparable,
                                 tests[tests["dataset"] == dataset])
        notes = tables.footnotes(long)
        caption = f"{dataset}: methods × headline metrics"
        files.append(_csv(long, tdir / f"comparison_{dataset}.csv"))
        for style, suffix, render in (("markdown", "md", tables.to_markdown),
                                      ("latex", "tex", tables.to_latex)):
            _text(tdir / f"comparison_{dataset}.{suffix}",
                  render(tables.grid(long, present, style), notes, caption))
            files.append(tdir / f"comparison_{dataset}.{suffix}")
        section["tables"].append(("Comparison", tables.to_html(
            tables.grid(long, present, "html"), notes, caption)))
    if len(ablation) and dataset in set(ablation["dataset"]):
        caption = f"{dataset}: learned β̂ against β fixed to it (paired by seed)"
        for style, suffix, render in (("markdown", "md", tables.to_markdown),
                                      ("latex", "tex", tables.to_latex)):
            _text(tdir / f"ablation_{dataset}.{suffix}",
                  render(tables.ablation_grid(ablation, dataset, style), [], caption))
            files.append(tdir / f"ablation_{dataset}.{suffix}")
        section["tables"].append(("Fixed-β̂ ablation", tables.to_html(
            tables.ablation_grid(ablation, dataset, "html"), [
                "Bold: the better mean. Wilcoxon signed-rank p over the pairs (two-sided)."],
            caption)))
    masked = tables.comparable_values(done, columns, comparable)
    own = [m for m in columns if masked[m].count() < done[m].count()]
    figures = [
        plots.metric_boxes(masked, dataset, columns, present, colours, directions, own,
                           pdir / f"metrics_{dataset}.png") if columns else None,
        plots.tradeoff(done, dataset, present, colours, directions,
                       pdir / f"tradeoff_{dataset}.png")]
    correlation = stats.agreement(masked, columns, directions)
    if correlation.shape[0] >= 2:
        files.append(_csv(correlation, tdir / f"agreement_{dataset}.csv", index=True))
        figures.append(plots.agreement_heatmap(correlation, dataset,
                                               pdir / f"agreement_{dataset}.png"))
    section["sheets"], kl = _sheets(out, done, present)
    figures.append(plots.kl_per_dim(kl, dataset, pdir / f"kl_per_dim_{dataset}.png"))
    figures.append(plots.training(histories, dataset, present, colours,
                                  pdir / f"training_{dataset}.png"))
    captions = {"metrics": "metric values per method (seeds as points)",
                "training": "training curves",
                "tradeoff": "reconstruction against disentanglement, one point per run",
                "agreement": "Spearman agreement between metrics",
                "kl_per_dim": "KL per latent dimension of the traversal runs"}
    for path in filter(None, figures):
        section["figures"].append((path, captions[path.stem.removesuffix(f"_{dataset}")]))
        files.append(path)
    return section


def _sheets(out: Path, done: pd.DataFrame, labels):
    """The traversal sheet of each label's median-scoring seed (by the first disentanglement
    metric present), and its KL per dimension."""
    score = next((m for m in plots.DISENTANGLEMENT if m in done and done[m].notna().any()), None)
    sheets, kl = [], []
    for label in labels:
        candidates = done[done["label"] == label]
        candidates = candidates[[(out / d / "traversals.png").is_file()
                                 for d in candidates["run_dir"]]]
        if candidates.empty:
            continue
        run = median_run(candidates, score)
        folder = out / run["run_dir"]
        scored = f", {score} {run[score]:.3g}" if score and pd.notna(run.get(score)) else ""
        images = [(folder / name, f"{label}, seed {run['seed']}{scored}: {what}")
                  for name, what in (("traversals.png", "traversals"),
                                     ("reconstructions.png", "reconstructions"))
                  if (folder / name).is_file()]
        sheets.append({"label": label, "seed": int(run["seed"]), "images": images})
        kl.append({"label": label, "seed": int(run["seed"]),
                   "kl": read_json_or_empty(folder / "kl_per_dim.json").get("kl")})
    return sheets, kl


def _overall_figures(out, done, histories, labels, colours, directions, metric_columns,
                     overall) -> list[Path]:
    tdir, pdir = out / "tables", out / "plots"
    files = []
    own = {f"{RECONSTRUCTION}/{key}" for key in IN_MODEL_LIKELIHOOD}
    ranked = [m for m in metric_columns if directions.get(m) and m not in own]
    if ranked and len(done):
        means = done.groupby(["dataset", "label"])[ranked].mean().stack().unstack("label")
        result = stats.average_ranks(means, directions)
        if result is not None:
            ranks, friedman, nemenyi, blocks = result
            table = pd.DataFrame({"average_rank": ranks, "blocks": blocks,
                                  "friedman_p": friedman}).sort_values("average_rank")
            files.append(_csv(table, tdir / "ranks.csv", index=True))
            path = plots.critical_difference(ranks, nemenyi, friedman, blocks, colours,
                                             pdir / "critical_difference.png")
            overall["figures"].append((path, "critical-difference diagram of average ranks"))
    for path, caption in ((plots.sigma_beta_hat(histories, labels, colours,
                                                pdir / "sigma_beta_hat.png"),
                           "L-VAE σ0, σ1 and β̂ over training"),
                          (plots.controllers(histories, labels, colours, pdir / "controllers.png"),
                           "ControlVAE / DynamicVAE β and KL against C")):
        if path:
            overall["figures"].append((path, caption))
    files += [p for p, _ in overall["figures"] if p not in files]
    return files


def main(argv=None, prog: str = "python -m disentbench.bench.report") -> int:
    """`prog` names the command in the usage (`run_bench.py report` from the grid's CLI)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=None, help="results folder (default: results)")
    p.add_argument("--results", default=None, help="results folder (the same as OUT)")
    args = p.parse_args(argv)
    out = Path(args.results or args.out or "results")
    try:
        files, results = _build(out)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not files:
        print(f"no runs under {out}/runs (expected runs/<dataset>/<label>/seed<k>/)")
        return 1
    for run, why in results.problems:
        print(f"unreadable: {run}: {why}", file=sys.stderr)
    print("\n".join(str(f) for f in files))
    if not (results.runs["status"] != "damaged").any():
        print(f"error: no readable run under {out}/runs; the report lists the unreadable ones "
              f"in {out / 'index.html'}", file=sys.stderr)
        return 1
    return 0
