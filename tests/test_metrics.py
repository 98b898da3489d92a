"""Metrics and Fourier analysis against independent (explicit / naive / library) references."""

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from tangentlens.metrics import fourier as F
from tangentlens import metrics as M


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def centering(n):
    return np.eye(n) - np.ones((n, n)) / n


# ---------------------------------------------------------------- change metrics


def test_relative_change_and_per_neuron_change_explicit(rng):
    h0 = rng.standard_normal((30, 4, 5))
    h0[:, 0, 0] = 0.0  # a dead neuron
    h = h0 + 0.2 * rng.standard_normal(h0.shape)
    assert M.relative_change(h, h0) == pytest.approx(
        np.sqrt(np.sum((h - h0) ** 2) / np.sum(h0**2)), rel=1e-12
    )
    a, b = h.reshape(30, -1), h0.reshape(30, -1)
    ratios = [
        np.sqrt(np.sum((a[:, i] - b[:, i]) ** 2) / np.sum(b[:, i] ** 2))
        for i in range(20)
        if np.any(b[:, i])
    ]
    out = M.per_neuron_change(torch.tensor(h), h0, threshold=0.2)
    assert out["n_skipped"] == 1 and out["n_neurons"] == 20
    assert out["median"] == pytest.approx(np.median(ratios), rel=1e-12)
    assert out["p90"] == pytest.approx(np.percentile(ratios, 90), rel=1e-12)
    assert out["frac_above"] == pytest.approx(np.mean(np.array(ratios) > 0.2))


def test_shape_mismatch_names_shapes(rng):
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 5\)"):
        M.relative_change(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        M.relative_change(np.full((2, 2), np.nan), np.ones((2, 2)))


def test_activation_flip_fraction_hand_example():
    pre = np.array([[1.0, -1.0], [0.0, 2.0]])
    pre0 = np.array([[1.0, 1.0], [-1.0, 2.0]])
    assert M.activation_flip_fraction(pre, pre0) == 0.25  # 0 counts as inactive like -1


# ---------------------------------------------------------------- CKA


def explicit_linear_cka(x, y):
    h = centering(len(x))
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l))


@pytest.mark.parametrize("n,dx,dy", [(60, 8, 5), (10, 30, 40)])  # feature form, Gram form
def test_linear_cka_matches_gram_hsic(rng, n, dx, dy):
    x = rng.standard_normal((n, dx))
    y = x[:, :1] @ rng.standard_normal((1, dy)) + rng.standard_normal((n, dy))
    assert M.linear_cka(x, y) == pytest.approx(explicit_linear_cka(x, y), rel=1e-10)


def test_linear_cka_invariances(rng):
    x = rng.standard_normal((100, 3, 4))
    q = scipy.linalg.qr(rng.standard_normal((12, 12)))[0]
    assert M.linear_cka(x, x.reshape(100, -1) @ q) == pytest.approx(1.0, abs=1e-10)
    assert M.linear_cka(torch.tensor(x), 3.7 * x) == pytest.approx(1.0, abs=1e-10)
    assert M.linear_cka(rng.standard_normal((500, 10)), rng.standard_normal((500, 10))) < 0.1
    with pytest.raises(ValueError, match="same number of rows"):
        M.linear_cka(x, x[:50])


def naive_rbf_gram(x, sigma):
    n = len(x)
    d = np.array([[np.sqrt(np.sum((x[i] - x[j]) ** 2)) for j in range(n)] for i in range(n)])
    if sigma is None:
        sigma = np.median([d[i, j] for i in range(n) for j in range(i + 1, n)])
    return np.exp(-(d**2) / (2 * sigma**2))


def naive_hsic(k, l, debiased):
    n = len(k)
    if not debiased:
        h = centering(n)
        return np.trace(k @ h @ l @ h)
    # U-statistic over distinct (i, j, q, r): E k_ij l_ij + E k_ij E l_qr - 2 E k_ij l_iq
    terms = [
        k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        for i, j, q, r in itertools.permutations(range(n), 4)
    ]
    return np.mean(terms)


@pytest.mark.parametrize("sigma", [None, 1.5])
@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka_matches_naive(rng, sigma, debiased):
    x = rng.standard_normal((7, 3))
    y = np.tanh(x @ rng.standard_normal((3, 2))) + 0.3 * rng.standard_normal((7, 2))
    k, l = naive_rbf_gram(x, sigma), naive_rbf_gram(y, sigma)
    ref = naive_hsic(k, l, debiased) / np.sqrt(
        naive_hsic(k, k, debiased) * naive_hsic(l, l, debiased)
    )
    assert M.rbf_cka(x, y, sigma=sigma, debiased=debiased) == pytest.approx(ref, rel=1e-10)


def test_debiased_rbf_cka_near_zero_for_independent_data(rng):
    pairs = [(rng.standard_normal((20, 50)), rng.standard_normal((20, 50))) for _ in range(10)]
    biased = np.mean([M.rbf_cka(x, y) for x, y in pairs])
    debiased = np.mean([M.rbf_cka(x, y, debiased=True) for x, y in pairs])
    assert abs(debiased) < 0.05 and biased > 0.2 and biased > 5 * abs(debiased)


# ---------------------------------------------------------------- subspaces and spectra


def top_k_eigvecs(x, k):
    lam, v = np.linalg.eigh(np.cov(x.T))
    return v[:, np.argsort(lam)[::-1][:k]]


def test_pca_subspace_metrics_against_scipy(rng):
    h0 = rng.standard_normal((300, 20)) * np.linspace(3, 0.1, 20)
    h = h0 + 0.3 * rng.standard_normal((300, 20)) @ rng.standard_normal((20, 20))
    k = 5
    out = M.pca_subspace_metrics(h, h0, k)
    v, v0 = top_k_eigvecs(h, k), top_k_eigvecs(h0, k)
    ref = np.sort(scipy.linalg.subspace_angles(v0, v))
    np.testing.assert_allclose(out["angles"], ref, atol=1e-9)
    assert out["overlap"] == pytest.approx(np.mean(np.cos(ref) ** 2), abs=1e-9)
    cov = np.cov(h.T)
    assert out["variance_explained"] == pytest.approx(
        np.trace(v0.T @ cov @ v0) / np.trace(cov), rel=1e-9
    )


def test_pca_subspace_metrics_identical(rng):
    h0 = rng.standard_normal((100, 10)) * np.arange(10, 0, -1)
    out = M.pca_subspace_metrics(h0, h0, 4)
    assert np.all(out["angles"] < 1e-7) and out["overlap"] == pytest.approx(1.0, abs=1e-12)
    full = M.pca_subspace_metrics(h0, h0, 10)
    assert full["variance_explained"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="k must be in 1..min"):
        M.pca_subspace_metrics(h0, h0, 11)


def test_participation_ratio_and_effective_rank(rng):
    iso = rng.standard_normal((20000, 20))
    assert M.participation_ratio(iso) == pytest.approx(20, rel=0.02)
    assert M.effective_rank(iso) == pytest.approx(20, rel=0.01)
    rank1 = np.outer(rng.standard_normal(50), rng.standard_normal(8))
    assert M.participation_ratio(rank1) == pytest.approx(1.0, abs=1e-8)
    assert M.effective_rank(rank1) == pytest.approx(1.0, abs=1e-6)
    x = rng.standard_normal((40, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1])
    lam = np.clip(np.linalg.eigvalsh(np.cov(x.T)), 0, None)
    assert M.participation_ratio(x) == pytest.approx(lam.sum() ** 2 / np.sum(lam**2), rel=1e-10)
    p = lam / lam.sum()
    assert M.effective_rank(x) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-10)


# ---------------------------------------------------------------- gradient span


def test_gradient_span_fraction(rng):
    d, dim, n = 512, 16, 400
    grads = rng.standard_normal((dim, d))
    inside = M.gradient_span_fraction(rng.standard_normal((n, dim)) @ grads, grads)
    assert inside["fraction"] == pytest.approx(1.0, abs=1e-10) and inside["dim"] == dim
    rand = M.gradient_span_fraction(rng.standard_normal((n, d)), torch.tensor(grads))
    var = dim * (d - dim) / (d**2 * (d / 2 + 1))  # Beta(dim/2, (d-dim)/2) per row
    assert rand["random_baseline"] == dim / d
    assert abs(rand["fraction"] - dim / d) < 4 * np.sqrt(var / n)


def test_gradient_span_rank_cutoff(rng):
    grads = rng.standard_normal((20, 8)) @ rng.standard_normal((8, 64))  # rank 8
    assert M.gradient_span_fraction(rng.standard_normal((5, 64)), grads)["dim"] == 8
    with pytest.raises(ValueError, match="d = 63 features but grads has 64"):
        M.gradient_span_fraction(np.ones((5, 63)), grads)


# rank 30 > 40/2 without a cap switches to the complement; with a cap it never does
@pytest.mark.parametrize("rank,max_dim", [(12, None), (30, None), (30, 39)])
def test_streaming_span_matches_one_dense_svd(rng, rank, max_dim):
    g = rng.standard_normal((300, rank)) @ rng.standard_normal((rank, 40))
    span = M.StreamingSpan(40, max_dim=max_dim)
    for block in np.array_split(g, 7):
        span.add(block)
    _, s, vt = np.linalg.svd(g, full_matrices=False)
    v = vt[s > 1e-6 * s[0]]
    assert span.dim == len(v) == rank and span.n_rows == 300 and span.residual < 1e-12
    np.testing.assert_allclose(span.basis.T @ span.basis, np.eye(rank), atol=1e-12)
    np.testing.assert_allclose(span.basis @ span.basis.T, v.T @ v, atol=1e-10)
    dh = rng.standard_normal((9, 40))
    assert M.span_fraction(dh, span.basis) == pytest.approx(
        np.sum((dh @ v.T) ** 2) / np.sum(dh**2), abs=1e-12)


def test_streaming_span_cap_reports_its_residual(rng):
    g = rng.standard_normal((30, 20))
    span = M.StreamingSpan(20, max_dim=5).add(g[:10])
    assert span.full and span.dim == 5
    held = g[10:]
    exact = np.linalg.norm(held - held @ span.basis @ span.basis.T) / np.linalg.norm(held)
    assert span.residual_of(held) == pytest.approx(exact) and 0.5 < exact < 1
    # what was dropped from the first block bounds its residual
    first = np.linalg.norm(g[:10] - g[:10] @ span.basis @ span.basis.T) / np.linalg.norm(g[:10])
    assert span.residual == pytest.approx(first)
    with pytest.raises(ValueError, match="block has d = 19 features; the span has d = 20"):
        span.add(np.ones((2, 19)))
    with pytest.raises(ValueError, match="max_dim=0"):
        M.StreamingSpan(20, max_dim=0)


# ---------------------------------------------------------------- kernels


def test_kernel_distance_and_change(rng):
    a = rng.standard_normal((10, 2, 10, 2)).reshape(20, 20)
    k = (a @ a.T).reshape(10, 2, 10, 2).transpose(0, 2, 1, 3)  # (n, n, O, O)
    assert M.kernel_distance(k, 2.5 * k) == pytest.approx(0.0, abs=1e-12)
    b = rng.standard_normal((20, 20))
    k2 = (b @ b.T).reshape(10, 2, 10, 2).transpose(0, 2, 1, 3)
    ref = 1 - np.trace(k.reshape(-1, 1).T @ k2.reshape(-1, 1)) / (
        np.linalg.norm(k.ravel()) * np.linalg.norm(k2.ravel())
    )
    assert M.kernel_distance(k, k2) == pytest.approx(ref, rel=1e-12) and ref > 0.05
    assert M.kernel_relative_change(k2, k) == pytest.approx(
        np.linalg.norm((k2 - k).ravel()) / np.linalg.norm(k.ravel()), rel=1e-12
    )
    with pytest.raises(ValueError, match=r"\(10, 10, 2, 2\) and \(10, 10\)"):
        M.kernel_distance(k, k[:, :, 0, 0])


def test_kernel_target_alignment(rng):
    labels = rng.integers(0, 3, size=12)
    y = np.eye(3)[labels]
    for center in (True, False):
        assert M.kernel_target_alignment(y @ y.T, labels, center=center) == pytest.approx(1.0)
    x = rng.standard_normal((12, 5))
    kb = x @ x.T + 1.0
    h = centering(12)
    kc, tc = h @ kb @ h, h @ y @ y.T @ h
    ref = np.sum(kc * tc) / (np.linalg.norm(kc) * np.linalg.norm(tc))
    k4 = np.einsum("ij,ab->ijab", kb, np.eye(4))  # trace over outputs gives 4 * kb
    assert M.kernel_target_alignment(k4, torch.tensor(labels)) == pytest.approx(ref, rel=1e-12)
    raw = np.sum(kb * (y @ y.T)) / (np.linalg.norm(kb) * np.linalg.norm(y @ y.T))
    assert M.kernel_target_alignment(kb, y, center=False) == pytest.approx(raw, rel=1e-12)
    with pytest.raises(ValueError, match="n = 12"):
        M.kernel_target_alignment(kb, labels[:10])


# ---------------------------------------------------------------- Fourier


def test_fourier_basis_orthonormal():
    b = F.fourier_basis(13)
    np.testing.assert_allclose(b @ b.T, np.eye(13), atol=1e-12)
    with pytest.raises(ValueError, match="odd integer"):
        F.fourier_basis(12)


def test_frequency_power_single_frequency_and_fft(rng):
    p, k = 23, 7
    t = np.arange(p)[:, None]
    w = np.cos(2 * np.pi * k * t / p) * rng.standard_normal(6) + np.sin(
        2 * np.pi * k * t / p
    ) * rng.standard_normal(6)
    w = np.vstack([w + 1e-4 * rng.standard_normal(w.shape), 100 * np.ones((1, 6))])  # extra row
    out = F.frequency_power(torch.tensor(w), p)
    assert out["frequencies"][np.argmax(out["power"])] == k
    assert F.top_k_fraction(out["power"], k=1) > 0.9999
    # independent reference: |rfft|^2, with cos/sin power 2|F_k|^2 / p and constant |F_0|^2 / p
    spec = np.abs(np.fft.rfft(w[:p], axis=0)) ** 2
    np.testing.assert_allclose(out["power"], 2 * spec[1:].sum(axis=1) / p, rtol=1e-10, atol=1e-14)
    assert out["constant"] == pytest.approx(spec[0].sum() / p, abs=1e-14)
    assert out["constant"] + out["power"].sum() == pytest.approx(np.sum(w[:p] ** 2))  # Parseval
    with pytest.raises(ValueError, match="at least p = 23 rows"):
        F.frequency_power(w[:10], p)
