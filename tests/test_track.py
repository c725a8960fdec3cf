"""Experiment trackers: history rows and final metrics written to TensorBoard event files and
to an MLflow store (SQLite file), and read back. Each skips, with the reason, where its
package is absent."""
import sys

import pytest

from disentbench.bench.track import Tracker, store_uri
from disentbench.extras import MissingExtra

RUN = "dsprites-procedural/l-vae/seed0"
ROWS = [{"step": 25, "loss": 900.0, "kl": 1.5, "beta_hat": 1.0},
        {"step": 50, "loss": 850.0, "kl": 2.5, "beta_hat": 1.01}]
METRICS = {"mig/discrete_mig": 0.25, "irs/num_active_dims": 4, "modularity/x": float("nan")}


def write(kind, out):
    tracker = Tracker(kind, out)
    for row in ROWS:
        tracker.log_row(RUN, row)
    tracker.log_metrics(RUN, METRICS, step=50)
    tracker.close()


def test_tensorboard_event_files_read_back(tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install "
                                              "\"disentbench[track]\"")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    write("tensorboard", tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard" / RUN))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(25, 900.0), (50, 850.0)]
    assert [e.value for e in events.Scalars("beta_hat")] == pytest.approx([1.0, 1.01])
    assert [(e.step, e.value) for e in events.Scalars("metrics/mig/discrete_mig")] == [(50, 0.25)]
    assert "metrics/modularity/x" not in events.Tags()["scalars"]      # NaN is not logged


def test_mlflow_store_reads_back_and_a_resumed_run_continues(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="needs mlflow: pip install "
                                                  "\"disentbench[track]\"")
    write("mlflow", tmp_path)
    tracker = Tracker("mlflow", tmp_path)         # the run resumes and logs its rows again
    for row in [*ROWS, {"step": 75, "loss": 800.0}]:
        tracker.log_row(RUN, row)
    tracker.close()
    client = mlflow.tracking.MlflowClient(tracking_uri=store_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("disentbench").experiment_id])
    assert run.data.tags["disentbench.run"] == RUN
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in loss) == [(25, 900.0), (50, 850.0), (75, 800.0)]
    assert run.data.metrics["metrics/mig/discrete_mig"] == 0.25
    assert run.data.metrics["metrics/irs/num_active_dims"] == 4


def test_unknown_or_missing_tracker_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown tracker 'wandb'; valid trackers: tensorboard"):
        Tracker("wandb", tmp_path)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingExtra, match=r'--track mlflow needs mlflow.*disentbench\[track\]'):
        Tracker("mlflow", tmp_path)


def test_track_flag_mirrors_the_grid(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install "
                                              "\"disentbench[track]\"")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from disentbench.bench.cli import main
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["--datasets", "tiny", "--device", "cpu", "--profile", "smoke", "--jobs", "1",
                 "--methods", "vae", "--metrics", "mig", "--out", str(tmp_path),
                 "--track", "tensorboard"]) == 0
    events = EventAccumulator(str(tmp_path / "tensorboard" / "tiny" / "vae" / "seed0"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [10, 20]
    assert len(events.Scalars("metrics/mig/discrete_mig")) == 1


def test_track_flag_without_its_package_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from disentbench.bench.cli import main
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert main(["--datasets", "tiny", "--device", "cpu", "--methods", "vae", "--out",
                 str(tmp_path), "--track", "mlflow"]) == 2
    assert 'pip install "disentbench[track]"' in capsys.readouterr().err
