"""disent's BetaVae under PyTorch Lightning beside our `default` case, one sitting (issue 12).

    python -m disentbench.bench.perf_disent [--steps 30] [--rounds 3] [--warmup 3]
                                            [--network ours|disent] [--csv]

Issue 12's CPU target is `default` ≥ 2× disent's BetaVae on the same network and batch. The
`disent-betavae` case trains disent's `BetaVae` (beta 1; Bernoulli loss on logits summed over
pixels and averaged over the batch, `loss_reduction="mean_sum"`, as disentanglement_lib; Adam lr
1e-4; batch 64; 10 latents) the way disent's README trains it, on the same network as ours
(`--network ours`, the default: bench/nets.py's encoder and decoder in disent's encoder and
decoder interfaces) or on disent's own `EncoderConv64`/`DecoderConv64` (`--network disent`): a Lightning `Trainer` on the CPU (no logger, checkpoints, progress bar), a shuffled DataLoader of
dicts {"x_targ": (x,)}, in this process with its default threads. The images are
perf.synthetic_data(). Only batches after `--warmup` steps are timed (a callback stamps batch
starts). Rounds alternate with perf.measure_default, and the ratio default / disent is printed.

disent's encoder differs from bench/nets.py: its convolutions pad by 2, not 1 (maps 33-17-9-5
instead of 32-16-8-4), so its FC layer takes 1600 inputs instead of 1024 (0.108 instead of 0.097
GFLOP per image and training step), and (mu, logvar) come from one 256→20 layer instead of two
256→10 layers (the same products). The decoders are the same.

disent is not a dependency of this project. disent 0.8.0 needs `lightning` and, on the import path
of its frameworks (disent.dataset.data), torchvision, which must be built for the torch in use
(PyPI's torchvision does not load against the CPU-only torch 2.13.0 this suite installs). What
ran here (x86_64, Python 3.11): a venv with a torch and torchvision pair that load together on a
CPU, disent without its dependencies, Lightning, and this project's dependencies, then this
module with PYTHONPATH at the checkout, so both cases run on that venv's torch:
    python -m venv venv-disent
    venv-disent/bin/pip install torch==2.14.1 torchvision==0.29.1
    venv-disent/bin/pip install --no-deps disent==0.8.0
    venv-disent/bin/pip install lightning requests -c <(echo torch==2.14.1) -e .
    venv-disent/bin/python -m disentbench.bench.perf_disent
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from disentbench.bench import perf

INSTALL = ("python -m venv venv-disent && venv-disent/bin/pip install torch==2.14.1 "
           "torchvision==0.29.1 && venv-disent/bin/pip install --no-deps disent==0.8.0 && "
           "venv-disent/bin/pip install lightning requests -c <(echo torch==2.14.1) -e . "
           "(a torch and torchvision that load together; see this module's docstring)")


def missing_disent() -> str | None:
    """None when disent's BetaVae and Lightning import, else one line: the problem and the fix."""
    try:
        import lightning  # noqa: F401
        from disent.frameworks.vae import BetaVae  # noqa: F401
    except Exception as error:   # ImportError, or torchvision's RuntimeError on a CPU torch
        return (f"disent's BetaVae cannot be imported ({type(error).__name__}: {error}); "
                f"install disent 0.8.0 beside this torch: {INSTALL}")
    return None


def our_network(x_shape, latent_dim: int):
    """bench/nets.py's encoder and decoder behind disent's interfaces (the encoder returns
    concat(mu, logvar), as disent's Gaussian encoders do)."""
    from disent.model import DisentDecoder, DisentEncoder

    from disentbench.bench.nets import Decoder, Encoder

    class OurEncoder(DisentEncoder):
        def __init__(self):
            super().__init__(x_shape=x_shape, z_size=latent_dim, z_multiplier=2)
            self.net = Encoder(x_shape[0], latent_dim)

        def encode(self, x):
            return torch.cat(self.net(x), dim=-1)

    class OurDecoder(DisentDecoder):
        def __init__(self):
            super().__init__(x_shape=x_shape, z_size=latent_dim)
            self.net = Decoder(x_shape[0], latent_dim)

        def decode(self, z):
            return self.net(z)
    return OurEncoder(), OurDecoder()


def betavae(latent_dim: int = 10, channels: int = 1, network: str = "ours"):
    """disent's BetaVae, configured as disentanglement_lib, on our network or on disent's
    EncoderConv64/DecoderConv64."""
    from disent.frameworks.vae import BetaVae
    from disent.model import AutoEncoder
    from disent.model.ae import DecoderConv64, EncoderConv64
    torch.manual_seed(0)
    x_shape = (channels, 64, 64)
    if network == "ours":
        encoder, decoder = our_network(x_shape, latent_dim)
    else:
        encoder = EncoderConv64(x_shape=x_shape, z_size=latent_dim, z_multiplier=2)
        decoder = DecoderConv64(x_shape=x_shape, z_size=latent_dim)
    model = AutoEncoder(encoder=encoder, decoder=decoder)
    return BetaVae(model=model, cfg=BetaVae.cfg(optimizer="adam", optimizer_kwargs={"lr": 1e-4},
                                                recon_loss="bce", loss_reduction="mean_sum",
                                                beta=1.0))


def lightning_rate(module, data, steps: int = 30, warmup: int = 3,
                   batch_size: int = 64) -> tuple[float, float]:
    """(images/s of the `steps` steps after `warmup` steps, FLOPs per image of one training step)
    of a Lightning Trainer on the CPU training `module` on `data`, fed as disent's DataLoaders
    feed it: shuffled batches of {"x_targ": (x,)}."""
    import lightning

    class Clock(lightning.Callback):
        """Stamps every batch start and the last batch end; counts the FLOPs of the first step."""

        def __init__(self):
            self.starts, self.end, self.counter = [], None, FlopCounterMode(display=False)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if not self.starts:
                self.counter.__enter__()
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if len(self.starts) == 1:
                self.counter.__exit__(None, None, None)
            self.end = time.perf_counter()

    images = data.images.float() / data.pixel_max
    loader = torch.utils.data.DataLoader([{"x_targ": (x,)} for x in images],
                                         batch_size=batch_size, shuffle=True, num_workers=0)
    clock = Clock()
    trainer = lightning.Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps,
                                logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[clock])
    trainer.fit(module, loader)
    seconds = clock.end - clock.starts[warmup]
    return steps * batch_size / seconds, clock.counter.get_total_flops() / batch_size


def measure(steps: int = 30, rounds: int = 3, warmup: int = 3, batch_size: int = 64,
            network: str = "ours") -> dict:
    """Median images/s of `disent-betavae` and `default` over alternating rounds, and the FLOPs
    per image of each network: {case: (images/s, FLOPs per image)}."""
    data = perf.synthetic_data()
    disent, default, flops = [], [], None
    for _ in range(rounds):
        rate, flops = lightning_rate(betavae(channels=data.num_channels, network=network), data,
                                     steps, warmup, batch_size)
        disent.append(rate)
        default.append(perf.measure_default("cpu", steps=steps, batch_size=batch_size))
    return {"disent-betavae": (statistics.median(disent), flops),
            "default": (statistics.median(default),
                        perf.flops_per_image(data, torch.device("cpu"), batch_size=batch_size))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m disentbench.bench.perf_disent",
                                description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per round (default 30)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed Lightning steps before each disent round (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--network", default="ours", choices=["ours", "disent"],
                   help="the network disent trains: ours (bench/nets.py; default) or disent's "
                        "EncoderConv64/DecoderConv64 (0.108 GFLOP per image)")
    p.add_argument("--csv", action="store_true",
                   help="print only CSV: case,device,images_per_s,flops_per_image,fraction_of_peak")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be at least 1 (the first, untimed step counts FLOPs)")
    problem = missing_disent()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)   # no "GPU available" lines
    threads = torch.get_num_threads()
    results = measure(args.steps, args.rounds, args.warmup, args.batch_size, args.network)
    config = perf.default_configuration("cpu")
    precision = {"disent-betavae": "fp32", "default": config["precision"]}
    if args.csv:
        print("case,device,images_per_s,flops_per_image,fraction_of_peak")
    else:
        print(f"cpu, batch {args.batch_size}, median of {args.rounds} alternating rounds x "
              f"{args.steps} steps; disent: 1 process x {threads} thread(s), fp32, Lightning, "
              f"{args.network} network; "
              f"default: {config['processes']} process(es) x {config['threads']} thread(s), "
              f"{config['precision']}, seed groups of {config['group']}")
    for case, (rate, flops) in results.items():
        fraction = rate * flops / perf.peak_flops("cpu", precision[case])
        if args.csv:
            print(f"{case},cpu,{rate:.1f},{flops:.4g},"
                  f"{'' if fraction != fraction else f'{fraction:.3g}'}")
        else:
            print(f"  {case:15s} {rate:9.1f} images/s  {flops / 1e9:.4f} GFLOP per image  "
                  f"{fraction:7.2%} of the assumed peak")
    if not args.csv:
        ratio = results["default"][0] / results["disent-betavae"][0]
        print(f"  default / disent-betavae = {ratio:.2f} (issue 12's target: >= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
