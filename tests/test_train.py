"""The training harness: outputs, determinism, resume, failure isolation."""
import csv
import json
import math

import pytest
import torch

from disentbench import methods
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunConflict
from disentbench.bench.train import train
from disentbench.methods.base import Method, kl_normal
from tests.helpers import Single, steps_without_host_sync, tiny_dsprites_like


def read_history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def spec(method="l-vae", steps=20, **kw):
    return RunSpec(method=method, dataset="tiny", seed=kw.pop("seed", 0), steps=steps,
                   log_every=kw.pop("log_every", 5), **kw)


def test_run_writes_every_output(tmp_path, data):
    result = train(spec(), tmp_path, data=data, device="cpu")
    assert result.status == "done" and result.step == 20
    run = tmp_path / "runs" / "tiny" / "l-vae" / "seed0"
    assert result.run_dir == run
    for name in ("config.json", "history.csv", "model.pt", "status.json"):
        assert (run / name).is_file(), name
    rows = read_history(run)
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert {"loss", "recon", "kl", "sigma0", "sigma1", "beta_hat"} <= set(rows[0])
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done" and status["step"] == 20
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["method"] == "l-vae" and config["spec"]["lr"] == 1e-4


def test_lvae_sigmas_move_away_from_one(tmp_path, data):
    train(spec(steps=100, log_every=50), tmp_path, data=data, device="cpu")
    last = read_history(tmp_path / "runs" / "tiny" / "l-vae" / "seed0")[-1]
    # reconstruction (hundreds of nats) >> 1 pushes σ0 up; β̂ follows.
    assert float(last["sigma0"]) > 1.0
    assert float(last["beta_hat"]) != pytest.approx(1.0, abs=1e-3)


def test_same_seed_same_history_and_other_seed_differs(tmp_path, data):
    train(spec(), tmp_path / "a", data=data, device="cpu")
    train(spec(), tmp_path / "b", data=data, device="cpu")
    train(spec(seed=1), tmp_path / "c", data=data, device="cpu")
    a, b = (read_history(tmp_path / x / "runs/tiny/l-vae/seed0") for x in "ab")
    c = read_history(tmp_path / "c/runs/tiny/l-vae/seed1")
    assert a == b
    assert a != c


def test_resume_continues_exactly(tmp_path, data):
    """10 steps kept with their optimiser state, then extended to 20 from the checkpoint ==
    20 steps in one go."""
    train(spec(steps=20, checkpoint_every=10), tmp_path / "straight", data=data, device="cpu")
    train(spec(steps=10, checkpoint_every=10), tmp_path / "resumed", data=data, device="cpu",
          keep_checkpoints=True)
    result = train(spec(steps=20, checkpoint_every=10), tmp_path / "resumed", data=data,
                   device="cpu")
    assert result.status == "done"
    straight = read_history(tmp_path / "straight/runs/tiny/l-vae/seed0")
    resumed = read_history(tmp_path / "resumed/runs/tiny/l-vae/seed0")
    assert resumed == straight


def test_finished_run_is_skipped(tmp_path, data):
    train(spec(), tmp_path, data=data, device="cpu")
    again = train(spec(), tmp_path, data=data, device="cpu")
    assert (again.status, again.step, again.trained) == ("done", 20, 0)


def test_different_run_in_the_folder_is_a_conflict(tmp_path, data):
    train(spec(), tmp_path, data=data, device="cpu")
    with pytest.raises(RunConflict, match="batch_size"):
        train(spec(batch_size=32), tmp_path, data=data, device="cpu")


class Exploding(Method):
    """Finite for 7 steps, then NaN."""
    name = "exploding-test"

    def loss(self, x, out, step):
        kl = kl_normal(out.mu, out.logvar)
        scale = torch.tensor(float("nan") if step >= 7 else 1.0)
        return {"loss": kl * scale, "recon": kl, "kl": kl}


def test_non_finite_loss_fails_the_run_without_raising(tmp_path, data, monkeypatch):
    monkeypatch.setitem(methods._REGISTRY, "exploding-test", Exploding)
    result = train(spec("exploding-test"), tmp_path, data=data, device="cpu")
    assert result.status == "failed"
    assert "non-finite loss at or before step 10" in result.reason
    assert "no checkpoint had been written" in result.reason
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "non-finite" in status["reason"]
    assert [int(r["step"]) for r in read_history(result.run_dir)] == [5, 10]
    assert not (result.run_dir / "model.pt").exists()      # no checkpoint of a NaN state


def test_exception_in_a_run_is_recorded(tmp_path, data, monkeypatch):
    class Broken(Method):
        name = "broken-test"

        def loss(self, x, out, step):
            raise RuntimeError("boom")

    monkeypatch.setitem(methods._REGISTRY, "broken-test", Broken)
    result = train(spec("broken-test"), tmp_path, data=data, device="cpu")
    assert result.status == "failed" and result.reason == "RuntimeError: boom"
    assert "Traceback" in (result.run_dir / "error.txt").read_text()


def test_run_spec_rejects_impossible_values():
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        spec(steps=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        spec(lr=0.0)
    assert RunSpec("beta-vae", "tiny", 0, 5, params=(("beta", 8.0),)).label == "beta-vae-beta=8"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", methods.available())
def test_on_cuda_a_training_step_never_waits_for_the_host(method, precision):
    """No host sync per step; values reach the host only on logging steps (`row`)."""
    cuda = torch.device("cuda")
    data = tiny_dsprites_like().to(cuda)
    assert data.images.is_cuda and data.images.dtype == torch.uint8     # resident, as uint8
    trainer = Single(RunSpec(method=method, dataset="tiny", seed=0, steps=10, batch_size=8),
                      data, cuda, precision)
    trainer.step()                                             # warm-up outside the check
    terms = steps_without_host_sync(trainer.step, 3)
    assert math.isfinite(trainer.row(terms)["loss"])


@pytest.mark.parametrize("method", ["control-vae", "dynamic-vae"])
def test_the_step_count_schedules_read_is_a_device_tensor_that_advances_and_resumes(method,
                                                                                    data):
    """ControlVAE's and DynamicVAE's set-points follow the engine's step count (a device
    tensor, so that a captured step would not freeze it), also after a resume."""
    params = ({"c_every": 2, "c_step": 0.5, "c_start": 0.5} if method == "control-vae" else
              {"c_period": 2, "c_ramp_steps": 1, "c_step": 0.5, "c_start": 0.5})
    run = spec(method, steps=6, batch_size=4, params=tuple(params.items()))
    single = Single(run, data)
    assert single.step_count.device == single.device and single.step_count.dtype == torch.long
    rows = [single.row(single.step()) for _ in range(3)]
    state = single.state_dict()
    rows += [single.row(single.step()) for _ in range(3)]
    want = [float(single.method.setpoint_at(step)) for step in range(6)]
    assert [row["C"] for row in rows] == pytest.approx(want)
    assert want[0] < want[-1]                                  # the schedule did move
    resumed = Single(run, data)
    resumed.load_state_dict(state)
    assert int(resumed.step_count) == 3
    assert [resumed.row(resumed.step())["C"] for _ in range(3)] == pytest.approx(want[3:])
