"""Loss values and gradients of VAE, β-VAE and L-VAE against hand computation; L-VAE's σ
dynamics under its own loss."""
import math

import pytest
import torch

from disentbench import methods
from disentbench.methods.base import Output
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


# One image of 10 pixels, all on, decoded with logit -5 (L_R = 10 softplus(5) ≈ 50) and a
# posterior close to the prior (KL = ½ 0.3² = 0.045): a term above σ⁴ = 1 and one below.
X_BIG = torch.ones(1, 1, 1, 10)
OUT_BIG = Output(torch.tensor([[0.3, 0.0]]), torch.zeros(1, 2), torch.tensor([[0.3, 0.0]]),
                 torch.full((1, 1, 1, 10), -5.0))
REC_BIG, KL_SMALL = 10 * softplus(5.0), 0.5 * 0.3 ** 2


def fit_sigmas(method, steps, lr=0.05):
    """Adam on the method's own σ parameters, the loss from `method.loss` with the terms fixed;
    returns log σ² after every step."""
    optimiser = torch.optim.Adam(method.parameters(), lr=lr)
    history = []
    for step in range(steps):
        optimiser.zero_grad()
        method.loss(X_BIG, OUT_BIG, step)["loss"].backward()
        optimiser.step()
        history.append(method.log_var.detach().clone())
    return torch.stack(history)


def test_lvae_large_term_pushes_its_sigma_up():
    """A term larger than σ⁴ makes gradient descent raise that σ; a small one lowers it."""
    method = methods.create("l-vae")
    terms = method.loss(X_BIG, OUT_BIG, 0)
    assert (terms["recon"].item(), terms["kl"].item()) == pytest.approx((REC_BIG, KL_SMALL),
                                                                        rel=1e-6)
    terms["loss"].backward()
    torch.optim.SGD(method.parameters(), lr=1e-3).step()
    sigma0, sigma1 = method.logged()["sigma0"].item(), method.logged()["sigma1"].item()
    assert sigma0 > 1.0 > sigma1


def test_lvae_stationary_point_is_sqrt_of_term():
    """With the terms held fixed, σ² converges to sqrt(term): β̂ → sqrt(L_R / KL)."""
    method = methods.create("l-vae")
    fit_sigmas(method, 2000)
    logged = method.logged()
    assert logged["sigma0"].item() ** 2 == pytest.approx(math.sqrt(REC_BIG), rel=1e-3)
    assert logged["sigma1"].item() ** 2 == pytest.approx(math.sqrt(KL_SMALL), rel=1e-3)
    assert logged["beta_hat"].item() == pytest.approx(math.sqrt(REC_BIG / KL_SMALL), rel=1e-3)


def test_lvae_noreg_sigmas_never_settle():
    """With the terms held fixed (where L-VAE settles at σ² = sqrt(term)) both σ keep growing."""
    method = methods.create("l-vae-noreg")
    steps = fit_sigmas(method, 300).diff(dim=0)
    assert (steps > 0).all()
    assert method.logged()["sigma0"].item() ** 2 > math.sqrt(REC_BIG)   # past L-VAE's rest


def test_unknown_parameter_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="valid parameters: beta"):
        methods.create("beta-vae", gamma=1.0)
    with pytest.raises(KeyError, match="valid names"):
        methods.create("no-such-method")
