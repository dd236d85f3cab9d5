"""The one atomic writer: a file or directory appears complete under its name, or not at all.

Everything the toolkit writes for later use (exported versions, training state,
checkpoints, reports, plots) goes through `write_atomically`: the content is
written under a hidden temporary name next to the target, then renamed, so a
kill at any moment leaves the old content (or nothing), never half a file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMPORARY_PREFIX = ".tmp-"


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to `path` that ends like `path` (same suffix).

    Example:

    >>> temporary_path("runs/a/report.json").name.startswith(".tmp-")
    True
    """
    path = Path(path)
    return path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")


def write_atomically(
    path: str | os.PathLike,
    write: Callable[[Path], Any],
    *,
    previous: str | os.PathLike | None = None,
    sync: bool = False,
    replace: bool = True,
) -> Path:
    """Calls `write(temporary)` for a temporary path next to `path`, then renames it to `path`.

    `write` creates the file or directory at `temporary`. On failure the
    temporary is removed and `path` is untouched.

    Args:
        path: the file or directory to write.
        write: callable creating the content at the path it is given.
        previous: path. Where the current `path`, if any, is moved first (a fallback).
        sync: bool. fsync a written file before the rename (durability across a power loss).
        replace: bool. False refuses to overwrite an existing `path` (`FileExistsError`).

    Example:

    >>> write_atomically("report.txt", lambda temporary: temporary.write_text("done"))
    PosixPath('report.txt')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        write(temporary)
        if sync and temporary.is_file():
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        publish(temporary, path, previous=previous, replace=replace)
    except BaseException:
        remove(temporary)
        raise
    return path


def publish(
    temporary: str | os.PathLike,
    path: str | os.PathLike,
    *,
    previous: str | os.PathLike | None = None,
    replace: bool = True,
) -> None:
    """Renames a complete `temporary` to `path` (the last step of `write_atomically`,
    for writers such as Keras callbacks that choose their own temporary file)."""
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{str(path)!r} already exists and is never overwritten.")
    if previous is not None and path.exists():
        os.replace(path, previous)
    os.replace(temporary, path)


def remove(path: str | os.PathLike) -> None:
    """Removes a file or directory tree if it exists (leftovers of a killed write).

    Example:

    >>> remove("saved_models/shapes92/.tmp-123-ab12cd34-3")
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
