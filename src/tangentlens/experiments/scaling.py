"""Scaling laws shared by the experiments: log-log slope fits with confidence intervals,
log-log figures with the fits in the legend, and a small "figures + table + caption" HTML page.

``fit_slope(x, y)`` fits log y = intercept + slope · log x by least squares over every
(x, y) point (repeated seeds are separate points) and gives a Student-t interval for the
slope; non-finite and non-positive points are dropped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots


def fit_slope(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict:
    """slope, its ``level`` CI (lo, hi), intercept (of log y), se and n of a log-log fit."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    n = len(lx)
    out = dict(slope=math.nan, lo=math.nan, hi=math.nan, intercept=math.nan, se=math.nan, n=n)
    if n < 2 or np.ptp(lx) == 0:
        return out
    slope, intercept = np.polyfit(lx, ly, 1)
    out.update(slope=float(slope), intercept=float(intercept))
    if n > 2:
        resid = ly - (intercept + slope * lx)
        se = math.sqrt(resid @ resid / (n - 2) / np.sum((lx - lx.mean()) ** 2))
        half = stats.t.ppf(0.5 + level / 2, n - 2) * se
        out.update(se=se, lo=float(slope - half), hi=float(slope + half))
    return out


def fit_slopes(df: pd.DataFrame, by: Sequence[str], x: str, y: str) -> pd.DataFrame:
    """``fit_slope`` of y on x for every group of ``by``: columns ``by`` + slope, lo, hi, ..."""
    rows = [{**dict(zip(by, key if isinstance(key, tuple) else (key,))),
             **fit_slope(g[x], g[y])} for key, g in df.groupby(list(by), sort=False)]
    return pd.DataFrame(rows, columns=[*by, "slope", "lo", "hi", "intercept", "se", "n"])


def slope_text(fit: dict) -> str:
    """``-0.50 [-0.53, -0.47]`` (or just the slope when there is no interval)."""
    if not math.isfinite(fit["slope"]):
        return "n/a"
    ci = f" [{fit['lo']:.2f}, {fit['hi']:.2f}]" if math.isfinite(fit["lo"]) else ""
    return f"{fit['slope']:.2f}{ci}"


def regime_style(key: tuple) -> dict:
    """Fixed regime colour (``plots.color``) and view line style for a (regime, view) key."""
    regime, view = key
    network = view == "network"
    return dict(color=plots.color(regime), ls=plots.VIEW_STYLES.get(view, "-"),
                mfc=None if network else "none",
                label=regime if network else f"{regime} ({view})")


def scaling_figure(df: pd.DataFrame, x: str, y: str, path: str | Path, *, col: str,
                   series: Sequence[str], style: Callable[[tuple], dict] = regime_style,
                   row: str | None = None, fit: bool = True, pooled: bool = False,
                   logy: bool = True, theory: dict | None = None, xlabel: str = "",
                   ylabel: str = "", title: str = "") -> Path:
    """``y`` against ``x`` on log axes, one panel per ``col`` (× ``row``) value and one series
    per value of the ``series`` columns: every point faint, the mean over repeats as markers
    and, with ``fit``, the fitted power law with "slope [95% CI]" in the legend — one per
    series, or with ``pooled`` one (black) over all points of the panel. ``theory`` maps a
    ``col`` value (``(row, col)`` with ``row``) to a reference slope, drawn grey dotted
    through the first mean of the panel's first series."""
    fit = fit and logy
    cols = list(dict.fromkeys(df[col]))
    rows = list(dict.fromkeys(df[row])) if row else [None]
    fig, axes = plots.figure(len(rows), len(cols), sharex=True,
                             figsize=(4.2 * len(cols), 3.2 * len(rows) + 0.6))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            sel = df[(df[col] == c) & ((df[row] == r) if row else True)]
            anchor = None
            for key, g in sel.groupby(list(series), sort=False):
                key = key if isinstance(key, tuple) else (key,)
                st = style(key)
                mean = g.groupby(x)[y].mean()
                anchor = anchor or (mean.index[0], mean.iloc[0])
                label = st.pop("label")
                ax.scatter(g[x], g[y], s=8, alpha=0.3, color=st["color"], lw=0)
                if fit and not pooled:
                    label = f"{label}: {_draw_fit(ax, g[x], g[y], st)}"
                ax.plot(mean.index, mean.to_numpy(), marker="o", ms=4, lw=0 if fit else 1,
                        label=label, **{k: v for k, v in st.items() if k != "ls" or not fit})
            if fit and pooled:
                ax.plot([], [], color="k", label=f"all: {_draw_fit(ax, sel[x], sel[y], {})}")
            slope = (theory or {}).get((r, c) if row else c)
            if slope is not None and anchor is not None:
                xs = np.array([min(sel[x]), max(sel[x])], float)
                ax.plot(xs, anchor[1] * (xs / anchor[0]) ** slope, color="grey", ls=":",
                        label=f"theory: {slope:+.2f}")
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_title(f"{c}" + (f" — {r}" if row else ""), fontsize="medium")
            ax.set_xlabel(xlabel or x)
            ax.set_ylabel(ylabel or y)
            ax.legend(fontsize="x-small", frameon=False)
    fig.suptitle(title)
    return plots.save(fig, path)


def _draw_fit(ax, x: pd.Series, y: pd.Series, style: dict) -> str:
    """Draw the fitted power law of y on x over the range of x; returns its slope text."""
    f = fit_slope(x, y)
    if math.isfinite(f["slope"]):
        xs = np.array([x.min(), x.max()], float)
        ax.plot(xs, np.exp(f["intercept"]) * xs ** f["slope"], lw=1,
                **{"color": "k", **{k: v for k, v in style.items() if k != "mfc"}})
    return slope_text(f)


def html_section(title: str, caption: str, figures: Sequence[str | Path],
                 table: pd.DataFrame | None = None) -> str:
    """An <h2> section: caption paragraph, embedded PNG figures, then an optional table."""
    parts = [f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>"]
    for fig in figures:
        data = base64.b64encode(Path(fig).read_bytes()).decode()
        parts.append(f'<figure><img alt="{html.escape(Path(fig).name)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>'
                     f"{html.escape(Path(fig).name)}</figcaption></figure>")
    if table is not None:
        parts.append(table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}"))
    return "".join(parts)


def write_html(path: str | Path, title: str, sections: Sequence[str]) -> Path:
    """A self-contained HTML page (the style of ``tangentlens.report``, figures up to the full
    page width) of ``sections``."""
    from ..report import STYLE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{STYLE}figure{{max-width:100%}}"
                    f"</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}"
                    "</body></html>")
    return path
