"""What every method shares: the loss convention, the Method base class, parameter handling.

Loss convention (one for every method, so that β means the same thing everywhere):
reconstruction is summed over pixels and averaged over the batch; KL is summed over latent
dimensions and averaged over the batch. β multiplies that KL.

The reconstruction term is a run parameter, `recon`, of every method that has one
(RECON_CONVENTIONS): `bernoulli-sum` (the default: BCE with logits summed over pixels),
`gaussian-sum` (squared error of the decoder output summed over pixels) or `mse-mean` (the
per-pixel mean squared error, the "MSE" of the L-VAE paper's summary: `gaussian-sum` divided by
the number of pixels). A method whose reconstruction term is its own (σ-VAE learns its decoder's
variance) says why in `own_likelihood` and refuses `recon`.
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


def mse_mean_reconstruction(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over pixels and batch (per-pixel MSE)."""
    return (mean - x).pow(2).mean()


# A decoder likelihood -> its loss summed over pixels (evaluate's reconstruction metric).
RECONSTRUCTIONS = {"bernoulli": bernoulli_reconstruction, "gaussian": gaussian_reconstruction}
# The run parameter `recon` -> (the decoder's likelihood, the reconstruction term of the loss).
RECON_CONVENTIONS = {"bernoulli-sum": ("bernoulli", bernoulli_reconstruction),
                     "gaussian-sum": ("gaussian", gaussian_reconstruction),
                     "mse-mean": ("gaussian", mse_mean_reconstruction)}
DEFAULT_RECON = "bernoulli-sum"


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
    with which learning rate (e.g. L-VAE's `sigma_lr`). Every subclass gets the parameter
    `recon` (the reconstruction convention) unless it sets `own_likelihood`.
    """
    name: ClassVar[str] = ""
    params: ClassVar[dict] = {}
    ranges: ClassVar[dict] = {}
    own_likelihood: ClassVar[str] = ""        # why `recon` does not apply; "" where it does
    reconstruction_loss: ClassVar[str] = "bernoulli"   # the likelihood config.json records

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.own_likelihood and "recon" not in cls.params:
            cls.params = {**cls.params, "recon": DEFAULT_RECON}

    def __init__(self, **params):
        super().__init__()
        unknown = set(params) - set(self.params)
        if unknown:
            raise self.unknown_parameters(unknown)
        self.hparams = {k: type(v)(params.get(k, v)) if v is not None else params.get(k)
                        for k, v in self.params.items()}
        for key, value in self.hparams.items():
            self.check_range(key, value)
        if "recon" in self.hparams:
            if self.hparams["recon"] not in RECON_CONVENTIONS:
                raise ValueError(f"{self.name}.recon must be one of "
                                 f"{', '.join(RECON_CONVENTIONS)}, got {self.hparams['recon']!r}")
            self.reconstruction_loss = RECON_CONVENTIONS[self.hparams["recon"]][0]
        self.context: TrainContext | None = None

    @classmethod
    def unknown_parameters(cls, names) -> ValueError:
        """The error for parameters `names` that the method does not have."""
        if "recon" in names and cls.own_likelihood:
            return ValueError(f"method {cls.name!r} takes no recon parameter: "
                              f"{cls.own_likelihood}")
        valid = ", ".join(sorted(cls.params)) or "none"
        return ValueError(f"method {cls.name!r} has no parameter "
                          f"{', '.join(map(repr, sorted(names)))}; "
                          f"valid parameters: {valid}")

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
        """The reconstruction term of the run's convention (`recon`) for the decoder output."""
        return RECON_CONVENTIONS[self.hparams["recon"]][1](x, out.logits)

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

    @classmethod
    def history_summary(cls, rows: list[dict]) -> dict:
        """Given the whole logged history (host floats), what status.json should say about the
        method's own dynamics at the end of training (e.g. whether L-VAE's β̂ settled); {} if
        nothing."""
        return {}

    def optimised_with_model(self):
        """The method's parameters that the harness's Adam trains together with the network."""
        return list(self.parameters())

    def param_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups of `optimised_with_model`; `lr` is the run's learning rate."""
        params = self.optimised_with_model()
        return [{"params": params, "lr": lr}] if params else []
