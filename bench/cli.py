"""Command line: `python run_bench.py --methods all --seeds 10` (see README.md).

Parses the flags (and `--config grid.toml`), checks them, plans the grid (bench/plan.py), prints
the plan with an ETA (bench/estimate.py) and hands it to the backend (bench/backend.py);
`python run_bench.py report [--results DIR]` rebuilds the tables and plots.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import tomllib
import uuid
from pathlib import Path

import joblib
import torch

from disentbench import methods
from disentbench.bench import data as datasets
from disentbench.bench import evaluate as evaluation
from disentbench.bench import backend, estimate, grid, paths, report, worker
from disentbench.bench import plan as planning
from disentbench.bench import precision as precisions
from disentbench.bench.profiles import FACTORS, PROFILES, default_profile

DEFAULT_DATASET = "dsprites-procedural"
# Settings a profile gives when no flag (or --config key) does.
PROFILE_KEYS = ("steps", "batch_size", "latent_dim", "lr", "log_every", "checkpoint_every",
                "eval_size", "metrics")


class UsageError(Exception):
    """Bad command-line input; the message names the problem and the fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="run_bench.py",
        description="Train and evaluate VAE-family methods on ground-truth datasets "
                    "(`run_bench.py report [--results DIR]` rebuilds tables and plots).")
    p.add_argument("--config", default=None, metavar="GRID.toml",
                   help="read any of these settings from a TOML file (keys as the flags, with "
                        "_ or -; params as [params.METHOD] tables); flags override it")
    p.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="run settings: smoke (seconds per run), quick (the CPU default), paper "
                        "(300k steps, the GPU default); explicit flags override it")
    p.add_argument("--methods", default="all",
                   help="comma-separated method names; 'all' is the paper comparison and "
                        "combines with names (all,l-vae-perdim) (default: all)")
    p.add_argument("--datasets", default=DEFAULT_DATASET,
                   help=f"comma-separated dataset names (default: {DEFAULT_DATASET})")
    p.add_argument("--seeds", type=int, default=1, help=f"number of seeds: runs seeds 0..N-1 (default 1, at most {grid.MAX_SEEDS})")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (profile)")
    p.add_argument("--batch-size", type=int, default=None, help="(profile: 64)")
    p.add_argument("--latent-dim", type=int, default=None,
                   help="(profile: 10; paper: the dataset's number of factors)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (profile: 1e-4)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="set a method parameter, e.g. --param beta-vae.beta=8 (repeatable)")
    p.add_argument("--log-every", type=int, default=None, help="history row every N steps (profile)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="(profile)")
    p.add_argument("--metrics", default=None,
                   help="metrics evaluated after each run: 'auto' (on a GPU all but the "
                        "reference dci, which dci-fast replaces; on a CPU all but beta-vae, "
                        "factor-vae, dci and dci-fast), 'all', 'none', or comma-separated names, "
                        "which may include auto or all (auto,dci-fast) (profile: auto)")
    p.add_argument("--eval-size", default=None, choices=["auto", "default", "quick"],
                   help="metric sample sizes: disentanglement_lib's study defaults, or the "
                        "smaller quick set ('auto': default on a GPU, quick on a CPU) (profile)")
    p.add_argument("--eval-seed", type=int, default=0,
                   help="seed of the metrics' sampling (default 0, as disentanglement_lib)")
    p.add_argument("--ablation", default="fixed-beta-hat", choices=["fixed-beta-hat", "none"],
                   help="with l-vae in the grid, also train beta-vae with beta fixed to each "
                        "L-VAE run's final beta-hat (default), or not")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument("--data-dir", default=None,
                   help="folder of dataset files and caches (default: $DISENTBENCH_DATA or ~/.cache/disentbench)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if present, else cpu)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: the number of cores on a CPU, "
                        f"{backend.GPU_JOBS} sharing a GPU)")
    p.add_argument("--backend", default="local", choices=["local", "dask"],
                   help="local processes (joblib loky), or a Dask cluster (default: local)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="with --backend dask: an existing scheduler (default: a local cluster "
                        "of --jobs single-threaded worker processes)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only shard I of N (1 <= I <= N) of the grid: its seed groups are "
                        "dealt to the shards in turn, the N shards together are the grid, e.g. "
                        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT (docs/cluster.md)")
    p.add_argument("--retry-failed", action="store_true", help="train runs that failed before again")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the optimiser/RNG resume state of finished runs")
    p.add_argument("--repair", action="store_true",
                   help="move damaged run folders aside and train them again")
    p.add_argument("--precision", default="auto", choices=precisions.CHOICES,
                   help="training precision: bf16 autocast of the network's forward pass (losses "
                        "and σ's in fp32) or fp32; auto = bf16 on GPUs and CPUs with native bf16, "
                        "fp32 elsewhere (default: auto; recorded in config.json)")
    p.add_argument("--group-seeds", default="auto", metavar="auto|off|N",
                   help="train the seeds of a method and dataset as stacked seed groups of N "
                        "(one model, each member its own run folder); auto = groups of up to "
                        f"{estimate.AUTO_SIZE} on a GPU where a timed probe shows they pay, none on a CPU "
                        "(where they do not); off = one run at a time (default: auto)")
    return p


def config_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The settings of the TOML file `path` as command-line arguments."""
    try:
        table = tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise UsageError(f"--config {path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {err.object[err.start]:#04x} at "
                         f"offset {err.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--config {path}: not valid TOML ({err})") from None
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config", "param")}
    argv = []
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest == "params":
            argv += _config_params(path, value)
            continue
        if dest not in actions:
            raise UsageError(f"--config {path}: unknown key {key!r}; valid keys: "
                             f"{', '.join(sorted([*actions, 'params']))}")
        flag = actions[dest].option_strings[0]
        if isinstance(actions[dest], argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise UsageError(f"--config {path}: {key} must be true or false, got {value!r}")
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        elif isinstance(value, (dict, bool)):
            raise UsageError(f"--config {path}: {key} must be a number or a string, got {value!r}")
        else:
            argv += [flag, str(value)]
    return argv


def _config_params(path: str, value) -> list[str]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UsageError(f"--config {path}: params must be tables, e.g. [params.beta-vae] beta = 8")
    return [a for method, items in value.items() for name, v in items.items()
            for a in ("--param", f"{method}.{name}={str(v).lower() if isinstance(v, bool) else v}")]


def parse(argv: list[str]) -> argparse.Namespace:
    """Flags over `--config` over defaults (the profile fills what neither sets, later)."""
    parser = build_parser()
    args = _parse_args(parser, argv)
    if args.config:
        from_file = config_argv(args.config, parser)
        try:
            parser.parse_args(from_file)
        except UsageError as err:
            raise UsageError(f"--config {args.config}: {err}") from None
        args = _parse_args(parser, from_file + argv)
    return args


def _parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse's parse, with a hint where a value starting with '-' was taken for a flag
    (`--lr -1e-3`: argparse wants `--lr=-1e-3`)."""
    try:
        return parser.parse_args(argv)
    except UsageError as err:
        if "expected one argument" in str(err):
            for flag, value in zip(argv, argv[1:]):
                if flag.startswith("--") and flag in str(err) and value.startswith("-"):
                    raise UsageError(f"{err}; a value that starts with '-' must be attached "
                                     f"with '=': {flag}={value}") from None
        raise


def _names(text: str, valid: list[str], everything: list[str], kind: str,
           extra: str = "") -> list[str]:
    """Comma-separated names; 'all' stands for `everything` and combines with names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid and n != "all"]
    if unknown or not names:
        raise UsageError(f"unknown {kind} {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"valid names: {', '.join(valid)}{extra}")
    expanded = [m for n in names for m in (everything if n == "all" else [n])]
    return list(dict.fromkeys(expanded))


def method_names(text: str) -> list[str]:
    return _names(text, methods.available(), methods.all_methods(), "method", ", or 'all'")


def metric_names(text: str, device) -> list[str]:
    """`none`, or names among which `auto` (the device's default set) and `all` may be."""
    valid = evaluation.valid_names()
    if text.strip() == "none":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    if "none" in names:
        raise UsageError(f"--metrics {text}: 'none' means no metric and cannot be combined with "
                         f"other names; give --metrics none alone, or only the metrics to compute")
    auto = evaluation.default_names(device) if "auto" in names else []
    rest = ",".join(n for n in names if n != "auto")
    chosen = _names(rest, valid, valid, "metric", ", or 'auto', 'all', 'none'") if rest else []
    return list(dict.fromkeys(auto + chosen))


def parse_params(items: list[str], chosen: list[str]) -> dict[str, dict]:
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


def pick_device(name: str | None, remote: bool = False) -> torch.device:
    """`name` checked against this machine's devices (only parsed for `remote` workers), else
    CUDA when present, else CPU."""
    here = (["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            + (["mps"] if torch.backends.mps.is_available() else []))
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device name; devices here: "
                         f"{', '.join(here)}") from None
    index = 0 if device.index is None else device.index
    if (device.type == "cpu" or (remote and device.type in ("cuda", "mps")) or (device.type == "cuda" and index < torch.cuda.device_count())
            or (device.type == "mps" and "mps" in here)):
        return device
    raise UsageError(f"--device {name}: no such device on this machine"
                     f"{' (CUDA is not available)' if device.type == 'cuda' and not torch.cuda.is_available() else ''}; "
                     f"devices here: {', '.join(here)}")


def _check_writable(out: str) -> Path:
    if not out.strip():
        raise UsageError("--out is empty; name a results folder, e.g. --out results")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; name a results folder (it is "
                         f"created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write there ({err.strerror}); "
                         f"choose a writable folder") from None
    return path


def settings(args, device: torch.device) -> tuple[str, dict]:
    """The profile's name and the run settings: flags (and --config) over the profile."""
    profile = args.profile or default_profile(device)
    chosen = {k: getattr(args, k) if getattr(args, k) is not None else PROFILES[profile][k]
              for k in PROFILE_KEYS}
    for name in ("steps", "batch_size", "latent_dim", "log_every", "checkpoint_every"):
        if chosen[name] != FACTORS and chosen[name] <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {chosen[name]}")
    if not 0 < chosen["lr"] < math.inf:
        raise UsageError(f"--lr must be positive and finite, got {chosen['lr']}")
    if chosen["eval_size"] == "auto":
        chosen["eval_size"] = "quick" if device.type == "cpu" else "default"
    return profile, chosen


def _options(args, device, chosen, names, out, profile) -> planning.Options:
    for name in ("seeds", "jobs"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.eval_seed < 0:
        raise UsageError(f"--eval-seed must be non-negative, got {args.eval_seed}")
    if args.scheduler and args.backend != "dask":
        raise UsageError("--scheduler needs --backend dask")
    cores = joblib.cpu_count()
    jobs = args.jobs or backend.default_jobs(device)
    backend.check_setup(jobs, cores, args.scheduler)
    threads = 1 if args.backend == "dask" else max(1, cores // jobs)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():     # the user's cap per process
        threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
    return planning.Options(
        out=out, device=str(device), metrics=tuple(names), eval_size=chosen["eval_size"],
        eval_seed=args.eval_seed, data_dir=args.data_dir, jobs=jobs,
        threads=None if args.scheduler else threads, backend=args.backend,
        scheduler=args.scheduler,
        derived=(grid.FIXED_BETA_HAT,) if args.ablation != "none" else (),
        retry_failed=args.retry_failed, keep_checkpoints=args.keep_checkpoints,
        repair=args.repair, precision=args.precision, profile=profile,
        group_seeds=group_seeds(args.group_seeds), invocation=uuid.uuid4().hex[:12])


def load_datasets(names, data_dir, device) -> dict:
    """Every dataset of the grid, loaded here once (the worker's cache, which a worker in this
    process reuses); GridError names a missing or bad one."""
    try:
        return {name: worker.dataset(name, data_dir, device) for name in names}
    except datasets.DatasetError as err:
        raise planning.GridError(str(err)) from None


def group_seeds(text: str) -> int | None:
    """--group-seeds: None for auto, 1 for off, else the positive group size."""
    text = str(text).strip()
    if text == "auto":
        return None
    if text == "off":
        return 1
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UsageError(f"--group-seeds {text!r}: expected auto, off or a positive number of "
                     f"seeds per group, e.g. --group-seeds 10")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report.main(argv[1:], prog=f"{build_parser().prog} report")
    try:
        with backend.sigterm_stops():
            return _run(argv)
    except (UsageError, planning.GridError, grid.TooLarge, paths.OutsideResults,
            report.ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, backend.Terminated)
        print(f"\n{'terminated (SIGTERM)' if terminated else 'interrupted'}; no run was "
              f"training (rerunning the same command continues)", file=sys.stderr)
        return 143 if terminated else 130


def _run(argv: list[str]) -> int:
    args = parse(argv)
    device = pick_device(args.device, remote=bool(args.scheduler))
    profile, chosen = settings(args, device)
    chosen_methods = method_names(args.methods)
    data_names = _names(args.datasets, datasets.available(), datasets.available(), "dataset")
    params = parse_params(args.param, chosen_methods)
    names = metric_names(chosen["metrics"], device)
    grid.check_size(args.seeds, chosen_methods, data_names, args.ablation != "none")
    out = _check_writable(args.out)
    options = _options(args, device, chosen, names, out, profile)
    # loaded here for the checks and the ETA probe; on the CPU when the workers are elsewhere
    loaded = load_datasets(data_names, args.data_dir,
                           torch.device("cpu") if args.scheduler else device)
    specs = grid.expand(chosen_methods, data_names, args.seeds, chosen, params,
                        {name: data.num_factors if data.has_factors else 0
                         for name, data in loaded.items()})
    for folder in grid.run_folders(specs, out, options.derived):
        paths.check_inside(out, folder)
    report.check_targets(out)
    planning.check_batch_sizes(specs, {name: len(data) for name, data in loaded.items()})
    specs, part = planning.take_shard(specs, args.shard, options.group_seeds or estimate.AUTO_SIZE)
    plan = planning.plan(specs, options, estimate.group_size(specs, options, loaded))
    eta = estimate.eta_seconds(plan, loaded) if plan.units else 0.0
    print(planning.describe(plan, eta, profile, chosen, (len(chosen_methods), len(data_names),
                                                        args.seeds), part))
    result = backend.run(plan)
    print(backend.summary(result.results))
    if result.interrupted is not None:
        print(f"{'terminated (SIGTERM)' if result.terminated else 'interrupted (Ctrl-C)'}; "
              f"rerunning the same command resumes every unfinished run"
              + "".join(f"\n  {run} (its last checkpoint)" for run in result.interrupted),
              file=sys.stderr)
        return result.exit_code
    if (out / "runs").is_dir() and report.build(out):
        print(f"tables: {out / 'tables'}/, plots: {out / 'plots'}/, index: {out / 'index.html'}")
    return result.exit_code
