"""Paths under a results folder: nothing the suite writes may follow a link out of it."""
from __future__ import annotations

from pathlib import Path


class OutsideResults(Exception):
    """A path the suite would write leaves the results folder (through a symbolic link); the
    message names the link and where it points."""


def check_inside(out, path) -> Path:
    """`path` (under the results folder `out`) if no symbolic link on the way from `out` to it
    leads out of `out`; else OutsideResults naming the first such link. Parts that do not exist
    yet are fine: creating them stays inside. `out` itself may be a link (the user chose it)."""
    out, path = Path(out), Path(path)
    root = out.resolve()
    try:
        parts = path.relative_to(out).parts
    except ValueError:
        raise OutsideResults(f"{path} is not inside the results folder {out}") from None
    if ".." in parts:
        raise OutsideResults(f"{path} leaves the results folder {out} (through '..')")
    current = out
    for part in parts:
        current = current / part
        if current.is_symlink() and not current.resolve().is_relative_to(root):
            raise OutsideResults(
                f"{current} is a link to {current.resolve()}, outside the results folder "
                f"{out}; the suite writes only inside it: replace the link with a folder, or "
                f"choose another --out")
        if not current.exists():
            break
    return path
