"""HDF5 run files: a streaming, crash-safe writer and a lazy notebook reader.

Layout and guarantees: docs/file-format.md.
"""

from .index import Runs, open_runs, write_index
from .layout import FORMAT_VERSION, RunFileError, StoreKeyError
from .reader import Activations, Probe, Run, open_run
from .writer import RunWriter, StepWriter

__all__ = [
    "FORMAT_VERSION",
    "Activations",
    "Probe",
    "Run",
    "RunFileError",
    "RunWriter",
    "Runs",
    "StepWriter",
    "StoreKeyError",
    "open_run",
    "open_runs",
    "write_index",
]
