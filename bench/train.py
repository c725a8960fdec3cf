"""Train one RunSpec: the optimiser loop, logging, checkpoints, resume, failure isolation.

What is written where is the run store's business (bench/store.py): training reports its
config, a heartbeat, history rows (one every `log_every` steps: step, every loss term, every
value the method logs), checkpoints (network, method, optimiser and RNG states) and its end.
Same seed and device give the same history, also across a resume. A finished run keeps only its
final weights unless `keep_checkpoints`; extending it then restarts the optimiser (and says so).
Values are read back to the host only on logging steps. `Session` is one run's training
session in its store, shared with seed groups (bench/group.py), which train several runs at once.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from disentbench import methods
from disentbench.bench import data as datasets
from disentbench.bench import diagnostics
from disentbench.bench import precision as precisions
from disentbench.bench.nets import VAE
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunDamaged, RunState, RunStore
from disentbench.methods.base import TrainContext


@dataclass
class RunResult:
    spec: RunSpec
    run_dir: Path
    status: str                 # "done", "failed" or "skipped" (already done)
    step: int
    reason: str = ""
    seconds: float = 0.0        # of this call; status.json sums the seconds of every session
    warnings: list = field(default_factory=list)   # as status.json's "warnings"


def pick_device(name: str | None = None) -> torch.device:
    """`name` if given, else CUDA when present, else CPU (chosen at run time)."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def row_values(terms: dict, method, posterior) -> dict[str, torch.Tensor]:
    """The 0-d tensors of one history row, still on the device: the loss terms, the latent
    activity of the step's `posterior` (mu, logvar) (bench/diagnostics.py), then the method's
    logged values (vectors split into name_0, name_1, ...)."""
    values = {k: v.detach().reshape(()) for k, v in terms.items()}
    values.update(diagnostics.latent_activity(*posterior))
    for name, value in method.logged().items():
        value = torch.as_tensor(value).detach()
        if value.numel() == 1:
            values[name] = value.reshape(())
        else:
            values.update({f"{name}_{i}": v for i, v in enumerate(value.reshape(-1))})
    return values


class Trainer:
    """Holds the state of one run; `step()` is one optimiser update (easy to wrap or time)."""

    def __init__(self, spec: RunSpec, data, device: torch.device, precision: str = "fp32"):
        self.spec, self.data, self.device = spec, data, device
        self.precision = precisions.resolve(precision, device)
        torch.manual_seed(spec.seed)
        self.layout = precisions.memory_format(self.precision, device)
        self.model = VAE(data.num_channels, spec.latent_dim).to(device, memory_format=self.layout)
        self.method = methods.create(spec.method, **dict(spec.params)).to(device)
        self.generator = torch.Generator(device=data.device).manual_seed(spec.seed)
        # bind before the optimiser: a method may create parameters that depend on the run
        # (FactorVAE's discriminator, L-VAE-perdim's per-dimension σ need the latent size)
        self.method.bind(TrainContext(model=self.model, latent_dim=spec.latent_dim,
                                      dataset_size=len(data), steps=spec.steps,
                                      sample_batch=self.sample_batch, device=device))
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.model.parameters())}, *self.method.param_groups(spec.lr)],
            lr=spec.lr)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.done_steps = 0

    def sample_batch(self) -> torch.Tensor:
        batch = self.data.sample_batch(self.spec.batch_size, self.generator)
        x = self.data.to_float(batch.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=self.layout)

    def step(self) -> dict:
        x = self.sample_batch()
        out = precisions.forward(self.model, x, self.precision)
        terms = self.method.loss(x, out, self.done_steps)
        self.posterior = out.mu.detach(), out.logvar.detach()     # for row()'s diagnostics
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        self.method.after_step(x, out, terms, self.done_steps)
        self.nonfinite |= ~torch.isfinite(terms["loss"].detach())
        self.done_steps += 1
        return terms

    def row(self, terms: dict) -> dict:
        """One history row; the only host sync of a logging step."""
        values = row_values(terms, self.method, self.posterior)
        numbers = torch.stack([v.float().to(self.device) for v in values.values()]).tolist()
        return {"step": self.done_steps, **dict(zip(values, numbers))}

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

    def weights_state_dict(self) -> dict:
        """What a finished run keeps: the network and the method's state without its
        resume-only extra state (an optimiser of its own, e.g. FactorVAE's discriminator Adam)."""
        method = {k: v for k, v in self.method.state_dict().items()
                  if not k.endswith("_extra_state")}
        return {"model": self.model.state_dict(), "method": method, "step": self.done_steps}

    def load_weights(self, state: dict) -> None:
        """Continue from `weights_state_dict()`: fresh optimisers, random streams reseeded from
        (seed, step), so that the batches differ from the first steps'."""
        self.model.load_state_dict(state["model"])
        missing, unexpected = self.method.load_state_dict(state["method"], strict=False)
        if unexpected or any(not k.endswith("_extra_state") for k in missing):
            raise RunDamaged(f"the checkpoint's method state does not fit {self.spec.method} "
                             f"(missing {missing}, unexpected {unexpected})")
        self.done_steps = state["step"]
        torch.manual_seed(self.spec.seed + (self.done_steps << 32))
        self.generator.manual_seed(self.spec.seed + (self.done_steps << 32))


def train(spec: RunSpec, out, data=None, device=None, progress=None, *,
          keep_checkpoints: bool = False, repair: bool = False, retry_failed: bool = False,
          config_extra: dict | None = None, precision: str = "fp32") -> RunResult:
    """Train `spec` into its folder under `out`, resuming from its checkpoint if there is one.

    `data` is the loaded dataset (loaded here if None); `progress(n)` is called with the number of
    newly completed steps. Never raises for a failing run: a non-finite loss, a diverging method
    or an exception ends the run with status "failed" and the reason. A run that failed before
    is returned as failed, untouched, unless `retry_failed`. A damaged folder (the store says
    which file and why) fails the run, or with `repair` is moved aside and retrained from step 0.
    A finished run keeps only its final weights unless `keep_checkpoints`. `precision` is
    auto|bf16|fp32 (bench/precision.py); the one used and `config_extra` are recorded in
    config.json. RunConflict is raised if the folder holds a different run, ValueError for an
    unknown precision.
    """
    device = pick_device(device)
    precision = precisions.resolve(precision, device)
    store = RunStore.of(spec, out)
    state = store.state(spec)
    if state.kind == "done":
        return RunResult(spec, store.dir, "skipped", state.step, warnings=state.warnings)
    if state.kind == "failed" and not retry_failed:
        return RunResult(spec, store.dir, "failed", state.step, state.message,
                         warnings=state.warnings)
    notes = []
    if state.kind == "damaged":
        if not repair:
            reason = (f"damaged run folder: {state.message}; rerun with --repair to move it "
                      f"aside and train the run again from step 0")
            store.mark_damaged(reason)
            return RunResult(spec, store.dir, "failed", state.step, reason)
        moved = store.move_aside()
        notes.append(f"the damaged folder was moved to {moved.name} and the run trained again "
                     f"from step 0 ({state.message})")
        state = RunState("new")
    session = Session(spec, store, state, device, precision, config_extra, notes)
    trainer, error = None, None
    try:
        if data is None:
            data = datasets.load(spec.dataset).to(device)
        trainer = Trainer(spec, data, device, precision)
        session.attach(trainer)
        failure = _loop(trainer, session, progress, keep_checkpoints)
    except KeyboardInterrupt:
        session.interrupted(trainer.done_steps if trainer else state.step)
        raise
    except Exception as err:                     # isolate the run: record and return
        failure, error = f"{type(err).__name__}: {err}", traceback.format_exc()
    return session.end(trainer.done_steps if trainer else state.step, failure, error)


class Session:
    """One training session of one run, reported to its store: begun on creation (config.json,
    a running status, the history cut back to the checkpoint), then `attach` a Trainer, `log`
    each logging row, `save_checkpoint`, and `end` (or `interrupted`). `train` runs one;
    `bench.group.train_group` runs one per member of a seed group, so both write the same files.
    """

    def __init__(self, spec: RunSpec, store: RunStore, state: RunState, device: torch.device,
                 precision: str, config_extra: dict | None = None, notes: list[str] = ()):
        self.spec, self.store, self.state = spec, store, state
        self.history = state.history
        self.started = time.perf_counter()
        self.config = {"spec": spec.to_dict(), "device": str(device), "precision": precision,
                       "torch": torch.__version__, **(config_extra or {})}
        store.begin(self.config, steps=spec.steps, device=str(device), resumed=state,
                    warnings=list(notes))

    def attach(self, trainer: Trainer) -> None:
        """Resume `trainer` from the run's checkpoint (if any) and complete config.json."""
        if self.state.checkpoint:
            _resume(trainer, self.state.checkpoint, self.store)
        self.store.write_config({**self.config, "dataset_size": len(trainer.data),
                                 "method_params": trainer.method.hparams,
                                 "reconstruction": trainer.method.reconstruction_loss})

    def log(self, trainer: Trainer, row: dict, nonfinite: bool) -> str | None:
        """Record a logging step's row; return why the run fails here (`failure_reason`; the
        history is then written), else None after a heartbeat."""
        self.history.append(row)
        if reason := failure_reason(trainer, row, nonfinite, self.store.checkpoint_step()):
            self.store.write_history(self.history)
            return reason
        self.store.heartbeat(row["step"])
        return None

    def save_checkpoint(self, trainer: Trainer, keep_checkpoints: bool, state_dict=None) -> None:
        """Checkpoint the trainer: its full state (`state_dict()`, default `trainer.state_dict`),
        or at the final step only its weights unless `keep_checkpoints`. Never overwrites a good
        checkpoint with a non-finite state (the next logging step fails the run)."""
        if trainer.nonfinite.item():
            return
        final = trainer.done_steps == self.spec.steps and not keep_checkpoints
        state = trainer.weights_state_dict() if final else (state_dict or trainer.state_dict)()
        self.store.save_checkpoint(state, self.history)

    def interrupted(self, step: int) -> None:
        self.store.interrupted(step)

    def end(self, step: int, failure: str | None = None, error: str | None = None) -> RunResult:
        """The run's final status (done, or failed with `failure` and the traceback `error`),
        with the warnings its history carries (bench/diagnostics.py)."""
        for warning in diagnostics.warnings_from_history(self.history, self.spec.method):
            self.store.warn(warning)
        final = self.store.finish(step, failure, error)
        return RunResult(self.spec, self.store.dir, final["status"], step, failure or "",
                         time.perf_counter() - self.started, final.get("warnings", []))


def failure_reason(trainer: Trainer, row: dict, nonfinite: bool,
                   checkpoint_step: int) -> str | None:
    """Why a run fails at the logging step of `row`: its loss went non-finite at or before it
    (`nonfinite`; the checkpoint at `checkpoint_step`, 0 for none, holds the last finite
    state), or its method says it diverged. None if it goes on."""
    if nonfinite:
        bad = [k for k, v in row.items() if v != v or v in (float("inf"), float("-inf"))]
        kept = (f"the checkpoint holds the last finite state (step {checkpoint_step})"
                if checkpoint_step else "no checkpoint had been written")
        return (f"non-finite loss at or before step {row['step']} "
                f"(non-finite now: {', '.join(bad) or 'none logged'}); {kept}")
    return trainer.method.diverged(row)


def _resume(trainer: Trainer, checkpoint: dict, store: RunStore) -> None:
    """Load `checkpoint` into `trainer`: exactly where it holds the optimiser and RNG states,
    else (a finished run's weights) with the optimiser restarted, which the store records."""
    if "optimizer" in checkpoint:
        trainer.load_state_dict(checkpoint)
        return
    trainer.load_weights(checkpoint)
    if trainer.done_steps < trainer.spec.steps:
        store.warn(f"extended from step {trainer.done_steps} to {trainer.spec.steps} with the "
                   f"optimiser restarted from the saved weights (the finished run kept only its "
                   f"weights; --keep-checkpoints keeps the optimiser state and continues "
                   f"exactly)")


def _loop(trainer: Trainer, session: Session, progress, keep_checkpoints: bool) -> str | None:
    """Run the remaining steps; return a failure reason, or None when finished."""
    spec = trainer.spec
    trainer.model.train()
    last_reported = trainer.done_steps
    while trainer.done_steps < spec.steps:
        terms = trainer.step()
        n = trainer.done_steps
        if n % spec.log_every == 0 or n == spec.steps:
            row = trainer.row(terms)
            if reason := session.log(trainer, row, trainer.nonfinite.item()):
                return reason
            if progress:
                progress(n - last_reported)
                last_reported = n
        if n % spec.checkpoint_every == 0 or n == spec.steps:
            session.save_checkpoint(trainer, keep_checkpoints)
    return None
