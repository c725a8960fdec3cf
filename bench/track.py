"""Experiment trackers (`--track tensorboard|mlflow`): each run's history rows and final metrics
mirrored to TensorBoard event files or an MLflow file store under the results folder.

    tracker = Tracker("tensorboard", out)        # or "mlflow"; needs the [track] extra
    tracker.log_row("dsprites-procedural/vae/seed0", {"step": 100, "loss": 812.5, "kl": 3.1})
    tracker.log_metrics("dsprites-procedural/vae/seed0", {"mig/discrete_mig": 0.02}, step=100)
    tracker.close()

TensorBoard: one event-file folder per run, `<out>/tensorboard/<run>/` (`tensorboard --logdir
<out>/tensorboard`). MLflow: the SQLite store `<out>/mlflow.db` (MLflow 3 keeps its plain-file
store `mlruns/` for old data only; `mlflow ui --backend-store-uri sqlite:///<out>/mlflow.db`),
experiment "disentbench", one MLflow run per run, found again by its tag `disentbench.run` when
a run resumes. The run folders stay the record; a tracker only mirrors
them, so a Tracker per worker process is safe: each run is written by the one process that
trains it.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from disentbench.extras import require

KINDS = ("tensorboard", "mlflow")
EXPERIMENT = "disentbench"
RUN_TAG = "disentbench.run"


def store_uri(out) -> str:
    """The MLflow tracking URI of the results folder `out`."""
    return f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


class Tracker:
    """Mirror of run histories and metrics to `kind` ("tensorboard" or "mlflow") under `out`."""

    def __init__(self, kind: str, out):
        if kind not in KINDS:
            raise ValueError(f"unknown tracker {kind!r}; valid trackers: {', '.join(KINDS)}")
        self.kind, self.out = kind, Path(out)
        self._open: dict = {}          # run name -> SummaryWriter (tensorboard) or run id (mlflow)
        self._last_step: dict = {}     # mlflow run id -> the last history step it held when opened
        if kind == "tensorboard":
            self._tensorboard = require("torch.utils.tensorboard", "track",
                                        "--track tensorboard")
        else:
            mlflow = require("mlflow", "track", "--track mlflow")
            self._client = mlflow.tracking.MlflowClient(tracking_uri=store_uri(self.out))
            found = self._client.get_experiment_by_name(EXPERIMENT)
            self._experiment = (found.experiment_id if found else
                                self._client.create_experiment(EXPERIMENT))

    def log_row(self, run_name: str, row: dict) -> None:
        """One history row (its "step" and numeric columns) of `run_name`. A run resumed from a
        checkpoint logs its rows again from there: TensorBoard purges its events from the first
        step logged in this session on, MLflow skips the steps it already holds."""
        step = int(row["step"])
        handle = self._handle(run_name, step)
        if self.kind == "mlflow" and step <= self._last_step.get(handle, -1):
            return
        self._log(run_name, {k: v for k, v in row.items() if k != "step"}, step)

    def log_metrics(self, run_name: str, values: dict, step: int = 0) -> None:
        """Final metric values {"metric/key": value} of `run_name`, at training step `step`."""
        self._log(run_name, {f"metrics/{k}": v for k, v in values.items()}, step)

    def close(self) -> None:
        """Flush and close every open run."""
        for handle in self._open.values():
            if self.kind == "tensorboard":
                handle.close()
            else:
                self._client.set_terminated(handle)
        self._open.clear()

    def _log(self, run_name: str, values: dict, step: int) -> None:
        numbers = {k: float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(float(v))}
        handle = self._handle(run_name)
        if self.kind == "tensorboard":
            for key, value in numbers.items():
                handle.add_scalar(key, value, step)
            handle.flush()
        elif numbers:
            metrics = self._mlflow_entities(numbers, step)
            self._client.log_batch(handle, metrics=metrics)

    def _handle(self, run_name: str, step: int = 0):
        if run_name not in self._open:
            if self.kind == "tensorboard":
                self._open[run_name] = self._tensorboard.SummaryWriter(
                    str(self.out / "tensorboard" / run_name), purge_step=step)
            else:
                self._open[run_name] = self._mlflow_run(run_name)
        return self._open[run_name]

    def _mlflow_run(self, run_name: str) -> str:
        """The id of the MLflow run tagged `run_name` (a resumed run), else of a new one."""
        found = self._client.search_runs([self._experiment],
                                         filter_string=f"tags.`{RUN_TAG}` = '{run_name}'")
        if found:
            run_id = found[0].info.run_id
            history = self._client.get_metric_history(run_id, "loss")
            self._last_step[run_id] = max((m.step for m in history), default=-1)
            return run_id
        return self._client.create_run(self._experiment, run_name=run_name,
                                       tags={RUN_TAG: run_name}).info.run_id

    @staticmethod
    def _mlflow_entities(numbers: dict, step: int) -> list:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        return [Metric(key, value, now, step) for key, value in numbers.items()]


def mirror(out, kind: str, run_dirs) -> int:
    """Log the history rows and final metrics of the run folders `run_dirs` (under the results
    folder `out`) to `kind`; returns the number of runs mirrored. This is how `--track` works
    until the training loop calls `log_row` itself: after the grid, from the files."""
    out = Path(out)
    tracker = Tracker(kind, out)
    count = 0
    try:
        for run_dir in map(Path, run_dirs):
            name = run_dir.relative_to(out / "runs").as_posix()
            rows = _history(run_dir / "history.csv")
            for row in rows:
                tracker.log_row(name, row)
            values = _metric_values(run_dir / "metrics.json")
            if values:
                tracker.log_metrics(name, values, step=int(rows[-1]["step"]) if rows else 0)
            count += bool(rows or values)
    finally:
        tracker.close()
    return count


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _metric_values(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("metrics", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {f"{name}/{key}": value for name, entry in found.items() if isinstance(entry, dict)
            for key, value in entry.get("values", {}).items()}
