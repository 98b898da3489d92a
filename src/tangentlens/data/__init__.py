"""Offline, deterministic datasets: `load(name, seed=..., n_train=..., n_test=..., **options)`.

Every loader is seeded through numpy Generators and leaves global RNG state untouched.
File-backed datasets (mnist, cifar10) are read from `data_dir=` or $TANGENTLENS_DATA
(default ./data); see data/README.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .cifar10 import download_cifar10, load_cifar10
from .digits import load_digits
from .external import from_torch, load_npz, load_torchvision
from .mnist import download_mnist, load_mnist
from .mnist1d import load_mnist1d
from .modular import load_modular_addition
from .record import Dataset, check_range
from .teacher import load_teacher

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "mnist1d": load_mnist1d,
    "teacher": load_teacher,
    "modular_addition": load_modular_addition,
    "cifar10": load_cifar10,
    "npz": load_npz,
    "torchvision": load_torchvision,
}


def options(name: str) -> dict[str, Any]:
    """The dataset-specific options of `name` and their defaults."""
    params = inspect.signature(DATASETS[name]).parameters.values()
    return {p.name: p.default for p in params if p.name not in ("seed", "n_train", "n_test")}


def load(
    name: str, *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    **opts: Any,
) -> Dataset:
    """Load dataset `name`; n_train/n_test=None means all available (teacher: 1024 each).

    Raises ValueError naming the bad name, option or value and the valid ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    valid = options(name)
    for key in opts:
        if key not in valid:
            raise ValueError(f"unknown option {key!r} for dataset {name!r}; "
                             f"valid options: {', '.join(valid) or '(none)'}")
    check_range("seed", seed, 0, 2**63 - 1, integer=True)
    return DATASETS[name](seed=seed, n_train=n_train, n_test=n_test, **opts)


__all__ = ["DATASETS", "Dataset", "download_cifar10", "download_mnist", "from_torch", "load",
           "options"]
