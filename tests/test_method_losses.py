"""Every method's loss on hand-built tensors against the formula computed here with plain math,
and each method's specific checks (FactorVAE isolation, β-TCVAE weights, DIP covariance,
controllers, σ-VAE's σ, the L-VAE ablations)."""
import math

import numpy as np
import pytest
import torch

from disentbench import methods
from disentbench.bench.nets import VAE
from disentbench.methods.base import Output
from disentbench.methods.base import TrainContext
from disentbench.methods.beta_tcvae import importance_weights
from disentbench.methods.factor_vae import permute_dims

# Three images of 2 pixels, two latent dimensions, one sampled code each.
X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
LOGITS = [[2.0, -1.0], [0.5, 0.0], [-0.3, 1.2]]
MU = [[0.5, -1.0], [0.0, 2.0], [-0.4, 0.3]]
LOGVAR = [[0.0, math.log(0.5)], [math.log(2.0), 0.0], [-0.2, 0.4]]
Z = [[0.3, -0.6], [0.2, 1.5], [-1.0, 0.1]]
B, D = 3, 2


def softplus(v):
    return math.log1p(math.exp(v))


RECON = sum(softplus(l) - x * l for xs, ls in zip(X, LOGITS) for x, l in zip(xs, ls)) / B
KL_DIMS = [sum(0.5 * (MU[i][d] ** 2 + math.exp(LOGVAR[i][d]) - LOGVAR[i][d] - 1)
               for i in range(B)) / B for d in range(D)]
KL = sum(KL_DIMS)


def out(requires_grad=False):
    mu = torch.tensor(MU, requires_grad=requires_grad)
    z = torch.tensor(Z, requires_grad=requires_grad)
    return Output(mu, torch.tensor(LOGVAR), z, torch.tensor(LOGITS).reshape(B, 1, 1, 2))


def x():
    return torch.tensor(X).reshape(B, 1, 1, 2)


def bound(name, latent_dim=D, dataset_size=10, model=None, sample_batch=None, **params):
    method = methods.create(name, **params)
    method.bind(TrainContext(model=model, latent_dim=latent_dim, dataset_size=dataset_size,
                             steps=100, sample_batch=sample_batch, device=torch.device("cpu")))
    return method


def float_setpoint(method, step) -> float:
    return float(method.setpoint_at(step))


def test_every_method_is_registered_and_all_is_the_paper_set():
    assert methods.all_methods() == ["vae", "beta-vae", "factor-vae", "beta-tcvae", "dip-vae-i",
                                     "dip-vae-ii", "control-vae", "dynamic-vae", "sigma-vae",
                                     "l-vae"]
    assert {"sigma-vae-optimal", "l-vae-noreg", "l-vae-perdim"} <= set(methods.available())


# --- FactorVAE ---------------------------------------------------------------------------------

def mlp_logits(method, codes):
    """The discriminator by hand: 6 × (affine, LeakyReLU 0.2), then affine."""
    h = np.array(codes, dtype=np.float64)
    linears = [m for m in method.discriminator if isinstance(m, torch.nn.Linear)]
    for k, layer in enumerate(linears):
        h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if k < len(linears) - 1:
            h = np.where(h > 0, h, 0.2 * h)
    return h


def test_factor_vae_loss_and_discriminator_shape():
    method = bound("factor-vae", gamma=7.0)
    linears = [m for m in method.discriminator if isinstance(m, torch.nn.Linear)]
    assert [l.out_features for l in linears] == [1000] * 6 + [2]
    assert linears[0].in_features == D
    terms = method.loss(x(), out(), 0)
    logits = mlp_logits(method, Z)
    tc = float(np.mean(logits[:, 0] - logits[:, 1]))
    assert terms["tc"].item() == pytest.approx(tc, rel=1e-4, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(RECON + KL + 7.0 * tc, rel=1e-5)
    assert methods.create("factor-vae").hparams["gamma"] == 10.0


def test_factor_vae_gradients_stay_on_their_side():
    torch.manual_seed(0)
    model = VAE(1, D)
    images = (torch.rand(8, 1, 64, 64) > 0.5).float()
    method = bound("factor-vae", model=model, sample_batch=lambda: images.flip(0))
    # The VAE's loss reaches the encoder through z but leaves the discriminator untouched.
    output = model(images)
    method.loss(images, output, 0)["loss"].backward()
    assert all(p.grad is None for p in method.discriminator.parameters())
    assert model.encoder.mu.weight.grad.abs().sum() > 0
    # The discriminator's update changes only the discriminator.
    model.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in method.discriminator.parameters()]
    method.after_step(images, output, {}, 0)
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, method.discriminator.parameters()))
    assert 0.0 <= method.logged()["disc_accuracy"].item() <= 1.0
    # Its own Adam (lr 1e-4, betas 0.5, 0.9), not the network's.
    assert method.optimised_with_model() == []
    group = method.discriminator_optimiser.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.5, 0.9)


def test_factor_vae_discriminator_is_not_in_the_harness_optimiser():
    from disentbench.bench.spec import RunSpec
    from tests.helpers import Single, tiny_dsprites_like
    trainer = Single(RunSpec("factor-vae", "tiny", 0, 1, batch_size=4), tiny_dsprites_like(),
                      torch.device("cpu"))
    in_adam = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert in_adam == {id(p) for p in trainer.model.parameters()}


def test_permute_dims_shuffles_each_dimension_independently():
    torch.manual_seed(0)
    z = torch.arange(200.0).reshape(50, 4)
    permuted = permute_dims(z)
    for j in range(4):
        assert sorted(permuted[:, j].tolist()) == z[:, j].tolist()
    assert not torch.equal(permuted, z)
    # rows are mixed: the columns were not shuffled with one common order
    assert not torch.equal(permuted.argsort(0)[:, 0], permuted.argsort(0)[:, 1])


def small_discriminator(latent_dim):
    """A quick stand-in for the 6 × 1000 MLP: which class a code gets does not depend on it."""
    return torch.nn.Sequential(torch.nn.Linear(latent_dim, 32), torch.nn.LeakyReLU(0.2),
                               torch.nn.Linear(32, 32), torch.nn.LeakyReLU(0.2),
                               torch.nn.Linear(32, 2))


class IdentityEncoder:
    """encode(x) = (x, log σ² = -30): the sampled code is x itself (to ~1e-7)."""

    def encode(self, x):
        return x, torch.full_like(x, -30.0)


def code_output(z):
    return Output(z, torch.full_like(z, -30.0), z, torch.zeros(len(z), 1, 1, 1))


def correlated_codes(generator, n=128):
    """z1 = z0 + small noise: a total correlation far above 0, easy to tell from permuted codes."""
    a = torch.randn(n, 1, generator=generator)
    return torch.cat([a, a + 0.05 * torch.randn(n, 1, generator=generator)], 1)


def test_factor_vae_discriminator_learns_real_codes_as_class_0_and_tc_is_positive(monkeypatch):
    """Trained by `after_step` on correlated codes against permuted ones, D must call real codes
    class 0, so the loss's TC estimate E[logit0 - logit1] is large and positive on real codes
    and negative on permuted ones (swapped classes would make the VAE maximise TC)."""
    from disentbench.methods import factor_vae
    monkeypatch.setattr(factor_vae, "discriminator", small_discriminator)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    method = bound("factor-vae", model=IdentityEncoder(),
                   sample_batch=lambda: correlated_codes(generator))
    for group in method.discriminator_optimiser.param_groups:
        group["lr"] = 1e-2                                      # converge in 200 steps
    for step in range(200):
        method.after_step(None, code_output(correlated_codes(generator)), {}, step)
    assert method.logged()["disc_accuracy"].item() > 0.9
    blank = torch.zeros(128, 1, 1, 1)
    real = method.loss(blank, code_output(correlated_codes(generator)), 0)["tc"].item()
    permuted = method.loss(blank, code_output(permute_dims(correlated_codes(generator))), 0)
    assert real > 1.0 and permuted["tc"].item() < -1.0


class RecordingDiscriminator(torch.nn.Module):
    """A linear discriminator that keeps every batch of codes it is called on."""

    def __init__(self, latent_dim):
        super().__init__()
        self.linear = torch.nn.Linear(latent_dim, 2)
        self.seen = []

    def forward(self, codes):
        self.seen.append(codes.detach().clone())
        return self.linear(codes)


def test_factor_vae_permutes_codes_of_a_second_independent_batch(monkeypatch):
    """after_step draws one new batch, and class 1 holds the permuted codes of that batch (each
    column a permutation of its codes), not of this step's codes."""
    from disentbench.methods import factor_vae
    monkeypatch.setattr(factor_vae, "discriminator", RecordingDiscriminator)
    this_step = torch.arange(16.0).reshape(8, 2)                 # values 0..15
    other = 100.0 + torch.arange(16.0).reshape(8, 2)             # values 100..115
    calls = []
    method = bound("factor-vae", model=IdentityEncoder(),
                   sample_batch=lambda: calls.append(1) or other.clone())
    method.after_step(None, code_output(this_step), {}, 0)
    assert len(calls) == 1
    codes = method.discriminator.seen[-1]
    assert torch.equal(codes[:8], this_step)
    for j in range(2):
        assert torch.allclose(codes[8:, j].sort().values, other[:, j])


def test_factor_vae_second_batch_codes_are_sampled_from_the_posterior(monkeypatch):
    """Class 1 holds permuted samples z = μ + σ ε of the second batch, not its means: with
    μ = 3 and σ = 2 everywhere their columns have mean 3 and standard deviation 2."""
    from disentbench.methods import factor_vae
    monkeypatch.setattr(factor_vae, "discriminator", RecordingDiscriminator)

    class Posterior:
        def encode(self, x):
            return torch.full((2000, 2), 3.0), torch.full((2000, 2), math.log(4.0))

    torch.manual_seed(0)
    method = bound("factor-vae", model=Posterior(), sample_batch=lambda: None)
    method.after_step(None, code_output(torch.zeros(2000, 2)), {}, 0)
    permuted = method.discriminator.seen[-1][2000:]
    assert permuted.mean(0).tolist() == pytest.approx([3.0, 3.0], abs=0.15)
    assert permuted.std(0).tolist() == pytest.approx([2.0, 2.0], rel=0.05)


def test_factor_vae_takes_one_discriminator_step_and_two_batches_per_training_step():
    from disentbench.bench.spec import RunSpec
    from tests.helpers import Single, tiny_dsprites_like
    data = tiny_dsprites_like()
    drawn = []
    sample_batch = data.sample_batch
    data.sample_batch = lambda n, generator: drawn.append(n) or sample_batch(n, generator)
    trainer = Single(RunSpec("factor-vae", "tiny", 0, 3, batch_size=4), data,
                      torch.device("cpu"))
    for _ in range(3):
        trainer.step()
    optimiser = trainer.method.discriminator_optimiser
    assert {state["step"].item() for state in optimiser.state.values()} == {3}
    assert len(optimiser.state) == len(list(trainer.method.discriminator.parameters()))
    assert drawn == [4] * 6


# --- β-TCVAE -----------------------------------------------------------------------------------

def test_stratified_importance_weights_by_hand():
    n, m = 10, 3                            # batch of 4 = the code's own sample + M = 3 others
    own, strat, rest = 1 / n, (n - m) / (n * m), 1 / m
    expected = [[own, strat, rest, rest],
                [rest, own, strat, rest],
                [rest, rest, own, strat],
                [strat, rest, rest, own]]
    weights = importance_weights(4, n, stratified=True)
    assert weights.numpy() == pytest.approx(np.array(expected))
    assert weights.sum(1).tolist() == pytest.approx([1.0] * 4)
    # The widely copied bug writes 1/N into column 0 instead of the diagonal.
    assert weights[1, 0].item() != pytest.approx(own)


def test_weighted_sampling_weights_are_one_over_n_m():
    weights = importance_weights(4, 10, stratified=False)
    assert weights.numpy() == pytest.approx(np.full((4, 4), 1 / 40))


def normal_density(z, mu, logvar):
    var = math.exp(logvar)
    return math.exp(-0.5 * (z - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def tc_decomposition_by_hand(weights):
    """(MI, TC, dimension-wise KL) averaged over the batch, from q(z_i) ≈ Σ_j w_ij q(z_i|x_j)."""
    q = [[[normal_density(Z[i][d], MU[j][d], LOGVAR[j][d]) for d in range(D)] for j in range(B)]
         for i in range(B)]                                     # q[i][j][d] = q(z_id | x_j)
    mi = tc = dw = 0.0
    for i in range(B):
        log_q_cond = sum(math.log(q[i][i][d]) for d in range(D))
        log_q = math.log(sum(weights[i][j] * math.prod(q[i][j]) for j in range(B)))
        log_prod = sum(math.log(sum(weights[i][j] * q[i][j][d] for j in range(B)))
                       for d in range(D))
        log_p = sum(math.log(normal_density(Z[i][d], 0.0, 0.0)) for d in range(D))
        mi += (log_q_cond - log_q) / B
        tc += (log_q - log_prod) / B
        dw += (log_prod - log_p) / B
    return mi, tc, dw


@pytest.mark.parametrize("stratified", [False, True])
def test_beta_tcvae_loss_by_hand(stratified):
    n = 10
    if stratified:
        m = B - 1
        weights = [[1 / n if j == i else (n - m) / (n * m) if j == (i + 1) % B else 1 / m
                    for j in range(B)] for i in range(B)]
    else:
        weights = [[1 / (n * B)] * B for _ in range(B)]
    mi, tc, dw = tc_decomposition_by_hand(weights)
    method = bound("beta-tcvae", dataset_size=n, alpha=2.0, beta=6.0, gamma=0.5,
                   stratified=stratified)
    terms = method.loss(x(), out(), 0)
    assert terms["mi"].item() == pytest.approx(mi, rel=1e-5)
    assert terms["tc"].item() == pytest.approx(tc, rel=1e-5)
    assert terms["dw_kl"].item() == pytest.approx(dw, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(RECON + 2 * mi + 6 * tc + 0.5 * dw, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(KL, rel=1e-6)


def test_beta_tcvae_defaults():
    assert methods.create("beta-tcvae").hparams == {"beta": 6.0, "alpha": 1.0, "gamma": 1.0,
                                                     "stratified": False,
                                                     "recon": "bernoulli-sum"}


# --- DIP-VAE -----------------------------------------------------------------------------------

# Centred rows [3, 1], [-1, 1], [-1, -3], [-1, 1] have Cov = [[3, 1], [1, 3]] (divided by 4);
# the offset checks that μ is centred over the batch.
DIP_MU = [[3 + 5.0, 1 - 2.0], [-1 + 5.0, 1 - 2.0], [-1 + 5.0, -3 - 2.0], [-1 + 5.0, 1 - 2.0]]
DIP_VAR = [[1.0, 2.0], [3.0, 2.0], [1.0, 2.0], [3.0, 2.0]]                 # E[diag Σ] = [2, 2]


def dip_out():
    mu, logvar = torch.tensor(DIP_MU), torch.tensor(DIP_VAR).log()
    return Output(mu, logvar, mu, torch.zeros(4, 1, 1, 2))


def dip_base_loss():
    """Reconstruction (logits 0: 2 log 2 per image) + KL of DIP_MU, DIP_VAR."""
    kl = sum(0.5 * (m * m + v - math.log(v) - 1)
             for mus, vs in zip(DIP_MU, DIP_VAR) for m, v in zip(mus, vs)) / 4
    return 2 * math.log(2.0) + kl


def test_dip_vae_i_penalises_the_known_covariance():
    x_dip = torch.zeros(4, 1, 1, 2)
    # Cov = [[3, 1], [1, 3]]: off-diagonal 1² + 1², diagonal (3 - 1)² + (3 - 1)².
    terms = methods.create("dip-vae-i").loss(x_dip, dip_out(), 0)      # λ_od 10, λ_d 100
    assert terms["dip"].item() == pytest.approx(10 * 2 + 100 * 8, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(dip_base_loss() + 820, rel=1e-6)
    method = methods.create("dip-vae-i", lambda_od=2.0, lambda_d_factor=3.0)
    terms = method.loss(x_dip, dip_out(), 0)
    assert terms["dip"].item() == pytest.approx(2 * 2 + 6 * 8, rel=1e-6)


def test_dip_vae_ii_adds_the_mean_encoder_variance():
    # Cov_z = Cov(μ) + diag(E[exp(logvar)]) = [[5, 1], [1, 5]]; λ_d = λ_od = 10.
    terms = methods.create("dip-vae-ii").loss(torch.zeros(4, 1, 1, 2), dip_out(), 0)
    assert terms["dip"].item() == pytest.approx(10 * 2 + 10 * (16 + 16), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(dip_base_loss() + 340, rel=1e-6)


# --- ControlVAE --------------------------------------------------------------------------------

def test_control_vae_loss_uses_beta_from_this_steps_kl():
    method = methods.create("control-vae")
    terms = method.loss(x(), out(), 0)
    error = 0.5 - KL                                    # C(0) = 0.5; KL ≈ 1.2 > C
    beta = 0.01 / (1 + math.exp(error)) - 0.001 * error + 1.0
    assert method.logged()["beta"].item() == pytest.approx(beta, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(RECON + beta * KL, rel=1e-6)
    assert method.logged()["C"].item() == pytest.approx(0.5)


def test_control_vae_setpoint_steps_up_every_5000_iterations():
    method = methods.create("control-vae")
    assert float_setpoint(method, 0) == 0.5 and float_setpoint(method, 4998) == 0.5
    assert float_setpoint(method, 4999) == pytest.approx(0.65)            # iteration 5000
    assert float_setpoint(method, 10_000) == pytest.approx(0.8)
    assert float_setpoint(method, 10_000_000) == 18.0


def test_control_vae_beta_rises_above_and_falls_to_floor_below_without_windup():
    method = methods.create("control-vae")
    high, low = torch.tensor(30.0), torch.tensor(0.0)
    betas = []
    for _ in range(50):
        method.update_beta(high, 10.0)
        betas.append(method.beta.item())
    assert betas[0] > 1.0 and all(b < a for b, a in zip(betas, betas[1:]))
    for _ in range(2000):                                # far below the set-point for long
        method.update_beta(low, 10.0)
    assert method.beta.item() == 1.0                     # at the floor β_min = 1
    assert method.integral.item() >= -0.01               # frozen: not -Ki Σe ≈ -20
    method.update_beta(high, 10.0)
    assert method.beta.item() > 1.0                      # leaves the floor at once


# --- DynamicVAE --------------------------------------------------------------------------------

def sigmoid_neg(e):
    return 1 / (1 + math.exp(e))


def test_dynamic_vae_loss_at_the_first_step():
    method = methods.create("dynamic-vae")
    terms = method.loss(x(), out(), 0)
    error = 0.5 - KL                                    # moving average of one KL
    beta = 50 + 0.01 * (sigmoid_neg(error) - sigmoid_neg(0.0)) - 0.005 * error
    assert method.logged()["beta"].item() == pytest.approx(beta, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(RECON + beta * KL, rel=1e-6)


def test_dynamic_vae_incremental_update_on_a_moving_average():
    method = methods.create("dynamic-vae", window=3)
    kls, beta, previous = [4.0, 1.0, 7.0, 2.0, 9.0], 50.0, 0.0
    for step, kl in enumerate(kls):
        method.update_beta(torch.tensor(kl), 2.0, step)
        recent = kls[max(0, step - 2):step + 1]
        error = 2.0 - sum(recent) / len(recent)
        beta += 0.01 * (sigmoid_neg(error) - sigmoid_neg(previous)) - 0.005 * error
        previous = error
        assert method.beta.item() == pytest.approx(beta, rel=1e-6)
        assert method.previous_error.item() == pytest.approx(error, rel=1e-6)


def test_dynamic_vae_beta_falls_to_its_floor_and_leaves_it_when_kl_exceeds_c():
    method = methods.create("dynamic-vae")
    betas = []
    for step in range(20):
        method.update_beta(torch.tensor(40.0), 10.0, step)
        betas.append(method.beta.item())
    assert betas[-1] > 50.0 and all(b < a for b, a in zip(betas, betas[1:]))
    for step in range(20, 3000):                        # KL 0 < C = 10: β decreases by ~0.05
        method.update_beta(torch.tensor(0.0), 10.0, step)
    assert method.beta.item() == pytest.approx(0.1)     # floor W_min, no further
    method.update_beta(torch.tensor(0.0), 10.0, 3000)
    assert method.beta.item() == pytest.approx(0.1)
    for step in range(3001, 3006):                      # average climbs above C within the window
        method.update_beta(torch.tensor(40.0), 10.0, step)
    assert method.beta.item() > 0.1


def test_dynamic_vae_setpoint_ramps_in_every_window_after_the_first():
    method = methods.create("dynamic-vae")
    assert float_setpoint(method, 0) == 0.5 and float_setpoint(method, 5998) == 0.5   # iteration 5999
    assert float_setpoint(method, 5999) == pytest.approx(0.5 + 0.15 / 1000)       # iteration 6000
    assert float_setpoint(method, 6998) == pytest.approx(0.65)                    # ramp done
    assert float_setpoint(method, 11_998) == pytest.approx(0.65)                  # flat until 12000
    assert float_setpoint(method, 11_999) == pytest.approx(0.65 + 0.15 / 1000)
    assert float_setpoint(method, 10_000_000) == 20.0


# --- σ-VAE -------------------------------------------------------------------------------------

def gaussian_nll_by_hand(log_sigma):
    sigma2 = math.exp(2 * log_sigma)
    return sum((x - m) ** 2 / (2 * sigma2) + log_sigma + 0.5 * math.log(2 * math.pi)
               for xs, ms in zip(X, LOGITS) for x, m in zip(xs, ms)) / B


def test_sigma_vae_loss_with_a_learned_sigma():
    method = methods.create("sigma-vae")
    assert method.reconstruction_loss == "gaussian"
    with torch.no_grad():
        method.log_sigma.fill_(-0.7)
    terms = method.loss(x(), out(), 0)
    clipped = -6 + softplus(-0.7 + 6)                    # soft clip, ≈ -0.7 here
    assert terms["recon"].item() == pytest.approx(gaussian_nll_by_hand(clipped), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(gaussian_nll_by_hand(clipped) + KL, rel=1e-6)
    assert terms["sigma"].item() == pytest.approx(math.exp(clipped), rel=1e-6)
    terms["loss"].backward()
    assert method.log_sigma.grad is not None


def test_sigma_vae_log_sigma_is_soft_clipped_at_minus_six():
    method = methods.create("sigma-vae")
    with torch.no_grad():
        method.log_sigma.fill_(-30.0)
    sigma = method.loss(x(), out(), 0)["sigma"].item()
    assert math.log(sigma) == pytest.approx(-6.0, abs=1e-6)


def test_optimal_sigma_is_the_rms_error():
    terms = methods.create("sigma-vae-optimal").loss(x(), out(), 0)
    errors = [(x - m) ** 2 for xs, ms in zip(X, LOGITS) for x, m in zip(xs, ms)]
    rms = math.sqrt(sum(errors) / len(errors))
    clipped = -6 + softplus(math.log(rms) + 6)           # the soft clip adds ~exp(-6)/σ
    assert terms["sigma"].item() == pytest.approx(math.exp(clipped), rel=1e-6)
    assert terms["sigma"].item() == pytest.approx(rms, rel=5e-3)
    assert terms["recon"].item() == pytest.approx(gaussian_nll_by_hand(clipped), rel=1e-6)
    pixels = 2                                           # at σ = RMS, the NLL of an image is
    nll = pixels / 2 + pixels * math.log(rms) + pixels / 2 * math.log(2 * math.pi)
    assert gaussian_nll_by_hand(math.log(rms)) == pytest.approx(nll, rel=1e-12)
    assert terms["recon"].item() == pytest.approx(nll, rel=5e-3)
    assert list(methods.create("sigma-vae-optimal").parameters()) == []


# --- L-VAE ablations ---------------------------------------------------------------------------

def test_lvae_noreg_loss_has_no_sigma_term_and_sigma_only_grows():
    method = methods.create("l-vae-noreg")
    with torch.no_grad():
        method.log_var.copy_(torch.tensor([0.4, -0.3]))
    terms = method.loss(x(), out(), 0)
    v0, v1 = math.exp(0.4), math.exp(-0.3)
    assert terms["loss"].item() == pytest.approx(RECON / v0 + KL / v1, rel=1e-6)
    terms["loss"].backward()
    assert method.log_var.grad.tolist() == pytest.approx([-RECON / v0, -KL / v1], rel=1e-5)


@pytest.mark.parametrize("sigma0, sigma1, diverged", [
    (1.0, 1.0, False), (99.0, 0.011, False), (101.0, 1.0, True), (1.0, 0.009, True),
    (float("nan"), 1.0, True), (1.0, float("inf"), True)])
def test_lvae_noreg_divergence_criterion(sigma0, sigma1, diverged):
    row = {"step": 5, "sigma0": sigma0, "sigma1": sigma1, "beta_hat": 1.0}
    assert (methods.create("l-vae-noreg").diverged(row) is not None) == diverged


def test_lvae_perdim_loss_and_per_dimension_beta_hat():
    method = bound("l-vae-perdim")
    s = [0.3, -0.5, 0.2]                                 # log σ0², log σ1,0², log σ1,1²
    with torch.no_grad():
        method.log_var.copy_(torch.tensor(s))
    v = [math.exp(t) for t in s]
    terms = method.loss(x(), out(), 0)
    expected = RECON / v[0] + KL_DIMS[0] / v[1] + KL_DIMS[1] / v[2] + sum(v)
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert terms["kl"].item() == pytest.approx(KL, rel=1e-6)
    logged = method.logged()
    assert logged["beta_hat"].tolist() == pytest.approx([v[0] / v[1], v[0] / v[2]], rel=1e-6)
    assert logged["sigma1"].tolist() == pytest.approx([math.sqrt(v[1]), math.sqrt(v[2])], rel=1e-6)
    assert method.optimised_with_model() == [method.log_var]
