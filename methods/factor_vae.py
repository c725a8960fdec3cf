import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import register
from .base import Method, kl_normal, reparameterise


def discriminator(latent_dim: int) -> nn.Sequential:
    """Kim & Mnih (2018) and disentanglement_lib: MLP, 6 hidden layers of 1000 units, LeakyReLU
    0.2, 2 logits."""
    layers, width = [], latent_dim
    for _ in range(6):
        layers += [nn.Linear(width, 1000), nn.LeakyReLU(0.2)]
        width = 1000
    return nn.Sequential(*layers, nn.Linear(width, 2))


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle every latent dimension independently across the batch (Algorithm 1, PERMUTE-DIMS):
    samples of the product of marginals ∏_j q(z_j)."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


@register("factor-vae")
class FactorVAE(Method):
    """FactorVAE (Kim & Mnih 2018, its objective and Algorithm 1): loss = L_R + KL + γ·TC(z).

    TC(z) = KL(q(z) || ∏_j q(z_j)) is estimated by the density-ratio trick with a discriminator D
    (class 0: a code z ~ q(z); class 1: a permuted code): TC ≈ E[log D(z) / (1 − D(z))], the mean
    difference of D's two logits on this step's sampled codes.

    One training iteration = one VAE update + one discriminator update, as in Algorithm 1:
    - the VAE loss uses D with detached parameters, so it sends no gradient into D;
    - `after_step` then draws an independent second batch from the run's generator
      (`context.sample_batch()`, so FactorVAE consumes two batches per step), encodes it with
      the updated encoder without gradients, permutes its sampled codes and takes one Adam step
      on D's cross-entropy with this step's codes (detached) as class 0 and the permuted codes as
      class 1; nothing reaches the VAE.
    D has its own Adam (lr 1e-4, betas (0.5, 0.9): Kim & Mnih, and disentanglement_lib's
    defaults), outside the network's optimiser; its state is saved with the method
    (`get_extra_state`), so a resumed run continues exactly.
    Default γ = 10: the low end of disentanglement_lib's sweep (10, 20, 30, 40, 50, 100).
    """
    params = {"gamma": 10.0}
    ranges = {"gamma": (0.0, None)}

    def bind(self, context):
        super().bind(context)
        self.discriminator = discriminator(context.latent_dim).to(context.device)
        self.discriminator_optimiser = torch.optim.Adam(self.discriminator.parameters(),
                                                        lr=1e-4, betas=(0.5, 0.9))
        self.discriminator_loss = torch.zeros((), device=context.device)
        self.discriminator_accuracy = torch.zeros((), device=context.device)

    def optimised_with_model(self):
        return []

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (out.z,))
        tc = (logits[:, 0] - logits[:, 1]).mean()
        return {"loss": rec + kl + self.hparams["gamma"] * tc, "recon": rec, "kl": kl, "tc": tc}

    def after_step(self, x, out, terms, step):
        with torch.no_grad():
            mu, logvar = self.context.model.encode(self.context.sample_batch())
            z_other = reparameterise(mu, logvar, torch.randn_like(mu))
        codes = torch.cat([out.z.detach(), permute_dims(z_other)])
        labels = torch.cat([torch.zeros(len(out.z), dtype=torch.long, device=codes.device),
                            torch.ones(len(z_other), dtype=torch.long, device=codes.device)])
        logits = self.discriminator(codes)
        loss = F.cross_entropy(logits, labels)          # = ½ (CE on q(z) + CE on permuted)
        self.discriminator_optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_optimiser.step()
        self.discriminator_loss = loss.detach()
        self.discriminator_accuracy = (logits.detach().argmax(1) == labels).float().mean()

    def logged(self):
        return {"disc_loss": self.discriminator_loss, "disc_accuracy": self.discriminator_accuracy}

    def get_extra_state(self):
        return {"discriminator_optimiser": self.discriminator_optimiser.state_dict()}

    def set_extra_state(self, state):
        self.discriminator_optimiser.load_state_dict(state["discriminator_optimiser"])
