"""`disentbench list methods|metrics|datasets|profiles`: what can be named on the command line."""
from __future__ import annotations

import textwrap

from disentbench.bench.profiles import PROFILES


def _summary(obj, width: int = 78) -> str:
    """The first line of `obj`'s docstring (else its module's), cut to `width` characters."""
    import sys
    doc = (obj.__doc__ or sys.modules[obj.__module__].__doc__ or "").strip()
    line = doc.splitlines()[0] if doc else ""
    return line if len(line) <= width else line[:width - 1] + "…"


def methods_table() -> str:
    """Each method: in `--methods all` or not, its parameters and defaults, its summary."""
    from disentbench import methods
    in_all = set(methods.all_methods())
    lines = []
    for name in methods.available():
        cls = methods.get(name)
        lines.append(f"{name:18s} {'all' if name in in_all else '   '}  {_summary(cls)}")
        if cls.params:
            params = ", ".join(f"{k}={v}" for k, v in cls.params.items())
            lines.append(textwrap.fill(f"--param {name}.NAME=VALUE: {params}", 100,
                                       initial_indent=" " * 24, subsequent_indent=" " * 26))
    return ("method             in   summary\n" + "\n".join(lines)
            + "\n('all': one of the methods of --methods all)")


def metrics_table() -> str:
    """Each metric: its result keys with the better direction, and where it runs by default."""
    from disentbench import metrics
    from disentbench.bench.evaluate import CPU_EXPENSIVE, RECONSTRUCTION, RECONSTRUCTION_DIRECTIONS
    arrows = {metrics.HIGHER: "↑", metrics.LOWER: "↓", None: ""}
    rows = [(m.name, m.directions, m.interventional)
            for m in map(metrics.get, metrics.available())]
    rows.append((RECONSTRUCTION, RECONSTRUCTION_DIRECTIONS, False))
    lines = []
    for name, directions, interventional in rows:
        where = ("GPU" if name in CPU_EXPENSIVE else "CPU, GPU") if name != "dci" else "by name"
        keys = ", ".join(f"{key}{arrows[d]}" for key, d in directions.items())
        note = "  (needs a sampler: not in metrics.score)" if interventional else ""
        lines.append(f"{name:24s} {where:8s}  {keys}{note}")
    return ("metric                   auto on   result keys (↑ higher is better, ↓ lower)\n"
            + "\n".join(lines))


def datasets_table() -> str:
    """Each dataset name with its loader's summary."""
    from disentbench.bench import data
    return "\n".join(f"{name:20s} {_summary(data.loader(name))}" for name in data.available())


def profiles_table() -> str:
    """Each profile's settings (`--profile`; explicit flags override them)."""
    keys = list(next(iter(PROFILES.values())))
    rows = [["profile", *keys]] + [[name, *(f"{p[k]:g}" if isinstance(p[k], float) else str(p[k])
                                            for k in keys)] for name, p in PROFILES.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


TABLES = {"methods": methods_table, "metrics": metrics_table, "datasets": datasets_table,
          "profiles": profiles_table}
