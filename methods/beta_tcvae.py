import math

import torch

from . import register
from .base import Method, kl_normal


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(z; mu, exp(logvar))."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def importance_weights(batch_size: int, dataset_size: int, stratified: bool,
                       device=None) -> torch.Tensor:
    """The (B, B) weights w_ij of q(z_i) ≈ Σ_j w_ij q(z_i | x_j); row i holds the code z_i.

    Minibatch-weighted sampling (Chen et al. 2018, Appendix C.1): every w_ij = 1 / (N·B).
    Minibatch stratified sampling (Appendix C.2), with M = B − 1 other samples: w_ii = 1/N for the
    code's own posterior, (N − M) / (N·M) for one other sample (here j = i + 1 mod B) and 1/M
    for the remaining M − 1; each row sums to 1.
    """
    n, b = dataset_size, batch_size
    if not stratified:
        return torch.full((b, b), 1.0 / (n * b), device=device)
    m = b - 1
    if m < 1 or n < m:
        raise ValueError(f"stratified sampling needs a batch of at least 2 and dataset_size "
                         f">= batch_size - 1 (got batch {b}, dataset {n})")
    own = torch.eye(b, dtype=torch.bool, device=device)
    stratum = own.roll(1, dims=1)                          # (i, i + 1 mod B)
    return torch.where(own, 1.0 / n, torch.where(stratum, (n - m) / (n * m), 1.0 / m))


@register("beta-tcvae")
class BetaTCVAE(Method):
    """β-TCVAE (Chen et al. 2018, Eq. 4): the KL term split into three and re-weighted,

        loss = L_R + α·I_q(z; n) + β·TC(z) + γ·Σ_j KL(q(z_j) || p(z_j)),
        I = E[log q(z|n) − log q(z)],  TC = E[log q(z) − Σ_j log q(z_j)],
        dim-wise KL = E[Σ_j log q(z_j) − log p(z)],

    each a single-sample estimate at this step's sampled codes, with log q(z) and log q(z_j)
    estimated over the minibatch by minibatch-weighted sampling (default) or minibatch stratified
    sampling (`stratified=true`), both with the dataset size N from the run. The log(N·B)
    constant of weighted sampling is kept, so the logged "tc" is the estimator as written in the
    paper. The "kl" column is the analytic KL (as for every method); the loss uses I + TC + dwKL,
    whose sum is the single-sample estimate of that KL.
    Defaults α = γ = 1 (Chen et al.'s β-TCVAE); β = 6, inside disentanglement_lib's sweep
    (1, 2, 4, 6, 8, 10).
    """
    params = {"beta": 6.0, "alpha": 1.0, "gamma": 1.0, "stratified": False}
    ranges = {"beta": (0.0, None), "alpha": (0.0, None), "gamma": (0.0, None)}

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        z, batch = out.z, out.z.shape[0]
        log_q_z_given_x = log_normal(z, out.mu, out.logvar).sum(1)
        log_p_z = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
        # pairwise[i, j, d] = log q(z_id | x_j)
        pairwise = log_normal(z[:, None], out.mu[None], out.logvar[None])
        log_w = importance_weights(batch, self.context.dataset_size, self.hparams["stratified"],
                                   z.device).log()
        log_q_z = torch.logsumexp(log_w + pairwise.sum(2), dim=1)
        log_prod_q_zj = torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(1)
        mi = (log_q_z_given_x - log_q_z).mean()
        tc = (log_q_z - log_prod_q_zj).mean()
        dw_kl = (log_prod_q_zj - log_p_z).mean()
        h = self.hparams
        return {"loss": rec + h["alpha"] * mi + h["beta"] * tc + h["gamma"] * dw_kl,
                "recon": rec, "kl": kl, "mi": mi, "tc": tc, "dw_kl": dw_kl}
