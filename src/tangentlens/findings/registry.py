"""The questions, in document order: (id, the experiments whose outputs it reads (none for
a question that runs its own runs), the function that answers it). Each function takes the
experiments' output folders in that order (or the scale name, for a question that runs its
own runs), the document folder and the commands to cite, and returns a section
(``common.section``)."""

from __future__ import annotations

from . import representations, scaling, span, spawn, transfer

EXPERIMENTS = ("regime_gap", "width_sweep", "depth_width", "transfer", "infinite_width")
QUESTIONS = (
    ("Q1", ("regime_gap",), representations.looking_inside),
    ("Q2", ("regime_gap",), representations.kernel_network),
    ("Q3", ("regime_gap",), representations.pca_share),
    ("Q4", ("width_sweep",), span.span_share),
    ("Q5", ("transfer",), transfer.transfer),
    ("Q6", ("regime_gap",), scaling.regime_gap),
    ("Q7", ("depth_width",), scaling.depth_width),
    ("Q8", ("width_sweep", "infinite_width"), scaling.width_laws),
    ("Q9", (), spawn.spawn_gap),
)
