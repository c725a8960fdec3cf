"""Faults injected into a run folder or its writes, one function per fault: every one leaves a
folder that resumes or a run that fails with one line naming the problem and the cheapest fix,
and the grid goes on."""
import csv

import pytest
import torch

from disentbench.bench import session as session_module
from disentbench.bench.cli import main
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunView, Status
from disentbench.bench.train import train
from tests.helpers import tiny_dsprites_like


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def spec(steps=8, **kw):
    return RunSpec("vae", "tiny", kw.pop("seed", 0), steps, batch_size=8, log_every=2,
                   checkpoint_every=kw.pop("checkpoint_every", 4), **kw)


def steps_of(run_dir) -> list[int]:
    with open(run_dir / "history.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_ctrl_c_between_the_history_and_the_checkpoint_write_leaves_a_run_that_resumes(
        tmp_path, data, monkeypatch):
    """The interruption lands after history.csv holds rows up to step 8 and before model.pt
    (still at step 4) is replaced: the rows past the checkpoint are cut on resume."""
    write = session_module.write_checkpoint
    calls = []

    def interrupted_on_the_second_checkpoint(run_dir, state):
        calls.append(state["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(run_dir, state)
    monkeypatch.setattr(session_module, "write_checkpoint", interrupted_on_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(spec(), tmp_path, data=data, device="cpu", keep_checkpoints=True)
    run = spec().run_dir(tmp_path)
    assert steps_of(run)[-1] == 8                      # the history got ahead of model.pt
    state = RunView(run).state(spec())
    assert (state.kind, state.step, [r["step"] for r in state.history]) == (
        Status.RESUMABLE, 4, [2, 4])
    monkeypatch.setattr(session_module, "write_checkpoint", write)
    resumed = train(spec(), tmp_path, data=data, device="cpu", keep_checkpoints=True)
    assert (resumed.status, resumed.trained) == ("done", 4)
    straight = train(spec(), tmp_path / "straight", data=data, device="cpu",
                     keep_checkpoints=True)
    assert RunView(run).read_history() == RunView(straight.run_dir).read_history()


def test_a_seed_folder_holding_only_a_stray_file_fails_its_run_with_one_line(tmp_path, data):
    run = spec().run_dir(tmp_path)
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    result = train(spec(), tmp_path, data=data, device="cpu")
    assert result.status == "failed" and "config.json is missing" in result.reason
    assert "notes.txt" in result.reason and (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]       # nothing written


def test_an_unreadable_run_folder_fails_that_run_and_the_grid_goes_on(tmp_path, monkeypatch,
                                                                      capsys):
    """(Root ignores permissions, so the refusal is injected where the folder is read.)"""
    blocked = spec(steps=20, seed=0, checkpoint_every=10).run_dir(tmp_path)
    exists = RunView.exists

    def permission_denied(self):
        if self.dir == blocked:
            raise PermissionError(13, "Permission denied", str(self.dir))
        return exists(self)
    monkeypatch.setattr(RunView, "exists", permission_denied)
    code = main(["--methods", "vae", "--datasets", "tiny", "--seeds", "2", "--profile", "smoke",
                 "--jobs", "1", "--metrics", "none", "--ablation", "none",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "cannot read its folder" in out and "Permission denied" in out
    assert "fix its permissions" in out
    assert RunView(spec(steps=20, seed=1).run_dir(tmp_path)).read_status()["status"] == "done"


def test_a_mended_damaged_folder_advises_retry_failed_not_a_retrain(tmp_path, data):
    run = spec().run_dir(tmp_path)
    train(spec(steps=4), tmp_path, data=data, device="cpu", keep_checkpoints=True)
    history = (run / "history.csv").read_text()
    (run / "history.csv").write_text(history[:-3])                   # cut mid-row
    damaged = train(spec(), tmp_path, data=data, device="cpu")
    assert damaged.status == "failed" and "--repair" in damaged.reason
    (run / "history.csv").write_text(history)                        # the user restores it
    state = RunView(run).state(spec())
    assert state.kind == Status.FAILED and "--retry-failed" in state.message
    assert "--repair" not in state.message and "cut mid-row" in state.message
    retried = train(spec(), tmp_path, data=data, device="cpu", retry_failed=True)
    assert (retried.status, retried.trained) == ("done", 4)          # no retraining from 0


def test_a_missing_model_pt_is_named_missing(tmp_path, data):
    result = train(spec(steps=4), tmp_path, data=data, device="cpu")
    (result.run_dir / "model.pt").unlink()
    state = RunView(result.run_dir).state(spec(steps=4))
    assert state.kind == Status.DAMAGED and "model.pt is missing" in state.message
    assert "holds step 0" not in state.message


def test_a_full_disk_fails_the_run_with_no_space_left_on_device(tmp_path, data, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full)
    result = train(spec(steps=4), tmp_path, data=data, device="cpu")
    assert result.status == "failed"
    assert "no space left on device" in result.reason and "model.pt" in result.reason
    assert "enforce fail" not in result.reason


def test_asking_for_fewer_steps_than_a_run_holds_says_so(tmp_path, capsys):
    common = ["--methods", "vae", "--datasets", "tiny", "--profile", "smoke", "--jobs", "1",
              "--metrics", "none", "--ablation", "none", "--out", str(tmp_path)]
    assert main(common) == 0
    capsys.readouterr()
    assert main([*common, "--steps", "10"]) == 0
    assert "holds 20 steps, more than the 10 asked" in capsys.readouterr().out
