"""How far activations moved: relative Frobenius change, per-neuron change, ReLU flips."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import paired


def relative_change(h: Any, h0: Any) -> float:
    """‖h − h0‖_F / ‖h0‖_F."""
    a, b = paired(h, h0)
    norm0 = np.linalg.norm(b)
    if norm0 == 0:
        raise ValueError("h0 is all zeros; relative change is undefined")
    return float(np.linalg.norm(a - b) / norm0)


def per_neuron_change(h: Any, h0: Any, threshold: float = 0.1, eps: float = 1e-6) -> dict:
    """Per-neuron relative change ‖h[:, i] − h0[:, i]‖ / ‖h0[:, i]‖ summarized.

    Neurons with ‖h0[:, i]‖ <= eps · max_i ‖h0[:, i]‖ (dead at init) are skipped.
    Returns median, p90, frac_above (fraction of live neurons above `threshold`),
    n_skipped and n_neurons; statistics are NaN when every neuron is dead.
    """
    a, b = paired(h, h0)
    norm0 = np.linalg.norm(b, axis=0)
    live = norm0 > eps * norm0.max()
    change = np.linalg.norm(a - b, axis=0)[live] / norm0[live]
    stats = (
        (np.median(change), np.quantile(change, 0.9), np.mean(change > threshold))
        if change.size
        else (np.nan,) * 3
    )
    return {
        "median": float(stats[0]),
        "p90": float(stats[1]),
        "frac_above": float(stats[2]),
        "n_skipped": int((~live).sum()),
        "n_neurons": int(live.size),
    }


def activation_flip_fraction(pre: Any, pre0: Any) -> float:
    """Fraction of entries whose sign (pre-activation > 0) differs from init."""
    a, b = paired(pre, pre0, ("pre", "pre0"))
    return float(np.mean((a > 0) != (b > 0)))
