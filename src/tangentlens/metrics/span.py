"""Share of a change that lies in a given span (the gradient-span test).

``StreamingSpan`` builds an orthonormal basis of the row span of many vectors fed block by
block (streaming QR: only one block and the basis are held); ``span_fraction`` is the share
of ‖Δh‖² inside a basis; ``gradient_span_fraction`` does both for one matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_features


class StreamingSpan:
    """Orthonormal basis (d, dim) of the row span of the blocks passed to ``add``.

    New directions are the right singular vectors of the part of a block outside the
    basis, kept while their singular value exceeds ``rcond`` × the largest row norm seen so
    far and the basis has fewer than ``max_dim`` columns. The outside part is the block
    orthogonalized against the basis (classical Gram–Schmidt, done twice), O(b·d·dim); once
    the basis fills more than half of R^d (and ``max_dim`` >= d), an orthonormal complement
    C is kept instead and the outside part is g C, O(b·d·(d − dim)). A block with more
    rows than columns is replaced by the R of its QR before the SVD (same singular values
    and right vectors). ``residual`` = sqrt(dropped / total energy) of all rows fed bounds
    ‖G − G Q Qᵀ‖_F / ‖G‖_F (0 up to rounding while nothing is dropped).
    """

    def __init__(self, d: int, rcond: float = 1e-6, max_dim: int | None = None):
        if max_dim is not None and max_dim < 1:
            raise ValueError(f"max_dim={max_dim!r}; must be a positive integer or None")
        self.d, self.rcond = d, rcond
        self.max_dim = d if max_dim is None else min(d, max_dim)
        self.basis = np.zeros((d, 0))
        self._complement: np.ndarray | None = None
        self.n_rows = 0
        self._scale = self._total = self._dropped = 0.0

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @property
    def full(self) -> bool:
        """Whether the basis can grow no further (it has ``max_dim`` columns)."""
        return self.dim >= self.max_dim

    @property
    def residual(self) -> float:
        return float(np.sqrt(self._dropped / self._total)) if self._total else 0.0

    def _rows(self, block: Any) -> np.ndarray:
        g = as_features(block, "block").astype(np.float64, copy=False)
        if g.shape[1] != self.d:
            raise ValueError(f"block has d = {g.shape[1]} features; the span has d = {self.d}")
        return g

    def _outside(self, g: np.ndarray) -> np.ndarray:
        """g's part outside the basis: g (I − Q Qᵀ), or its coordinates g C in the complement."""
        if self._complement is not None:
            return g @ self._complement
        r = g - (g @ self.basis) @ self.basis.T
        return r - (r @ self.basis) @ self.basis.T

    def residual_of(self, block: Any) -> float:
        """‖g − g Q Qᵀ‖_F / ‖g‖_F for a block not added (e.g. a held-out one); 0 if g = 0."""
        g = self._rows(block)
        total = np.sum(g**2)
        return float(np.sqrt(np.sum(self._outside(g) ** 2) / total)) if total else 0.0

    def add(self, block: Any) -> StreamingSpan:
        """Grow the basis by the directions of ``block`` (rows) it does not yet span."""
        g = self._rows(block)
        if not len(g):
            return self
        self.n_rows += len(g)
        self._total += float(np.sum(g**2))
        self._scale = max(self._scale, float(np.sqrt(np.max(np.sum(g**2, axis=1)))))
        r = self._outside(g)
        left = float(np.sum(r**2))
        if self.full or left <= (self.rcond * self._scale) ** 2:  # no singular value passes
            self._dropped += left
            return self
        if len(r) > r.shape[1]:
            r = np.linalg.qr(r, mode="r")
        _, s, vt = np.linalg.svd(r, full_matrices=self._complement is not None)
        keep = min(int(np.sum(s > self.rcond * self._scale)), self.max_dim - self.dim)
        if self._complement is not None:  # rotate C so its first columns are the new ones
            vt = (self._complement @ vt.T).T
            self._complement = vt[keep:].T
        self.basis = np.hstack([self.basis, vt[:keep].T])
        self._dropped += float(np.sum(s[keep:] ** 2))
        if self._complement is None and self.max_dim == self.d and 2 * self.dim > self.d:
            self._complement = np.linalg.qr(self.basis, mode="complete")[0][:, self.dim:]
        return self


def span_fraction(delta_h: Any, basis: np.ndarray) -> float:
    """Fraction of ‖Δh‖² (rows: inputs) inside the span of orthonormal columns ``basis``
    (d, dim); NaN if Δh = 0."""
    dh = as_features(delta_h, "delta_h").astype(np.float64, copy=False)
    if dh.shape[1] != basis.shape[0]:
        raise ValueError(f"delta_h has d = {dh.shape[1]} features but the span lives in "
                         f"d = {basis.shape[0]}; shape {np.shape(delta_h)}")
    total = np.sum(dh**2)
    return float(np.sum((dh @ basis) ** 2) / total) if total else np.nan


def gradient_span_fraction(delta_h: Any, grads: Any, rcond: float = 1e-6) -> dict:
    """Fraction of ‖Δh‖² lying in the row span of output-gradient directions `grads` (m, d).

    The span is ``StreamingSpan(d, rcond).add(grads)``. Returns fraction (NaN if Δh = 0),
    dim (rank of the span) and random_baseline = dim / d, the expected fraction for a
    uniformly random dim-dimensional subspace (for any fixed Δh).
    """
    dh, g = as_features(delta_h, "delta_h"), as_features(grads, "grads")
    if dh.shape[1] != g.shape[1]:
        raise ValueError(
            f"delta_h has d = {dh.shape[1]} features but grads has "
            f"{g.shape[1]}; shapes {np.shape(delta_h)} and {np.shape(grads)}"
        )
    span = StreamingSpan(g.shape[1], rcond).add(g)
    return {"fraction": span_fraction(dh, span.basis), "dim": span.dim,
            "random_baseline": span.dim / g.shape[1]}
