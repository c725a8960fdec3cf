"""What the report may touch in a results folder: the files it wrote itself, nothing else.

`.disentbench-report.json` in the results folder lists the files of the last build (relative
paths, written atomically); a rebuild deletes those it does not write again and leaves every
other file alone, the user's own tables and plots included. The report refuses a folder that
holds no runs/ and a tables/ or plots/ that is a link out of the results folder.
"""
from __future__ import annotations

import contextlib
import errno
import re
from pathlib import Path

from disentbench.bench.io import read_json_or_empty, write_json
from disentbench.bench.paths import OutsideResults, check_inside

MANIFEST = ".disentbench-report.json"
FOLDERS = ("tables", "plots")        # where the report writes, besides index.html
PAGE = "index.html"


class ReportError(Exception):
    """The report cannot be built in this folder; the message names the path and the fix."""


def check_folder(out: Path) -> None:
    """ReportError where `out` is not a results folder (nothing there is touched), or where the
    report cannot write into it (`check_targets`)."""
    if not out.exists():
        raise ReportError(f"results folder {out} not found; pass the folder that holds runs/")
    if not out.is_dir():
        raise ReportError(f"{out} is a file, not a folder; pass the results folder that holds "
                          f"runs/")
    if not (out / "runs").is_dir():
        raise ReportError(f"{out} is not a results folder (it holds no runs/); nothing was "
                          f"changed there; pass the folder that holds runs/")
    check_targets(out)


def check_targets(out: Path) -> None:
    """ReportError where tables/, plots/ or index.html is a link out of `out`, or tables/ or
    plots/ is a file."""
    for name in (*FOLDERS, PAGE):
        try:
            check_inside(out, out / name)
        except OutsideResults as err:
            raise ReportError(str(err)) from None
    for name in FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise ReportError(f"{out / name} is a file, not a folder; the report writes its "
                              f"{name} there: move the file aside")


def written(out: Path) -> set[Path]:
    """The files the last build listed: only index.html and files under tables/ or plots/, so
    that an edited list cannot point the report at anything else."""
    listed = read_json_or_empty(out / MANIFEST).get("files")
    paths = set()
    for name in listed if isinstance(listed, list) else []:
        parts = Path(name).parts if isinstance(name, str) else ()
        if (parts == (PAGE,) or (len(parts) > 1 and parts[0] in FOLDERS)) and ".." not in parts:
            paths.add(out / name)
    return paths


def replace(out: Path, old: set[Path], new: set[Path]) -> None:
    """After a build that wrote `new`: list both, delete the files of `old` not written again
    (and the folders they leave empty), then list `new` alone; a crash at any point leaves a
    list that names every file the report wrote."""
    _record(out, old | new)
    for path in sorted(old - new):
        if path.is_file() or path.is_symlink():
            path.unlink()
        for folder in path.relative_to(out).parents[:-1]:      # tables/a/b.png: a, tables
            try:
                (out / folder).rmdir()
            except OSError:                                      # not empty, or already gone
                break
    _record(out, new)


def _record(out: Path, files: set[Path]) -> None:
    write_json(out / MANIFEST, {"files": sorted(p.relative_to(out).as_posix() for p in files)})


@contextlib.contextmanager
def naming(path: Path):
    """An OSError while writing `path` names `path` (a full disk's write error names no file)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def write_failed(err: OSError, out: Path) -> ReportError:
    """One line for an OSError while writing the report: the file (the target of an atomic
    write's temporary file) or the folder, and what went wrong."""
    where = Path(err.filename) if err.filename else out
    temporary = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", where.name)
    where = where.with_name(temporary.group(1)) if temporary else where
    if err.errno == errno.ENOSPC:
        return ReportError(f"{where}: no space left on device; free some space and run the "
                           f"report again (the run folders are untouched)")
    return ReportError(f"{where}: cannot write the report there ({err.strerror or err})")
