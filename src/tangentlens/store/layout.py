"""Names, constants and errors of the run-file layout (see docs/file-format.md)."""

from __future__ import annotations

from typing import Any

FORMAT_VERSION = 1
KIND_RUN = "tangentlens.run"
KIND_INDEX = "tangentlens.index"
VIEWS = ("network", "tangent")
SPLITS = ("train", "test", "all")
REGIME_ORDER = ("sgd", "linearized", "kernel", "lazy", "ntk_limit", "mup_limit")  # others: a–z
LIMIT_REGIMES = ("ntk_limit", "mup_limit")  # activations are samples of the limit, not units
DTYPES = ("float32", "float16")
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "lzf": {"compression": "lzf", "shuffle": True},
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
}
CHUNK_BYTES = 1 << 20  # target chunk size; equals HDF5's default per-dataset chunk cache
# Config keys that may differ when a run is resumed (they do not change its numbers).
RESUME_MUTABLE = ("train.device", "train.progress", "data.data_dir")


class RunFileError(ValueError):
    """A file is not a readable tangentlens run; the message names the file and the problem."""


class StoreKeyError(KeyError):
    """Unknown regime, step, hook, view or split; the message lists the valid values."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown(what: str, value: Any, valid: Any, where: str = "") -> StoreKeyError:
    return StoreKeyError(f"unknown {what} {value!r}{where}; valid: {list(valid)}")


def check_name(what: str, name: str) -> str:
    """HDF5 object names used by the store: non-empty, no '/', not '.'."""
    if not isinstance(name, str) or not name or "/" in name or name == ".":
        raise ValueError(
            f"{what} name {name!r} is not valid: it must be a non-empty string without '/'"
        )
    return name


def regime_key(regime: str) -> tuple[int, str]:
    return (REGIME_ORDER.index(regime) if regime in REGIME_ORDER else len(REGIME_ORDER), regime)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict → {'model.width': 512, ...}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
