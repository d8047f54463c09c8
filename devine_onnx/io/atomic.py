"""Write outputs under a temporary name and rename them when complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devine_onnx.errors import OutputError


def partial_path(path: str | os.PathLike) -> Path:
    """Temporary name used while ``path`` is being written (same folder, so rename is atomic)."""
    p = Path(path)
    return p.with_name(p.name + ".partial")


def check_writable(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` if the folder of ``path`` does not exist or is not writable."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(
            f"{p}: output folder {folder} does not exist; create it or choose another output path"
        )
    if not os.access(folder, os.W_OK):
        raise OutputError(
            f"{p}: output folder {folder} is not writable; choose another output path"
        )
    return p


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file or folder (zarr stores are folders) if it exists."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextmanager
def atomic_output(path: str | os.PathLike, keep_partial: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary output is removed, unless ``keep_partial`` (used for
    resumable work), so that no half-written file ever carries the final name.
    """
    final = check_writable(path)
    tmp = partial_path(final)
    try:
        yield tmp
    except BaseException:
        if not keep_partial:
            remove_path(tmp)
        raise
    remove_path(final)
    os.replace(tmp, final)
