"""The parts every finding is made of: rows (an estimate, optionally with its claim and
verdict), figures (drawn estimates, or an experiment's PNG copied next to the document),
and the section record the renderer reads."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .stats import combine, estimate, verdict

if TYPE_CHECKING:
    import pandas as pd

FIGURES = Path("figures") / "findings"  # relative to the document


def row(label: str, values: Iterable[float], claim: str | None = None, null: float = 0.0,
        tol: float | None = None, margin: float = 0.0, theory: bool = False,
        **extra) -> dict:
    """An estimate over seeds; with ``claim`` also its verdict. ``theory`` marks a row whose
    claim is the expected theory (a 'not supported' there contradicts it); ``margin`` is a
    directional claim's smallest effect of interest."""
    r = estimate(values, label)
    if claim is not None:
        r.update(claim=claim, null=null, tol=tol, theory=theory, **verdict(r, claim, null, tol, margin))
    return {**r, **extra}


def missing(label: str, what: str) -> dict:
    """A row that could not be computed: inconclusive, naming what is missing."""
    return {**estimate([], label), "claim": None, "null": None, "tol": None, "theory": False,
            "verdict": "inconclusive", "reason": f"not computed: {what}"}


def section(qid: str, title: str, question: str, claim: str, commands: Sequence[str],
            figures: Sequence[str], rows: Sequence[dict], headline: str,
            notes: Sequence[str] = ()) -> dict:
    """A finding: its overall verdict combines the rows that carry a claim; ``headline``
    is the label of the row shown as the section's number. Rows whose theory claim is not
    supported add a note saying the result contradicts the expected theory."""
    judged = [r for r in rows if "verdict" in r]
    head = next((r for r in rows if r["label"] == headline), rows[0] if rows else None)
    notes = list(notes) + [f"Contradicts the expected theory: {r['label']} ({r['reason']})."
                           for r in judged if r.get("theory") and r["verdict"] == "not supported"]
    return {"id": qid, "title": title, "question": question, "claim": claim,
            "commands": list(commands), "figures": list(figures), "headline": head,
            **combine(judged), "rows": list(rows), "notes": notes}


def per_seed_slopes(df: pd.DataFrame, x: str, y: str) -> list[float]:
    """The log-log slope of y on x fitted separately for every seed."""
    from ..experiments.scaling import fit_slope

    return [fit_slope(s[x], s[y])["slope"] for _, s in df.groupby("seed")]


def copy_figure(src: str | Path, out: Path, name: str) -> str:
    """Copy an experiment's PNG to ``out/FIGURES/name``; its path relative to ``out``."""
    dst = out / FIGURES / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.relative_to(out).as_posix()


def estimate_figure(rows: Sequence[dict], out: Path, name: str, title: str,
                    xlabel: str) -> str:
    """Per-seed values (dots), mean and 95% CI (bar) of each row, the claims' null values as
    grey ticks; saved as ``out/FIGURES/name``; its path relative to ``out``."""
    from .. import plots

    rows = [r for r in rows if r["n"]]
    fig, axes = plots.figure(1, 1, figsize=(7.5, 0.9 + 0.32 * max(len(rows), 1)))
    ax = axes[0, 0]
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        ax.plot(r["values"], [y] * r["n"], "o", color="0.6", ms=3)
        err = [[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]] if r["n"] > 1 else None
        ax.errorbar([r["mean"]], [y], xerr=err, fmt="D", color="k", ms=4, capsize=3)
        if r.get("null") is not None:
            ax.plot([r["null"]], [y], "|", color="tab:red", ms=14)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows][::-1], fontsize="x-small")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize="small")
    ax.grid(alpha=0.3, axis="x")
    path = plots.save(fig, out / FIGURES / name)
    return path.relative_to(out).as_posix()
