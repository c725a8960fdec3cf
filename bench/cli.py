"""Command line: `disentbench [run] ...`, `disentbench report`, `disentbench list ...`.

`run` (the default) parses the flags (and `--config grid.toml`), checks them, plans the grid
(bench/plan.py), prints the plan with an ETA (bench/estimate.py) and hands it to the backend
(bench/backend.py) (`--dry-run`: the plan only); `report` rebuilds the tables and plots; `list`
names the methods, metrics, datasets or profiles. The same program runs as `disentbench`,
`python -m disentbench` and `python run_bench.py`. Heavy modules (torch, the runner, the report)
are imported where a command needs them, so `--help` answers at once.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import uuid
from pathlib import Path

from disentbench.bench.flags import UsageError, build_parser, parse, program_name
from disentbench.bench.profiles import FACTORS, PROFILES, default_profile
from disentbench.bench.signals import Terminated, sigterm_stops
from disentbench.extras import MissingExtra, require

# Settings a profile gives when no flag (or --config key) does.
PROFILE_KEYS = ("steps", "batch_size", "latent_dim", "lr", "log_every", "checkpoint_every",
                "eval_size", "metrics")
COMMANDS = ("run", "report", "list")
LISTS = ("methods", "metrics", "datasets", "profiles")


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
    from disentbench import methods
    return _names(text, methods.available(), methods.all_methods(), "method", ", or 'all'")


def metric_names(text: str, device) -> list[str]:
    """`none`, or names among which `auto` (the device's default set) and `all` may be."""
    from disentbench.bench import evaluate as evaluation
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


def parse_params(items: list[str], chosen: list[str], from_config=()) -> dict[str, list[dict]]:
    """`--param METHOD.NAME=V1,V2,...` items as each method's settings: the product of its
    parameters' value lists (grid.sweep). UsageError names a bad item or a key given twice.
    `from_config`: the --config file's items; those of a known method not chosen are dropped."""
    from disentbench import methods
    from disentbench.bench import grid
    values: dict[str, dict[str, list]] = {}
    known = [m for m in methods.available() if m not in chosen]
    for item in [*items, *(i for i in from_config if i.partition(".")[0] not in known)]:
        key, sep, text = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot:
            raise UsageError(f"--param {item!r}: expected METHOD.NAME=VALUE[,VALUE...], e.g. "
                             "beta-vae.beta=1,2,4")
        if method not in methods.available():
            raise UsageError(f"--param {item!r}: unknown method {method!r}; valid names: "
                             f"{', '.join(methods.available())}")
        if method not in chosen:
            raise UsageError(f"--param {item!r}: method {method!r} is not among --methods")
        if name in values.get(method, {}):
            raise UsageError(f"--param {key} is given twice; give its values once as a list, "
                             f"e.g. --param {key}=1,2,4")
        try:
            parsed = [methods.parse_value(method, name, v.strip()) for v in text.split(",")]
        except ValueError as err:
            raise UsageError(f"--param {item!r}: {err}") from None
        values.setdefault(method, {})[name] = list(dict.fromkeys(parsed))
    return {method: grid.sweep(by_name) for method, by_name in values.items()}


def pick_device(name: str | None, remote: bool = False):
    """`name` checked against this machine's devices (only parsed for `remote` workers), else
    CUDA when present, else CPU: a torch.device."""
    import torch
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


def settings(args, device) -> tuple[str, dict]:
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


def _options(args, device, chosen, names, out, profile):
    """The plan's Options from the checked flags."""
    import joblib
    from disentbench.bench import backend, grid
    from disentbench.bench.plan import Options
    for name in ("seeds", "jobs"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.eval_seed < 0:
        raise UsageError(f"--eval-seed must be non-negative, got {args.eval_seed}")
    if args.scheduler and args.backend != "dask":
        raise UsageError("--scheduler needs --backend dask")
    if args.backend == "dask":
        require("dask.distributed", "cluster", "--backend dask")
    if args.track:
        require({"tensorboard": "tensorboard", "mlflow": "mlflow"}[args.track], "track",
                f"--track {args.track}")
    cores = joblib.cpu_count()
    jobs = args.jobs or backend.default_jobs(device)
    backend.check_setup(jobs, cores, args.scheduler)
    threads = 1 if args.backend == "dask" else max(1, cores // jobs)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():     # the user's cap per process
        threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
    return Options(
        out=out, device=str(device), metrics=tuple(names), eval_size=chosen["eval_size"],
        eval_seed=args.eval_seed, data_dir=args.data_dir, jobs=jobs,
        threads=None if args.scheduler else threads, backend=args.backend,
        scheduler=args.scheduler,
        derived=(grid.FIXED_BETA_HAT,) if args.ablation != "none" else (),
        retry_failed=args.retry_failed, keep_checkpoints=args.keep_checkpoints,
        repair=args.repair, precision=args.precision, profile=profile,
        group_seeds=group_seeds(args.group_seeds), invocation=uuid.uuid4().hex[:12])


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


def load_datasets(names, data_dir, device) -> dict:
    """Every dataset of the grid, loaded here once (the worker's cache, which a worker in this
    process reuses); GridError names a missing or bad one."""
    from disentbench.bench import data as datasets
    from disentbench.bench import worker
    from disentbench.bench.plan import GridError
    try:
        return {name: worker.dataset(name, data_dir, device) for name in names}
    except datasets.DatasetError as err:
        raise GridError(str(err)) from None


def main(argv=None) -> int:
    """`[run] FLAGS`, `report ...` or `list WHAT`; the exit status (2: bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv[:1] and argv[0] in COMMANDS else "run"
    rest = argv[1:] if argv[:1] == [command] else argv
    if command == "report":
        from disentbench.bench import report
        return report.main(rest, prog=f"{program_name()} report")
    try:
        if command == "list":
            return list_command(rest)
        with sigterm_stops():             # SIGTERM (a batch system's time limit) as Ctrl-C
            return _run(parse(rest))      # --help and --version exit in parse: no torch
    except (UsageError, MissingExtra) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        signal = isinstance(stop, Terminated)
        print(f"\n{'terminated (SIGTERM)' if signal else 'interrupted'}; no run was training "
              f"(rerunning the same command continues)", file=sys.stderr)
        return 143 if signal else 130


def list_command(argv: list[str]) -> int:
    """`list methods|metrics|datasets|profiles`: one line per name."""
    from disentbench.bench import listing
    if len(argv) != 1 or argv[0] not in LISTS:
        raise UsageError(f"list what? expected one of {', '.join(LISTS)}, e.g. "
                         f"{program_name()} list methods")
    print(listing.TABLES[argv[0]]())
    return 0


def _run(args) -> int:
    """The `run` command: plan the grid, then (unless --dry-run) run it."""
    from disentbench.bench import grid, paths, report
    from disentbench.bench.plan import GridError
    try:
        plan = _plan(args)
        if args.dry_run:
            _print_settled(plan)
            return 0
        return _execute(plan, plan.options.out, args.track)
    except (GridError, grid.TooLarge, paths.OutsideResults, report.ReportError) as err:
        raise UsageError(str(err)) from None


def _plan(args):
    """The checked flags as the grid's Plan (units, what is settled, steps), printed with an
    ETA; the folders it would write are checked first (inside --out, the report's targets)."""
    from disentbench.bench import data as datasets
    from disentbench.bench import estimate, grid, paths, report
    from disentbench.bench import plan as planning
    device = pick_device(args.device, remote=bool(args.scheduler))
    profile, chosen = settings(args, device)
    chosen_methods = method_names(args.methods)
    data_names = _names(args.datasets, datasets.available(), datasets.available(), "dataset")
    params = parse_params(args.param, chosen_methods, getattr(args, "config_params", ()))
    names = metric_names(chosen["metrics"], device)
    grid.check_size(args.seeds, chosen_methods, data_names, args.ablation != "none", params)
    out = Path(args.out) if args.dry_run else _check_writable(args.out)
    options = _options(args, device, chosen, names, out, profile)
    # loaded here for the checks and the ETA probe; on the CPU when the workers are elsewhere
    loaded = load_datasets(data_names, args.data_dir,
                           pick_device("cpu") if args.scheduler else device)
    specs = grid.expand(chosen_methods, data_names, args.seeds, chosen, params,
                        {name: data.num_factors if data.has_factors else 0
                         for name, data in loaded.items()})
    for folder in grid.run_folders(specs, out, options.derived):
        paths.check_inside(out, folder)
    report.check_targets(out)
    planning.check_batch_sizes(specs, {name: len(data) for name, data in loaded.items()})
    specs, shard = planning.take_shard(specs, args.shard, options.group_seeds or estimate.AUTO_SIZE)
    plan = planning.plan(specs, options, estimate.group_size(specs, options, loaded))
    eta = estimate.eta_seconds(plan, loaded) if plan.units else 0.0
    _print_plan(plan, eta, profile, chosen, plan.options, specs, len(data_names), args.seeds)
    if shard:
        print(shard)
    return plan


def _execute(plan, out: Path, track: str | None) -> int:
    """Train and evaluate the grid, print the summary, mirror it to `track`, build the report;
    the exit status."""
    from disentbench.bench import backend, report
    result = backend.run(plan)
    print(backend.summary(result.results))
    if track:
        from disentbench.bench.track import mirror
        folders = [out / "runs" / r.dataset / r.label / f"seed{r.seed}" for r in result.results]
        mirrored = mirror(out, track, [f for f in folders if f.is_dir()])
        print(f"{track}: {mirrored} runs mirrored under {out}/")
    if result.interrupted is not None:
        print(f"{'terminated (SIGTERM)' if result.terminated else 'interrupted (Ctrl-C)'}; "
              f"rerunning the same command resumes every unfinished run"
              + "".join(f"\n  {run} (its last checkpoint)" for run in result.interrupted),
              file=sys.stderr)
        return result.exit_code
    if (out / "runs").is_dir() and report.build(out):
        print(f"tables: {out / 'tables'}/, plots: {out / 'plots'}/, index: {out / 'index.html'}")
    return result.exit_code


def _print_settled(plan) -> None:
    """--dry-run: what is already done (or failed and not retried); nothing was trained."""
    done = [r for r in plan.settled if r.status == "done"]
    failed = [r for r in plan.settled if r.status != "done"]
    print(f"already done: {len(done)} of {plan.runs} runs"
          + (f"; failed before (not retried without --retry-failed): {len(failed)}"
             if failed else ""))
    for result in failed:
        print(f"  failed: {result.name}: {result.reason}")
    print("dry run: no run was trained and nothing was written; run the same command without "
          "--dry-run")


def _print_plan(plan, eta, profile, chosen, options, specs, n_datasets, seeds) -> None:
    from disentbench.bench.grid import settings_per_method
    from disentbench.bench.precision import resolve
    counts = settings_per_method(specs)
    ablation = plan.runs - len(specs)
    swept = ", ".join(f"{method} {n}" for method, n in counts.items() if n > 1)
    grid_line = f"{len(counts)} methods" + (f" in {sum(counts.values())} settings ({swept})"
                                            if swept else "")
    where = (f"Dask cluster at {options.scheduler}" if options.scheduler else
             f"{options.jobs} {'Dask' if options.backend == 'dask' else 'local'} worker "
             f"processes x {options.threads} thread(s)")
    where += (f", seed groups of up to {plan.group}" if plan.group > 1 else
              ", one run at a time (no seed groups)")
    latent = "number of factors" if chosen["latent_dim"] == FACTORS else chosen["latent_dim"]
    print(f"disentbench: profile {profile}, device {options.device}, {plan.runs} runs "
          f"({grid_line} x {n_datasets} datasets x {seeds} seeds"
          f"{f' + {ablation} fixed-beta-hat ablation runs' if ablation else ''}), "
          f"{chosen['steps']} steps, batch {chosen['batch_size']}, latent {latent}, "
          f"lr {chosen['lr']:g}, precision {resolve(options.precision, options.device)}; "
          f"{where}; results in {options.out}/")
    print(f"metrics ({options.eval_size} sizes): {', '.join(options.metrics) or 'none'}")
    eta = ("unknown (workers on a cluster, or no method's probe step worked)"
           if eta is None
           else f"{eta / 60:.1f} min of training (a probe of each method; "
                f"evaluation comes on top)")
    print(f"to do: {plan.runs - len(plan.settled)} runs ({plan.steps} steps), ETA {eta}")
