"""Synthetic run folders with known numbers, written as the store writes them (config.json,
status.json, history.csv, model.pt and the metrics.json that scored it, traversal images), for
the report's tests and timing.

    python -m tests.report_runs OUT [--seeds 10]   # a 120-run results folder, then time build()
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from disentbench.bench.io import write_json
from disentbench.bench.session import write_checkpoint
from disentbench.bench.store import scored


def png(path: Path, shade: int = 128, size=(40, 24)) -> None:
    Image.fromarray(np.full((size[1], size[0]), shade, dtype=np.uint8)).save(path)


def fake_run(out, dataset, label, seed, *, method=None, status="done", values=None,
             history=None, reason="", warnings=(), config=None, images=True, params=None):
    """A run folder; `values` = {"metric/key": float} goes into metrics.json."""
    run = Path(out) / "runs" / dataset / label / f"seed{seed}"
    run.mkdir(parents=True)
    method = method or label.split("-beta=")[0]
    frame = pd.DataFrame(history or {"step": [10, 20], "loss": [5.0, 3.0 + seed],
                                     "recon": [4.0, 2.0], "kl": [1.0, 1.0 + seed]})
    frame.to_csv(run / "history.csv", index=False)
    last = int(frame["step"].iloc[-1])        # as the store writes it: status agrees with history
    status_json = {"status": status, "step": last, "steps": last, "seconds": 1.5 + seed,
                   "history_rows": len(frame)}
    if reason:
        status_json["reason"] = reason
    if warnings:
        status_json["warnings"] = list(warnings)
    write_json(run / "status.json", status_json)
    write_json(run / "config.json", {
        "spec": {"method": method, "dataset": dataset, "seed": seed, "steps": 20,
                 "params": params or {}},
        "device": "cpu", "reconstruction": "gaussian" if method == "sigma-vae" else "bernoulli",
        **(config or {})})
    if values:
        nested = {}
        for key, value in values.items():
            name, result = key.split("/")
            nested.setdefault(name, {"values": {}})["values"][result] = value
        # as evaluation writes it: stamped with the checkpoint it scored (a tiny model.pt)
        checkpoint = {"step": last, "model": {"weight": torch.full((2,), float(seed))}}
        written = write_checkpoint(run, checkpoint)
        write_json(run / "metrics.json", {"metrics": nested, "seed": 0, "size": "quick",
                                          **scored(written)})
    if images and status == "done":
        png(run / "traversals.png", 60 + 10 * seed)
        png(run / "reconstructions.png", 200)
        write_json(run / "kl_per_dim.json", {"kl": [0.1 * seed, 2.0, 0.5, 0.0]})
    return run


LABELS = ("vae", "beta-vae", "beta-vae-beta=8", "factor-vae", "control-vae", "sigma-vae",
          "l-vae", "beta-vae-fixed-beta-hat", "l-vae-noreg", "dynamic-vae", "beta-tcvae",
          "dip-vae-i")


def synthetic_results(out, datasets=("dsprites", "shapes3d"), labels=LABELS, seeds=5,
                      steps=40) -> int:
    """Random-but-fixed metric values and histories for every dataset × label × seed; the
    ablation runs point at the l-vae run of their seed. Returns the number of runs."""
    rng = np.random.RandomState(0)
    count = 0
    for dataset in datasets:
        for label in labels:
            for seed in range(seeds):
                method = {"beta-vae-fixed-beta-hat": "beta-vae",
                          "beta-vae-beta=8": "beta-vae"}.get(label, label)
                step = np.arange(1, steps + 1) * 25
                history = {"step": step, "loss": 100 / np.sqrt(step) + rng.rand(steps),
                           "recon": 80 / np.sqrt(step), "kl": 5 + rng.rand(steps)}
                if label.startswith("l-vae"):
                    history |= {"sigma0": 1 + step / step[-1], "sigma1": 1 + 0.5 * rng.rand(steps),
                                "beta_hat": 0.5 + step / step[-1] + rng.rand(steps)}
                if label in ("control-vae", "dynamic-vae"):
                    history |= {"beta": 1 + rng.rand(steps), "C": np.linspace(0, 10, steps)}
                config = None
                if label == "beta-vae-fixed-beta-hat":
                    config = {"ablation": {"of": "l-vae", "beta_hat": 1.2 + 0.1 * seed,
                                           "source_run": f"runs/{dataset}/l-vae/seed{seed}"}}
                values = {"mig/discrete_mig": rng.rand(), "sap/SAP_score": rng.rand() / 5,
                          "dci-fast/disentanglement": rng.rand(),
                          "unsupervised/gaussian_total_correlation": 2 * rng.rand(),
                          "reconstruction/negative_elbo": 100 + 20 * rng.rand(),
                          "reconstruction/squared_error": 30 + 5 * rng.rand()}
                fake_run(out, dataset, label, seed, method=method, values=values,
                         history={k: list(v) for k, v in history.items()}, config=config,
                         params={"beta": 8.0} if label == "beta-vae-beta=8" else None)
                count += 1
    return count


def main(argv=None) -> None:
    from disentbench.bench import report
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args(argv)
    n = synthetic_results(args.out, seeds=args.seeds)
    start, cpu = time.perf_counter(), time.process_time()
    files = report.build(args.out)
    print(f"{n} runs: report.build wrote {len(files)} files in {time.perf_counter() - start:.1f} s "
          f"({time.process_time() - cpu:.1f} s CPU)")


if __name__ == "__main__":
    main()
