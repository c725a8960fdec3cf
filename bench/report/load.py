"""Read the run folders of a results folder into one table (only what the store wrote), and the
order in which reports list run labels."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from disentbench import methods
from disentbench.bench.store import CHECKPOINT, METRICS, RunDamaged, RunView

# Logged history columns whose final value goes into the runs table.
FINAL_VALUES = ("loss", "recon", "kl", "beta", "C", "beta_hat", "beta_hat_star", "sigma0",
                "sigma1")


@dataclass
class Results:
    runs: pd.DataFrame                 # one row per run folder (status "unreadable" if it is)
    histories: pd.DataFrame            # every history.csv row, with dataset, label, seed, status
    problems: list = field(default_factory=list)    # (run folder, what could not be read)


def read_results(out) -> Results:
    """Every run folder `out`/runs/<dataset>/<label>/seed<k>/, in a stable order."""
    out = Path(out)
    rows, histories, problems = [], [], []
    # seed<k> folders only: a damaged run moved aside is seed<k>.damaged-<time>
    for run in sorted(p for p in out.glob("runs/*/*/seed*")
                      if p.is_dir() and p.name.removeprefix("seed").isdigit()):
        row, history, trouble = _read_run(out, run)
        rows.append(row)
        problems += [(row["run_dir"], t) for t in trouble]
        if history is not None and len(history):
            histories.append(history.assign(dataset=row["dataset"], label=row["label"],
                                            seed=row["seed"], status=row["status"]))
    runs = pd.DataFrame(rows)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return Results(runs, history, problems)


def _read_run(out: Path, run: Path):
    """One runs-table row, its history and what could not be read, through the store's checked
    readers: a damaged file is named, never trusted."""
    store, trouble = RunView(run), []
    status = store.read_status()
    if status.get("status") == "damaged":
        trouble.append(status["reason"])
        status = {}
    elif not status:
        trouble.append("status.json missing")
    try:
        config = store.read_config()
    except RunDamaged as err:
        trouble.append(str(err))
        config = {}
    spec = config.get("spec", {})
    ablation = config.get("ablation") or {}
    row = {"dataset": run.parts[-3], "label": run.parts[-2],
           "method": spec.get("method", run.parts[-2]),
           "params": json.dumps(spec.get("params", {}), sort_keys=True),
           "seed": int(run.name.removeprefix("seed")),
           "status": status.get("status", "damaged"),
           "step": status.get("step"), "steps": status.get("steps"),
           "seconds": status.get("seconds"), "device": config.get("device", ""),
           "profile": config.get("profile", ""),
           "reason": status.get("reason", "") if status else "; ".join(trouble),
           "warnings": "; ".join(map(str, status.get("warnings") or [])),
           "likelihood": config.get("reconstruction", methods.Method.reconstruction_loss),
           "recon_convention": recon_convention(spec.get("method", run.parts[-2]), config),
           "ablation_of": ablation.get("of"), "ablation_beta_hat": ablation.get("beta_hat"),
           "ablation_source": ablation.get("source_run"),
           "run_dir": run.relative_to(out).as_posix()}
    history, stale = None, ""
    try:
        rows = store.read_history(validate_against_status=bool(status))
        history = pd.DataFrame(rows) if rows else None
        evaluation = store.read_metrics()
        stale = unchecked_metrics(store, evaluation)
    except RunDamaged as err:
        trouble.append(str(err))
        evaluation = {}
    if stale:
        evaluation = {}
    if history is not None:
        last = history.iloc[-1]
        row.update({c: float(last[c]) for c in FINAL_VALUES if c in history})
    row.update(metric_values(evaluation))
    likelihood = (evaluation.get("metrics", {}).get("reconstruction", {})
                  .get("params", {}).get("likelihood"))
    row["likelihood"] = likelihood or row["likelihood"]
    if trouble and row["status"] in ("done", "running"):
        row["status"], row["reason"] = "damaged", "; ".join(trouble)
    elif stale and row["status"] == "done":
        row["status"], row["reason"] = "stale", stale
    return row, history, trouble


def unchecked_metrics(store: RunView, evaluation: dict) -> str:
    """"" where metrics.json scored the run's model.pt (the checkpoint checksum and training
    step it records are those model.pt holds, checked against its own checksum), else why its
    values are not to be shown. RunDamaged where model.pt is missing or damaged."""
    if not evaluation.get("metrics"):
        return ""
    checkpoint = store.load_checkpoint()
    scored = evaluation.get("checkpoint"), evaluation.get("trained_step")
    held = checkpoint["checksum"], checkpoint["step"]
    if scored == held:
        return ""
    return (f"{store.dir / METRICS} scored checkpoint {str(scored[0])[:12]} at "
            f"step {scored[1]}, but {CHECKPOINT} holds {held[0][:12]} at step {held[1]}; rerun "
            f"the grid's command to evaluate it again")


def recon_convention(method: str, config: dict) -> str:
    """The run's reconstruction convention: the `recon` its config.json records, the default
    where the method takes one but the run predates it, else the method's own likelihood
    ("own gaussian NLL": σ-VAE); "" for an unknown method."""
    recorded = (config.get("method_params") or {}).get("recon")
    if recorded:
        return recorded
    try:
        cls = methods.get(method)
    except KeyError:
        return ""
    return cls.params.get("recon") or f"own {config.get('reconstruction', 'gaussian')} NLL"


def metric_values(metrics_json: dict) -> dict[str, float]:
    """Flatten metrics.json's {"metrics": {name: {"values": {key: float}}}} to {"name/key": v}."""
    flat = {}
    for name, entry in metrics_json.get("metrics", {}).items():
        for key, value in (entry.get("values") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{name}/{key}"] = float(value)
    return flat


def label_order(runs: pd.DataFrame) -> list[str]:
    """The labels of `runs` in report order: the registry's paper comparison (TABLE_ORDER), each
    method followed by its parameterised labels (`beta-vae-beta=8` after `beta-vae`), then its
    registered variants (`l-vae-noreg` after `l-vae`); an ablation run (config "ablation": {"of":
    label}) comes right after the run it ablates; unknown methods last, by name."""
    if runs.empty:
        return []
    first = runs.drop_duplicates("label").set_index("label")
    rank = {name: i for i, name in enumerate(methods.TABLE_ORDER)}

    def key(label: str) -> tuple:
        of = first.at[label, "ablation_of"] if label in first.index else None
        if isinstance(of, str) and of != label:
            return key(of)[:5] + (1, label)
        method = first.at[label, "method"] if label in first.index else label
        family = max((n for n in methods.TABLE_ORDER if method == n or method.startswith(n + "-")),
                     key=len, default=method)
        return (rank.get(family, len(rank)), family, method != family, method, label != method,
                0, label)
    return sorted(first.index, key=key)
