"""Estimates with 95% confidence intervals over seeds, and verdicts read off the interval.

``estimate(values)`` is the mean of per-seed values with a Student-t interval (the
method named in every finding); ``verdict(est, claim, null)`` compares the interval with
the claim's null value: ``greater``/``less`` claims are supported when the CI lies on
the claimed side beyond ``margin`` (the smallest effect of interest), negligible when it
lies within ±``margin`` of the null, not supported when it lies on the other side and
inconclusive otherwise; ``equal`` claims are supported when the CI contains the null and
lies within ``tol`` of it, not supported when it excludes the null. Fewer than
``MIN_SEEDS`` finite values is always inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

LEVEL = 0.95
MIN_SEEDS = 3
METHOD = "t"  # Student-t interval of the mean over seeds


def estimate(values: Iterable[float], label: str = "") -> dict:
    """{label, mean, lo, hi, n, values, ci}: mean of the finite values with a 95% t-interval
    (lo = hi = NaN with fewer than two values)."""
    from scipy import stats

    v = np.asarray([float(x) for x in values], float)
    v = v[np.isfinite(v)]
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    lo = hi = math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
        lo, hi = mean - half, mean + half
    return {"label": label, "mean": mean, "lo": lo, "hi": hi, "n": n,
            "values": [float(x) for x in v], "ci": METHOD}


def fmt(x: float | None) -> str:
    """The one number format of the findings: 3 significant digits, NaN/None as 'n/a'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.3g}"


def interval_text(est: dict) -> str:
    return f"{fmt(est['mean'])} [{fmt(est['lo'])}, {fmt(est['hi'])}]"


def verdict(est: dict, claim: str, null: float = 0.0, tol: float | None = None,
            margin: float = 0.0) -> dict:
    """{verdict, reason} of ``est`` against ``claim`` ∈ {greater, less, equal} and ``null``;
    a directional claim needs its CI beyond ``null ± margin``."""
    if claim not in ("greater", "less", "equal"):
        raise ValueError(f"claim must be one of greater, less, equal; got {claim!r}")
    lo, hi, n = est["lo"], est["hi"], est["n"]
    ci = f"95% CI [{fmt(lo)}, {fmt(hi)}]"
    if n < MIN_SEEDS or not (math.isfinite(lo) and math.isfinite(hi)):
        return {"verdict": "inconclusive",
                "reason": f"only {n} finite seed value(s); a CI needs at least {MIN_SEEDS}"}
    if claim == "equal":
        if lo > null or hi < null:
            return {"verdict": "not supported", "reason": f"{ci} excludes {fmt(null)}"}
        if tol is not None and max(null - lo, hi - null) > tol:
            return {"verdict": "inconclusive",
                    "reason": f"{ci} contains {fmt(null)} but reaches further than "
                              f"{fmt(tol)} from it"}
        return {"verdict": "supported", "reason": f"{ci} contains {fmt(null)}"}
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0; got {margin!r}")
    if (claim == "greater" and lo > null + margin) or (claim == "less" and hi < null - margin):
        side = "above" if claim == "greater" else "below"
        beyond = f"{fmt(null)} ± {fmt(margin)}" if margin else fmt(null)
        return {"verdict": "supported", "reason": f"{ci} lies {side} {beyond}"}
    if margin and null - margin <= lo and hi <= null + margin:
        return {"verdict": "negligible",
                "reason": f"{ci} lies within the margin {fmt(null)} ± {fmt(margin)}"}
    above, below = lo > null, hi < null
    if (claim == "greater" and below) or (claim == "less" and above):
        side = "above" if above else "below"
        return {"verdict": "not supported",
                "reason": f"{ci} excludes {fmt(null)} on the other side ({side})"}
    if margin:
        return {"verdict": "inconclusive",
                "reason": f"{ci} reaches both inside and beyond {fmt(null)} ± {fmt(margin)}"}
    return {"verdict": "inconclusive", "reason": f"{ci} contains {fmt(null)}"}


def combine(verdicts: Sequence[dict]) -> dict:
    """One verdict from several rows: supported if all are, not supported if any row is,
    else inconclusive; the reason counts the rows."""
    kinds = [v["verdict"] for v in verdicts]
    count = ", ".join(f"{kinds.count(k)} {k}" for k in ("supported", "not supported", "negligible",
                                                        "inconclusive") if k in kinds)
    if not kinds:
        return {"verdict": "inconclusive", "reason": "no rows"}
    if all(k == "supported" for k in kinds):
        return {"verdict": "supported", "reason": f"every row supported ({count})"}
    if "not supported" in kinds:
        return {"verdict": "not supported",
                "reason": f"at least one row's CI contradicts the claim ({count})"}
    return {"verdict": "inconclusive", "reason": f"not every row is conclusive ({count})"}
