"""Train one RunSpec: the optimiser loop, logging, checkpoints, resume, failure isolation.

A run folder holds `config.json`, `history.csv` (one row every `log_every` steps: step, every loss
term, every value the method logs), `model.pt` (checkpoint: network, method, optimiser and RNG
states) and `status.json` (running / done / failed, with the reason). Same seed and device give
the same history, also across a resume. Values are read back to the host only on logging steps.
"""
from __future__ import annotations

import csv
import io
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from disentbench import methods
from disentbench.bench import data as datasets
from disentbench.bench.io import atomic_path, read_json, read_json_or_empty, write_json, write_text
from disentbench.bench.nets import VAE
from disentbench.bench.spec import RunSpec
from disentbench.methods.base import TrainContext


class RunConflict(Exception):
    """The run folder holds a different run; the message says which field differs."""


@dataclass
class RunResult:
    spec: RunSpec
    run_dir: Path
    status: str                 # "done", "failed" or "skipped" (already done)
    step: int
    reason: str = ""
    seconds: float = 0.0


def pick_device(name: str | None = None) -> torch.device:
    """`name` if given, else CUDA when present, else CPU (chosen at run time)."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def read_status(run_dir) -> dict:
    return read_json_or_empty(Path(run_dir) / "status.json")


def is_finished(spec: RunSpec, out) -> bool:
    """True if `spec`'s folder under `out` holds a run trained to at least `spec.steps`."""
    status = read_status(spec.run_dir(out))
    return status.get("status") == "done" and status.get("step", 0) >= spec.steps


def mark_interrupted(spec: RunSpec, out) -> int | None:
    """Mark `spec`'s run, if its status says running, as interrupted at its last checkpoint (no
    process is training it any more); return that step, or None if it was not running."""
    run_dir = spec.run_dir(out)
    status = read_status(run_dir)
    if status.get("status") != "running":
        return None
    step = int(status.get("step", 0))
    write_json(run_dir / "status.json", {
        **status, "status": "interrupted", "step": step,
        "reason": f"interrupted; the checkpoint holds step {step}, rerunning resumes from it"})
    return step


def final_history_row(run_dir) -> dict:
    """The last row of a run's history (host floats, "step" an int); {} if there is none."""
    rows = _read_history(Path(run_dir) / "history.csv", up_to_step=float("inf"))
    return rows[-1] if rows else {}


def check_resumable(spec: RunSpec, run_dir: Path) -> None:
    """Raise RunConflict if `run_dir` holds a run that is not `spec` (more steps are allowed)."""
    try:
        old = RunSpec.from_dict(read_json(run_dir / "config.json")["spec"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if old.identity() != spec.identity():
        diff = {k: (v, spec.identity()[k]) for k, v in old.identity().items()
                if spec.identity()[k] != v}
        raise RunConflict(f"{run_dir} holds another run ({', '.join(f'{k}: {a} there, {b} asked' for k, (a, b) in diff.items())}); "
                          f"use another --out or delete that folder")


class Trainer:
    """Holds the state of one run; `step()` is one optimiser update (easy to wrap or time)."""

    def __init__(self, spec: RunSpec, data, device: torch.device):
        self.spec, self.data, self.device = spec, data, device
        torch.manual_seed(spec.seed)
        self.model = VAE(data.num_channels, spec.latent_dim).to(device)
        self.method = methods.create(spec.method, **dict(spec.params)).to(device)
        self.generator = torch.Generator(device=data.device).manual_seed(spec.seed)
        # bind before the optimiser: a method may create parameters that depend on the run
        # (FactorVAE's discriminator, L-VAE-perdim's per-dimension σ need the latent size)
        self.method.bind(TrainContext(model=self.model, latent_dim=spec.latent_dim,
                                      dataset_size=len(data), steps=spec.steps,
                                      sample_batch=self.sample_batch, device=device))
        self.optimizer = torch.optim.Adam(
            list(self.model.parameters()) + self.method.optimised_with_model(), lr=spec.lr)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.done_steps = 0

    def sample_batch(self) -> torch.Tensor:
        batch = self.data.sample_batch(self.spec.batch_size, self.generator)
        return self.data.to_float(batch.to(self.device, non_blocking=True))

    def step(self) -> dict:
        x = self.sample_batch()
        out = self.model(x)
        terms = self.method.loss(x, out, self.done_steps)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        self.method.after_step(x, out, terms, self.done_steps)
        self.nonfinite |= ~torch.isfinite(terms["loss"].detach())
        self.done_steps += 1
        return terms

    def row(self, terms: dict) -> dict:
        """One history row; the only host sync of a logging step."""
        values = {k: v.detach() for k, v in terms.items()}
        for name, value in self.method.logged().items():
            value = torch.as_tensor(value).detach()
            if value.numel() == 1:
                values[name] = value.reshape(())
            else:
                values.update({f"{name}_{i}": v for i, v in enumerate(value.reshape(-1))})
        names = list(values)
        numbers = torch.stack([values[n].float().to(self.device) for n in names]).tolist()
        return {"step": self.done_steps, **dict(zip(names, numbers))}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "step": self.done_steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.done_steps = state["step"]


def _write_history(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _read_history(path: Path, up_to_step: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    for row in rows:
        row["step"] = int(row["step"])
    return [row for row in rows if row["step"] <= up_to_step]


def _save_checkpoint(trainer: Trainer, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(trainer.state_dict(), tmp)


def train(spec: RunSpec, out, data=None, device=None, progress=None,
          extra_config: dict | None = None) -> RunResult:
    """Train `spec` into its folder under `out`, resuming from its checkpoint if there is one.

    `data` is the loaded dataset (loaded here if None); `progress(n)` is called with the number of
    newly completed steps; `extra_config` is added to config.json (the ablation's source). Never raises for a failing run: a non-finite loss, a diverging method
    or an exception ends the run with status "failed" and the reason. RunConflict is raised if the
    folder holds a different run.
    """
    run_dir = spec.run_dir(out)
    check_resumable(spec, run_dir)
    if is_finished(spec, out):
        return RunResult(spec, run_dir, "skipped", read_status(run_dir)["step"])
    device = pick_device(device)
    started = time.perf_counter()
    trainer = None
    try:
        if data is None:
            data = datasets.load(spec.dataset).to(device)
        trainer = Trainer(spec, data, device)
        checkpoint = run_dir / "model.pt"
        if checkpoint.is_file():
            trainer.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=False))
        history = _read_history(run_dir / "history.csv", trainer.done_steps)
        write_json(run_dir / "config.json", {
            "spec": spec.to_dict(), "device": str(device), "dataset_size": len(data),
            "method_params": trainer.method.hparams, "torch": torch.__version__,
            "reconstruction": trainer.method.reconstruction_loss, **(extra_config or {})})
        write_json(run_dir / "status.json", {"status": "running", "step": trainer.done_steps,
                                             "steps": spec.steps, "device": str(device)})
        failure = _loop(trainer, history, run_dir, progress)
    except Exception as err:                     # isolate the run: record and return
        failure = f"{type(err).__name__}: {err}"
        write_text(run_dir / "error.txt", traceback.format_exc())
    seconds = time.perf_counter() - started
    step = trainer.done_steps if trainer else 0
    status = {"status": "failed" if failure else "done", "step": step, "steps": spec.steps,
              "device": str(device), "seconds": round(seconds, 3)}
    if failure:
        status["reason"] = failure
    write_json(run_dir / "status.json", status)
    return RunResult(spec, run_dir, status["status"], step, failure or "", seconds)


def _loop(trainer: Trainer, history: list, run_dir: Path, progress) -> str | None:
    """Run the remaining steps; return a failure reason, or None when finished."""
    spec = trainer.spec
    trainer.model.train()
    last_reported = trainer.done_steps
    while trainer.done_steps < spec.steps:
        terms = trainer.step()
        n = trainer.done_steps
        if n % spec.log_every == 0 or n == spec.steps:
            row = trainer.row(terms)
            history.append(row)
            reason = None
            if trainer.nonfinite.item():
                bad = [k for k, v in row.items() if v != v or v in (float("inf"), float("-inf"))]
                reason = (f"non-finite loss at or before step {n} "
                          f"(non-finite now: {', '.join(bad) or 'none logged'}); "
                          f"the checkpoint holds the last finite state")
            else:
                reason = trainer.method.diverged(row)
            if reason:
                _write_history(run_dir / "history.csv", history)
                return reason
            if progress:
                progress(n - last_reported)
                last_reported = n
        if n % spec.checkpoint_every == 0 or n == spec.steps:
            if trainer.nonfinite.item():
                continue                       # never overwrite a good checkpoint; reported above
            _save_checkpoint(trainer, run_dir / "model.pt")
            _write_history(run_dir / "history.csv", history)
            write_json(run_dir / "status.json", {"status": "running", "step": n,
                                                 "steps": spec.steps,
                                                 "device": str(trainer.device)})
    return None
