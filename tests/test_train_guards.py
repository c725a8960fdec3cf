"""The training guards, seen only through `train()` and the run folder's files: a non-finite
step never reaches the checkpoint, even when a checkpoint falls due after it and the loss is
finite again by the next logging step; a failed run resumes from its last good checkpoint with
its history cut back to it."""
import csv
import json

import pytest
import torch

from disentbench import methods
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train
from disentbench.methods.base import Method, kl_normal
from tests.helpers import tiny_dsprites_like


class OneBadStep(Method):
    """The VAE's loss, plus a constant that is NaN at one 0-based step (`bad_step`) only. The
    constant sends no gradient, so the weights stay finite and every other step is finite: only
    a guard that remembers the bad step can notice it at a later logging step."""
    name = "one-bad-step-test"
    bad_step = 2
    version = 1.0

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        spike = torch.tensor(float("nan") if step == self.bad_step else 0.0)
        return {"loss": rec + kl + spike, "recon": rec, "kl": kl,
                "version": torch.tensor(self.version)}


class NeverBad(OneBadStep):
    """The same run with the bad step fixed (the same name: the same run folder)."""
    bad_step = -1
    version = 2.0


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


@pytest.fixture
def registered(monkeypatch):
    def register(cls):
        monkeypatch.setitem(methods._REGISTRY, OneBadStep.name, cls)
    register(OneBadStep)
    return register


def spec(steps, log_every, checkpoint_every):
    return RunSpec(OneBadStep.name, "tiny", 0, steps, batch_size=8, latent_dim=4,
                   log_every=log_every, checkpoint_every=checkpoint_every)


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


def checkpoint_tensors(run_dir):
    """Every tensor in the checkpoint, by its key path."""
    found = {}

    def walk(value, path):
        if isinstance(value, torch.Tensor):
            found[path] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}/{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{path}/{i}")
    walk(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False), "")
    return found


def assert_same_checkpoint(a, b):
    ta, tb = checkpoint_tensors(a), checkpoint_tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"checkpoints differ in {different[:5]}"


def resume(spec_, out, data):
    """train() again on a failed run's folder (a failed run is retried only when asked)."""
    return train(spec_, out, data=data, device="cpu", retry_failed=True)


def test_a_bad_step_between_checkpoints_never_reaches_the_checkpoint(tmp_path, data, registered):
    """NaN at step 3 only; a checkpoint falls due at step 4, the next logging step is 5, where
    the loss is finite again. The run must fail and its checkpoint stay that of step 2."""
    result = train(spec(10, log_every=5, checkpoint_every=2), tmp_path / "bad", data=data,
                   device="cpu")
    assert result.status == "failed" and "non-finite" in result.reason
    assert status(result.run_dir)["status"] == "failed"
    good = train(spec(2, log_every=5, checkpoint_every=2), tmp_path / "good", data=data,
                 device="cpu", keep_checkpoints=True)      # the full state, as mid-run
    assert good.status == "done"
    assert_same_checkpoint(result.run_dir, good.run_dir)


def test_a_failed_run_resumes_from_its_last_good_checkpoint(tmp_path, data, registered,
                                                            monkeypatch):
    """NaN at step 5 (seen there, log_every 1): the checkpoint is step 4's and the history is
    cut back to step 4 on resume; with the bad step fixed, the resumed run keeps the old rows
    1-4 and continues exactly as a run that never failed."""
    monkeypatch.setattr(OneBadStep, "bad_step", 4)
    failed = train(spec(8, log_every=1, checkpoint_every=2), tmp_path / "run", data=data,
                   device="cpu")
    assert failed.status == "failed" and "step 5" in failed.reason
    rows = history(failed.run_dir)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5] and rows[-1]["loss"] != rows[-1]["loss"]

    registered(NeverBad)
    resumed = resume(spec(8, log_every=1, checkpoint_every=2), tmp_path / "run", data)
    assert resumed.status == "done" and status(resumed.run_dir)["status"] == "done"
    rows = history(resumed.run_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert [r["version"] for r in rows] == [1.0] * 4 + [2.0] * 4   # old rows kept, not redone

    straight = train(spec(8, log_every=1, checkpoint_every=2), tmp_path / "straight", data=data,
                     device="cpu")
    expected = history(straight.run_dir)
    for row in expected[:4]:
        row["version"] = 1.0
    assert rows == expected
    assert_same_checkpoint(resumed.run_dir, straight.run_dir)
