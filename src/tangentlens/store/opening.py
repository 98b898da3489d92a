"""Opening a tangentlens HDF5 file read-only, with errors that say what the file is."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from .journal import SnapshotFile, journal_path
from .layout import FORMAT_VERSION, KIND_INDEX, KIND_RUN, RunFileError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path: Path) -> bool:
    with open(path, "rb") as fh:
        for offset in (0, 512, 1024, 2048):
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """Open any tangentlens file read-only, as of its last committed write; clear errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such run file: {path}")
    if path.is_dir():
        raise RunFileError(
            f"{path}: is a directory, not a run file (use open_runs for directories)"
        )
    if path.stat().st_size == 0:
        raise RunFileError(f"{path}: empty file (0 bytes), not a tangentlens run file")
    try:  # a journal means an unfinished write session: read the state before it
        return (
            h5py.File(SnapshotFile(path), "r")
            if journal_path(path).exists()
            else h5py.File(path, "r", locking=False)
        )
    except OSError as e:
        problem = (
            "truncated or corrupted HDF5 file" if _has_hdf5_signature(path) else "not an HDF5 file"
        )
        raise RunFileError(f"{path}: {problem} ({str(e).split(' (')[0]})") from None


def check_kind(path: Path, f: h5py.File, kind: str) -> None:
    found, version = f.attrs.get("kind"), f.attrs.get("format_version")
    if found != kind or version is None:
        what = {
            KIND_INDEX: "a tangentlens index: use open_runs()",
            KIND_RUN: "a tangentlens run file: use open_run()",
        }.get(found, "an HDF5 file not written by tangentlens (no 'kind' attribute)")
        raise RunFileError(f"{path}: is {what}")
    if int(version) > FORMAT_VERSION:
        raise RunFileError(
            f"{path}: format_version {int(version)} is newer than the {FORMAT_VERSION} "
            "this tangentlens reads; upgrade tangentlens"
        )
