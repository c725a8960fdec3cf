"""Latent traversals, reconstructions and KL per latent dimension of a trained model, rendered
at evaluation time into its run folder (the report lays them out without loading the dataset).

    render(model, data, run_dir, seed=0, likelihood="bernoulli")

writes `traversals.png` (one row per latent dimension, sorted by KL, largest first: the decoded
mean as that dimension sweeps ±2 around a real image's posterior mean, the others held; Higgins
et al. 2017, Fig. 7), `reconstructions.png` (images over their reconstructions from the posterior
mean) and `kl_per_dim.json` (KL(q(z_j|x) || N(0, 1)) per dimension, mean over images, nats).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from disentbench.bench.io import atomic_path, write_json
from disentbench.methods.base import kl_per_dim

SWEEP = np.linspace(-2.0, 2.0, 9)      # offsets from the posterior mean


def render(model, data, run_dir, seed: int = 0, likelihood: str = "bernoulli",
           num_images: int = 512, num_reconstructions: int = 8) -> list[Path]:
    """Write the traversal grid, the reconstructions and the KL per dimension of `model` into
    `run_dir`; the images are drawn uniformly with RandomState(`seed`) (the first one is the
    traversal's). Returns the written paths."""
    run_dir = Path(run_dir)
    device = next(model.parameters()).device
    factors = data.sample_factors(num_images, np.random.RandomState(seed))
    x = data.to_float(data.observations_from_factors(factors).to(device))
    model.eval()
    with torch.inference_mode():
        mu, logvar = model.encode(x)
        kl = kl_per_dim(mu, logvar).cpu().numpy().astype(float)
        order = np.argsort(-kl, kind="stable")
        codes = mu[:1].repeat(len(order) * len(SWEEP), 1)
        for row, dim in enumerate(order):
            codes[row * len(SWEEP):(row + 1) * len(SWEEP), dim] += torch.as_tensor(
                SWEEP, dtype=codes.dtype, device=device)
        swept = _mean(model.decode(codes), likelihood)
        rebuilt = _mean(model.decode(mu[:num_reconstructions]), likelihood)
    traversal = _grid(swept.cpu().numpy(), len(order), len(SWEEP))
    originals = x[:num_reconstructions].cpu().numpy()
    pairs = _grid(np.concatenate([originals, rebuilt.cpu().numpy()]), 2, len(originals))
    labels = [f"z{dim}  KL {kl[dim]:.2f}" for dim in order]
    name = " / ".join(run_dir.parts[-3:])               # dataset / label / seed<k>
    written = [
        _save(traversal, run_dir / "traversals.png", labels, [f"{s:+g}" for s in SWEEP],
              f"{name}: each row sweeps one latent dimension\n"
              f"±2 around an image's posterior mean (rows by KL, nats)"),
        _save(pairs, run_dir / "reconstructions.png", ["image", "reconstruction"], [],
              f"{name}: reconstructions from the posterior mean"),
    ]
    write_json(run_dir / "kl_per_dim.json", {"kl": kl.tolist(), "order_by_kl": order.tolist(),
                                             "images": num_images, "seed": seed,
                                             "unit": "nats, mean over images"})
    return written + [run_dir / "kl_per_dim.json"]


def _mean(output: torch.Tensor, likelihood: str) -> torch.Tensor:
    """The decoder's mean image in [0, 1]: sigmoid of Bernoulli logits, a clamped Gaussian mean."""
    return torch.sigmoid(output) if likelihood == "bernoulli" else output.clamp(0, 1)


def _grid(images: np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """(rows*cols, C, H, W) in [0, 1] -> one (H', W', C) image with `pad` white pixels between."""
    n, c, h, w = images.shape
    sheet = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, c))
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        sheet[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = image.transpose(1, 2, 0)
    return sheet


def _save(sheet: np.ndarray, path: Path, row_labels, col_labels, title: str) -> Path:
    rows, cols = len(row_labels), max(len(col_labels), 1)
    height, width = sheet.shape[:2]
    fig = Figure(figsize=(1.2 + width / 60, 0.8 + height / 60))   # no pyplot: no backend switch
    ax = fig.subplots()
    ax.imshow(sheet[..., 0] if sheet.shape[2] == 1 else sheet, cmap="gray", vmin=0, vmax=1)
    ax.set_yticks((np.arange(rows) + 0.5) * height / rows, row_labels, fontsize=8)
    ax.set_xticks((np.arange(len(col_labels)) + 0.5) * width / cols, col_labels, fontsize=8)
    if col_labels:
        ax.set_xlabel("offset from the posterior mean", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(length=0)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path
