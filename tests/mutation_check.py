"""Named mutations of the core files, each run against the tests that should catch it.

    python -m tests.mutation_check                    # every mutation
    python -m tests.mutation_check factor-vae dci     # those whose name contains a word
    python -m tests.mutation_check --list             # names and files only
    python -m tests.mutation_check --without-shared   # as on a machine without ../shared

A mutation is a small, plausible wrong version of the code: (name, file, exact old snippet,
replacement, tests). The repository's files (tracked and untracked, not ignored) are copied once
into a temporary folder; the working tree is never changed. For each mutation the file in the
copy is changed, its tests run there (`pytest -x -q`, one thread, no bytecode written), and the
file restored. The mutation is *killed* when a test fails (or the code no longer imports),
*survived* when every test passes, and *not applicable (code changed)* when its old snippet is no
longer in the file. First all named tests run once on the unchanged copy: they must pass, or
nothing is measured. Prints one line per mutation and the kill rate; exits 1 if any survived.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str           # relative to the repository root
    old: str            # exact snippet, replaced once
    new: str
    tests: tuple        # pytest node ids or files, relative to the root


METHOD_TESTS = ("tests/test_method_losses.py", "tests/test_losses.py")
FACTOR_VAE_TESTS = ("tests/test_method_losses.py::test_factor_vae_loss_and_discriminator_shape",
                    "tests/test_method_losses.py::"
                    "test_factor_vae_discriminator_learns_real_codes_as_class_0_and_tc_is_positive",
                    "tests/test_method_losses.py::"
                    "test_factor_vae_permutes_codes_of_a_second_independent_batch",
                    "tests/test_method_losses.py::"
                    "test_factor_vae_takes_one_discriminator_step_and_two_batches_per_training_step",
                    "tests/test_method_losses.py::test_factor_vae_gradients_stay_on_their_side")
METRIC_TESTS = ("tests/test_metrics_closed_form.py", "tests/test_metrics_properties.py")
TRAIN_TESTS = ("tests/test_train_guards.py", "tests/test_train.py")
GROUP_TESTS = ("tests/test_group.py",)
UDR_TESTS = ("tests/test_udr_oracle.py",)
RUNNER_GROUP_TESTS = (
    "tests/test_runner.py::test_seed_groups_train_each_run_into_its_own_folder_as_a_single_run_would",
    "tests/test_runner.py::test_group_seeds_auto_groups_where_the_device_rule_and_a_timed_probe_say_so")


def m(name, path, old, new, tests):
    return Mutation(name, path, old, new, tuple(tests))


MUTATIONS = [
    # --- methods/base.py: the shared loss convention --------------------------------------
    m("base: KL without its 1/2", "methods/base.py",
      "return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).mean(0)",
      "return (mu.pow(2) + logvar.exp() - logvar - 1).mean(0)", METHOD_TESTS),
    m("base: KL summed over the batch", "methods/base.py",
      "logvar - 1).mean(0)", "logvar - 1).sum(0)", METHOD_TESTS),
    m("base: BCE not averaged over the batch", "methods/base.py",
      'reduction="sum") / x.shape[0]', 'reduction="sum")', METHOD_TESTS),
    m("base: BCE averaged over pixels", "methods/base.py",
      'reduction="sum") / x.shape[0]', 'reduction="mean")', METHOD_TESTS),
    m("base: Gaussian reconstruction not averaged over the batch", "methods/base.py",
      "return (mean - x).pow(2).sum() / x.shape[0]", "return (mean - x).pow(2).sum()",
      ("tests/test_evaluate.py",)),
    # --- vae, beta-vae ------------------------------------------------------------------------
    m("vae: KL subtracted", "methods/vae.py", '"loss": rec + kl', '"loss": rec - kl', METHOD_TESTS),
    m("beta-vae: beta ignored", "methods/beta_vae.py",
      'rec + self.hparams["beta"] * kl', "rec + kl", METHOD_TESTS),
    m("beta-vae: beta on the reconstruction", "methods/beta_vae.py",
      'rec + self.hparams["beta"] * kl', 'self.hparams["beta"] * rec + kl', METHOD_TESTS),
    # --- factor-vae ---------------------------------------------------------------------------
    m("factor-vae: discriminator classes swapped", "methods/factor_vae.py",
      "labels = torch.cat([torch.zeros(len(out.z), dtype=torch.long, device=codes.device),\n"
      "                            torch.ones(len(z_other), dtype=torch.long, device=codes.device)])",
      "labels = torch.cat([torch.ones(len(out.z), dtype=torch.long, device=codes.device),\n"
      "                            torch.zeros(len(z_other), dtype=torch.long, device=codes.device)])",
      FACTOR_VAE_TESTS),
    m("factor-vae: permuted codes from the same batch", "methods/factor_vae.py",
      "codes = torch.cat([out.z.detach(), permute_dims(z_other)])",
      "codes = torch.cat([out.z.detach(), permute_dims(out.z.detach())])", FACTOR_VAE_TESTS),
    m("factor-vae: same batch, no second draw", "methods/factor_vae.py",
      "mu, logvar = self.context.model.encode(self.context.sample_batch())",
      "mu, logvar = out.mu.detach(), out.logvar.detach()", FACTOR_VAE_TESTS),
    m("factor-vae: two discriminator steps per training step", "methods/factor_vae.py",
      "        self.discriminator_optimiser.step()\n",
      "        self.discriminator_optimiser.step()\n        self.discriminator_optimiser.step()\n",
      FACTOR_VAE_TESTS),
    m("factor-vae: discriminator step every other training step", "methods/factor_vae.py",
      "        self.discriminator_optimiser.step()\n",
      "        if step % 2 == 0:\n            self.discriminator_optimiser.step()\n",
      FACTOR_VAE_TESTS),
    m("factor-vae: TC estimate with the wrong sign", "methods/factor_vae.py",
      "tc = (logits[:, 0] - logits[:, 1]).mean()", "tc = (logits[:, 1] - logits[:, 0]).mean()",
      FACTOR_VAE_TESTS),
    m("factor-vae: TC summed over the batch", "methods/factor_vae.py",
      "tc = (logits[:, 0] - logits[:, 1]).mean()", "tc = (logits[:, 0] - logits[:, 1]).sum()",
      FACTOR_VAE_TESTS),
    m("factor-vae: gamma ignored", "methods/factor_vae.py",
      'rec + kl + self.hparams["gamma"] * tc', "rec + kl + tc", FACTOR_VAE_TESTS),
    m("factor-vae: second batch's means instead of samples", "methods/factor_vae.py",
      "z_other = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)", "z_other = mu",
      FACTOR_VAE_TESTS + ("tests/test_method_losses.py::"
                          "test_factor_vae_second_batch_codes_are_sampled_from_the_posterior",)),
    m("factor-vae: one permutation for every dimension", "methods/factor_vae.py",
      "order = torch.rand(z.shape, device=z.device).argsort(dim=0)",
      "order = torch.rand(z.shape[:1], device=z.device).argsort(dim=0)[:, None].expand(z.shape)",
      ("tests/test_method_losses.py",)),
    # --- beta-tcvae ---------------------------------------------------------------------------
    m("beta-tcvae: 1/N in column 0 (the widely copied bug)", "methods/beta_tcvae.py",
      "own = torch.eye(b, dtype=torch.bool, device=device)",
      "own = torch.zeros(b, b, dtype=torch.bool, device=device); own[:, 0] = True",
      METHOD_TESTS),
    m("beta-tcvae: weighted sampling without 1/B", "methods/beta_tcvae.py",
      "torch.full((b, b), 1.0 / (n * b), device=device)",
      "torch.full((b, b), 1.0 / n, device=device)", METHOD_TESTS),
    m("beta-tcvae: product of marginals summed before logsumexp", "methods/beta_tcvae.py",
      "log_prod_q_zj = torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(1)",
      "log_prod_q_zj = torch.logsumexp(log_w + pairwise.sum(2), dim=1)", METHOD_TESTS),
    m("beta-tcvae: alpha and beta swapped", "methods/beta_tcvae.py",
      'h["alpha"] * mi + h["beta"] * tc', 'h["beta"] * mi + h["alpha"] * tc', METHOD_TESTS),
    # --- dip-vae ------------------------------------------------------------------------------
    m("dip-vae: covariance of uncentred means", "methods/dip_vae.py",
      "centred = mu - mu.mean(dim=0)", "centred = mu", METHOD_TESTS),
    m("dip-vae: covariance divided by B - 1", "methods/dip_vae.py",
      "centred.T @ centred / mu.shape[0]", "centred.T @ centred / (mu.shape[0] - 1)",
      METHOD_TESTS),
    m("dip-vae: diagonal pushed to 0", "methods/dip_vae.py",
      "(diagonal - 1).pow(2).sum()", "diagonal.pow(2).sum()", METHOD_TESTS),
    m("dip-vae-ii: log-variance instead of variance", "methods/dip_vae.py",
      "torch.diag(out.logvar.exp().mean(dim=0))", "torch.diag(out.logvar.mean(dim=0))",
      METHOD_TESTS),
    # --- control-vae, dynamic-vae -------------------------------------------------------------
    m("control-vae: error sign flipped", "methods/control_vae.py",
      "error = setpoint - kl", "error = kl - setpoint", METHOD_TESTS),
    m("control-vae: no anti-windup", "methods/control_vae.py",
      "self.integral.copy_(torch.maximum(self.integral - h[\"ki\"] * error, -proportional))",
      "self.integral.copy_(self.integral - h[\"ki\"] * error)", METHOD_TESTS),
    m("dynamic-vae: average over the full window from the start", "methods/dynamic_vae.py",
      'average = self.kl_window.sum() / (step + 1).clamp(max=h["window"])',
      'average = self.kl_window.sum() / h["window"]', METHOD_TESTS),
    m("dynamic-vae: no floor", "methods/dynamic_vae.py",
      'self.beta.copy_(beta.clamp(min=h["beta_min"]))', "self.beta.copy_(beta)", METHOD_TESTS),
    m("control-vae: set-point steps one iteration late", "methods/control_vae.py",
      'torch.as_tensor(step) + 1, h["c_every"]', 'torch.as_tensor(step), h["c_every"]',
      METHOD_TESTS),
    m("dynamic-vae: previous error never updated", "methods/dynamic_vae.py",
      "        self.previous_error.copy_(error)\n", "", METHOD_TESTS),
    # --- sigma-vae ----------------------------------------------------------------------------
    m("sigma-vae: NLL without log sigma", "methods/sigma_vae.py",
      ".pow(2) + log_sigma\n", ".pow(2)\n", METHOD_TESTS),
    m("sigma-vae: NLL without its 1/2", "methods/sigma_vae.py",
      "per_pixel = (0.5 * ((x - mean)", "per_pixel = (((x - mean)", METHOD_TESTS),
    m("sigma-vae-optimal: sigma from the summed error", "methods/sigma_vae.py",
      "return 0.5 * (x - mean).pow(2).mean().log()", "return 0.5 * (x - mean).pow(2).sum().log()",
      METHOD_TESTS),
    m("sigma-vae: hard clip instead of the soft clip", "methods/sigma_vae.py",
      "return minimum + F.softplus(value - minimum)", "return value.clamp(min=minimum)",
      METHOD_TESTS),
    # --- l-vae family ---------------------------------------------------------------------------
    m("l-vae: no sigma^2 regulariser", "methods/l_vae.py",
      "inv_var[1] * kl + torch.exp(self.log_var).sum()", "inv_var[1] * kl", METHOD_TESTS),
    m("l-vae: regulariser subtracted", "methods/l_vae.py",
      "inv_var[1] * kl + torch.exp(self.log_var).sum()",
      "inv_var[1] * kl - torch.exp(self.log_var).sum()", METHOD_TESTS),
    m("l-vae: terms multiplied by sigma^2", "methods/l_vae.py",
      "inv_var = torch.exp(-self.log_var)", "inv_var = torch.exp(self.log_var)", METHOD_TESTS),
    m("l-vae: beta-hat inverted", "methods/l_vae.py",
      '"beta_hat": var[0] / var[1]', '"beta_hat": var[1] / var[0]', METHOD_TESTS),
    m("l-vae-noreg: regulariser kept", "methods/l_vae_noreg.py",
      '"loss": inv_var[0] * rec + inv_var[1] * kl,',
      '"loss": inv_var[0] * rec + inv_var[1] * kl + torch.exp(self.log_var).sum(),',
      METHOD_TESTS),
    m("l-vae-perdim: one KL for every dimension", "methods/l_vae_perdim.py",
      "(inv_var[1:] * kl_dims).sum()", "inv_var[1:].mean() * kl_dims.sum()", METHOD_TESTS),
    # --- metrics --------------------------------------------------------------------------------
    m("factor-vae score: no global-variance normalisation", "metrics/factor_vae.py",
      "np.argmin(local_variances[:, active] / global_variances[active], axis=1)",
      "np.argmin(local_variances[:, active], axis=1)", METRIC_TESTS),
    m("factor-vae score: no pruning", "metrics/factor_vae.py",
      "active = np.sqrt(global_variances) >= prune_threshold",
      "active = np.sqrt(global_variances) >= 0", METRIC_TESTS),
    m("mig: factors binned too", "metrics/mig.py",
      "m = discrete_mutual_info(histogram_discretize(mus, num_bins), ys)\n"
      "    entropy = discrete_entropy(ys)",
      "ys = histogram_discretize(ys, num_bins)\n"
      "    m = discrete_mutual_info(histogram_discretize(mus, num_bins), ys)\n"
      "    entropy = discrete_entropy(ys)", METRIC_TESTS),
    m("mig: not divided by the factor's entropy", "metrics/mig.py",
      "(sorted_m[0, :] - sorted_m[1, :]) / entropy", "(sorted_m[0, :] - sorted_m[1, :])",
      METRIC_TESTS),
    m("dci: natural-log entropy", "metrics/dci.py",
      "scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])",
      "scipy.stats.entropy(importance.T + 1e-11)", METRIC_TESTS),
    m("dci: completeness in base F", "metrics/dci.py",
      "scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])",
      "scipy.stats.entropy(importance + 1e-11, base=importance.shape[1])", METRIC_TESTS),
    m("dci: disentanglement unweighted", "metrics/dci.py",
      "return float(np.sum(per_code * code_importance))", "return float(np.mean(per_code))",
      METRIC_TESTS),
    m("unsupervised: Gaussian TC without its 1/2", "metrics/unsupervised.py",
      "return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))",
      "return float(np.sum(np.log(np.diag(cov))) - logdet)", METRIC_TESTS),
    m("unsupervised: Wasserstein without the 2 on the trace", "metrics/unsupervised.py",
      "2 * np.trace(cov) - 2 * np.trace(sqrtm)", "np.trace(cov) - 2 * np.trace(sqrtm)",
      METRIC_TESTS),
    m("sap: gap to the smallest score", "metrics/sap.py",
      "sorted_scores[-1, :] - sorted_scores[-2, :]", "sorted_scores[-1, :] - sorted_scores[0, :]",
      METRIC_TESTS),
    m("sap-continuous: correlation not squared", "metrics/sap.py",
      "scores[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])",
      "scores[i, j] = abs(cov[0, 1]) / np.sqrt(cov[0, 0] * cov[1, 1])", METRIC_TESTS),
    m("irs: scores not weighted by deviation", "metrics/irs.py",
      "return np.average(scores, weights=max_deviations)", "return np.mean(scores)",
      METRIC_TESTS),
    m("modularity: information not squared", "metrics/modularity_explicitness.py",
      "squared = np.square(mutual_information)", "squared = mutual_information", METRIC_TESTS),
    m("beta-vae score: signed code differences", "metrics/beta_vae.py",
      "np.mean(np.abs(z[:, 0] - z[:, 1]), axis=1)", "np.mean(z[:, 0] - z[:, 1], axis=1)",
      METRIC_TESTS),
    m("histogram: bins over the whole table, not per row", "metrics/utils.py",
      "edges = np.histogram(target[i, :], num_bins)[1]",
      "edges = np.histogram(target, num_bins)[1]", METRIC_TESTS),
    m("mig: gap to the least informative code", "metrics/mig.py",
      "sorted_m[0, :] - sorted_m[1, :]", "sorted_m[0, :] - sorted_m[-1, :]", METRIC_TESTS),
    m("irs: 0.99th instead of 99th percentile", "metrics/irs.py",
      "q=diff_quantile * 100", "q=diff_quantile", METRIC_TESTS),
    m("unsupervised: own entropy in the mean mutual information", "metrics/unsupervised.py",
      "    np.fill_diagonal(mi, 0)\n", "", METRIC_TESTS),
    m("modularity: divided by F instead of F - 1", "metrics/modularity_explicitness.py",
      "(max_squared * (squared.shape[1] - 1.0))", "(max_squared * squared.shape[1])",
      METRIC_TESTS),
    m("explicitness: test score on the train sample", "metrics/modularity_explicitness.py",
      "roc_test = metrics.roc_auc_score(binarizer.fit_transform(y_test[:, np.newaxis]),\n"
      "                                     classifier.predict_proba(mus_test.T))",
      "roc_test = roc_train", METRIC_TESTS),
    m("factor-vae score: classifier fitted on the eval votes", "metrics/factor_vae.py",
      "    classifier = np.argmax(train_votes, axis=0)\n    columns = np.arange(train_votes.shape[1])\n"
      "    eval_votes = votes(codes, num_eval, batch_size, random_state, global_variances, active)\n",
      "    columns = np.arange(train_votes.shape[1])\n"
      "    eval_votes = votes(codes, num_eval, batch_size, random_state, global_variances, active)\n"
      "    classifier = np.argmax(eval_votes, axis=0)\n", METRIC_TESTS),
    m("beta-vae score: eval accuracy on the train points", "metrics/beta_vae.py",
      '"eval_accuracy": float(model.score(eval_points, eval_labels))',
      '"eval_accuracy": float(train_accuracy)', METRIC_TESTS),
    m("dci: test accuracy on the train sample", "metrics/dci.py",
      "test_accuracy.append(np.mean(test_predicted == ys_test[j, :]))",
      "test_accuracy.append(np.mean(train_predicted == ys_train[j, :]))", METRIC_TESTS),
    m("sap: accuracy on the train sample", "metrics/sap.py",
      "scores[i, j] = np.mean(classifier.predict(mus_test[i, :, np.newaxis]) == ys_test[j, :])",
      "scores[i, j] = np.mean(classifier.predict(mus[i, :, np.newaxis]) == ys[j, :])",
      METRIC_TESTS),
    m("histogram: the last edge kept as a bin", "metrics/utils.py",
      "np.digitize(target[i, :], edges[:-1])", "np.digitize(target[i, :], edges)",
      METRIC_TESTS),
    # --- the engine, the training loop, its session -------------------------------------------
    m("train: non-finite guard on the checkpoint deleted", "bench/train.py",
      "                if member.nonfinite.item():   # never over a good checkpoint; the next row fails\n"
      "                    continue\n", "", TRAIN_TESTS),
    m("train: only the logging step's loss checked", "bench/engine.py",
      'self.nonfinite |= ~torch.isfinite(terms["loss"].detach())',
      'self.nonfinite = ~torch.isfinite(terms["loss"].detach())', TRAIN_TESTS),
    m("train: history rows past the checkpoint taken for damage", "bench/store.py",
      '        return [row for row in rows if row["step"] <= step]\n',
      '        if rows and rows[-1]["step"] > step:\n'
      '            raise RunDamaged(f"{path} row {len(rows)} is after {authority}")\n'
      '        return rows\n', TRAIN_TESTS + ("tests/test_store_faults.py",)),
    m("train: history not cut back to the checkpoint", "bench/store.py",
      '        return [row for row in rows if row["step"] <= step]\n', "        return rows\n",
      TRAIN_TESTS + ("tests/test_store_faults.py",)),
    m("train: resume ignores the checkpoint", "bench/session.py",
      "        if self.state.checkpoint:\n            self._resume(",
      "        if False:\n            self._resume(", TRAIN_TESTS),
    m("train: checkpoints on logging steps", "bench/train.py",
      "if n % spec.checkpoint_every == 0 or n == spec.steps:",
      "if n % spec.log_every == 0 or n == spec.steps:", TRAIN_TESTS),
    m("train: torch RNG not restored on resume", "bench/engine.py",
      '        self.rng["cpu"] = state["rng_cpu"].clone()\n', "", TRAIN_TESTS),
    m("train: failed run's history not written", "bench/session.py",
      "            self.write_history(self.history)\n            return reason",
      "            return reason", TRAIN_TESTS),
    # --- data, evaluation -----------------------------------------------------------------------
    m("to_float: pixel_max ignored", "bench/data/base.py",
      "return images.to(torch.float32).mul_(1.0 / self.pixel_max)",
      "return images.to(torch.float32)",
      ("tests/test_data_shapes3d.py", "tests/test_evaluate.py")),
    m("to_float: RGB divided by 256", "bench/data/base.py",
      "mul_(1.0 / self.pixel_max)", "mul_(1.0 / (self.pixel_max + 1))",
      ("tests/test_data_shapes3d.py", "tests/test_evaluate.py")),
    m("evaluate_run: likelihood of config.json ignored", "bench/evaluate.py",
      'likelihood = store.read_config().get("reconstruction", "bernoulli")',
      'likelihood = "bernoulli"', ("tests/test_evaluate.py",)),
    m("evaluate: representation is the log-variance", "bench/evaluate.py",
      "codes.append(model.encode(x)[0].float())", "codes.append(model.encode(x)[1].float())",
      ("tests/test_evaluate.py",)),
    # --- seed groups and the runner ---------------------------------------------------------
    m("engine: the step count frozen", "bench/engine.py",
      "        self.step_count += 1\n", "", ("tests/test_train.py",)),
    m("engine: the step count not restored on resume", "bench/engine.py",
      "        self.step_count.fill_(step)\n", "", ("tests/test_train.py",)),
    m("group: members draw their noise from one stream", "bench/engine.py",
      "                with self.member_rng(k):\n                    noise.append(torch.randn_like(mu[k]))",
      "                noise.append(torch.randn_like(mu[k]))", GROUP_TESTS),
    m("group: each member's loss under another member's RNG", "bench/engine.py",
      "            with self.member_rng(k):\n                terms.append(m.method.loss(",
      "            with self.member_rng(0):\n                terms.append(m.method.loss(",
      GROUP_TESTS),
    m("runner: a group's ablation runs without their records", "bench/worker.py",
      "member_extra=[{**profile, **r} for r in records]", "member_extra=None",
      RUNNER_GROUP_TESTS),
    m("runner: ablation records in reverse order", "bench/worker.py",
      "train_and_evaluate(specs, records, data", "train_and_evaluate(specs, records[::-1], data",
      RUNNER_GROUP_TESTS),
    m("precision: bf16 on a CPU without channels-last", "bench/precision.py",
      '    if precision == "bf16" and torch.device(device).type == "cpu":\n        return torch.channels_last',
      '    if False:\n        return torch.channels_last', ("tests/test_precision.py",)),
    m("precision: the network channels-last, its batches not", "bench/engine.py",
      "        return x.contiguous(memory_format=self.layout)", "        return x",
      ("tests/test_precision.py",)),
    m("runner: auto groups without the probe", "bench/estimate.py",
      "    return size if single is not None and grouped is not None and grouped < single else 1",
      "    return size", RUNNER_GROUP_TESTS),
    # --- the scoring API (metrics.score / metrics.evaluate) ---------------------------------
    m("scoring: train and test rows overlap", "metrics/utils.py",
      "        self.taken = rows.stop\n", "", ("tests/test_scoring.py",)),
    m("scoring: factor values accepted as indices", "metrics/utils.py",
      "        if not whole:", "        if False:", ("tests/test_scoring.py",)),
    m("scoring: codes that require grad not detached", "metrics/utils.py",
      "values = values.detach().float().cpu().numpy()", "values = values.float().cpu().numpy()",
      ("tests/test_scoring.py",)),
    # --- UDR ---------------------------------------------------------------------------------
    m("udr: a model's score from its row, not its column", "metrics/udr.py",
      "np.delete(pairwise[:, i, 0], i)", "np.delete(pairwise[i, :, 0], i)", UDR_TESTS),
    m("udr: latents zeroed at the filter threshold, not dlib's 0.01", "metrics/udr.py",
      "(kl > ZEROING_THRESHOLD)", "(kl > kl_filter_threshold)", UDR_TESTS),
    m("udr: NaN-ignoring max and sum", "metrics/udr.py",
      "matrix.max(axis=0) ** 2 / matrix.sum(axis=0)",
      "np.nanmax(matrix, axis=0) ** 2 / np.nansum(matrix, axis=0)", UDR_TESTS),
    m("udr: codes not standardised", "metrics/udr.py",
      "return StandardScaler().fit_transform(z)", "return z", UDR_TESTS),
    m("udr codes: stale codes taken as current", "bench/udr_setting.py",
      "    return (codes.trained_step, codes.checkpoint, inputs) == (",
      "    return True or (codes.trained_step, codes.checkpoint, inputs) == (",
      ("tests/test_udr_setting.py",)),
]


def repository_files(root: Path) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=root, check=True, capture_output=True, text=True).stdout
    return [p for p in listed.split("\0") if p and (root / p).is_file()]


def copy_repository(root: Path, target: Path) -> None:
    for relative in repository_files(root):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target / relative)


def run_tests(copy: Path, tests, env, timeout) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout' | 'pytest exit N: ...', seconds, the failing test)."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rfE",
                               "-p", "no:cacheprovider", *tests], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    if done.returncode == 0:
        return "passed", seconds, ""
    if done.returncode in (1, 2):           # a test failed, or collection (import) failed
        failing = [line.split()[1] for line in done.stdout.splitlines()
                   if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1]
        return "failed", seconds, failing[0] if failing else ""
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return f"pytest exit {done.returncode}: {' | '.join(tail)}", seconds, ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("words", nargs="*", help="run the mutations whose name contains a word")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--without-shared", action="store_true",
                        help="run the tests as if ../shared were absent")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds per mutation's tests (a timeout counts as killed)")
    args = parser.parse_args(argv)
    chosen = [mu for mu in MUTATIONS if not args.words or any(w in mu.name for w in args.words)]
    if not chosen:
        parser.error(f"no mutation name contains {', '.join(args.words)}; see --list")
    if args.list:
        for mu in chosen:
            print(f"{mu.name:<62} {mu.path}")
        return 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if args.without_shared:
        env["DISENTBENCH_SHARED"] = "/nonexistent"
    else:                                   # the copy has no ../shared beside it
        env.setdefault("DISENTBENCH_SHARED", str(ROOT.parent / "shared"))
    with tempfile.TemporaryDirectory(prefix="disentbench-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repository(ROOT, copy)
        used = subprocess.run([sys.executable, "-c", "import disentbench.methods as m; "
                               "print(m.__file__)"], cwd=copy, env=env, capture_output=True,
                              text=True).stdout.strip()
        if not used.startswith(str(copy)):
            print(f"the copy imports disentbench from {used!r}, not from the copy", file=sys.stderr)
            return 2
        all_tests = list(dict.fromkeys(t for mu in chosen for t in mu.tests))
        outcome, seconds, _ = run_tests(copy, all_tests, env, args.timeout * 3)
        if outcome != "passed":
            print(f"the named tests do not pass on the unchanged code ({outcome}); run "
                  f"python -m pytest {' '.join(all_tests)}", file=sys.stderr)
            return 2
        print(f"baseline: the named tests pass on the unchanged code ({seconds:.0f} s)")
        results = {}
        for mu in chosen:
            path = copy / mu.path
            original = path.read_text()
            if mu.old not in original:
                results[mu.name] = "not applicable (code changed)"
                print(f"{results[mu.name]:<32} {mu.name}", flush=True)
                continue
            path.write_text(original.replace(mu.old, mu.new, 1))
            try:
                outcome, seconds, failing = run_tests(copy, mu.tests, env, args.timeout)
            finally:
                path.write_text(original)
            results[mu.name] = {"failed": "killed", "timeout": "killed (timeout)",
                                "passed": "SURVIVED"}.get(outcome, f"error ({outcome})")
            by = f", by {failing}" if failing else ""
            print(f"{results[mu.name]:<32} {mu.name}  ({seconds:.0f} s{by})", flush=True)
    killed = [n for n, r in results.items() if r.startswith("killed")]
    survived = [n for n, r in results.items() if r == "SURVIVED"]
    applicable = [n for n, r in results.items() if not r.startswith("not applicable")]
    rate = len(killed) / len(applicable) if applicable else float("nan")
    print(f"\nkilled {len(killed)} of {len(applicable)} applicable mutations: kill rate "
          f"{rate:.0%}; {len(results) - len(applicable)} not applicable")
    for name in survived:
        print(f"  survived: {name}")
    errors = [n for n in applicable if n not in killed and n not in survived]
    for name in errors:
        print(f"  {results[name]}: {name}")
    return 1 if survived or errors else 0


if __name__ == "__main__":
    sys.exit(main())
