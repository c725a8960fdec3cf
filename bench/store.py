"""The run store: one folder per run, every file written atomically, nothing read unchecked.

    runs/<dataset>/<label>/seed<k>/
      config.json   {"spec": RunSpec.to_dict(), "device", "method_params", ...}
      status.json   running (with a heartbeat) | done | failed (with the reason); step, steps,
                    seconds (summed over every session), checkpoint_step, history_rows, warnings
      history.csv   header row, then one row per logging step, "step" first
      model.pt      checkpoint; holds its own "checksum" (sha256 of everything else in it), so
                    a crash at any moment leaves a checkpoint and checksum that agree
      error.txt     the traceback of a run that raised
      metrics.json  written by evaluation, with the training step and checkpoint checksum scored

A folder whose files fail a check is *damaged*: `RunDamaged` names the file and what is wrong,
and `RunView.state` reports it instead of trusting it. A folder that holds another run raises
`RunConflict` naming the field. This module only reads: `RunView` is the checked, read-only view
that the planner, the worker and the report use; what a training session or the runner writes
goes through bench/session.py. `Status` is the one vocabulary of run states, from status.json
to the runner's summary and the report.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

from disentbench.bench.io import read_json
from disentbench.bench.spec import RunSpec

CONFIG, STATUS, HISTORY = "config.json", "status.json", "history.csv"
CHECKPOINT, METRICS, TRACEBACK = "model.pt", "metrics.json", "error.txt"


class Status(str, Enum):
    """The state of a run, everywhere: status.json holds running, done or failed; a folder is
    classified (`RunView.state`) as new, resumable, done, failed or damaged; a run's result
    in the runner is done or failed. A str, so that `Status.DONE == "done"`."""
    NEW = "new"                  # nothing trained
    RUNNING = "running"          # status.json while a session trains (resumable if left so)
    RESUMABLE = "resumable"      # a checkpoint before the steps asked (interrupted, or extended)
    DONE = "done"
    FAILED = "failed"
    DAMAGED = "damaged"          # a file fails a check: named, never trusted

    def __str__(self) -> str:
        return self.value


WRITTEN = (Status.RUNNING, Status.DONE, Status.FAILED)      # the values status.json may hold


class RunConflict(Exception):
    """The run folder holds a different run; the message says which field differs."""


class RunDamaged(Exception):
    """A file of the run folder is unreadable or disagrees with the others (message names it)."""


@dataclass
class RunState:
    """What a run folder holds for a spec, before training: new, resumable, done, failed or
    damaged.

    `step` is where training would continue (the checkpoint's step; for done and failed runs the
    step they reached), `message` the failure reason or what is damaged. `checkpoint` and
    `history` are the checked resume point (None and [] when training starts from step 0).
    """
    kind: Status
    step: int = 0
    message: str = ""
    warnings: list = field(default_factory=list)
    checkpoint: dict | None = field(default=None, repr=False)
    history: list = field(default_factory=list, repr=False)
    checksum: str = ""          # of the checkpoint the folder holds ("" for none)


def checksum(state: dict) -> str:
    """sha256 over every tensor's dtype, shape and bytes and every other value of `state`
    (nested dicts in key order), so that one flipped bit anywhere changes it."""
    digest = hashlib.sha256()

    def walk(value):
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"tensor {tensor.dtype} {tuple(value.shape)}:".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=str):
                digest.update(f"{key!r}:".encode())
                walk(value[key])
            digest.update(b"}")
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for item in value:
                walk(item)
            digest.update(b"]")
        else:
            digest.update(f"{value!r};".encode())
    walk(state)
    return digest.hexdigest()


def _read_object(path: Path) -> dict:
    """The JSON object in `path`; RunDamaged (naming the file) if it is unreadable or not an
    object. A missing file raises FileNotFoundError."""
    try:
        value = read_json(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise RunDamaged(f"{path} is unreadable (truncated or not JSON: {err})") from None
    if not isinstance(value, dict):
        raise RunDamaged(f"{path} holds {json.dumps(value)[:40]}, not a JSON object") from None
    return value


class RunView:
    """A checked, read-only view of one run folder."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir)

    @classmethod
    def of(cls, spec: RunSpec, out) -> "RunView":
        return cls(spec.run_dir(out))

    def exists(self) -> bool:
        """True if the folder holds any file of a run (temporary files of a crash do not count)."""
        return self.dir.is_dir() and any(not p.name.startswith(".") for p in self.dir.iterdir())

    def read_config(self) -> dict:
        """config.json with a valid "spec"; RunDamaged if missing, unreadable or invalid."""
        path = self.dir / CONFIG
        try:
            config = _read_object(path)
        except FileNotFoundError:
            raise RunDamaged(f"{path} is missing") from None
        try:
            RunSpec.from_dict(config["spec"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RunDamaged(f"{path} holds no valid run spec ({type(err).__name__}: {err})") from None
        return config

    def read_spec(self) -> RunSpec:
        return RunSpec.from_dict(self.read_config()["spec"])

    def check_spec(self, spec: RunSpec) -> None:
        """RunConflict if the folder holds another run than `spec` (more steps are allowed)."""
        old, new = self.read_spec().identity(), spec.identity()
        diff = [f"{k}: {old.get(k)} there, {new[k]} asked" for k in new if old.get(k) != new[k]]
        if diff:
            raise RunConflict(f"{self.dir} holds another run ({', '.join(diff)}); "
                              f"use another --out or delete that folder")

    def read_status(self) -> dict:
        """status.json; {} if there is none. Never raises: an unreadable or non-object file gives
        {"status": "damaged", "reason": what is wrong}."""
        try:
            return self.checked_status()
        except RunDamaged as err:
            return {"status": "damaged", "reason": str(err)}

    def checked_status(self) -> dict:
        """status.json checked; {} if there is none; RunDamaged if it is unreadable or invalid."""
        path = self.dir / STATUS
        try:
            status = _read_object(path)
        except FileNotFoundError:
            return {}
        if status.get("status") not in WRITTEN:
            raise RunDamaged(f"{path} has status {status.get('status')!r}, "
                             f"not running, done or failed")
        for name in ("step", "checkpoint_step", "history_rows"):
            value = status.get(name, 0 if name != "step" else None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RunDamaged(f"{path} has no valid {name} ({value!r})")
        if not isinstance(status.get("warnings", []), list):
            raise RunDamaged(f"{path}: 'warnings' is not a list")
        return status

    def read_history(self, validate_against_status: bool = True) -> list[dict]:
        """history.csv's rows ({column: float}, "step" an int); [] if there is none.

        RunDamaged (naming the file and line) when a row is cut short or holds a non-number.
        Checked against status.json by default: the rows it records are kept (later ones are
        from a session that stopped before updating it), fewer rows, or a finished run whose
        last row is not its final step, is damage.
        """
        rows = self._parse_history()
        if not validate_against_status:
            return rows
        status = self.checked_status()
        return self._history_upto(rows, status.get("history_rows"), status.get("step", 0),
                                  f"{self.dir / STATUS} (step {status.get('step', 0)})",
                                  finished=status.get("status") == "done")

    def _parse_history(self) -> list[dict]:
        path = self.dir / HISTORY
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as err:
            raise RunDamaged(f"{path} is unreadable ({err})") from None
        if text and not text.endswith("\n"):
            raise RunDamaged(f"{path} is cut mid-row at line {text.count(chr(10)) + 1} "
                             f"(no line end)")
        lines = list(csv.reader(io.StringIO(text)))
        if not lines:
            return []
        header = lines[0]
        if not header or header[0] != "step":
            raise RunDamaged(f"{path} line 1: the header does not start with 'step' ({header[:3]})")
        rows, previous = [], -1
        for number, cells in enumerate(lines[1:], start=2):
            if len(cells) != len(header):
                raise RunDamaged(f"{path} line {number}: {len(cells)} cells, the header has "
                                 f"{len(header)} (a cut or damaged row)")
            try:
                row = {k: float(v) for k, v in zip(header, cells) if v != ""}
                step = int(cells[0])
            except ValueError as err:
                raise RunDamaged(f"{path} line {number}: not a number ({err})") from None
            if step <= previous:
                raise RunDamaged(f"{path} line {number}: step {step} after step {previous}")
            row["step"], previous = step, step
            rows.append(row)
        return rows

    def _history_upto(self, rows, count, step, authority, finished=False) -> list[dict]:
        """The first `count` rows (the ones `authority` recorded) up to `step`, or where `count`
        is unknown (folders written before it was recorded) the rows up to `step`. Rows past
        `step` in an unfinished run were written by a session stopped between its writes
        (the history before the checkpoint): they are cut on resume, not damage."""
        path = self.dir / HISTORY
        if count is not None and len(rows) < count:
            raise RunDamaged(f"{path} has {len(rows)} rows but {authority} was written "
                             f"after {count} (rows lost)")
        kept = rows if count is None else rows[:count]
        if kept and kept[-1]["step"] > step:
            if finished:
                raise RunDamaged(f"{path} row {len(kept)} is at step {kept[-1]['step']}, after "
                                 f"{authority}")
            kept = [row for row in kept if row["step"] <= step]
        if finished and (not kept or kept[-1]["step"] != step):
            last = kept[-1]["step"] if kept else "no row"
            raise RunDamaged(f"{path} ends at step {last} but {authority} says the run "
                             f"finished at step {step}")
        return kept

    def load_checkpoint(self, map_location="cpu") -> dict:
        """model.pt, checked against the checksum it holds; RunDamaged if it is missing,
        cannot be loaded (e.g. truncated) or does not match its checksum."""
        path = self.dir / CHECKPOINT
        if not path.is_file():
            raise RunDamaged(f"{path} is missing")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:                      # torch raises OSError, RuntimeError, ...
            raise RunDamaged(f"{path} cannot be loaded (truncated or corrupt: "
                             f"{type(err).__name__}: {err})") from None
        if not isinstance(state, dict) or "checksum" not in state or "step" not in state:
            raise RunDamaged(f"{path} has no checksum or step (not written by this store)")
        stored = state.pop("checksum")
        if checksum(state) != stored:
            raise RunDamaged(f"{path} does not match its checksum (its bytes changed after "
                             f"it was written)")
        state["checksum"] = stored
        return state

    def read_metrics(self, current_only: bool = False) -> dict:
        """metrics.json; {} if there is none; RunDamaged if it is unreadable or not of the shape
        {"metrics": {name: {...}}, ...}. With `current_only`, {} where it scored another step
        than status.json's (a run extended or trained again since it was evaluated)."""
        path = self.dir / METRICS
        try:
            result = _read_object(path)
        except FileNotFoundError:
            return {}
        entries = result.get("metrics", {})
        if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
            raise RunDamaged(f"{path}: 'metrics' is not an object of objects")
        if current_only:
            step = self.checked_status().get("step")
            if result.get("trained_step", step) != step:
                return {}
        return result

    # ---- classification --------------------------------------------------------------------

    def state(self, spec: RunSpec) -> RunState:
        """Classify the folder for `spec` after checking every file it relies on.

        "new" (nothing there), "resumable" (interrupted, or done with fewer steps than asked),
        "done", "failed" (`message` = the reason) or "damaged" (`message` names the file and
        what is wrong). Raises RunConflict if the folder holds another run.
        """
        if not self.exists():
            return RunState(Status.NEW)
        try:
            if not (self.dir / CONFIG).exists() and not (self.dir / STATUS).exists():
                raise RunDamaged(f"{self.dir / CONFIG} is missing although the folder holds "
                                 f"{', '.join(sorted(p.name for p in self.dir.iterdir()))}")
            self.check_spec(spec)
            return self._classify(spec)
        except RunDamaged as err:
            return RunState(Status.DAMAGED, message=str(err))

    def _classify(self, spec: RunSpec) -> RunState:
        status = self.checked_status()
        has_checkpoint = (self.dir / CHECKPOINT).exists()
        if not status:                  # config written, stopped before the first status
            if has_checkpoint or (self.dir / HISTORY).exists():
                raise RunDamaged(f"{self.dir / STATUS} is missing although the folder holds "
                                 f"{CHECKPOINT if has_checkpoint else HISTORY}")
            return RunState(Status.NEW)
        kind, step = status["status"], status["step"]
        expected = status.get("checkpoint_step", step if kind != "failed" else 0)
        checkpoint = self.load_checkpoint() if has_checkpoint else None
        if checkpoint is None and (expected > 0 or (kind == Status.DONE and step > 0)):
            raise RunDamaged(f"{self.dir / CHECKPOINT} is missing but {self.dir / STATUS} "
                             f"records a checkpoint at step {max(expected, step)}")
        held = checkpoint["step"] if checkpoint else 0
        if held < expected or (kind == "done" and held != step):
            raise RunDamaged(f"{self.dir / CHECKPOINT} holds step {held} but {self.dir / STATUS} "
                             f"records step {expected if held < expected else step}")
        rows = self._parse_history()
        self._history_upto(rows, status.get("history_rows"), step,
                           f"{self.dir / STATUS} (step {step})", finished=kind == "done")
        history = self._history_upto(rows, checkpoint.get("history_rows") if checkpoint else 0,
                                     held, f"{self.dir / CHECKPOINT} (step {held})")
        warnings = list(status.get("warnings", []))
        if kind == Status.FAILED:
            reason = status.get("reason", "")
            if status.get("damaged"):                 # the folder has been mended since
                cause = reason.split("; rerun with")[0].removeprefix("damaged run folder: ")
                reason = (f"its folder was damaged ({cause}); it "
                          f"passes every check now: --retry-failed resumes it from step {held} "
                          f"without retraining")
            return RunState(Status.FAILED, step, reason, warnings, checkpoint, history)
        if kind == Status.DONE and step >= spec.steps:
            return RunState(Status.DONE, step, "", warnings, checksum=checkpoint["checksum"])
        return RunState(Status.RESUMABLE, held, "", warnings, checkpoint, history)

    # ---- evaluation ------------------------------------------------------------------------

    def fresh_metrics(self, size: str, seed: int, checkpoint: dict | None = None) -> dict:
        """The entries {name: {"values": ...}} of metrics.json that scored the current
        checkpoint (`checkpoint`, else model.pt checked) at this size and seed; {} if none.
        RunDamaged if metrics.json or model.pt is damaged."""
        checkpoint = checkpoint or self.load_checkpoint()
        previous = self.read_metrics()
        wanted = {"size": size, "seed": seed, **scored(checkpoint)}
        if any(previous.get(k) != v for k, v in wanted.items()):
            return {}
        return {n: r for n, r in previous.get("metrics", {}).items() if "values" in r}


def scored(checkpoint: dict) -> dict:
    """What metrics.json records of the weights it scored."""
    return {"trained_step": checkpoint["step"], "checkpoint": checkpoint["checksum"]}


def is_finished(spec: RunSpec, out) -> bool:
    """True if `spec`'s folder under `out` holds that run, checked and trained to `spec.steps`
    (False for a conflicting or damaged folder: training reports those)."""
    try:
        return RunView.of(spec, out).state(spec).kind == Status.DONE
    except RunConflict:
        return False
