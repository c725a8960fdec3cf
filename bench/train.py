"""Train runs into their folders: the one training loop, around the engine (bench/engine.py).

    train(spec, out)                 # a single run: a group of one
    train_runs(specs, out)           # runs that differ only in seed (and method parameters)

Each run is its own folder under `out`, written by its `TrainingSession` (bench/session.py):
config, a heartbeat, history rows (one every `log_every` steps: step, every loss term, every
value the method logs), checkpoints (network, method, optimiser and RNG states) and its end.
Same seed and device give the same history, also across a resume. A finished run keeps only its
final weights unless `keep_checkpoints`; extending it then restarts the optimiser (and says so).
Values are read back to the host only on logging steps. A member that goes non-finite or
diverges fails alone; the others go on.
"""
from __future__ import annotations

import collections
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path


from disentbench.bench import data as datasets
from disentbench.bench import precision as precisions
from disentbench.bench.engine import Engine, check_seed_group, pick_device
from disentbench.bench.session import TrainingSession, mark_damaged, move_aside
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunState, RunView, Status


@dataclass
class RunResult:
    """What happened to one run in this call: done or failed (`Status`), with the step it
    reached. `trained` is the steps trained now, `evaluated` whether metrics were computed now,
    `earlier` that the run needed nothing (finished, or failed and not retried). A run left to
    another process that holds its claim is `running`, with the holder as its reason."""
    dataset: str
    label: str
    seed: int
    status: Status
    step: int = 0
    reason: str = ""
    seconds: float = 0.0            # of this call
    warnings: list = field(default_factory=list)     # as status.json's "warnings"
    trained: int = 0
    evaluated: bool = False
    earlier: bool = False
    run_dir: Path | None = None

    @classmethod
    def of(cls, spec: RunSpec, out, status: Status, **fields) -> "RunResult":
        return cls(spec.dataset, spec.label, spec.seed, status,
                   run_dir=spec.run_dir(out) if out is not None else None, **fields)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.label}/seed{self.seed}"

    @property
    def work(self) -> str:
        """What was done, in words (the progress lines and the summary)."""
        if self.earlier:
            return ("already done" if self.status == Status.DONE
                    else "failed earlier, --retry-failed retries it")
        if self.status == Status.RUNNING:
            return "left to another process"
        if self.status == Status.FAILED:
            return f"failed at step {self.step}" if self.step or self.trained else "not trained"
        work = f"trained {self.trained} steps" if self.trained else "trained before"
        return work + (", evaluated" if self.evaluated else "")


def train(spec: RunSpec, out, data=None, device=None, progress=None, **flags) -> RunResult:
    """Train `spec` into its folder under `out` (a group of one); see `train_runs`."""
    return train_runs([spec], out, data, device, progress, **flags)[0]


def train_runs(specs: list[RunSpec], out, data=None, device=None, progress=None, *,
               keep_checkpoints: bool = False, repair: bool = False, retry_failed: bool = False,
               config_extra: dict | None = None, precision: str = "fp32",
               member_extra: list[dict] | None = None) -> list[RunResult]:
    """Train `specs` (one run, or runs that differ only in seed and method parameters) into
    their own folders under `out`, resuming each from its checkpoint. Returns one RunResult
    per spec, in order; never raises for a failing run.

    `data` is the loaded dataset (loaded here if None); `progress(n)` is called with newly
    completed steps summed over the members. A finished run is returned as done with nothing
    trained; one that failed before is returned untouched unless `retry_failed`. A damaged
    folder fails its run, or with `repair` is moved aside and retrained from step 0. Runs that
    resume from the same step train together as one engine (the most common step first).
    `precision` is auto|bf16|fp32; it, `config_extra` and each run's `member_extra` dict are
    recorded in config.json ("seed_group" too where several train together). RunConflict is
    raised, before anything is written, if a folder holds a different run.
    """
    check_seed_group(specs)
    extras = [{**(config_extra or {}), **more} for more in (member_extra or [{}] * len(specs))]
    states = [RunView.of(spec, out).state(spec) for spec in specs]        # RunConflict first
    device = pick_device(device)
    precision = precisions.resolve(precision, device)
    results, ready = {}, collections.defaultdict(list)
    for k, (spec, state) in enumerate(zip(specs, states)):
        result, state, notes = _settle(spec, out, state, repair, retry_failed)
        if result is not None:
            results[k] = result
        else:
            ready[state.step].append((k, state, notes))
    for _, cohort in sorted(ready.items(), key=lambda item: -len(item[1])):
        extra = {"seed_group": [specs[k].seed for k, _, _ in cohort]} if len(cohort) > 1 else {}
        sessions = {k: TrainingSession(specs[k], out, state, device, precision,
                                       {**extras[k], **extra}, notes)
                    for k, state, notes in cohort}
        results.update(_train_cohort(specs, out, sessions, data, device, progress,
                                     keep_checkpoints, precision))
    return [results[k] for k in range(len(specs))]


def _settle(spec: RunSpec, out, state: RunState, repair: bool, retry_failed: bool):
    """(result, None, []) for a run that needs no training (done; failed and not retried;
    damaged without `repair`), else (None, the state to train from, notes for its status)."""
    if state.kind == Status.DONE:
        return RunResult.of(spec, out, Status.DONE, step=state.step,
                            warnings=state.warnings), None, []
    if state.kind == Status.FAILED and not retry_failed:
        return RunResult.of(spec, out, Status.FAILED, step=state.step, reason=state.message,
                            warnings=state.warnings, earlier=True), None, []
    if state.kind != Status.DAMAGED:
        return None, state, []
    view = RunView.of(spec, out)
    if not repair:
        reason = (f"damaged run folder: {state.message}; rerun with --repair to move it "
                  f"aside and train the run again from step 0")
        mark_damaged(view, reason)
        return RunResult.of(spec, out, Status.FAILED, step=state.step, reason=reason), None, []
    moved = move_aside(view)
    return None, RunState(Status.NEW), [
        f"the damaged folder was moved to {moved.name} and the run trained again from step 0 "
        f"({state.message})"]


def _train_cohort(specs, out, sessions: dict[int, TrainingSession], data, device, progress,
                  keep_checkpoints: bool, precision: str) -> dict[int, RunResult]:
    """Train the runs of `sessions` (index into `specs` -> its begun session), which resume
    from one step, as one engine: results by index. An exception outside a member's own
    failure (loading the data, the stacked step) fails every member without a result."""
    started, members, results = time.perf_counter(), {}, {}

    def end(k: int, failure: str | None = None, error: str | None = None) -> RunResult:
        step = members[k].done_steps if k in members else sessions[k].state.step
        final = sessions[k].end(step, failure, error)
        return RunResult.of(specs[k], out, Status(final["status"]), step=step,
                            reason=final.get("reason", ""), warnings=final.get("warnings", []),
                            trained=max(0, step - sessions[k].state.step))
    try:
        if data is None:
            data = datasets.load(specs[0].dataset).to(device)
        engine = Engine([specs[k] for k in sessions], data, device, precision)
        for k, member in zip(sessions, engine.members):
            sessions[k].attach(member)
            member.model.train()
            members[k] = member
        runs = {id(member): (k, sessions[k]) for k, member in members.items()}
        for member, failure in _loop(engine, runs, progress, keep_checkpoints):
            k = runs[id(member)][0]
            results[k] = end(k, failure)
    except KeyboardInterrupt:
        for k in sessions.keys() - results.keys():
            sessions[k].interrupted(members[k].done_steps if k in members
                                    else sessions[k].state.step)
        raise
    except Exception as err:                      # noqa: BLE001 - every member without a result
        failure, error = f"{type(err).__name__}: {err}", traceback.format_exc()
        for k in sessions.keys() - results.keys():
            results[k] = end(k, failure, error)
    seconds = (time.perf_counter() - started) / len(sessions)       # each member's share
    for result in results.values():
        result.seconds = seconds
    return results


def _loop(engine: Engine, runs: dict, progress, keep_checkpoints: bool):
    """Run the engine to its runs' steps (`runs`: id(member) -> (index, session)); yields
    (member, failure reason) for each member that fails at a logging step, then (member,
    None) for each that finished."""
    spec = engine.specs[0]
    last_reported = engine.done_steps
    while engine.members and engine.done_steps < spec.steps:
        terms = engine.step()
        n = engine.done_steps
        if n % spec.log_every == 0 or n == spec.steps:
            rows = engine.rows(terms)
            failures = {j: reason for j, (m, row, nonfinite) in
                        enumerate(zip(engine.members, rows, engine.nonfinite_at_rows))
                        if (reason := runs[id(m)][1].log(m, row, nonfinite))}
            live = len(engine.members)
            for member in engine.drop(failures):
                yield member, engine.failed[member.spec.seed]
            if progress:
                progress((n - last_reported) * live)
                last_reported = n
        if n % spec.checkpoint_every == 0 or n == spec.steps:
            for member in engine.members:
                if member.nonfinite.item():   # never over a good checkpoint; the next row fails
                    continue
                final = n == spec.steps and not keep_checkpoints
                state = member.weights_state_dict() if final else member.state_dict()
                runs[id(member)][1].save_checkpoint(state)
    for member in list(engine.members):
        yield member, None
