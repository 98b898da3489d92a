"""What a run directory holds, and the rules for reusing one.

A run directory holds ``run.h5`` (activations and metrics), ``metrics.json`` and
``state/<regime>.pt`` (trainer state for ``--resume``).  A directory that already holds a
run is never overwritten silently: ``run`` refuses unless ``resume`` continues it or
``overwrite`` deletes it.  Trainer state is saved with ``torch.save`` of tensors and plain
Python numbers, strings, lists and dicts only, and loaded with ``torch.load(weights_only=True)``,
which refuses any other pickled object — a state file from someone else cannot run code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

RUN_FILE = "run.h5"
STATE_DIR = "state"
# Everything ``run`` writes into a run directory; ``overwrite`` deletes exactly these.
RUN_ENTRIES = (RUN_FILE, f"{RUN_FILE}-journal", f"{RUN_FILE}.tmp", "metrics.json", STATE_DIR)


class RunDirError(ValueError):
    """A run directory cannot be used as asked; the message says why and what to pass."""


def existing_run(out: Path) -> list[str]:
    """The run entries present in ``out`` (empty if it holds no run; an empty state
    directory, left by a run stopped before its first checkpoint, does not count)."""
    state = out / STATE_DIR
    return [name for name in RUN_ENTRIES if (out / name).exists()
            and not (name == STATE_DIR and state.is_dir() and not any(state.iterdir()))]


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an ``out`` that is not a writable directory, or that holds a run when
    neither ``resume`` nor ``overwrite`` is given.  Leaves nothing on disk."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: resume continues the run "
                          f"in {out}, overwrite deletes it")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {str(out)!r} is a file, not a directory; give a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"--out {str(out)!r} is not valid: {str(parent)!r} is a file")
    try:  # a real write test: permissions alone miss read-only mounts and root
        os.rmdir(tempfile.mkdtemp(prefix=".tangentlens-write-test-", dir=parent))
    except OSError as e:
        raise RunDirError(f"--out {str(out)!r} is not writable ({e.strerror} in {str(parent)!r}); "
                          "give a directory you can write") from None
    found = existing_run(out) if out.is_dir() else []
    if found and not (resume or overwrite):
        raise RunDirError(f"--out {str(out)!r} already holds a run ({', '.join(found)}); pass "
                          "--resume to continue it or --overwrite to delete it and start again "
                          "(Python: resume=True / overwrite=True)")


def make_out_dir(out: Path, overwrite: bool) -> None:
    """Create ``out`` and ``out/state``; with ``overwrite`` first delete the old run's entries."""
    try:
        if overwrite:
            for name in existing_run(out):
                p = out / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {str(out)!r}: cannot write there ({e.strerror or e})") from None


def save_state(path: Path, state: dict) -> None:
    """Atomic torch.save (tmp file + os.replace) so a kill never leaves a torn state file."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict:
    """Load a state file written by :func:`save_state`; anything else is refused, unexecuted."""
    import pickle

    import torch

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln), lines[0] if lines else type(e).__name__)
        raise RunDirError(f"{path}: not a tangentlens trainer state, refused to load it ({why}); "
                          "delete the state directory or start again with --overwrite") from None
    if not isinstance(state, dict) or not {"trainer", "step", "metrics"} <= set(state):
        raise RunDirError(f"{path}: not a tangentlens trainer state (expected keys trainer, step, "
                          "metrics); delete the state directory or start again with --overwrite")
    return state
