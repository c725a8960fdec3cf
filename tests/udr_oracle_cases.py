"""The UDR oracle (../shared/udr_oracle/reference_values.json): its synthetic models rebuilt from
their stored formula (`model_formula`), the edge cases' variants of them, and its data sets."""
from __future__ import annotations

import copy
import math

import numpy as np

from tests.oracle_cases import FixedRowsData, SyntheticData, load, splitmix64, value

NONLINEARITIES = {"identity": lambda u: u, "tanh2": lambda u: np.tanh(2 * u),
                  "cube": lambda u: u ** 3}


def oracle(shared_dir) -> dict:
    return load(str(shared_dir / "udr_oracle" / "reference_values.json"))


def model(factor_sizes, spec: dict):
    """observations (n, F) -> (mean (n, D), logvar (n, D)) of one oracle model."""
    sizes = np.array(factor_sizes, dtype=np.float64)
    center, scale = (sizes - 1) / 2, np.sqrt((sizes ** 2 - 1) / 12)
    strides = np.array([math.prod(factor_sizes[i + 1:]) for i in range(len(factor_sizes))])
    A = np.array(spec["A"], dtype=np.float64)
    dim = A.shape[0]
    g = [NONLINEARITIES[name] for name in spec["nonlinearity"]]
    sigma, lv = np.array(spec["mean_noise_sigma"]), np.array(spec["logvar_const"])
    tau = np.array(spec["logvar_noise_tau"])
    constant = spec.get("constant_mean", {})          # edge-case variants: dim -> fixed value

    def represent(x):
        x = np.asarray(x, dtype=np.float64)
        flat = (np.rint(x).astype(np.int64) @ strides).astype(np.uint64)
        k = np.arange(2 * dim, dtype=np.uint64)
        with np.errstate(over="ignore"):
            bits = splitmix64(np.uint64(1024) * flat[:, None]
                              + np.uint64(32 * spec["noise_stream"]) + k)
        eps = np.sqrt(3) * (2 * ((bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53) - 1)
        u = ((x - center) / scale) @ A.T
        mean = np.stack([g[i](u[:, i]) for i in range(dim)], 1) + sigma * eps[:, :dim]
        for i, c in constant.items():
            mean[:, int(i)] = c
        return mean, lv + tau * eps[:, dim:]
    return represent


VARIANT_OF = {"all_collapsed": "aligned_a", "aligned_a_const5": "aligned_a",
              "aligned_a_kl3_0.005": "aligned_a", "aligned_b_first5": "aligned_b"}


def variant(models: dict, name: str) -> dict:
    """The edge cases' models that are not in the zoo, built as their `words` describe them."""
    if name in models:
        return models[name]
    base = copy.deepcopy(models[VARIANT_OF[name]])
    collapsed = dict(mean_noise_sigma=0.02, logvar_const=0.0, logvar_noise_tau=0.02)
    if name == "all_collapsed":                  # every latent as a collapsed one: KL ~ 3e-4
        base["A"] = np.zeros_like(np.array(base["A"])).tolist()
        for key, v in collapsed.items():
            base[key] = [v] * base["latent_dim"]
    elif name == "aligned_a_const5":             # latent 5 fixed at 1.0 with logvar 0: KL 0.5
        base["constant_mean"] = {5: 1.0}
        base["logvar_const"][5], base["logvar_noise_tau"][5] = 0.0, 0.0
    elif name == "aligned_a_kl3_0.005":          # collapsed latent 3 with KL ~ 0.005
        base["logvar_const"][3], base["logvar_noise_tau"][3] = 0.14, 0.0
    elif name == "aligned_b_first5":             # one latent fewer
        base["A"], base["latent_dim"] = base["A"][:5], 5
        for key in ("nonlinearity", *collapsed):
            base[key] = base[key][:5]
    return base


def models_of(reference: dict, dataset: str, names) -> list:
    dataset = reference["datasets"][dataset]
    specs = {m["name"]: m for m in dataset["models"]}
    return [model(dataset["factor_sizes"], variant(specs, name)) for name in names]


def data_of(reference: dict, dataset: str, mode: str = "sampled"):
    sizes = reference["datasets"][dataset]["factor_sizes"]
    if mode == "fixed":
        return FixedRowsData(sizes, reference["fixed_inputs"]["rows"][dataset])
    return SyntheticData(sizes)


def values(nested) -> np.ndarray:
    """A stored nested list as float64 ('NaN' strings included)."""
    return np.vectorize(value, otypes=[np.float64])(np.array(nested, dtype=object))
