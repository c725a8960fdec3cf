"""Evaluate a finished run: encode once, run the metrics of `metrics/`, write `metrics.json`.

    result = evaluate(data, model=model, names="all", seed=0, size="default")
    write_metrics(run_dir, result)

The representation scored is the posterior mean. All metrics of one evaluation share one table
of codes (`metrics.Codes`), so an observation is encoded at most once per evaluation, whichever
metrics ask for it. `reconstruction` needs the model itself: the test-sample reconstruction loss
and negative ELBO in the suite's loss convention.
"""
from __future__ import annotations

import importlib.util
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
import torch

from disentbench import metrics
from disentbench.bench import traversals, udr_setting
from disentbench.bench.nets import VAE
from disentbench.bench.io import write_json
from disentbench.bench.store import METRICS, RunDamaged, RunView, scored
from disentbench.methods.base import RECONSTRUCTIONS, kl_normal, reparameterise

RECONSTRUCTION = "reconstruction"
# Metrics that need no ground-truth factors (they run on CelebA too).
FACTOR_FREE = ("unsupervised", RECONSTRUCTION)
# Left out of the CPU default: hundreds of thousands of encoder passes (β-VAE and FactorVAE
# scores) or minutes of sklearn boosting (reference DCI) per model on a 2-core CPU; dci-fast
# (about 2 s per model at the quick sizes) is left out to keep the README's 100-run job within
# its 20-minute budget.
CPU_EXPENSIVE = ("beta-vae", "factor-vae", "dci", "dci-fast")
RECONSTRUCTION_SIZES = {"default": 10000, "quick": 2000}
# Which way is better for each key of `reconstruction` (None: not ranked).
RECONSTRUCTION_DIRECTIONS = {"reconstruction_loss": metrics.LOWER, "negative_elbo": metrics.LOWER,
                             "squared_error": metrics.LOWER, "kl": None}
# Keys in the model's own likelihood: comparable only between models of one likelihood (σ-VAE's
# Gaussian values are not the Bernoulli methods'); squared_error compares every model.
IN_MODEL_LIKELIHOOD = ("reconstruction_loss", "negative_elbo")


def make_representation(model: torch.nn.Module, data, device=None, batch_size: int = 1024):
    """`represent(observations) -> np.ndarray (n, D)`: the posterior mean of `model`'s encoder,
    fp32, in eval mode under `torch.inference_mode`, `batch_size` images per forward pass on
    `device` (default: the model's). Model and images are put in channels-last layout, which
    runs the conv encoder 1.4x faster on this CPU in fp32 (codes equal to ~1e-8)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval().to(memory_format=torch.channels_last)

    def represent(observations: torch.Tensor) -> np.ndarray:
        codes = []
        with torch.inference_mode():
            for i in range(0, len(observations), batch_size):
                x = data.to_float(observations[i:i + batch_size].to(device, non_blocking=True))
                x = x.contiguous(memory_format=torch.channels_last)
                codes.append(model.encode(x)[0].float())
        return torch.cat(codes).cpu().numpy()
    return represent


def reconstruction(model: torch.nn.Module, data, seed: int = 0, num_images: int = 10000,
                   batch_size: int = 1024, device=None, likelihood: str = "bernoulli") -> dict:
    """Reconstruction loss in the model's likelihood (Bernoulli: BCE with logits; Gaussian: the
    suite's squared error; both summed over pixels) of one posterior sample per image, KL to
    N(0, I) (summed over latent dims), their sum (the negative ELBO), and the squared error of
    the decoder's mean (sigmoid of the logits for Bernoulli), comparable across likelihoods;
    each averaged over `num_images` images drawn uniformly with RandomState(seed)."""
    if likelihood not in RECONSTRUCTIONS:
        raise ValueError(f"unknown likelihood {likelihood!r}; valid: {', '.join(RECONSTRUCTIONS)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    random_state = np.random.RandomState(seed)
    factors = data.sample_factors(num_images, random_state)
    generator = torch.Generator(device=device).manual_seed(seed)
    rec_sum = kl_sum = squared_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for i in range(0, num_images, batch_size):
            observations = data.observations_from_factors(factors[i:i + batch_size], random_state)
            x = data.to_float(observations.to(device, non_blocking=True))
            mu, logvar = model.encode(x)
            z = reparameterise(mu, logvar, torch.randn(mu.shape, generator=generator, device=device))
            output = model.decode(z)
            n = len(x)
            mean = torch.sigmoid(output) if likelihood == "bernoulli" else output
            rec_sum = rec_sum + RECONSTRUCTIONS[likelihood](x, output).double() * n
            kl_sum = kl_sum + kl_normal(mu, logvar).double() * n
            squared_sum = squared_sum + (mean - x).pow(2).sum().double()
    rec_sum, kl_sum, squared_sum = float(rec_sum), float(kl_sum), float(squared_sum)  # one sync
    return {"reconstruction_loss": rec_sum / num_images, "kl": kl_sum / num_images,
            "negative_elbo": (rec_sum + kl_sum) / num_images,
            "squared_error": squared_sum / num_images}


def valid_names() -> list[str]:
    return metrics.available() + [RECONSTRUCTION]


def evaluate(data, represent=None, names="all", *, model=None, seed: int = 0,
             size: str = "default", device=None, batch_size: int = 1024,
             chunk_size: int = 4096, likelihood: str = "bernoulli") -> dict:
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
    valid = valid_names()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(map(repr, unknown))}; "
                         f"valid metrics: {', '.join(valid)}")
    if model is None and (represent is None or RECONSTRUCTION in names):
        raise ValueError("a model is needed for the reconstruction metric and when no "
                         "represent function is given")
    if represent is None:
        represent = make_representation(model, data, device, batch_size)
    codes = metrics.Codes(data, represent, chunk_size=chunk_size)
    results = {}
    for name in names:
        if not getattr(data, "has_factors", True) and name not in FACTOR_FREE:
            results[name] = {"skipped": f"{data.name} has no ground-truth factors"}
            continue
        start, encoding_before = time.perf_counter(), codes.seconds
        requested, encoded = codes.requested, codes.encoded
        try:
            results[name] = _one(name, data, model, represent, codes, seed, size, device,
                                 batch_size, likelihood)
        except Exception as err:                  # one failing metric does not lose the others
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        if name != RECONSTRUCTION:
            results[name]["observations"] = {"requested": codes.requested - requested,
                                             "encoded": codes.encoded - encoded}
        encoding = codes.seconds - encoding_before
        total = time.perf_counter() - start
        results[name]["seconds"] = {"encoding": encoding, "arithmetic": total - encoding}
    return {"metrics": results, "seed": seed, "size": size,
            "encoding": {"images": codes.encoded, "seconds": codes.seconds},
            "versions": versions()}


def _one(name, data, model, represent, codes, seed, size, device, batch_size,
         likelihood) -> dict:
    if name == RECONSTRUCTION:
        params = {"num_images": RECONSTRUCTION_SIZES[size], "likelihood": likelihood}
        values = reconstruction(model, data, seed, device=device, batch_size=batch_size, **params)
        return {"values": values, "params": params,
                "observations": {"requested": params["num_images"],
                                 "encoded": params["num_images"]}}
    values = metrics.compute(name, data, represent, seed=seed, size=size, codes=codes)
    return {"values": values, "params": metrics.get(name).params(size)}


def versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__, "platform": platform.platform()}


def write_metrics(run_dir, result: dict) -> Path:
    """Write `result` to `run_dir/metrics.json` atomically."""
    write_json(Path(run_dir) / METRICS, result)
    return Path(run_dir) / METRICS


def default_names(device) -> list[str]:
    """On a GPU every metric but the reference `dci` (`dci-fast` gives its values in seconds, not
    minutes of CPU boosting; it needs numba, the [fast] extra, and is left out without it); on a
    CPU every metric but the expensive ones (`CPU_EXPENSIVE`)."""
    expensive = CPU_EXPENSIVE if torch.device(device).type == "cpu" else ("dci",)
    if importlib.util.find_spec("numba") is None:
        expensive += ("dci-fast",)
    return [n for n in valid_names() if n not in expensive]


def load_model(run_dir, data, device="cpu", checkpoint: dict | None = None) -> torch.nn.Module:
    """The network of a run folder's checkpoint (checked by the store; `checkpoint` if already
    loaded), in eval mode on `device`."""
    store = RunView(run_dir)
    state = checkpoint or store.load_checkpoint()
    model = VAE(data.num_channels, store.read_spec().latent_dim).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


def pending_metrics(run_dir, names, *, size="default", seed=0, checkpoint=None) -> list[str]:
    """What `evaluate_run` would compute for `run_dir`: the metrics of `names` without a value
    for this size and seed that scored the run's current checkpoint (`checkpoint`: its "step"
    and "checksum" where already read, else model.pt is loaded; all of them where metrics.json
    or model.pt is damaged; evaluate_run then says which), and "udr_codes.npz" where `names`
    is not empty and the run's UDR codes (bench/udr_setting.py) did not encode that checkpoint."""
    try:
        view = RunView(run_dir)
        checkpoint = checkpoint or view.load_checkpoint()
        kept = view.fresh_metrics(size, seed, checkpoint)
        codes = udr_setting.codes_current(run_dir, checkpoint)
    except RunDamaged:
        kept, codes = {}, False
    pending = [n for n in names if n not in kept]
    return pending + ([udr_setting.UDR_CODES] if names and not codes else [])


def evaluate_run(run_dir, data, names, *, size="default", seed=0, device="cpu") -> dict:
    """Evaluate the finished run in `run_dir` and write its `metrics.json` and its UDR codes
    (`udr_codes.npz`, bench/udr_setting.py).

    Both record the training step and the checkpoint checksum they scored. Metrics already
    there for the same size, seed, step and checkpoint are kept, and so are UDR codes of that
    checkpoint; after the weights changed (a run extended or trained again) every metric and
    the codes are computed again, and so is an unreadable metrics.json (said in its "notes",
    which the runner prints on the run's line). A damaged checkpoint raises RunDamaged.
    """
    store = RunView(run_dir)
    checkpoint = store.load_checkpoint()
    notes = []
    try:
        kept = store.fresh_metrics(size, seed, checkpoint)
    except RunDamaged as err:
        notes.append(f"{err}; every metric computed again")
        kept = {}
    todo = [n for n in names if n not in kept]
    if todo:
        likelihood = store.read_config().get("reconstruction", "bernoulli")
        result = evaluate(data, names=todo, model=load_model(run_dir, data, device, checkpoint),
                          seed=seed, size=size, device=device, likelihood=likelihood)
        result["metrics"] = {**kept, **result["metrics"]}
        write_json(store.dir / METRICS, {**result, **scored(checkpoint),
                                         **({"notes": notes} if notes else {})})
        # a fresh copy of the model: evaluate() made its layout channels-last
        traversals.render(load_model(run_dir, data, device, checkpoint), data, run_dir,
                          seed=seed, likelihood=likelihood)
    if not udr_setting.codes_current(run_dir, checkpoint):
        udr_setting.write_codes(run_dir, load_model(run_dir, data, device, checkpoint), data,
                                checkpoint, device)
    return store.read_metrics()
