"""The state folder ([database] path's folder): made owner-only, or one clear error.

Everything mls-sync writes lives there: the SQLite file and its WAL, and in sandbox mode the
sandbox's key and market. A path that cannot be made is the operator's to fix, so it is one
line naming the path and what to do (the CLI exits 73, sysexits' EX_CANTCREAT), never a
traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

FIX = "set [database] path (or MLS_SYNC_DATABASE__PATH) to a file in a folder this user can write"


class StatePathError(Exception):
    """A state file or its folder cannot be created; the message names it and what to do."""


def make_folder(folder: Path, wanted: Path | None = None) -> None:
    """The folder and its parents, owner-only where made. The error names `wanted` (the file
    that was to go there), else the folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise cannot_create(wanted or folder, exc, folder) from None


def create_private_file(path: Path) -> None:
    """Creates the file owner-only (if absent) in a folder made as above, so that a file
    holding secrets is never readable by others, not even for a moment."""
    make_folder(path.parent, path)
    if path.is_file():
        return
    if path.exists():  # SQLite would only say "unable to open database file"
        what = "a folder" if path.is_dir() else "not a regular file"
        raise StatePathError(f"cannot create {path}: it is {what}; {FIX}")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        raise cannot_create(path, exc) from None


def cannot_create(path: Path, exc: OSError, failed: Path | None = None) -> StatePathError:
    """The error for `path`, which could not be created because of `exc` (raised by `failed`,
    the path itself or a folder on the way to it)."""
    return StatePathError(f"cannot create {path}: {_why(failed or path, exc)}; {FIX}")


def _why(path: Path, exc: OSError) -> str:
    """What is in the way, in words: "File exists" would not say that a file sits where a
    folder must be."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        blocking = next((p for p in (path, *path.parents) if p.is_file()), None)
        if blocking is not None:
            return f"{blocking} is a file, not a folder"
    return (exc.strerror or type(exc).__name__).lower()
