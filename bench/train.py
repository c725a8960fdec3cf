"""Train one RunSpec: the optimiser loop, logging, checkpoints, resume, failure isolation.

What is written where is the run store's business (bench/store.py): training reports its
config, a heartbeat, history rows (one every `log_every` steps: step, every loss term, every
value the method logs), checkpoints (network, method, optimiser and RNG states) and its end.
Same seed and device give the same history, also across a resume. A finished run keeps only its
final weights unless `keep_checkpoints`; extending it then restarts the optimiser (and says so).
Values are read back to the host only on logging steps.
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
from disentbench.bench.nets import VAE
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunConflict  # noqa: F401  (raised by train; callers catch it here)
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
            [{"params": list(self.model.parameters())}, *self.method.param_groups(spec.lr)],
            lr=spec.lr)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.done_steps = 0

    def sample_batch(self) -> torch.Tensor:
        batch = self.data.sample_batch(self.spec.batch_size, self.generator)
        return self.data.to_float(batch.to(self.device, non_blocking=True))

    def step(self) -> dict:
        x = self.sample_batch()
        out = self.model(x)
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
        values = {k: v.detach() for k, v in terms.items()}
        values.update(diagnostics.latent_activity(*self.posterior))
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
          config_extra: dict | None = None) -> RunResult:
    """Train `spec` into its folder under `out`, resuming from its checkpoint if there is one.

    `data` is the loaded dataset (loaded here if None); `progress(n)` is called with the number of
    newly completed steps. Never raises for a failing run: a non-finite loss, a diverging method
    or an exception ends the run with status "failed" and the reason. A run that failed before
    is returned as failed, untouched, unless `retry_failed`. A damaged folder (the store says
    which file and why) fails the run, or with `repair` is moved aside and retrained from step 0.
    A finished run keeps only its final weights unless `keep_checkpoints`. `config_extra` is
    recorded in config.json. RunConflict is raised if the folder holds a different run.
    """
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
    device = pick_device(device)
    started = time.perf_counter()
    config = {"spec": spec.to_dict(), "device": str(device), "torch": torch.__version__,
              **(config_extra or {})}
    store.begin(config, steps=spec.steps, device=str(device), resumed=state, warnings=notes)
    trainer, error = None, None
    try:
        if data is None:
            data = datasets.load(spec.dataset).to(device)
        trainer = Trainer(spec, data, device)
        if state.checkpoint:
            _resume(trainer, state.checkpoint, store)
        store.write_config({**config, "dataset_size": len(data),
                            "method_params": trainer.method.hparams,
                            "reconstruction": trainer.method.reconstruction_loss})
        failure = _loop(trainer, state.history, store, progress, keep_checkpoints)
    except KeyboardInterrupt:
        store.interrupted(trainer.done_steps if trainer else state.step)
        raise
    except Exception as err:                     # isolate the run: record and return
        failure, error = f"{type(err).__name__}: {err}", traceback.format_exc()
    step = trainer.done_steps if trainer else state.step
    for warning in diagnostics.warnings_from_history(state.history, spec.method):
        store.warn(warning)
    final = store.finish(step, failure, error)
    return RunResult(spec, store.dir, final["status"], step, failure or "",
                     time.perf_counter() - started, final.get("warnings", []))


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


def _loop(trainer: Trainer, history: list, store: RunStore, progress,
          keep_checkpoints: bool) -> str | None:
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
                kept = (f"the checkpoint holds the last finite state (step "
                        f"{store.checkpoint_step()})" if store.checkpoint_step()
                        else "no checkpoint had been written")
                reason = (f"non-finite loss at or before step {n} "
                          f"(non-finite now: {', '.join(bad) or 'none logged'}); {kept}")
            else:
                reason = trainer.method.diverged(row)
            if reason:
                store.write_history(history)
                return reason
            store.heartbeat(n)
            if progress:
                progress(n - last_reported)
                last_reported = n
        if n % spec.checkpoint_every == 0 or n == spec.steps:
            if trainer.nonfinite.item():
                continue                       # never overwrite a good checkpoint; reported above
            final = n == spec.steps and not keep_checkpoints
            store.save_checkpoint(trainer.weights_state_dict() if final
                                  else trainer.state_dict(), history)
    return None
