"""Evaluate a finished run: encode once, run the metrics of `metrics/`, write `metrics.json`.

    result = evaluate(data, model=model, names="all", seed=0, size="default")
    write_metrics(run_dir, result)

The representation scored is the posterior mean. All metrics of one evaluation share one table
of codes (`metrics.Codes`), so an observation is encoded at most once per evaluation, whichever
metrics ask for it. `reconstruction` needs the model itself: the test-sample reconstruction loss
and negative ELBO in the suite's loss convention.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
import torch

import metrics
from bench.io import write_json
from methods.base import bernoulli_reconstruction, kl_normal

RECONSTRUCTION = "reconstruction"
RECONSTRUCTION_SIZES = {"default": 10000, "quick": 2000}


def make_representation(model: torch.nn.Module, data, device=None, batch_size: int = 1024):
    """`represent(observations) -> np.ndarray (n, D)`: the posterior mean of `model`'s encoder,
    fp32, in eval mode under `torch.inference_mode`, `batch_size` images per forward pass on
    `device` (default: the model's)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()

    def represent(observations: torch.Tensor) -> np.ndarray:
        codes = []
        with torch.inference_mode():
            for i in range(0, len(observations), batch_size):
                x = data.to_float(observations[i:i + batch_size].to(device, non_blocking=True))
                codes.append(model.encode(x)[0].float())
        return torch.cat(codes).cpu().numpy()
    return represent


def reconstruction(model: torch.nn.Module, data, seed: int = 0, num_images: int = 10000,
                   batch_size: int = 1024, device=None) -> dict:
    """Bernoulli reconstruction loss (BCE with logits summed over pixels) of one posterior sample
    per image, KL to N(0, I) (summed over latent dims) and their sum, the negative ELBO; each
    averaged over `num_images` images drawn uniformly with RandomState(seed)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    random_state = np.random.RandomState(seed)
    factors = data.sample_factors(num_images, random_state)
    generator = torch.Generator(device=device).manual_seed(seed)
    rec_sum = kl_sum = 0.0
    with torch.inference_mode():
        for i in range(0, num_images, batch_size):
            observations = data.observations_from_factors(factors[i:i + batch_size], random_state)
            x = data.to_float(observations.to(device, non_blocking=True))
            mu, logvar = model.encode(x)
            z = mu + torch.randn(mu.shape, generator=generator, device=device) * torch.exp(0.5 * logvar)
            n = len(x)
            rec_sum += float(bernoulli_reconstruction(x, model.decode(z))) * n
            kl_sum += float(kl_normal(mu, logvar)) * n
    return {"reconstruction_loss": rec_sum / num_images, "kl": kl_sum / num_images,
            "negative_elbo": (rec_sum + kl_sum) / num_images}


def valid_names() -> list[str]:
    return metrics.available() + [RECONSTRUCTION]


def evaluate(data, represent=None, names="all", *, model=None, seed: int = 0,
             size: str = "default", device=None, batch_size: int = 1024,
             chunk_size: int = 4096) -> dict:
    """Run the metrics `names` ("all", or a list from `valid_names()`) on `data`.

    The representation is `represent`, or the posterior mean of `model` when `represent` is
    None; `reconstruction` (included in "all" when a model is given) needs the model. Returns
    per metric its values, parameters, observations (requested / newly encoded; reconstruction
    encodes its own sample) and seconds (encoding / the rest), plus the seed, the size name,
    the images encoded for the metrics in all and library versions. Reconstruction's encoding
    is counted as its arithmetic.
    """
    if size not in metrics.SIZES:
        raise ValueError(f"unknown size {size!r}; valid sizes: {', '.join(metrics.SIZES)}")
    if names == "all":
        names = metrics.available() + ([RECONSTRUCTION] if model is not None else [])
    unknown = [n for n in names if n not in valid_names()]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(map(repr, unknown))}; "
                         f"valid metrics: {', '.join(valid_names())}")
    if model is None and (represent is None or RECONSTRUCTION in names):
        raise ValueError("a model is needed for the reconstruction metric and when no "
                         "represent function is given")
    if represent is None:
        represent = make_representation(model, data, device, batch_size)
    codes = metrics.Codes(data, represent, chunk_size=chunk_size)
    results = {}
    for name in names:
        start, encoding_before = time.perf_counter(), codes.seconds
        requested, encoded = codes.requested, codes.encoded
        if name == RECONSTRUCTION:
            params = {"num_images": RECONSTRUCTION_SIZES[size]}
            values = reconstruction(model, data, seed, device=device, batch_size=batch_size,
                                    **params)
            observations = {"requested": params["num_images"], "encoded": params["num_images"]}
        else:
            params = metrics.get(name).params(size)
            values = metrics.compute(name, data, represent, seed=seed, size=size, codes=codes)
            observations = {"requested": codes.requested - requested,
                            "encoded": codes.encoded - encoded}
        encoding = codes.seconds - encoding_before
        total = time.perf_counter() - start
        results[name] = {"values": values, "params": params, "observations": observations,
                         "seconds": {"encoding": encoding, "arithmetic": total - encoding}}
    return {"metrics": results, "seed": seed, "size": size,
            "encoding": {"images": codes.encoded, "seconds": codes.seconds},
            "versions": versions()}


def versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__, "platform": platform.platform()}


def write_metrics(run_dir, result: dict) -> Path:
    """Write `result` to `run_dir/metrics.json` atomically."""
    path = Path(run_dir) / "metrics.json"
    write_json(path, result)
    return path
