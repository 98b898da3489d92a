"""Figure style shared by every analysis: fixed regime colours, labelled axes, PNG output."""

from __future__ import annotations

from pathlib import Path

REGIME_COLORS = {
    "init": "#7f7f7f",        # θ0 baseline
    "sgd": "#d62728",         # red
    "linearized": "#1f77b4",  # blue
    "kernel": "#2ca02c",      # green
    "lazy": "#ff7f0e",        # orange
    "kernel_infinite": "#9467bd",
    "ntk_limit": "#17becf",   # cyan: the linearized/kernel family at width → ∞
    "mup_limit": "#8b0000",   # dark red: the sgd-μP family at width → ∞
}
VIEW_STYLES = {"network": "-", "tangent": "--"}


def color(regime: str) -> str:
    """The fixed colour of a regime (grey for anything unknown)."""
    return REGIME_COLORS.get(regime, "#8c564b")


def figure(nrows: int = 1, ncols: int = 1, **kw):
    """A matplotlib (fig, axes) on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    kw.setdefault("figsize", (4.2 * ncols, 3.4 * nrows))
    kw.setdefault("squeeze", False)
    kw.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, **kw)


def save(fig, path: str | Path) -> Path:
    """Save as PNG (dpi 120) and close the figure."""
    import matplotlib.pyplot as plt

    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
