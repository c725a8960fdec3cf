"""UDR over the seeds of one setting, from what evaluation stores in each run folder.

UDR (metrics/udr.py) scores a model by how well its latents match those of the other models of
its setting (same method, hyperparameters and dataset; different seeds). Evaluation
(`evaluate_run`) stores what it needs in each run folder, so that the report scores a setting
without loading its models:

    udr_codes.npz   means (N, D) float32: the posterior means on N = 1000 observations of the
                    dataset, drawn as dlib's UDR draws them (batches of 10, RandomState(0)):
                    the same observations for every run of a dataset, whatever its seed;
                    kl (D,) float64: each latent's KL to N(0, 1), averaged over each batch of
                    10, then over the batches, as dlib does; the training step and checkpoint
                    checksum scored, the dataset's name and the sampling's seed, N and batch.

    scores = setting_scores([run_a, run_b, run_c])           # {run_dir: UDR score}
    detail = setting_udr([run_a, run_b, run_c], "spearman")  # .scores, .reasons, .result

The report takes a run's codes as current when they encoded the step its status.json records
(and the checkpoint metrics.json scored, where that is current too), as it takes metrics.json;
evaluation compares them with the checkpoint itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from disentbench.bench.io import atomic_path
from disentbench.bench.store import RunDamaged, RunView, scored
from disentbench.metrics.udr import ZEROING_THRESHOLD, sample_observations, udr_from_codes

UDR_CODES = "udr_codes.npz"
# dlib's udr.gin sizes; the seed is fixed so that every run of a dataset sees the same inputs.
INPUTS = {"seed": 0, "num_data_points": 1000, "batch_size": 10}


class CodesUnavailable(Exception):
    """A run has no current UDR codes; the message says why."""


def encode(model: torch.nn.Module, data, device=None, chunk: int = 500,
           **inputs) -> tuple[np.ndarray, np.ndarray]:
    """(means (N, D) float32, KL (D,) float64) of `model`'s posterior on the UDR inputs
    (`INPUTS`, overridable): observations drawn as `metrics.udr.compute_udr` draws them, encoded
    `chunk` at a time (the model is put in channels-last layout); the KL averaged over each
    batch, then over the batches."""
    inputs = {**INPUTS, **inputs}
    device = torch.device(device) if device is not None else next(model.parameters()).device
    random_state = np.random.RandomState(inputs["seed"])
    batch = inputs["batch_size"]
    observations = torch.cat([torch.as_tensor(sample_observations(data, batch, random_state))
                              for _ in range(inputs["num_data_points"] // batch)])
    means, logvars = [], []
    model.eval().to(memory_format=torch.channels_last)      # 1.4x faster on a CPU, as evaluate
    with torch.inference_mode():
        for i in range(0, len(observations), chunk):
            x = data.to_float(observations[i:i + chunk].to(device))
            mean, logvar = model.encode(x.contiguous(memory_format=torch.channels_last))
            means.append(mean.float().cpu())
            logvars.append(logvar.float().cpu())
    mean, logvar = torch.cat(means).numpy(), torch.cat(logvars).numpy().astype(np.float64)
    kl = 0.5 * (np.square(mean, dtype=np.float64) + np.exp(logvar) - logvar - 1)
    return mean, kl.reshape(-1, batch, kl.shape[1]).mean(axis=1).mean(axis=0)


def write_codes(run_dir, model: torch.nn.Module, data, checkpoint: dict, device=None) -> Path:
    """Encode the UDR inputs with `model` (the network of `checkpoint`) and write them to
    `run_dir/udr_codes.npz` atomically, with the step and checksum of `checkpoint`."""
    means, kl = encode(model, data, device)
    path = Path(run_dir) / UDR_CODES
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, means=means, kl=kl, dataset=str(getattr(data, "name", "")),
                 **scored(checkpoint), **{f"inputs_{k}": v for k, v in INPUTS.items()})
    return path


@dataclass(frozen=True)
class RunCodes:
    means: np.ndarray       # (N, D) float32
    kl: np.ndarray          # (D,)
    trained_step: int
    checkpoint: str         # the checksum of the checkpoint encoded
    inputs: dict            # dataset, seed, num_data_points, batch_size


def read_codes(run_dir) -> RunCodes:
    """The run's udr_codes.npz; CodesUnavailable if it is missing or unreadable."""
    path = Path(run_dir) / UDR_CODES
    if not path.is_file():
        raise CodesUnavailable(f"{path} is missing (the run was not evaluated since UDR codes "
                               f"are stored: evaluate it again)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return RunCodes(f["means"], f["kl"], int(f["trained_step"]), str(f["checkpoint"]),
                            {"dataset": str(f["dataset"]),
                             **{k: int(f[f"inputs_{k}"]) for k in INPUTS}})
    except (OSError, ValueError, KeyError) as err:
        raise CodesUnavailable(f"{path} is unreadable ({type(err).__name__}: {err})") from None


def codes_current(run_dir, checkpoint: dict) -> bool:
    """True if the run's UDR codes encoded `checkpoint` (its "step" and "checksum") on today's
    inputs; evaluation computes them again otherwise."""
    try:
        codes = read_codes(run_dir)
    except CodesUnavailable:
        return False
    inputs = {k: v for k, v in codes.inputs.items() if k != "dataset"}
    return (codes.trained_step, codes.checkpoint, inputs) == (
        checkpoint["step"], checkpoint["checksum"], INPUTS)


def current_codes(run_dir) -> RunCodes:
    """The run's UDR codes if they encoded its final checkpoint: the step status.json records,
    and the checkpoint metrics.json scored where it scored that step; CodesUnavailable naming
    what is missing, damaged or stale."""
    codes = read_codes(run_dir)
    view = RunView(run_dir)
    try:
        step = view.checked_status().get("step")
        evaluation = view.read_metrics(current_only=True)
    except RunDamaged as err:
        raise CodesUnavailable(str(err)) from None
    stale = f"{Path(run_dir) / UDR_CODES} encoded the checkpoint of step {codes.trained_step}"
    if codes.trained_step != step:
        raise CodesUnavailable(f"{stale}; the run is at step {step} (evaluate it again)")
    if evaluation and evaluation.get("checkpoint") != codes.checkpoint:
        raise CodesUnavailable(f"{stale}, not the checkpoint metrics.json scored (the run was "
                               f"trained again: evaluate it again)")
    return codes


@dataclass
class SettingUDR:
    """UDR of the runs of one setting: `scores[run]` (NaN where there is none, `reasons[run]`
    says why) and `result`, metrics.udr's result over the runs scored (None if under 2)."""
    scores: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    result: dict | None = None


def setting_udr(run_dirs, correlation_matrix: str = "lasso") -> SettingUDR:
    """UDR of each run of one setting (same method, hyperparameters and dataset; different
    seeds) from their stored codes, with dlib's defaults (KL filter at 0.01).

    A run without current codes, or whose every latent's KL is <= 0.01 (a collapsed posterior,
    which dlib cannot score: it crashes), gets NaN with the reason, and the others are scored
    among themselves; under 2 runs left, every run gets NaN. ValueError if the runs are not of
    one setting or their codes are of different inputs.
    """
    runs = [Path(r) for r in run_dirs]
    _check_one_setting(runs)
    out, codes = SettingUDR(), {}
    for run in runs:
        try:
            codes[run] = current_codes(run)
        except CodesUnavailable as err:
            out.reasons[run] = str(err)
            continue
        if not (codes[run].kl > ZEROING_THRESHOLD).any():
            del codes[run]
            out.reasons[run] = (f"no active latent (every KL <= {ZEROING_THRESHOLD} nats: the "
                                f"posterior collapsed); UDR cannot compare it")
    if len({str(c.inputs) for c in codes.values()}) > 1:
        raise ValueError("the runs' UDR codes are of different inputs: "
                         + "; ".join(f"{run}: {c.inputs}" for run, c in codes.items()))
    if len(codes) < 2:
        for run in codes:
            out.reasons[run] = (f"only {len(codes)} run of the setting has current UDR codes "
                                f"and an active latent; UDR compares at least 2")
    else:
        out.result = udr_from_codes([c.means for c in codes.values()],
                                    [c.kl for c in codes.values()],
                                    correlation_matrix=correlation_matrix,
                                    include_raw_correlations=False)
        out.scores.update(zip(codes, out.result["model_scores"]))
    out.scores = {run: out.scores.get(run, math.nan) for run in runs}
    return out


def setting_scores(run_dirs, correlation_matrix: str = "lasso") -> dict[Path, float]:
    """{run_dir: UDR score} of the runs of one setting (`setting_udr`; NaN where a run has none:
    `setting_udr(...).reasons` says why)."""
    return setting_udr(run_dirs, correlation_matrix).scores


def _check_one_setting(runs: list[Path]) -> None:
    """ValueError if the runs' specs differ in more than their seed (a variant such as the
    fixed-β̂ ablation, whose β differs per seed, is one setting by its label)."""
    settings = {}
    for run in runs:
        try:
            spec = RunView(run).read_spec()
        except RunDamaged:
            continue                                  # current_codes says what is wrong
        setting = {k: v for k, v in spec.identity().items() if k not in ("seed", "params")}
        settings[run] = str({**setting, "label": spec.label})
    if len(set(settings.values())) > 1:
        raise ValueError("UDR compares the seeds of one setting; these runs differ in more than "
                         "their seed: " + ", ".join(str(r) for r in settings))
