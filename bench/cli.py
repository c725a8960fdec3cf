"""Command line: `python run_bench.py --methods all --seeds 10` (see README.md)."""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from disentbench import methods
from disentbench.bench import data as datasets
from disentbench.bench import evaluate as evaluation
from disentbench.bench import report
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunConflict, is_finished
from disentbench.bench.train import Trainer, pick_device, train

DEFAULT_DATASET = "dsprites-procedural"
# Chosen so that the README's first command (10 methods x 10 seeds) trains within its
# 20-minute budget on a 2-core CPU; a GPU run should ask for more (e.g. --steps 300000).
DEFAULT_STEPS = 100


class UsageError(Exception):
    """Bad command-line input; the message names the problem and the fix."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_bench.py",
        description="Train and evaluate VAE-family methods on ground-truth datasets.")
    p.add_argument("--methods", default="all",
                   help="comma-separated method names, or 'all' (default: all)")
    p.add_argument("--datasets", default=DEFAULT_DATASET,
                   help=f"comma-separated dataset names (default: {DEFAULT_DATASET})")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds: runs seeds 0..N-1 (default 1)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"training steps per run (default {DEFAULT_STEPS})")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="set a method parameter, e.g. --param beta-vae.beta=8 (repeatable)")
    p.add_argument("--log-every", type=int, default=25, help="history row every N steps (default 25)")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--metrics", default="auto",
                   help="metrics evaluated after each run: 'auto' (all on a GPU; on a CPU all "
                        "but beta-vae, factor-vae, dci and dci-fast), 'all', 'none', or "
                        "comma-separated names, which may include auto (auto,dci-fast)")
    p.add_argument("--eval-size", default="auto", choices=["auto", "default", "quick"],
                   help="metric sample sizes: disentanglement_lib's study defaults, or the "
                        "smaller quick set ('auto': default on a GPU, quick on a CPU)")
    p.add_argument("--eval-seed", type=int, default=0,
                   help="seed of the metrics' sampling (default 0, as disentanglement_lib)")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument("--data-dir", default=None,
                   help="folder of dataset files and caches (default: $DISENTBENCH_DATA or ~/.cache/disentbench)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if present, else cpu)")
    return p


def _names(text: str, valid: list[str], everything: list[str], kind: str) -> list[str]:
    names = everything if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise UsageError(f"unknown {kind} {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"valid names: {', '.join(valid)}" + (", or 'all'" if kind != "dataset" else ""))
    return list(dict.fromkeys(names))


def _params(items: list[str], chosen: list[str]) -> dict[str, dict]:
    params: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot:
            raise UsageError(f"--param {item!r}: expected METHOD.NAME=VALUE, e.g. beta-vae.beta=8")
        if method not in methods.available():
            raise UsageError(f"--param {item!r}: unknown method {method!r}; valid names: "
                             f"{', '.join(methods.available())}")
        if method not in chosen:
            raise UsageError(f"--param {item!r}: method {method!r} is not among --methods")
        try:
            params.setdefault(method, {})[name] = methods.parse_value(method, name, value)
        except ValueError as err:
            raise UsageError(f"--param {item!r}: {err}") from None
    return params


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write there ({err.strerror}); "
                         f"choose a writable folder") from None


def metric_names(text: str, device) -> list[str]:
    """`auto` (the device's default set), `none`, `all`, or names, where `auto` may be one of
    them (`auto,dci-fast`)."""
    valid = evaluation.valid_names()
    if text == "none":
        return []
    names = [n.strip() for n in text.split(",")]
    if "auto" not in names:
        return _names(text, valid, valid, "metric")
    rest = [n for n in names if n and n != "auto"]
    extra = _names(",".join(rest), valid, valid, "metric") if rest else []
    return list(dict.fromkeys(evaluation.default_names(device) + extra))


def plan(args) -> list[RunSpec]:
    """Validate the arguments and expand them into run specs (raises UsageError)."""
    for name in ("seeds", "steps", "batch_size", "latent_dim", "log_every", "checkpoint_every"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {getattr(args, name)}")
    if args.eval_seed < 0:
        raise UsageError(f"--eval-seed must be non-negative, got {args.eval_seed}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    chosen = _names(args.methods, methods.available(), methods.all_methods(), "method")
    data_names = _names(args.datasets, datasets.available(), datasets.available(), "dataset")
    params = _params(args.param, chosen)
    return [RunSpec(method=m, dataset=d, seed=s, steps=args.steps, batch_size=args.batch_size,
                    latent_dim=args.latent_dim, lr=args.lr, params=tuple(params.get(m, {}).items()),
                    log_every=args.log_every, checkpoint_every=args.checkpoint_every)
            for d in data_names for m in chosen for s in range(args.seeds)]


def _probe_seconds_per_step(spec: RunSpec, data, device, steps: int = 3) -> float:
    """Median time of a few training steps of `spec` (after a warm-up step)."""
    trainer = Trainer(spec, data, device)
    trainer.step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        trainer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _eta_seconds(specs: list[RunSpec], data, device) -> float:
    """Training time of `specs` (one dataset) from a short probe of each distinct method."""
    per_step = {}
    for spec in specs:
        if spec.label not in per_step:
            per_step[spec.label] = _probe_seconds_per_step(spec, data, device)
    return sum(per_step[s.label] * s.steps for s in specs)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        specs = plan(args)
        device = pick_device(args.device)
        names = metric_names(args.metrics, device)
        out = Path(args.out)
        _check_writable(out)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = args.eval_size if args.eval_size != "auto" else (
        "quick" if device.type == "cpu" else "default")
    total_steps = sum(s.steps for s in specs)
    print(f"disentbench: {len(specs)} runs ({len({s.method for s in specs})} methods x "
          f"{len({s.dataset for s in specs})} datasets x {args.seeds} seeds), {args.steps} steps "
          f"each, device {device}, results in {out}/")
    print(f"metrics ({size} sizes): {', '.join(names) or 'none'}")
    results = []
    with tqdm(total=total_steps, unit="step", desc="training", dynamic_ncols=True) as bar:
        for name in dict.fromkeys(s.dataset for s in specs):
            try:
                data = datasets.load(name, data_dir=args.data_dir).to(device)
            except datasets.DatasetError as err:
                bar.close()
                print(f"error: {err}", file=sys.stderr)
                return 2
            todo = [s for s in specs if s.dataset == name]
            unfinished = [s for s in todo if not is_finished(s, out)]
            if unfinished:
                eta = _eta_seconds(unfinished, data, device)
                bar.write(f"{name}: {len(unfinished)} runs to train, ETA {eta / 60:.1f} min "
                          f"on {device} (measured per method; evaluation comes on top)")
            for spec in todo:
                bar.set_postfix_str(f"{spec.dataset}/{spec.label}/seed{spec.seed}")
                start = bar.n
                try:
                    result = train(spec, out, data=data, device=device, progress=bar.update)
                except RunConflict as err:
                    bar.close()
                    print(f"error: {err}", file=sys.stderr)
                    return 2
                bar.update(start + spec.steps - bar.n)     # skipped, resumed or failed runs
                results.append(result)
                if result.status == "failed":
                    bar.write(f"run failed: {result.run_dir}: {result.reason}")
                elif names:
                    bar.set_postfix_str(f"evaluating {spec.dataset}/{spec.label}/seed{spec.seed}")
                    try:
                        evaluation.evaluate_run(result.run_dir, data, names, size=size,
                                                seed=args.eval_seed, device=device)
                    except Exception as err:             # keep the grid going; say why
                        bar.write(f"evaluation failed: {result.run_dir}: "
                                  f"{type(err).__name__}: {err}")
    _report(results, out)
    files = report.build(out)
    if files:
        print(f"tables: {out / 'tables'}/, plots: {out / 'plots'}/, index: {out / 'index.html'}")
    return 0


def _report(results, out: Path) -> None:
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    print(f"{done} runs trained, {skipped} already done (skipped), {len(failed)} failed")
    for r in failed:
        print(f"  failed: {r.run_dir}: {r.reason}")
    print(f"runs: {out / 'runs'}/<dataset>/<method>/seed<k>/ "
          f"(config.json, history.csv, model.pt, status.json, metrics.json)")
