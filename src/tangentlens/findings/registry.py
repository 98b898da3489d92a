"""The questions, in document order: (id, the experiment whose outputs it reads or None,
the function that answers it). Each function takes the experiment's output folder (or
the scale name, for questions that run their own runs), the document folder and the
commands to cite, and returns a section (``common.section``)."""

from __future__ import annotations

from . import representations, scaling, span, spawn, transfer

EXPERIMENTS = ("regime_gap", "width_sweep", "depth_width", "transfer")
QUESTIONS = (
    ("Q1", "regime_gap", representations.looking_inside),
    ("Q2", "regime_gap", representations.kernel_network),
    ("Q3", "regime_gap", representations.pca_share),
    ("Q4", "width_sweep", span.span_share),
    ("Q5", "transfer", transfer.transfer),
    ("Q6", "regime_gap", scaling.regime_gap),
    ("Q7", "depth_width", scaling.depth_width),
    ("Q8", "width_sweep", scaling.width_laws),
    ("Q9", None, spawn.spawn_gap),
)
