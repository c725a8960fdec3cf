"""L-VAE's learned β̂ against the equilibrium it chases, β̂* = √(L_R / KL), under each
reconstruction convention (`recon`), on procedural and real dSprites (docs/lvae_equilibrium.md).

    python -m disentbench.bench.lvae_study --out DIR [--steps 1000] [--batch-size 32] [--seeds 3]
                                           [--sigma-lr 0.05] [--lr 1e-4]

Trains `l-vae` with every convention of methods.base.RECON_CONVENTIONS and seeds 0..n-1, and
seed 0 with σ frozen (sigma_lr 0, the control), through the harness (run folders under
DIR/runs), on `dsprites-procedural` and on the real dSprites sub-grid
(../shared/data/dsprites/dsprites_downsampled.npz, 46,080 images of the official file; skipped
with the reason where absent), one thread, `--precision auto` (bf16 where the CPU computes it
natively). Writes DIR/lvae_study.csv (one row per run: final β̂, β̂*, ratios, L_R, KL, active
dimensions, whether β̂ settled and from which step) and DIR/lvae_equilibrium.png (final β̂
against β̂* per run, one panel per dataset).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from disentbench import methods
from disentbench.bench import data as datasets
from disentbench.bench.data.base import GroundTruthData
from disentbench.bench.data.dsprites import FACTOR_NAMES
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunView
from disentbench.bench.train import train
from disentbench.methods.base import RECON_CONVENTIONS
from disentbench.methods.l_vae import equilibrium_summary

REAL = (Path(os.environ.get("DISENTBENCH_SHARED",
                            Path(__file__).resolve().parents[1].parent / "shared"))
        / "data" / "dsprites" / "dsprites_downsampled.npz")   # the reference material's
REAL_NAME = "dsprites-real-subgrid"
COLOURS = {"bernoulli-sum": "tab:blue", "gaussian-sum": "tab:orange", "mse-mean": "tab:green"}


def real_dsprites(path: Path) -> tuple[GroundTruthData | None, str]:
    """The real dSprites sub-grid 3 × 6 × 10 × 16 × 16 (every 4th orientation, every 2nd
    position of the official file; ../shared/data/dsprites/README.md), or None and why not."""
    if not path.is_file():
        return None, f"{path} not found (the real dSprites sub-grid of ../shared/data)"
    with np.load(path, allow_pickle=True, encoding="latin1") as npz:
        images = torch.from_numpy(npz["imgs"][:, None].astype(np.uint8))
        sizes = [int(k) for k in npz["metadata"].item()["latents_sizes"]]
    return GroundTruthData(REAL_NAME, FACTOR_NAMES, sizes, images, pixel_max=1), ""


def summary_row(run_dir: Path, dataset: str, recon: str, seed: int, seconds: float) -> dict:
    """One run's final logged values and its equilibrium summary."""
    rows = RunView(run_dir).read_history()
    last, settled = rows[-1], equilibrium_summary(rows)
    return {"dataset": dataset, "recon": recon, "seed": seed, "step": int(last["step"]),
            "recon_term": last["recon"],
            **{k: last[k] for k in ("kl", "active_dims", "beta_hat", "beta_hat_star",
                                    "sigma0_sq_ratio", "sigma1_sq_ratio")},
            "settled": settled["beta_hat_settled"],
            "settled_from_step": settled["settled_from_step"], "seconds": round(seconds, 1),
            "run_dir": str(run_dir)}


def run(out: Path, data_sets: dict, seeds: int, steps: int, sigma_lr: float, batch_size: int,
        lr: float, precision: str) -> pd.DataFrame:
    """Train every (dataset, convention, seed) at `sigma_lr`, and seed 0 of each with σ frozen
    (sigma_lr 0: the VAE with that reconstruction term, the control for posterior collapse);
    return one summary row per run."""
    rows = []
    for name, data in data_sets.items():
        for recon in RECON_CONVENTIONS:
            for rate, seed in [(sigma_lr, seed) for seed in range(seeds)] + [(0.0, 0)]:
                params = methods.non_default("l-vae", {"recon": recon, "sigma_lr": rate})
                spec = RunSpec("l-vae", name, seed, steps, batch_size=batch_size, lr=lr,
                               params=tuple(params.items()), log_every=25,
                               checkpoint_every=steps)
                start = time.perf_counter()
                result = train(spec, out, data=data, device="cpu", precision=precision)
                seconds = time.perf_counter() - start
                if result.status == "failed":
                    raise RuntimeError(f"{spec.label} seed {seed} failed: {result.reason}")
                rows.append({"sigma_lr": rate,
                             **summary_row(result.run_dir, name, recon, seed, seconds)})
                print(f"{name} {recon} sigma_lr {rate:g} seed {seed}: β̂ "
                      f"{rows[-1]['beta_hat']:.3g}, β̂* {rows[-1]['beta_hat_star']:.3g}, KL "
                      f"{rows[-1]['kl']:.3g}, settled {rows[-1]['settled']} ({seconds:.0f} s)",
                      flush=True)
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Final β̂ against β̂* per run with σ learned, one panel per dataset, colour = convention;
    hollow marker: posterior collapsed (no active dimension at the last logged step)."""
    table = table[table["sigma_lr"] > 0]
    names = list(dict.fromkeys(table["dataset"]))
    fig = Figure(figsize=(4.2 * len(names), 3.9), layout="constrained")   # no pyplot
    axes = fig.subplots(1, len(names), squeeze=False)
    low = min(table["beta_hat"].min(), table["beta_hat_star"].min()) / 2
    high = max(table["beta_hat"].max(), table["beta_hat_star"].max()) * 2
    for ax, name in zip(axes[0], names):
        part = table[table["dataset"] == name]
        for recon, runs in part.groupby("recon", sort=False):
            collapsed = runs["active_dims"] == 0
            for hollow, group in ((False, runs[~collapsed]), (True, runs[collapsed])):
                if len(group):
                    ax.scatter(group["beta_hat_star"], group["beta_hat"], s=36,
                               facecolors="none" if hollow else COLOURS[recon],
                               edgecolors=COLOURS[recon],
                               label=f"{recon}{' (collapsed)' if hollow else ''}")
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--", label="β̂ = β̂*")
        ax.axhline(1, color="black", lw=0.8, ls=":")
        ax.axvline(1, color="black", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high),
               xlabel="β̂* = √(L_R / KL), last logged batch", ylabel="learned β̂ = σ0²/σ1², final")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m disentbench.bench.lvae_study",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the run folders, CSV and figure")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sigma-lr", type=float, default=0.05, help="l-vae.sigma_lr (σ's Adam lr)")
    p.add_argument("--lr", type=float, default=1e-4, help="the network's learning rate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--real", type=Path, default=REAL, help="the real dSprites sub-grid npz")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data_sets = {"dsprites-procedural": datasets.load("dsprites-procedural")}
    real, why = real_dsprites(args.real)
    if real is None:
        print(f"real dSprites skipped: {why}")
    else:
        data_sets[REAL_NAME] = real
    table = run(out, data_sets, args.seeds, args.steps, args.sigma_lr, args.batch_size, args.lr,
                args.precision)
    wall = time.perf_counter() - start
    table.to_csv(out / "lvae_study.csv", index=False)
    title = (f"L-VAE, {args.steps} steps, batch {args.batch_size}, lr {args.lr:g}, sigma_lr "
             f"{args.sigma_lr:g}, {args.seeds} seeds; hollow: posterior collapsed")
    plot(table, out / "lvae_equilibrium.png", title)
    print(table.drop(columns=["run_dir"]).to_string(index=False))
    print(f"wall {wall:.0f} s on 1 CPU thread ({torch.__version__}); {out / 'lvae_study.csv'}, "
          f"{out / 'lvae_equilibrium.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
