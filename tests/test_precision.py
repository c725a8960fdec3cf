"""Training precision (bench/precision.py): the auto rule, bf16 training, the config record.

Tolerance: after 50 steps, the mean loss of the last 10 steps in bf16 is within 1% of fp32's
(measured: within 0.1%), while training has lowered the loss by more than 5%.
"""
import json

import pytest
import torch

from disentbench.bench import precision
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train
from tests.helpers import Single, tiny_dsprites_like

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def test_auto_uses_bf16_only_on_cpus_with_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert precision.resolve("auto", "cpu") == "bf16"
    assert precision.resolve(None, "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16"
    assert precision.resolve("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid: auto, bf16, fp32"):
        precision.resolve("fp16", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
def test_auto_on_cuda_follows_the_gpus_bf16_support():
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert precision.resolve("auto", "cuda") == expected


def test_bf16_forward_returns_fp32_and_losses_stay_fp32(data):
    trainer = Single(RunSpec(method="l-vae", dataset="tiny", seed=0, steps=5, batch_size=8),
                      data, CPU, "bf16")
    out = precision.forward(trainer.model, trainer.sample_batch(), "bf16")
    assert all(t.dtype == torch.float32 for t in out)
    terms = trainer.step()
    assert all(v.dtype == torch.float32 for v in terms.values())
    assert trainer.method.log_var.dtype == torch.float32


def test_bf16_training_reaches_the_fp32_loss(data):
    def losses(mode):
        trainer = Single(RunSpec(method="vae", dataset="tiny", seed=0, steps=50, batch_size=8),
                          data, CPU, mode)
        return torch.tensor([trainer.step()["loss"].item() for _ in range(50)])

    fp32, bf16 = losses("fp32"), losses("bf16")
    assert not torch.equal(fp32, bf16)                     # bf16 really ran
    assert fp32[-10:].mean() < 0.95 * fp32[:5].mean()      # and training moved
    assert bf16[-10:].mean() == pytest.approx(fp32[-10:].mean().item(), rel=0.01)


def test_precision_is_recorded_in_config_not_in_the_runs_identity(tmp_path, data):
    spec = RunSpec(method="vae", dataset="tiny", seed=0, steps=2, batch_size=8)
    assert train(spec, tmp_path, data=data, device="cpu", precision="bf16").status == "done"
    config = json.loads((spec.run_dir(tmp_path) / "config.json").read_text())
    assert config["precision"] == "bf16" and "precision" not in config["spec"]


def test_bf16_on_a_cpu_trains_channels_last_with_the_same_values(data, monkeypatch):
    """The layout is a speed choice only: channels-last bf16 follows contiguous bf16 within
    bf16 rounding, for single runs and seed groups (measured: equal here; oneDNN computes both
    in its own blocked layout)."""
    from disentbench.bench.engine import Engine
    specs = [RunSpec(method="beta-vae", dataset="tiny", seed=s, steps=10, batch_size=8)
             for s in (0, 1)]

    def run(group):
        trainer = (Engine(specs, data, CPU, "bf16") if group
                   else Single(specs[0], data, CPU, "bf16"))
        for _ in range(10):
            terms = trainer.step()
        single = trainer.members[0] if group else trainer
        return trainer.rows(terms)[0] if group else trainer.row(terms), single
    for group in (False, True):
        row, trainer = run(group)
        weight = trainer.model.encoder.features[2].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        assert trainer.sample_batch().is_contiguous(memory_format=torch.channels_last)
        with monkeypatch.context() as patch:
            patch.setattr(precision, "memory_format", lambda *_: torch.contiguous_format)
            plain, _ = run(group)
        assert row.keys() == plain.keys()
        for name in row:
            assert row[name] == pytest.approx(plain[name], rel=2e-2, abs=1e-3), (group, name)


def test_bf16_on_a_cpu_feeds_rgb_batches_channels_last():
    """(A one-channel batch is channels-last and contiguous at once: RGB tells them apart.)"""
    from disentbench.bench.data.base import GroundTruthData
    images = torch.randint(0, 256, (32, 3, 64, 64), dtype=torch.uint8)
    rgb = GroundTruthData("rgb", ["index"], [32], images, pixel_max=255)
    spec = RunSpec(method="vae", dataset="rgb", seed=0, steps=2, batch_size=4)
    x = Single(spec, rgb, CPU, "bf16").sample_batch()
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert Single(spec, rgb, CPU, "fp32").sample_batch().is_contiguous()
    Single(spec, rgb, CPU, "bf16").step()
