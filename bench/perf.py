"""Training throughput against a plain PyTorch loop and against the device's limit.

    python -m disentbench.bench.perf [--steps 30] [--rounds 5] [--method vae] [--dataset NAME]
                                     [--batch-size 64] [--device DEV] [--csv]

Cases (images/s, batch 64, median over alternating rounds so a busy machine slows all alike):
- `plain`:   the smallest correct fp32 training loop of the same network (one process);
- `harness`: the engine (bench/engine.py) with one run, fp32 (one process);
- `group10`: the engine with a seed group of 10 as one stacked model, fp32, all members' images;
- `bf16`:    the harness with bf16 autocast, channels-last on a CPU (bench/precision.py);
- `default`: what the runner uses by default on this device, all its processes together
  (`backend.default_jobs`: one single-thread process per core on a CPU, 4 sharing a GPU), in
  `auto` precision, in seed groups of `estimate.AUTO_SIZE` where `estimate.should_group` says so
  (a GPU; the runner also confirms it there with a timed probe).
`flops_per_image` counts one training step (forward + backward; torch.utils.flop_counter) per
image; `fraction_of_peak` = images/s × that / the peak `peak_flops` assumes for the case's
precision (its rule is in its docstring; empty where the device is unknown).
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

import joblib
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from disentbench.bench import data as datasets
from disentbench.bench import precision as precisions
from disentbench.bench.backend import default_jobs
from disentbench.bench.data.base import GroundTruthData
from disentbench.bench.engine import Engine, pick_device
from disentbench.bench.estimate import AUTO_SIZE, should_group
from disentbench.bench.nets import VAE
from disentbench.bench.spec import RunSpec
from disentbench.methods.base import reparameterise

GROUP = 10
H200_BF16_FLOPS = 790e12            # dense bf16 matrix rate measured on an H200 (issue 12)
H200_FP32_FLOPS = 67e12             # H100/H200 SXM fp32 (non-tensor) rate, NVIDIA's datasheet


def synthetic_data(n: int = 4096) -> GroundTruthData:
    """dSprites-shaped binary images (content does not change the speed)."""
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 1, 64, 64, generator=generator) > 0.9).to(torch.uint8)
    return GroundTruthData("synthetic", ["index"], [n], images, pixel_max=1)


def load_data(name: str | None, device) -> GroundTruthData:
    return (datasets.load(name) if name else synthetic_data()).to(device)


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
        z = reparameterise(mu, logvar, torch.randn_like(mu))
        logits = self.model.decoder(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum() / len(x)
        self.optimizer.zero_grad(set_to_none=True)
        (rec + kl).backward()
        self.optimizer.step()


def specs(data, method: str, batch_size: int, seeds: int = 1) -> list[RunSpec]:
    return [RunSpec(method=method, dataset=data.name, seed=seed, steps=10**9,
                    batch_size=batch_size, log_every=10**9) for seed in range(seeds)]


def stepper(data, device, method: str, batch_size: int, precision: str, group: int):
    """(step function, images per step) of the harness, or of a seed group when group > 1."""
    return Engine(specs(data, method, batch_size, group), data, device,
                  precision).step, batch_size * group


def _seconds(step, steps: int, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(data, device, method="vae", steps=30, rounds=5, batch_size=64) -> dict[str, float]:
    """Median images/s of the in-process cases over `rounds` alternating rounds; each case runs
    about `steps` × `batch_size` images a round (a group takes steps / 10 steps)."""
    cases = {"plain": (PlainLoop(data, device, batch_size).step, batch_size),
             "harness": stepper(data, device, method, batch_size, "fp32", 1),
             "group10": stepper(data, device, method, batch_size, "fp32", GROUP),
             "bf16": stepper(data, device, method, batch_size, "bf16", 1)}
    for step, _ in cases.values():                    # warm-up (allocator, kernels)
        step()
    rates = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (step, images) in cases.items():
            n = max(1, steps * batch_size // images)
            rates[name].append(n * images / _seconds(step, n, device))
    return {name: statistics.median(r) for name, r in rates.items()}


def default_configuration(device) -> dict:
    """The runner's default on `device`: processes, threads each, precision and group size."""
    device = torch.device(device)
    group = AUTO_SIZE if should_group(device, AUTO_SIZE) else 1
    processes = default_jobs(device)
    return {"processes": processes, "threads": 1 if device.type == "cpu" else None,
            "precision": precisions.resolve("auto", device), "group": group}


def _default_rate(barrier, device, dataset, method, batch_size, config, steps) -> float:
    """Images/s of one process of the default configuration, measured after `barrier` (None:
    measured at once) so that all its processes measure side by side."""
    device = torch.device(device)
    data = load_data(dataset, device)
    step, images = stepper(data, device, method, batch_size, config["precision"],
                           config["group"])
    step()
    if barrier is not None:
        barrier.wait()
    n = max(1, steps // config["group"])
    return n * images / _seconds(step, n, device)


def _worker(barrier, results, device, dataset, method, batch_size, config, steps):
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    results.put(_default_rate(barrier, device, dataset, method, batch_size, config, steps))


def measure_default(device, dataset=None, method="vae", steps=30, batch_size=64) -> float:
    """Aggregate images/s of the default configuration: its processes started side by side
    (one process is measured in this one, with its thread count)."""
    config = default_configuration(device)
    args = (str(device), dataset, method, batch_size, config, steps)
    if config["processes"] == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(config["threads"] or threads)
        try:
            return _default_rate(None, *args)
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(config["processes"]), context.Queue()
    workers = [context.Process(target=_worker, args=(barrier, results, *args))
               for _ in range(config["processes"])]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def flops_per_image(data, device, method="vae", batch_size=64) -> float:
    """FLOPs of one training step (forward and backward) per image, as FlopCounterMode counts
    them (convolutions and matrix products; the elementwise rest is negligible)."""
    step, images = stepper(data, device, method, batch_size, "fp32", 1)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / images


def cpu_clock_hz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    except OSError:
        pass
    return float("nan")


def peak_flops(device, precision: str) -> float:
    """The peak FLOP/s assumed (NaN where unknown).

    CPU: usable cores × the clock in /proc/cpuinfo × FLOP per cycle per core: fp32 64 with
    AVX-512 (two 16-lane FMA units), 32 with AVX2; bf16 1024 with AMX (one 16×32 tile multiply
    per cycle), 128 with AVX512_BF16 (two 32-pair dot products), else the fp32 rate.
    CUDA: H100/H200 790 TFLOP/s bf16 (the dense rate measured on an H200), 67 TFLOP/s fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if "H100" in name or "H200" in name:
            return H200_BF16_FLOPS if precision == "bf16" else H200_FP32_FLOPS
        return float("nan")
    flags = precisions.cpu_flags()
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 8
    if precision == "bf16":
        per_cycle = 1024 if "amx_bf16" in flags else 128 if "avx512_bf16" in flags else per_cycle
    return joblib.cpu_count() * cpu_clock_hz() * per_cycle


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m disentbench.bench.perf",
                                description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="steps per round (default 30)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--method", default="vae", help="method the harness trains (default vae)")
    p.add_argument("--dataset", default=None, help="a registered dataset (default: synthetic)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--device", default=None)
    p.add_argument("--csv", action="store_true",
                   help="print only CSV: case,device,images_per_s,flops_per_image,fraction_of_peak")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    data = load_data(args.dataset, device)
    rates = measure(data, device, args.method, args.steps, args.rounds, args.batch_size)
    rates["default"] = measure_default(device, args.dataset, args.method,
                                       args.steps * args.rounds, args.batch_size)
    flops = flops_per_image(data, device, args.method, args.batch_size)
    config = default_configuration(device)
    case_precision = {"bf16": "bf16", "default": config["precision"]}
    peaks = {name: peak_flops(device, case_precision.get(name, "fp32")) for name in rates}
    if args.csv:
        print("case,device,images_per_s,flops_per_image,fraction_of_peak")
        for name, rate in rates.items():
            fraction = rate * flops / peaks[name]
            print(f"{name},{device},{rate:.1f},{flops:.4g},"
                  f"{'' if fraction != fraction else f'{fraction:.3g}'}")
        return 0
    print(f"device {device}, {torch.get_num_threads()} threads, data {data.name}, batch "
          f"{args.batch_size}, median of {args.rounds} rounds x {args.steps} steps; "
          f"{flops / 1e9:.4f} GFLOP per image per training step")
    print(f"default: {config['processes']} process(es) x {config['threads'] or 'all'} "
          f"thread(s), {config['precision']}, seed groups of {config['group']}")
    for name, rate in rates.items():
        print(f"  {name:8s} {rate:9.1f} images/s  {rate * flops / peaks[name]:8.2%} of an assumed "
              f"peak of {peaks[name] / 1e12:.3g} TFLOP/s")
    print(f"  harness / plain = {rates['harness'] / rates['plain']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
