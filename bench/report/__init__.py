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
  tables/beta_hat.csv/.md         learned β̂ per dataset: mean ± std, above or below 1, its
                                  equilibrium β̂*, settled in how many seeds and from which step
  tables/agreement_<dataset>.csv  Spearman ρ between metrics over the runs of a dataset
  tables/ranks.csv                average ranks over datasets × metrics (Friedman, Nemenyi)
  tables/selection_<rule>_<dataset>.*  the comparison of each method's setting chosen by a rule
                                  (--select METRIC, default beta-vae; mean-rank; udr), every
                                  seed of the chosen setting (.csv, .md, .tex)
  tables/selection_agreement.csv  Kendall's τ between the rules' method rankings
  plots/sweep_<dataset>_<method>.png  a swept method's metrics against its hyperparameter
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
from disentbench.methods.l_vae import SETTLED_BAND, SETTLED_FRACTION

from . import manifest, page, plots, selection, stats, sweeps, tables
from .load import label_order, read_results
from .manifest import ReportError, check_targets

__all__ = ["ReportError", "build", "check_targets", "main"]

BETA_HAT_CAPTION = (
    "Learned β̂ (final value, over seeds), by reconstruction convention (recon), beside the "
    "equilibrium it chases, β̂* = √(L_R/KL) of the last logged batch; settled: both ratios "
    f"σ0²/√L_R and σ1²/√KL within 1 ± {SETTLED_BAND:g} over the last "
    f"{SETTLED_FRACTION:.0%} of training")


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


def build(out, select: str = selection.DEFAULT_METRIC) -> list[Path]:
    """Write every table, plot and the index for the results folder `out`, model selection by
    the metric `select`, the mean rank and UDR; returns the written paths ([] when `out` holds
    no run folder). ReportError (one line) where `out` is not a results folder, links out of
    it or a write fails (a full disk)."""
    return _build(Path(out), select)[0]


def _build(out: Path, select: str = selection.DEFAULT_METRIC):
    """The files written and the runs read; deletes the files of the last build that this one
    did not write again, and nothing else."""
    manifest.check_folder(out)
    old = manifest.written(out)
    results, files = read_results(out), []
    try:
        if len(results.runs):
            _write(out, results, files, (select, selection.MEAN_RANK, selection.UDR))
        manifest.replace(out, old, set(files))
    except OSError as err:
        with contextlib.suppress(OSError):       # list what was written before it stopped
            manifest.replace(out, old, old | set(files))
        raise manifest.write_failed(err, out) from None
    return files, results


def _write(out: Path, results, files: list[Path], rules) -> None:
    """Write the report (model selection by each of `rules`), adding each file to `files` as
    soon as it is written."""
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
    histories = results.histories
    if len(histories):
        histories = histories[histories["status"] == "done"]
    beta_hat = tables.beta_hat_table(done, histories)
    if len(pairs):
        files += [_csv(pairs, tdir / "ablation_pairs.csv"), _csv(ablation, tdir / "ablation.csv")]
    overall = {"tables": [], "figures": []}
    if len(beta_hat):
        shown = beta_hat.drop(columns=["mean", "std"]).set_index("dataset")
        shown[["min", "max"]] = shown[["min", "max"]].map(lambda v: f"{v:.3g}")
        files += [_csv(beta_hat, tdir / "beta_hat.csv")]
        _text(tdir / "beta_hat.md", f"{BETA_HAT_CAPTION}\n\n{shown.to_markdown()}\n")
        files.append(tdir / "beta_hat.md")
        overall["tables"].append(f"<h3>{BETA_HAT_CAPTION}</h3>" + shown.to_html(border=0))
    sections, agreements = [], []
    for dataset in sorted(runs["dataset"].unique()):
        part = done[done["dataset"] == dataset]
        section = _dataset_section(out, dataset, part, histories, labels, colours, directions,
                                   metric_columns, comparable, tests, ablation, files)
        shown, agreement = _selections(out, dataset, part, labels, directions, metric_columns,
                                       comparable, rules, files)
        section["tables"] += shown
        agreements.append(agreement)
        section["figures"] += sweeps.sweep_plots(part, dataset, metric_columns, directions,
                                                 colours, out / "plots")
        files += [path for path, _ in section["figures"] if path not in files]
        sections.append(section)
    if any(len(a) for a in agreements):
        files.append(_csv(pd.concat(agreements, ignore_index=True),
                          tdir / "selection_agreement.csv"))
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
    note = page.untrained_note(done["profile"].dropna()) if "profile" in done else ""
    untrained = f" — {note}" if note else ""
    if columns:
        long = tables.comparison(done, present, columns, directions, comparable,
                                 tests[tests["dataset"] == dataset])
        section["tables"].append(("Comparison", _comparison_files(
            tdir / f"comparison_{dataset}", long, present, tables.footnotes(long),
            f"{dataset}: methods × headline metrics; {tables.recon_note(done)}{untrained}",
            files)))
    if len(ablation) and dataset in set(ablation["dataset"]):
        paired = done[done["label"].isin(set(ablation["method"]) | set(ablation["ablation"]))]
        caption = (f"{dataset}: learned β̂ against β fixed to it (paired by seed); "
                   f"{tables.recon_note(paired)}{untrained}")
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


def _comparison_files(stem: Path, long: pd.DataFrame, labels, notes, caption, files) -> str:
    """Write a comparison as `stem`.csv/.md/.tex (appended to `files`); return its HTML."""
    files.append(_csv(long, stem.with_suffix(".csv")))
    for style, suffix, render in (("markdown", ".md", tables.to_markdown),
                                  ("latex", ".tex", tables.to_latex)):
        _text(stem.with_suffix(suffix), render(tables.grid(long, labels, style), notes, caption))
        files.append(stem.with_suffix(suffix))
    return tables.to_html(tables.grid(long, labels, "html"), notes, caption)


def _selections(out: Path, dataset: str, done: pd.DataFrame, labels, directions, metric_columns,
                comparable, rules, files) -> tuple[list, pd.DataFrame]:
    """Per rule the comparison of each method's chosen setting (all its seeds), and Kendall's τ
    between the rules' method rankings: ([(title, html)], agreement rows)."""
    columns = [m for m in metric_columns if m in done and done[m].notna().any()]
    shown, rankings = [], {}
    for rule in rules:
        chosen, notes = selection.select(done, out, rule, columns, directions, labels)
        picked = set(chosen["label"])
        runs = selection.candidates(done)
        runs = runs[runs["label"].isin(picked)]
        if runs.empty or not columns:
            continue
        present = [l for l in labels if l in picked]
        tests = stats.significance(runs, columns, comparable)
        long = tables.comparison(runs, present, columns, directions, comparable, tests)
        caption = f"{dataset}: each method's setting chosen by {rule}"
        html = _comparison_files(out / "tables" / f"selection_{rule.replace('/', '-')}_{dataset}",
                                 long, present, notes + tables.footnotes(long), caption, files)
        shown.append((f"Model selection by {rule}", html))
        rankings[rule] = selection.method_ranking(
            tables.comparable_values(runs, columns, comparable), columns, directions)
    agreement = selection.agreement(rankings, dataset)
    if len(agreement):
        overall = agreement[agreement["ranking"] == "mean rank"].drop(columns="dataset")
        shown.append(("Method ranking between selection rules", overall.to_html(
            index=False, border=0, float_format=lambda v: f"{v:.3g}")
            + "<p class=note>Kendall's τ between the methods' mean ranks over the headline "
              "metrics under two rules (1: the same order; per metric in "
              "tables/selection_agreement.csv).</p>"))
    return shown, agreement


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
    p.add_argument("--select", default=selection.DEFAULT_METRIC, metavar="METRIC",
                   help="the metric of the first model-selection rule: a metric name (its "
                        "headline value) or METRIC/KEY (default: beta-vae, the L-VAE paper's "
                        "rule); the mean rank and UDR are the other two")
    args = p.parse_args(argv)
    out = Path(args.results or args.out or "results")
    if args.select.partition("/")[0] not in metrics.available():
        print(f"error: --select {args.select}: unknown metric; valid names: "
              f"{', '.join(metrics.available())} (or METRIC/KEY)", file=sys.stderr)
        return 2
    try:
        files, results = _build(out, args.select)
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
