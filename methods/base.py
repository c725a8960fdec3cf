"""What every method shares: the loss convention, the Method base class, parameter handling.

Loss convention (one for every method, so that β means the same thing everywhere):
reconstruction is summed over pixels and averaged over the batch; KL is summed over latent
dimensions and averaged over the batch. β multiplies that KL.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Output(NamedTuple):
    """What the network gives a method's loss (bench/nets.py's VAE, or a member of a seed
    group)."""
    mu: torch.Tensor          # (n, D) posterior mean
    logvar: torch.Tensor      # (n, D) posterior log-variance
    z: torch.Tensor           # (n, D) reparameterised sample
    logits: torch.Tensor      # (n, C, H, W) decoder output (Bernoulli logits, or Gaussian mean)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = mu + noise · exp(logvar / 2), noise ~ N(0, I) (Kingma & Welling 2014, eq. 10)."""
    return mu + noise * torch.exp(0.5 * logvar)


def bernoulli_reconstruction(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) of a Bernoulli decoder: BCE with logits, summed over pixels, mean over batch."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def gaussian_reconstruction(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels, mean over batch (Gaussian decoder, σ² = 1/2, no constant)."""
    return (mean - x).pow(2).sum() / x.shape[0]


RECONSTRUCTIONS = {"bernoulli": bernoulli_reconstruction, "gaussian": gaussian_reconstruction}


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, mean over batch: shape (D,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).mean(0)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL to the standard normal prior, summed over latent dimensions, mean over batch."""
    return kl_per_dim(mu, logvar).sum()


@dataclass
class TrainContext:
    """What the harness tells a method about the run it is part of."""
    model: nn.Module
    latent_dim: int
    dataset_size: int
    steps: int
    sample_batch: Callable[[], torch.Tensor]     # a fresh float batch from the run's generator
    device: torch.device


class Method(nn.Module):
    """Base class. A method is an nn.Module holding its own learnable or controller state.

    Subclasses set `params` (tunable parameter -> default), `ranges` (parameter -> inclusive
    (low, high), None for unbounded; numbers must also be finite) and implement `loss`. Learnable
    parameters of the method are trained with the network by the harness's optimiser, unless
    `optimised_with_model` says otherwise (e.g. FactorVAE's discriminator); `param_groups` says
    with which learning rate (e.g. L-VAE's `sigma_lr`).
    """
    name: ClassVar[str] = ""
    params: ClassVar[dict] = {}
    ranges: ClassVar[dict] = {}
    reconstruction_loss: ClassVar[str] = "bernoulli"

    def __init__(self, **params):
        super().__init__()
        unknown = set(params) - set(self.params)
        if unknown:
            valid = ", ".join(sorted(self.params)) or "none"
            raise ValueError(f"method {self.name!r} has no parameter "
                             f"{', '.join(sorted(unknown))}; valid parameters: {valid}")
        self.hparams = {k: type(v)(params.get(k, v)) if v is not None else params.get(k)
                        for k, v in self.params.items()}
        for key, value in self.hparams.items():
            self.check_range(key, value)
        self.context: TrainContext | None = None

    @classmethod
    def check_range(cls, key: str, value) -> None:
        """Raise ValueError if `value` is non-finite or outside `ranges[key]`."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        low, high = cls.ranges.get(key, (None, None))
        if not math.isfinite(value) or (low is not None and value < low) or (
                high is not None and value > high):
            bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise ValueError(f"{cls.name}.{key} must be a finite number in {bounds}, got {value}")

    def bind(self, context: TrainContext) -> None:
        """Called once by the harness before it builds the optimiser and loads a checkpoint.

        Parameters that depend on the run (e.g. on `context.latent_dim`) are created here, on
        `context.device`.
        """
        self.context = context

    def reconstruction(self, x, out: Output) -> torch.Tensor:
        return RECONSTRUCTIONS[self.reconstruction_loss](x, out.logits)

    def loss(self, x: torch.Tensor, out: Output, step: int) -> dict[str, torch.Tensor]:
        """Named scalar terms including "loss" (what is minimised), "recon" and "kl"."""
        raise NotImplementedError

    def after_step(self, x: torch.Tensor, out: Output, terms: dict, step: int) -> None:
        """Updates outside the network's optimiser step (controllers, discriminators)."""

    def logged(self) -> dict[str, torch.Tensor]:
        """Values worth a history column (β, β̂, σ, C); vectors become name_0, name_1, ..."""
        return {}

    def diverged(self, row: dict) -> str | None:
        """Given a logged history row (host floats), a reason to stop the run as failed, or None."""
        return None

    @classmethod
    def history_warnings(cls, rows: list[dict]) -> list[str]:
        """Given the whole logged history (host floats), signs that the run finished but went
        wrong in a way particular to the method (e.g. L-VAE's σ running away); [] if none."""
        return []

    def optimised_with_model(self):
        """The method's parameters that the harness's Adam trains together with the network."""
        return list(self.parameters())

    def param_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups of `optimised_with_model`; `lr` is the run's learning rate."""
        params = self.optimised_with_model()
        return [{"params": params, "lr": lr}] if params else []
