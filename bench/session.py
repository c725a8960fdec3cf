"""What is written into a run folder: a training session's files, and the runner's notes on a
folder it does not train (damaged, stopped, moved aside). Every write is atomic (bench/io.py);
reading and checking is bench/store.py's `RunView`.

A `TrainingSession` is one run's training session: begun on creation (config.json, a running
status, the history cut back to the checkpoint), then `attach` a member of the engine (resumed
from the checkpoint), `log` each logging row, `save_checkpoint`, and `end` (or `interrupted`).
The order of the writes is such that a crash between any two of them leaves a folder that
resumes.
"""
from __future__ import annotations

import csv
import errno
import io
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from disentbench import methods
from disentbench.bench import diagnostics
from disentbench.bench.io import atomic_path, write_json, write_text
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import (CHECKPOINT, CONFIG, HISTORY, STATUS, TRACEBACK, RunDamaged,
                                     RunState, RunView, Status, checksum)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TrainingSession:
    """One training session of `spec` in its folder under `out`, from `state` (what the folder
    held, checked: its checkpoint and history are the resume point). Records the device, the
    precision and `config_extra` in config.json, and `notes` as warnings."""

    def __init__(self, spec: RunSpec, out, state: RunState, device, precision: str,
                 config_extra: dict | None = None, notes: list[str] = ()):
        self.spec, self.state, self.view = spec, state, RunView.of(spec, out)
        self.dir = self.view.dir
        self.history = list(state.history)
        self.started = time.perf_counter()
        previous = self.view.read_status()
        earlier = previous.get("seconds", 0.0) if previous.get("status") != Status.DAMAGED else 0
        self.earlier_seconds = earlier if isinstance(earlier, (int, float)) else 0.0
        self.warnings = list(dict.fromkeys(state.warnings + list(notes)))
        self.checkpoint_step = state.checkpoint["step"] if state.checkpoint else 0
        self.last_checkpoint: dict | None = None      # the state written last, with its checksum
        self.config = {"spec": spec.to_dict(), "device": str(device), "precision": precision,
                       "torch": torch.__version__, **(config_extra or {})}
        self.history_rows = len(self.history)               # the rows history.csv holds
        self.write_config(self.config)
        self._write_status(Status.RUNNING, self.checkpoint_step, reached_step=self.checkpoint_step)
        self.write_history(self.history)
        (self.dir / TRACEBACK).unlink(missing_ok=True)      # of an earlier, failed session

    def attach(self, member) -> None:
        """Resume the engine's `member` from the run's checkpoint (if any) and complete
        config.json with what the member knows (dataset size, method parameters, likelihood)."""
        if self.state.checkpoint:
            self._resume(member, self.state.checkpoint)
        self.write_config({**self.config, "dataset_size": member.dataset_size,
                           "method_params": member.method.hparams,
                           "reconstruction": member.method.reconstruction_loss})

    def _resume(self, member, checkpoint: dict) -> None:
        """Exactly where the checkpoint holds the optimiser and RNG states; else (a finished
        run's weights) with the optimiser restarted, which is recorded as a warning."""
        if "optimizer" in checkpoint:
            member.load_state_dict(checkpoint)
            return
        member.load_weights(checkpoint)
        if member.done_steps < self.spec.steps:
            self.warn(f"extended from step {member.done_steps} to {self.spec.steps} with the "
                      f"optimiser restarted from the saved weights (the finished run kept only "
                      f"its weights; --keep-checkpoints keeps the optimiser state and continues "
                      f"exactly)")

    def log(self, member, row: dict, nonfinite: bool) -> str | None:
        """Record a logging step's row; return why the run fails here (the history is then
        written), else None after a heartbeat."""
        self.history.append(row)
        if reason := failure_reason(member.method, row, nonfinite, self.checkpoint_step):
            self.write_history(self.history)
            return reason
        self._write_status(Status.RUNNING, self.checkpoint_step, reached_step=row["step"])
        return None

    def save_checkpoint(self, state: dict) -> None:
        """The history up to `state["step"]`, then model.pt (`state` with its checksum and row
        count inside it), then a running status, in this order."""
        self.write_history(self.history)
        self.last_checkpoint = write_checkpoint(self.dir, {**state,
                                                           "history_rows": len(self.history)})
        self.checkpoint_step = state["step"]
        self._write_status(Status.RUNNING, state["step"], reached_step=state["step"])

    def warn(self, message: str) -> None:
        """A warning of the run (kept over later sessions)."""
        self.warnings = list(dict.fromkeys(self.warnings + [message]))

    def interrupted(self, step: int) -> None:
        """A running status for a session stopped from outside (Ctrl-C): resumable."""
        self._write_status(Status.RUNNING, self.checkpoint_step, reached_step=step,
                           stopped=f"interrupted at step {step}; rerunning resumes from step "
                                   f"{self.checkpoint_step}")

    def end(self, step: int, failure: str | None = None, traceback: str | None = None) -> dict:
        """The final status (done, or failed with `failure` and the traceback in error.txt),
        with the warnings the history carries (bench/diagnostics.py) and the method's summary of
        it (`Method.history_summary`: L-VAE's whether β̂ settled). Returns it."""
        for warning in diagnostics.warnings_from_history(self.history, self.spec.method):
            self.warn(warning)
        if traceback:
            write_text(self.dir / TRACEBACK, traceback)
        extra = {"reason": failure} if failure else {}
        if summary := methods.get(self.spec.method).history_summary(self.history):
            extra["history_summary"] = summary
        return self._write_status(Status.FAILED if failure else Status.DONE, step, **extra)

    def seconds(self) -> float:
        """Training seconds of this run over every session, this one up to now."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def write_config(self, config: dict) -> None:
        """config.json: `config` over the entries already there (e.g. a runner's own)."""
        try:
            old = self.view.read_config()
        except RunDamaged:
            old = {}
        write_json(self.dir / CONFIG, {**old, **config})

    def write_history(self, rows: list[dict]) -> None:
        path = self.dir / HISTORY
        if not rows:
            path.unlink(missing_ok=True)
        else:
            columns = list(dict.fromkeys(k for row in rows for k in row))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            write_text(path, buffer.getvalue())
        self.history_rows = len(rows)

    def _write_status(self, kind: Status, step: int, **extra) -> dict:
        status = {"status": str(kind), "step": step, "steps": self.spec.steps,
                  "device": self.config["device"], "seconds": round(self.seconds(), 3),
                  "heartbeat": utc_now(), "checkpoint_step": self.checkpoint_step,
                  "history_rows": self.history_rows, **extra}
        if self.warnings:
            status["warnings"] = self.warnings
        write_json(self.dir / STATUS, status)
        return status


def failure_reason(method, row: dict, nonfinite: bool, checkpoint_step: int) -> str | None:
    """Why a run fails at the logging step of `row`: its loss went non-finite at or before it
    (`nonfinite`; the checkpoint at `checkpoint_step`, 0 for none, holds the last finite
    state), or its `method` says it diverged. None if it goes on."""
    if nonfinite:
        bad = [k for k, v in row.items() if v != v or v in (float("inf"), float("-inf"))]
        kept = (f"the checkpoint holds the last finite state (step {checkpoint_step})"
                if checkpoint_step else "no checkpoint had been written")
        return (f"non-finite loss at or before step {row['step']} "
                f"(non-finite now: {', '.join(bad) or 'none logged'}); {kept}")
    return method.diverged(row)


def write_checkpoint(run_dir: Path, state: dict) -> dict:
    """model.pt = `state` (which holds "step") plus its checksum, in one atomic write; returns
    what was written."""
    state = {**state, "checksum": checksum(state)}
    path = Path(run_dir) / CHECKPOINT
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:    # torch reports a full disk as "unexpected pos ..."
            if shutil.disk_usage(path.parent).free < (1 << 20) or "unexpected pos" in str(err):
                raise OSError(errno.ENOSPC, "no space left on device", str(path)) from None
            raise
    return state


def mark_damaged(view: RunView, message: str) -> None:
    """Record in status.json that the run failed because its folder is damaged, keeping the
    rest of the status; a status.json that is itself damaged is left as evidence."""
    try:
        status = view.checked_status()
    except (RunDamaged, OSError):
        return
    if not status:                       # a folder of stray files: nothing of a run to mark
        return
    status.setdefault("checkpoint_step",
                      status["step"] if status["status"] != Status.FAILED else 0)
    write_json(view.dir / STATUS, {**status, "status": str(Status.FAILED), "reason": message,
                                   "damaged": True, "heartbeat": utc_now()})


def move_aside(view: RunView) -> Path:
    """Rename the folder to `<run>.damaged-<UTC time>` (kept for inspection); return it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = view.dir.with_name(f"{view.dir.name}.damaged-{stamp}")
    view.dir.rename(target)
    return target


def mark_stopped(view: RunView) -> int | None:
    """After the grid was stopped from outside (its worker processes are gone): a status still
    saying running gets a `stopped` note and stays resumable. Returns the checkpoint step it
    resumes from, or None where the run is not running."""
    status = view.read_status()
    if status.get("status") != Status.RUNNING:
        return None
    step = status.get("checkpoint_step", status.get("step", 0))
    if "stopped" not in status:
        write_json(view.dir / STATUS, {
            **status, "stopped": f"stopped at step {status.get('reached_step', step)}; "
                                 f"rerunning resumes from step {step}"})
    return step
