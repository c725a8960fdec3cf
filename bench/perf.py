"""Training throughput: the harness's step against a plain PyTorch loop of the same network.

    python -m disentbench.bench.perf [--steps 30] [--rounds 5] [--method vae] [--dataset NAME] [--csv]

Both loops train the same conv VAE on the same uint8 data in this process on the current device;
they alternate in rounds and the median images/s of each is reported, so a busy machine slows
both alike. The plain loop is the smallest correct training loop: sample indices, gather,
convert, forward, BCE + KL, backward, Adam step.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from disentbench.bench import data as datasets
from disentbench.bench.data.base import GroundTruthData
from disentbench.bench.nets import VAE
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import Trainer, pick_device


def synthetic_data(n: int = 4096) -> GroundTruthData:
    """dSprites-shaped binary images (content does not change the speed)."""
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 1, 64, 64, generator=generator) > 0.9).to(torch.uint8)
    return GroundTruthData("synthetic", ["index"], [n], images, pixel_max=1)


class PlainLoop:
    def __init__(self, data: GroundTruthData, device, batch_size=64, latent_dim=10):
        torch.manual_seed(0)
        self.data, self.batch_size = data, batch_size
        self.model = VAE(data.num_channels, latent_dim).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.generator = torch.Generator(device=data.device).manual_seed(0)

    def step(self):
        index = torch.randint(len(self.data), (self.batch_size,), generator=self.generator,
                              device=self.generator.device)
        x = self.data._gather(index).float() / self.data.pixel_max
        mu, logvar = self.model.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.model.decoder(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum() / len(x)
        self.optimizer.zero_grad(set_to_none=True)
        (rec + kl).backward()
        self.optimizer.step()


def _images_per_s(step, steps: int, batch_size: int, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def measure(data, device, method="vae", steps=30, rounds=5, batch_size=64) -> dict[str, float]:
    """Median images/s of each case over `rounds` alternating rounds of `steps` steps."""
    plain = PlainLoop(data, device, batch_size)
    spec = RunSpec(method=method, dataset=data.name, seed=0, steps=10**9, batch_size=batch_size,
                   log_every=10**9)
    harness = Trainer(spec, data, device)
    cases = {"plain": plain.step, "harness": harness.step}
    for step in cases.values():                       # warm-up (allocator, kernels)
        for _ in range(3):
            step()
    rates = {name: [] for name in cases}
    for _ in range(rounds):
        for name, step in cases.items():
            rates[name].append(_images_per_s(step, steps, batch_size, device))
    return {name: statistics.median(r) for name, r in rates.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m disentbench.bench.perf", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="steps per round (default 30)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--method", default="vae", help="method the harness trains (default vae)")
    p.add_argument("--dataset", default=None, help="a registered dataset (default: synthetic)")
    p.add_argument("--device", default=None)
    p.add_argument("--csv", action="store_true", help="print only CSV: case,device,images_per_s")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    data = (datasets.load(args.dataset) if args.dataset else synthetic_data()).to(device)
    rates = measure(data, device, args.method, args.steps, args.rounds)
    if args.csv:
        print("case,device,images_per_s")
        for name, rate in rates.items():
            print(f"{name},{device},{rate:.1f}")
    else:
        print(f"device {device}, {torch.get_num_threads()} threads, data {data.name}, "
              f"batch 64, median of {args.rounds} rounds x {args.steps} steps")
        for name, rate in rates.items():
            print(f"  {name:8s} {rate:8.1f} images/s")
        print(f"  harness / plain = {rates['harness'] / rates['plain']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
