"""Seconds per metric, split into encoding and the metric's own arithmetic, and encoder throughput.

    python -m disentbench.bench.perf_metrics [--quick] [--run RUN_DIR] [--metrics mig,dci-fast]
                                 [--dataset NAME] [--data-dir DIR] [--skip-model]

(a) a 10-dim conv VAE (freshly initialised, or the trained model of a run folder) on a dataset (default
`dsprites-procedural`), (b) a synthetic 10-dim code of the dSprites factor grid with no encoder,
(c) the encoder's throughput (images/s) on the device, as the evaluation encodes.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from disentbench import metrics
from disentbench.bench import data as datasets
from disentbench.bench.evaluate import evaluate, load_model, make_representation
from disentbench.bench.nets import VAE

FACTOR_SIZES = (3, 6, 40, 32, 32)


class FactorVectors:
    """The factor grid with observations = factor vectors (float64), as the oracle's data."""
    factor_sizes = FACTOR_SIZES

    def sample_factors(self, n, random_state):
        return np.stack([random_state.randint(k, size=n) for k in self.factor_sizes], axis=1)

    def observations_from_factors(self, factors, random_state):
        return np.asarray(factors, dtype=np.float64)


def synthetic_code(observations):
    """10 dims: the standardised factors, and a fixed rotation of them plus a deterministic
    wobble (a different sine of the factors per dim)."""
    k = np.array(FACTOR_SIZES, dtype=np.float64)
    z = (observations - (k - 1) / 2) / np.sqrt((k ** 2 - 1) / 12)
    rotation = np.linalg.qr(np.random.RandomState(1234).randn(5, 5))[0]
    wobble = np.sin(observations @ np.random.RandomState(7).randn(5, 5))
    return np.concatenate([z, z @ rotation.T + 0.3 * wobble], axis=1)


def encoder_throughput(model, data, device, batch_size=1024, batches=8) -> float:
    """Images/s of the evaluation's encoding path (`make_representation`: fp32, channels-last,
    batches of `batch_size`) on `data`'s images, copy to the host included."""
    represent = make_representation(model, data, device, batch_size)
    factors = data.sample_factors(batch_size * batches, np.random.RandomState(0))
    images = data.observations_from_factors(factors, np.random.RandomState(0))
    represent(images[:batch_size])
    start = time.perf_counter()
    represent(images)
    return batches * batch_size / (time.perf_counter() - start)


def report(title, result):
    print(f"\n{title}  (size={result['size']}, seed={result['seed']})")
    print(f"{'metric':26s} {'encoding s':>10s} {'arithmetic s':>12s} {'requested':>10s} {'encoded':>8s} {'images/s':>9s}")
    total_enc = total_arith = 0.0
    for name, entry in result["metrics"].items():
        s, o = entry["seconds"], entry["observations"]
        total_enc += s["encoding"]
        total_arith += s["arithmetic"]
        print(f"{name:26s} {s['encoding']:10.1f} {s['arithmetic']:12.1f} {o['requested']:10d} {o['encoded']:8d} "
              f"{o['encoded'] / s['encoding'] if s['encoding'] > 0.05 else float('nan'):9.0f}")
    print(f"{'total':26s} {total_enc:10.1f} {total_arith:12.1f}")
    for name, entry in result["metrics"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in entry["values"].items()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick sample sizes")
    parser.add_argument("--run", help="a finished run's folder (results/runs/<dataset>/<method>/"
                                      "seed<k>) whose model to use, else a fresh 10-dim model")
    parser.add_argument("--metrics", default="all", help="comma-separated names, or all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset", default="dsprites-procedural")
    parser.add_argument("--data-dir", default=None, help="where datasets live (see run_bench.py)")
    parser.add_argument("--skip-model", action="store_true", help="only the synthetic code")
    args = parser.parse_args(argv)
    names = metrics.available() if args.metrics == "all" else args.metrics.split(",")
    size = "quick" if args.quick else "default"
    device = torch.device(args.device)
    data = datasets.load(args.dataset, args.data_dir)
    data.to(device)
    torch.manual_seed(0)
    if args.run:
        model = load_model(args.run, data, device)
    else:
        model = VAE(channels=data.num_channels, latent_dim=10).to(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, "
          f"model: {'run ' + args.run if args.run else 'freshly initialised'}")
    print(f"encoder throughput: {encoder_throughput(model, data, device):.0f} images/s "
          f"(batch 1024, fp32, channels-last, {args.dataset})")
    report("(b) synthetic code, no encoder", evaluate(FactorVectors(), synthetic_code, names,
                                                      size=size))
    if not args.skip_model:
        report(f"(a) conv VAE on {args.dataset}", evaluate(data, names=names, model=model,
                                                          size=size, device=device))


if __name__ == "__main__":
    main()
