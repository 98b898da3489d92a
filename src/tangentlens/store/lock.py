"""One live writer per run file, and readers that know when one is still writing.

A :class:`~tangentlens.store.RunWriter` holds an exclusive ``flock`` on its run file from
opening to ``close()`` (the kernel drops it when the process dies, so a killed run is
never locked).  A second writer is refused; ``analyze`` refuses a file that is being
written (its reads span many writer sessions, which HDF5 cannot show consistently).
Without ``fcntl`` (Windows) nothing is locked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .layout import RunFileError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None


def lock_for_writing(path: Path) -> BinaryIO | None:
    """An open file holding the exclusive lock on ``path`` (closing it, or garbage
    collection, unlocks); RunFileError if another writer holds the lock."""
    if fcntl is None:
        return None
    fh = open(path, "rb")  # noqa: SIM115 - lives as long as the writer
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunFileError(f"{path}: another process is writing this run; wait for it to "
                           "finish or stop it, then resume") from None
    return fh


def being_written(path: Path) -> bool:
    """True while a live writer holds ``path``'s lock (the check takes no lasting lock)."""
    if fcntl is None or not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock
    return False


def refuse_if_being_written(path: Path) -> None:
    if being_written(path):
        raise RunFileError(f"{path}: a run is still writing this file; analyze it after the run "
                           "has finished or was stopped (open_run in a notebook reads its last "
                           "committed checkpoint)")
