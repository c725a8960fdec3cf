import math

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .base import Method, kl_normal

LOG_SIGMA_MIN = -6.0        # Rybkin et al.: log σ is softly limited to at least −6 for stability


def softclip(value: torch.Tensor, minimum: float) -> torch.Tensor:
    """A smooth max(value, minimum): minimum + softplus(value − minimum)."""
    return minimum + F.softplus(value - minimum)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """−log N(x; mean, σ²) summed over pixels (log σ and ½ log 2π terms included), batch mean."""
    per_pixel = (0.5 * ((x - mean) * torch.exp(-log_sigma)).pow(2) + log_sigma
                 + 0.5 * math.log(2 * math.pi))
    return per_pixel.sum() / x.shape[0]


class GaussianDecoderVAE(Method):
    """A VAE whose decoder is a Gaussian N(x̂, σ²I) with one shared σ; `out.logits` is the mean x̂.

    loss = −log N(x; x̂, σ²I) + KL (β = 1), the NLL summed over pixels, never averaged (averaging
    works very poorly, as Rybkin et al. stress). The logged "recon" is that NLL, including the
    log σ and ½ log 2π terms, so it can be negative; "sigma" is the σ used.
    """
    reconstruction_loss = "gaussian"
    own_likelihood = ("its reconstruction term is the Gaussian NLL with a decoder σ it learns "
                      "(or sets to the RMS error), so a fixed reconstruction convention does not "
                      "apply; use the method without recon")

    def decoder_log_sigma(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """log σ before the soft clip."""
        raise NotImplementedError

    def loss(self, x, out, step):
        log_sigma = softclip(self.decoder_log_sigma(x, out.logits), LOG_SIGMA_MIN)
        rec, kl = gaussian_nll(x, out.logits, log_sigma), kl_normal(out.mu, out.logvar)
        return {"loss": rec + kl, "recon": rec, "kl": kl, "sigma": log_sigma.detach().exp()}


@register("sigma-vae")
class SigmaVAE(GaussianDecoderVAE):
    """σ-VAE (Rybkin et al. 2021, "Simple and effective VAE training with calibrated decoders"):
    σ is one learned scalar, stored as log σ (0 at the start: σ = 1, as in the authors' code) and
    trained by the network's optimiser; log σ is soft-clipped at −6.
    """

    def __init__(self, **params):
        super().__init__(**params)
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def decoder_log_sigma(self, x, mean):
        return self.log_sigma


@register("sigma-vae-optimal", in_all=False)
class OptimalSigmaVAE(GaussianDecoderVAE):
    """Optimal σ-VAE (Rybkin et al. 2021): σ is set analytically to its maximum-likelihood value for
    the batch, σ* = sqrt(mean over images and pixels of (x − x̂)²), the RMS error (then
    soft-clipped at log σ = −6). As in the authors' code σ* is not detached; at σ* the NLL's
    derivative in σ is zero, so this changes no gradient while the clip is inactive.
    """

    def decoder_log_sigma(self, x, mean):
        return 0.5 * (x - mean).pow(2).mean().log()
