"""bench/traversals.py: the images and KL per dimension written into a run folder at evaluation."""
import json

import numpy as np
import torch
from PIL import Image

from disentbench.bench.evaluate import evaluate_run, load_model
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train
from disentbench.methods.base import kl_per_dim
from tests.helpers import tiny_dsprites_like


def test_evaluate_run_renders_traversals_of_a_trained_tiny_model(tmp_path):
    data = tiny_dsprites_like()
    spec = RunSpec("vae", "tiny", 0, 3, batch_size=8, latent_dim=4, log_every=3)
    result = train(spec, tmp_path, data=data, device="cpu")
    assert result.status == "done"
    evaluate_run(result.run_dir, data, ["mig"], size="quick")
    run = result.run_dir
    with Image.open(run / "traversals.png") as traversals, \
            Image.open(run / "reconstructions.png") as reconstructions:
        traversals.load(), reconstructions.load()
    assert traversals.height > 4 * 64 and traversals.width > 9 * 64      # 4 rows x 9 offsets
    assert reconstructions.width > 8 * 64 and reconstructions.height > 2 * 64

    saved = json.loads((run / "kl_per_dim.json").read_text())
    factors = data.sample_factors(saved["images"], np.random.RandomState(0))
    with torch.inference_mode():
        mu, logvar = load_model(run, data).encode(data.to_float(
            data.observations_from_factors(factors)))
    assert saved["kl"] == np.asarray(kl_per_dim(mu, logvar)).tolist()
    kl = np.asarray(saved["kl"])
    assert saved["order_by_kl"] == np.argsort(-kl, kind="stable").tolist()
    assert sorted(saved["order_by_kl"]) == [0, 1, 2, 3]
