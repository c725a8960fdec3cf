"""Loss values and gradients of VAE, β-VAE and L-VAE against hand computation."""
import math

import pytest
import torch

from disentbench import methods
from disentbench.bench.nets import Output
from disentbench.methods.base import bernoulli_reconstruction, kl_normal

# Two images of 2 pixels, two latent dimensions: small enough to compute by hand.
X = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])            # (2, 1, 1, 2)
LOGITS = torch.tensor([[[[2.0, -1.0]]], [[[0.5, 0.0]]]])
MU = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
LOGVAR = torch.tensor([[0.0, math.log(0.5)], [math.log(2.0), 0.0]])


def softplus(v):
    return math.log1p(math.exp(v))


# BCE(x, l) = softplus(l) - x*l, summed over pixels, averaged over the 2 images.
RECON = ((softplus(2.0) - 2.0) + softplus(-1.0) + softplus(0.5) + (softplus(0.0) - 0.0)) / 2
# KL per element = 0.5 * (mu² + σ² - log σ² - 1)
KL = (0.5 * (0.25 + 1 - 0 - 1) + 0.5 * (1 + 0.5 - math.log(0.5) - 1)
      + 0.5 * (0 + 2 - math.log(2.0) - 1) + 0.5 * (4 + 1 - 0 - 1)) / 2


def out():
    return Output(MU, LOGVAR, MU, LOGITS)


def test_reconstruction_and_kl_match_hand_computation():
    assert bernoulli_reconstruction(X, LOGITS).item() == pytest.approx(RECON, rel=1e-6)
    assert kl_normal(MU, LOGVAR).item() == pytest.approx(KL, rel=1e-6)


def test_vae_and_beta_vae_losses():
    vae = methods.create("vae").loss(X, out(), 0)
    assert vae["loss"].item() == pytest.approx(RECON + KL, rel=1e-6)
    beta = methods.create("beta-vae", beta=6.0).loss(X, out(), 0)
    assert beta["loss"].item() == pytest.approx(RECON + 6 * KL, rel=1e-6)
    assert methods.create("beta-vae").hparams["beta"] == 4.0


def test_lvae_loss_at_start_is_sum_plus_two():
    terms = methods.create("l-vae").loss(X, out(), 0)
    assert terms["loss"].item() == pytest.approx(RECON + KL + 2.0, rel=1e-6)


def test_lvae_loss_and_gradients_at_chosen_sigmas():
    method = methods.create("l-vae")
    s0, s1 = 0.3, -0.7                                   # log σ0², log σ1²
    with torch.no_grad():
        method.log_var.copy_(torch.tensor([s0, s1]))
    mu, logvar = MU.clone().requires_grad_(), LOGVAR.clone()
    terms = method.loss(X, Output(mu, logvar, mu, LOGITS), 0)
    v0, v1 = math.exp(s0), math.exp(s1)
    assert terms["loss"].item() == pytest.approx(RECON / v0 + KL / v1 + v0 + v1, rel=1e-6)
    terms["loss"].backward()
    # d/ds (exp(-s) L + exp(s)) = -exp(-s) L + exp(s)
    expected = [-RECON / v0 + v0, -KL / v1 + v1]
    assert method.log_var.grad.tolist() == pytest.approx(expected, rel=1e-5)
    # the KL's gradient reaches μ scaled by 1/σ1²: d KL / d μ = μ / batch
    assert mu.grad.numpy() == pytest.approx((MU / 2 / v1).numpy(), rel=1e-5)
    logged = method.logged()
    assert logged["beta_hat"].item() == pytest.approx(v0 / v1, rel=1e-6)
    assert logged["sigma0"].item() == pytest.approx(math.sqrt(v0), rel=1e-6)


def test_lvae_large_term_pushes_its_sigma_up():
    """A term larger than σ⁴ makes gradient descent raise that σ; a small one lowers it."""
    method = methods.create("l-vae")
    big, small = torch.tensor(50.0), torch.tensor(0.1)
    optimiser = torch.optim.SGD(method.parameters(), lr=1e-3)
    inv = torch.exp(-method.log_var)
    loss = inv[0] * big + inv[1] * small + torch.exp(method.log_var).sum()
    loss.backward()
    optimiser.step()
    sigma0, sigma1 = method.logged()["sigma0"].item(), method.logged()["sigma1"].item()
    assert sigma0 > 1.0 > sigma1


def test_lvae_stationary_point_is_sqrt_of_term():
    """With the term held fixed, σ² converges to sqrt(term): β̂ → sqrt(L_R / KL)."""
    method = methods.create("l-vae")
    rec, kl = torch.tensor(400.0), torch.tensor(25.0)
    optimiser = torch.optim.Adam(method.parameters(), lr=0.05)
    for _ in range(2000):
        inv = torch.exp(-method.log_var)
        loss = inv[0] * rec + inv[1] * kl + torch.exp(method.log_var).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert method.logged()["beta_hat"].item() == pytest.approx(math.sqrt(400 / 25), rel=1e-3)


def test_unknown_parameter_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="valid parameters: beta"):
        methods.create("beta-vae", gamma=1.0)
    with pytest.raises(KeyError, match="valid names"):
        methods.create("no-such-method")
