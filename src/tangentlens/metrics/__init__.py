"""Pure metrics: arrays (numpy or torch) in, numbers out; no I/O, no runs.

One concept per module: ``change`` (how far activations moved), ``similarity`` (CKA,
PCA subspaces), ``spectrum`` (effective dimension), ``span`` (gradient-span share),
``kernels`` (kernel distance and alignment), ``probes`` (linear decodability),
``fourier`` (Z_p spectra), ``units`` (top-k examples, PCA directions), ``embedding``
(2-D PCA/UMAP coordinates), ``actmax`` (activation maximization of a callable).
The common metrics are re-exported here: ``from tangentlens import metrics as M``.
"""

from .arrays import as_features, to_numpy
from .change import activation_flip_fraction, per_neuron_change, relative_change
from .kernels import kernel_distance, kernel_relative_change, kernel_target_alignment
from .similarity import linear_cka, pca_subspace_metrics, rbf_cka
from .span import StreamingSpan, gradient_span_fraction, span_fraction
from .spectrum import effective_rank, participation_ratio

__all__ = [
    "StreamingSpan", "activation_flip_fraction", "as_features", "effective_rank",
    "gradient_span_fraction", "kernel_distance", "kernel_relative_change",
    "kernel_target_alignment", "linear_cka", "participation_ratio", "pca_subspace_metrics",
    "per_neuron_change", "rbf_cka", "relative_change", "span_fraction", "to_numpy",
]
