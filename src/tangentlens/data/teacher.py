"""Synthetic multi-index teacher: y depends on x ~ N(0, I_d) only through z = x Uᵀ."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .record import Dataset, check_choice, check_range, rng, to_tensors

LINKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "he2": lambda z: z**2 - 1,
    "he3": lambda z: z**3 - 3 * z,
    "abs": np.abs,
}


def linear_fraction(link: Callable[[np.ndarray], np.ndarray]) -> float:
    """Share of Var link(z), z ~ N(0,1), explained by its linear (Hermite-1) part."""
    z = np.linspace(-10.0, 10.0, 100_001)
    w = np.exp(-(z**2) / 2)
    w /= w.sum()
    f = link(z)
    return float((w @ (z * f)) ** 2 / (w @ f**2 - (w @ f) ** 2))


def directions(d: int, k: int, directions_seed: int) -> np.ndarray:
    """k orthonormal rows in R^d (Gram-Schmidt of Gaussian rows, so k-prefixes are nested)."""
    a = rng(directions_seed, 3).standard_normal((k, d))
    q, r = np.linalg.qr(a.T)
    return (q * np.sign(np.diag(r))).T


def load_teacher(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    d: int = 32, k: int = 2, noise: float = 0.0, task: str = "regression",
    link: str = "relu", directions_seed: int = 0, n_classes: int | None = None,
) -> Dataset:
    """Multi-index teacher target Σ_j link(z_j)/√k, standardized on train, plus noise·ε.

    Default link "relu" has a linear part (~73% of variance) and a nonlinear part that a
    kernel needs many samples for; "tanh" is ~93% linear; "he2", "he3", "abs" have none.
    Classification labels are quantile bins (train quantiles) of the noisy target;
    n_classes defaults to 2 (above/below the train median). The hidden directions depend
    only on (d, k, directions_seed), never on `seed`; n_train/n_test default to 1024.
    """
    check_range("d", d, 1, 10**6, integer=True)
    check_range("k", k, 1, d, integer=True)
    check_range("noise", noise, 0.0, float("inf"))
    check_choice("task", task, ("regression", "classification"))
    check_choice("link", link, tuple(LINKS))
    check_range("directions_seed", directions_seed, 0, 2**63 - 1, integer=True)
    if task == "regression" and n_classes is not None:
        raise ValueError(f"n_classes={n_classes!r} is only valid with task='classification'")
    n_classes = 2 if n_classes is None else n_classes
    check_range("n_classes", n_classes, 2, 10**4, integer=True)
    u = directions(d, k, directions_seed)
    sizes = {"train": 1024 if n_train is None else n_train,
             "test": 1024 if n_test is None else n_test}
    xs, zs, targets, eps = [], [], [], []
    for i, (split, n) in enumerate(sizes.items()):
        check_range(f"n_{split}", n, 1, 10**8, integer=True)
        xs.append(rng(seed, 10 + i).standard_normal((n, d)).astype(np.float32))
        zs.append(xs[-1].astype(np.float64) @ u.T)
        targets.append(LINKS[link](zs[-1]).sum(1) / np.sqrt(k))
        eps.append(rng(seed, 20 + i).standard_normal(n))
    mean, std = float(targets[0].mean()), float(targets[0].std()) or 1.0
    ys = [(t - mean) / std + noise * e for t, e in zip(targets, eps)]
    info = {
        "directions": u.tolist(), "link": link, "noise": noise, "d": d, "k": k,
        "directions_seed": directions_seed,
        "link_linear_fraction": round(linear_fraction(LINKS[link]), 3),
        "target_normalization": {"mean": mean, "std": std},
    }
    if task == "regression":
        ys = [y[:, None] for y in ys]
        n_outputs = 1
    else:
        edges = np.quantile(ys[0], np.arange(1, n_classes) / n_classes)
        ys = [np.searchsorted(edges, y, side="right").astype(np.int64) for y in ys]
        info["class_edges"] = edges.tolist()
        n_outputs = n_classes
    x_tr, y_tr, x_te, y_te, z_tr, z_te = to_tensors(xs[0], ys[0], xs[1], ys[1], *zs)
    return Dataset("teacher", task, n_outputs, (d,), x_tr, y_tr, x_te, y_te, z_tr, z_te,
                   [f"z{j}" for j in range(k)], info)
