"""The command line's flags: the `run` parser (argument groups, examples, `--version`) and
`--config grid.toml`. Imports nothing heavy, so `--help` answers at once."""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import tomllib
from pathlib import Path

from disentbench import __version__
from disentbench.bench.profiles import MAX_SEEDS, PROFILES

DEFAULT_DATASET = "dsprites-procedural"
# Copies of the engine's constants, so that --help needs no torch (tests/test_cli_commands.py
# checks them against backend.GPU_JOBS, precision.CHOICES and estimate.AUTO_SIZE).
GPU_JOBS = 4
PRECISIONS = ("auto", "bf16", "fp32")
AUTO_GROUP = 10
EXAMPLES = """\
commands:
  {prog} [run] [flags]            train and evaluate a grid (the default command)
  {prog} report [--results DIR]   rebuild tables, plots and index.html from run folders
  {prog} list methods|metrics|datasets|profiles

examples:
  {prog} --profile smoke --methods all --seeds 1     # about a minute: checks an install
  {prog} --methods all --seeds 10                    # the main job (quick profile on a CPU)
  {prog} --methods all --seeds 10 --dry-run          # its plan, run count and ETA; trains nothing
  {prog} --methods l-vae,beta-vae --param beta-vae.beta=8 --seeds 3
  {prog} --profile paper --device cuda --methods all --seeds 10
  {prog} report --results results
"""


class UsageError(Exception):
    """Bad command-line input; the message names the problem and the fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def program_name() -> str:
    """The name the program was invoked by (`python -m disentbench` for `-m`)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "disentbench"
    return "python -m disentbench" if name in ("__main__.py", "-m", "-c") else name


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or program_name()
    p = _Parser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Train and evaluate VAE-family methods on ground-truth datasets: every method x "
            "dataset x seed is one run folder under --out, resumed when interrupted, and a "
            "report (tables, plots, index.html) is built at the end.", 79),
        epilog=EXAMPLES.format(prog=prog))
    p.add_argument("--version", action="version", version=f"disentbench {__version__}")
    _grid_flags(p.add_argument_group("what to run"))
    _training_flags(p.add_argument_group("training"))
    _evaluation_flags(p.add_argument_group("evaluation"))
    _where_flags(p.add_argument_group("where it runs"))
    _store_flags(p.add_argument_group("results folder"))
    return p


def _grid_flags(g) -> None:
    g.add_argument("--config", default=None, metavar="GRID.toml",
                   help="read any of these settings from a TOML file (keys as the flags, with "
                        "_ or -; params as [params.METHOD] tables); flags override it")
    g.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="run settings: smoke (seconds per run), quick (the CPU default), paper "
                        "(300k steps, the GPU default); explicit flags override it")
    g.add_argument("--methods", default="all",
                   help="comma-separated method names; 'all' is the paper comparison and "
                        "combines with names (all,l-vae-perdim) (default: all)")
    g.add_argument("--datasets", default=DEFAULT_DATASET,
                   help=f"comma-separated dataset names (default: {DEFAULT_DATASET})")
    g.add_argument("--seeds", type=int, default=1,
                   help=f"number of seeds: runs seeds 0..N-1 (default 1, at most {MAX_SEEDS})")
    g.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="set a method parameter (beta-vae.beta=8) or sweep a list (beta-vae.beta="
                        "1,2,4); repeatable, one method's parameters sweep their product")
    g.add_argument("--ablation", default="fixed-beta-hat", choices=["fixed-beta-hat", "none"],
                   help="with l-vae in the grid, also train beta-vae with beta fixed to each "
                        "L-VAE run's final beta-hat (default), or not")


def _training_flags(g) -> None:
    g.add_argument("--steps", type=int, default=None, help="training steps per run (profile)")
    g.add_argument("--batch-size", type=int, default=None, help="(profile: 64)")
    g.add_argument("--latent-dim", type=int, default=None,
                   help="(profile: 10; paper: the dataset's number of factors)")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (profile: 1e-4)")
    g.add_argument("--log-every", type=int, default=None,
                   help="history row every N steps (profile)")
    g.add_argument("--checkpoint-every", type=int, default=None, help="(profile)")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="training precision: bf16 autocast of the network's forward pass (losses "
                        "and σ's in fp32) or fp32; auto = bf16 on GPUs and CPUs with native bf16, "
                        "fp32 elsewhere (default: auto; recorded in config.json)")
    g.add_argument("--group-seeds", default="auto", metavar="auto|off|N",
                   help="train the seeds of a method and dataset as stacked seed groups of N "
                        "(one model, each member its own run folder); auto = groups of up to "
                        f"{AUTO_GROUP} on a GPU where a timed probe shows they pay, none on a CPU "
                        "(where they do not); off = one run at a time (default: auto)")


def _evaluation_flags(g) -> None:
    g.add_argument("--metrics", default=None,
                   help="metrics evaluated after each run: 'auto' (on a GPU all but the "
                        "reference dci, which dci-fast replaces; on a CPU all but beta-vae, "
                        "factor-vae, dci and dci-fast), 'all', 'none', or comma-separated names, "
                        "which may include auto or all (auto,dci-fast) (profile: auto)")
    g.add_argument("--eval-size", default=None, choices=["auto", "default", "quick"],
                   help="metric sample sizes: disentanglement_lib's study defaults, or the "
                        "smaller quick set ('auto': default on a GPU, quick on a CPU) (profile)")
    g.add_argument("--eval-seed", type=int, default=0,
                   help="seed of the metrics' sampling (default 0, as disentanglement_lib)")


def _where_flags(g) -> None:
    g.add_argument("--out", default="results", help="results folder (default: results)")
    g.add_argument("--data-dir", default=None,
                   help="folder of dataset files and caches "
                        "(default: $DISENTBENCH_DATA or ~/.cache/disentbench)")
    g.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, ... (default: cuda if present, else cpu)")
    g.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: the number of cores on a CPU, "
                        f"{GPU_JOBS} sharing a GPU)")
    g.add_argument("--backend", default="local", choices=["local", "dask"],
                   help="local processes (joblib loky), or a Dask cluster (default: local; "
                        "dask needs pip install \"disentbench[cluster]\")")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="with --backend dask: an existing scheduler (default: a local cluster "
                        "of --jobs single-threaded worker processes)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="run only shard I of N (1 <= I <= N) of the grid, its seed groups whole; "
                        "the N shards together are the grid, e.g. --shard "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT (docs/cluster.md)")


def _store_flags(g) -> None:
    g.add_argument("--dry-run", action="store_true",
                   help="print the plan (runs, steps, ETA, what is already done) and stop: "
                        "nothing is trained or written")
    g.add_argument("--retry-failed", action="store_true",
                   help="train runs that failed before again")
    g.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the optimiser/RNG resume state of finished runs")
    g.add_argument("--repair", action="store_true",
                   help="move damaged run folders aside and train them again")
    g.add_argument("--track", default=None, choices=["tensorboard", "mlflow"],
                   help="also mirror each run's history and final metrics to TensorBoard "
                        "(OUT/tensorboard) or MLflow (OUT/mlflow.db) when the grid ends; needs "
                        "pip install \"disentbench[track]\"")


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
    actions = {a.dest: a for a in parser._actions
               if a.dest not in ("help", "version", "config", "param")}
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
            for a in ("--param", f"{method}.{name}={_config_value(v)}")]


def _config_value(value) -> str:
    """A TOML parameter value (a list is a sweep) as --param's text."""
    text = ",".join(map(_config_value, value)) if isinstance(value, list) else str(value)
    return text.lower() if isinstance(value, bool) else text


def parse(argv: list[str]) -> argparse.Namespace:
    """Flags over `--config` over defaults (the profile fills what neither sets, later)."""
    parser = build_parser()
    args = _parse_args(parser, argv)
    if args.config:
        from_file = config_argv(args.config, parser)
        try:
            file_params = parser.parse_args(from_file).param
        except UsageError as err:
            raise UsageError(f"--config {args.config}: {err}") from None
        flagged = {item.partition("=")[0] for item in args.param}     # flags replace the file's
        kept = [i for i in file_params if i.partition("=")[0] not in flagged]
        args = _parse_args(parser, from_file + argv, argparse.Namespace(config_params=kept))
        args.param = args.param[len(file_params):]
    return args


def _parse_args(parser: argparse.ArgumentParser, argv: list[str],
                namespace: argparse.Namespace | None = None) -> argparse.Namespace:
    """argparse's parse, with a hint where a value starting with '-' was taken for a flag
    (`--lr -1e-3`: argparse wants `--lr=-1e-3`)."""
    try:
        return parser.parse_args(argv, namespace)
    except UsageError as err:
        if "expected one argument" in str(err):
            for flag, value in zip(argv, argv[1:]):
                if flag.startswith("--") and flag in str(err) and value.startswith("-"):
                    raise UsageError(f"{err}; a value that starts with '-' must be attached "
                                     f"with '=': {flag}={value}") from None
        raise
