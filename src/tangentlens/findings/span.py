"""Q4, read from the width_sweep runs: does Δh of the hidden layer lie in the span of the
output gradients ∂f/∂h at θ0 more than in a random subspace of the same dimension, in the
tangent and the network view, across widths (``lenses.gradient_span`` per run)?"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..lenses.gradient_span import gradient_span
from ..store import open_run
from .common import estimate_figure, row, section

HOOK = "layers.0.hook_post"
PARAMETRIZATIONS = ("ntk", "mup")


def span_share(ws: Path, out: Path, commands: list[str]) -> dict:
    """Span share − random share at the final step per task × parametrization × regime/view
    × width (claim > 0 at the widest width; other widths are context)."""
    vals: dict[tuple, list[float]] = defaultdict(list)
    for path in sorted(Path(ws).rglob("run.h5")):
        with open_run(path) as run:
            task, model = run.config["data"]["name"], run.config["model"]
            if model["parametrization"] not in PARAMETRIZATIONS:
                continue
            df = gradient_span(run, hooks=[HOOK])
            for (regime, view), g in df.groupby(["regime", "view"]):
                last = g[g["step"] == g["step"].max()].set_index("metric")["value"]
                vals[(task, model["parametrization"], regime, view, model["width"])].append(
                    float(last["span_fraction"] - last["random_baseline"]))
    wmax = max((k[-1] for k in vals), default=0)
    rows = [row(f"{t} {p} {g}/{v} w={w}", x, **({"claim": "greater"} if w == wmax else {}))
            for (t, p, g, v, w), x in sorted(vals.items())]
    main = [r for r in rows if "verdict" in r]
    figs = [estimate_figure(rows, out, "q4_gradient_span.png", "Share of ‖Δh‖² in the span "
                            f"of ∂f/∂h at θ0 minus the random share ({HOOK})",
                            "span share − random share")]
    return section(
        "Q4", "Do the output gradients span the changing directions?",
        "Do the output gradients ∂f/∂h span the changing directions (gradient-span share vs "
        "random baseline), for tangent and network views, vs width?",
        "At the widest width, the share of ‖Δh‖² of the hidden layer inside the span of the "
        "output gradients ∂f/∂h at θ0 exceeds the share of a random subspace of the same "
        "dimension, for sgd and for the linearized model in both views.",
        commands, figs, rows, main[0]["label"] if main else "",
        [f"1-hidden-layer tanh MLP (width_sweep runs), hook {HOOK}; the span is that of the "
         "output gradients at all training points (lenses.gradient_span); at this last "
         "hidden layer ∂f/∂h is the same O readout rows for every input, so the span is "
         "those O directions (random share O/width)."])
