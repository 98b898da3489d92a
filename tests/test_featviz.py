"""Feature visualization (top-k, activation maximization, embeddings) and run-level Fourier."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tangentlens.lenses import featviz, fourier as fourier_run
from tangentlens.metrics.actmax import maximize_activation
from tangentlens.metrics.embedding import pca_embedding
from tangentlens.rebuild import model_at_init
from tangentlens.metrics.units import pca_directions, top_k, unit_matrix
from tangentlens.plots.grids import plot_grid
from tangentlens.config import load_config
from tangentlens.linearized import linearize
from tangentlens.models import build_model
from tangentlens.store import Probe, open_run
from tangentlens.train import run

MLP_RUN = ["data.name=teacher", "data.n_train=128", "data.n_test=64", "data.options={d: 8, k: 2}",
           "model.width=32", "train.regimes=[sgd,linearized,kernel]", "train.steps=6",
           "train.batch_size=32", "train.checkpoints=[0,3,6]", "train.kernel_max_train=64",
           "train.progress=false", "probe.n_train=24", "probe.n_test=24"]
TF_RUN = ["data.name=modular_addition", "data.options={p: 11}", "model.kind=transformer",
          "model.parametrization=sp", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
          "train.regimes=[sgd,linearized]", "train.optimizer=adamw", "train.lr=0.01",
          "train.loss=cross_entropy", "train.steps=4", "train.batch_size=full", "train.checkpoints=[0,2,4]",
          "train.progress=false", "probe.n_train=64", "probe.n_test=128"]


def _run(tmp_path_factory, name: str, overrides: list[str]):
    out = tmp_path_factory.mktemp(name)
    run(load_config(None, overrides), out)
    return open_run(out / "run.h5")


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    with _run(tmp_path_factory, "mlp", MLP_RUN) as r:
        yield r


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    with _run(tmp_path_factory, "tf", TF_RUN) as r:
        yield r


def _mlp(input_shape=(1, 8, 8), width=64):
    cfg = load_config(None, [f"model.width={width}"]).model
    return build_model(cfg, input_shape, 3, seed=0)


def _assert_png(path) -> None:
    assert path.exists() and path.stat().st_size > 5_000, path


# -- top-k, units, PCA -------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_k_matches_argsort(k):
    scores = np.random.default_rng(k).standard_normal(40)
    scores[[3, 7]] = scores.max() + 1  # a tie at the top: lower index first
    assert top_k(scores, k).tolist() == np.argsort(-scores, kind="stable")[:k].tolist()
    with pytest.raises(ValueError, match="k must be in"):
        top_k(scores, 41)


def test_unit_matrix_shapes_numpy_and_torch():
    cnn = np.random.default_rng(0).standard_normal((5, 4, 6, 6))
    assert np.allclose(unit_matrix(cnn, "cnn"), cnn.mean(axis=(2, 3)))
    tf = torch.randn(5, 3, 8)
    assert torch.equal(unit_matrix(tf, "transformer"), tf[:, -1])
    assert unit_matrix(np.ones((5, 7)), "mlp").shape == (5, 7)


def test_pca_embedding_and_directions():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((50, 10)) * np.arange(10, 0, -1)
    coords, ratios = pca_embedding(u)
    assert coords.shape == (50, 2) and ratios.shape == (2,)
    assert 1 > ratios[0] >= ratios[1] > 0
    v = pca_directions(u, 3)
    assert v.shape == (3, 10) and np.allclose(v @ v.T, np.eye(3))
    assert np.allclose(np.abs(coords[:, 0]), np.abs((u - u.mean(0)) @ v[0]))


# -- activation maximization -------------------------------------------------------------------
def test_actmax_increases_activation_within_budget():
    model = _mlp().requires_grad_(False)
    f = featviz.hook_function(model, dict(model.named_parameters()), "network")
    x0 = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x0 *= 0.3 / x0.norm()
    start = f(x0, "layers.1.hook_post")[0]
    j = int(start.argmax())
    x, value = maximize_activation(lambda z: f(z, "layers.1.hook_post")[:, j], x0, budget=3.0)
    assert float(value) >= 5 * float(start[j]) > 0
    assert float(x.norm()) <= 3.0 + 1e-5


def test_actmax_reaches_linear_optimum_on_vectors():
    v = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    x, value = maximize_activation(lambda z: (z * v).sum(1), torch.zeros(2, 16), budget=2.0,
                                   l2=0.0, steps=300)
    assert torch.allclose(value, 2.0 * v.norm(dim=1), rtol=1e-2)
    assert torch.all(x.norm(dim=1) <= 2.0 + 1e-5)


def test_tangent_view_equals_network_at_theta0_and_linearized_cache():
    model0 = _mlp(width=32)
    params0 = {n: p.detach().clone() for n, p in model0.named_parameters()}
    net, tan = (featviz.hook_function(model0, params0, v) for v in ("network", "tangent"))
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    hook = "layers.1.hook_post"
    runs = [maximize_activation(lambda z, f=f: f(z, hook)[:, :3].diagonal(), x0, steps=25,
                                budget=5.0) for f in (net, tan)]
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)
    # away from θ0 the tangent view is the Linearized model's own tangent cache
    params = {n: p + 0.05 * torch.randn_like(p) for n, p in params0.items()}
    lin = linearize(copy.deepcopy(model0))
    with torch.no_grad():
        for n, p in lin.model.named_parameters():
            p.copy_(params[n])
    _, cache = lin.run_with_cache(x0, view="tangent", names_filter=[hook])
    got = featviz.hook_function(model0, params, "tangent")(x0, hook)
    assert torch.allclose(got, cache[hook], atol=1e-5)


# -- figures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,tokens", [((1, 8, 8), False), ((3, 8, 8), False), ((1, 20), False),
                                          ((6,), False), ((3,), True)])
def test_plot_grid_writes_png(tmp_path, shape, tokens):
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 7, (4, *shape)) if tokens else rng.standard_normal((4, *shape))
    rows = [(r, r, xs, [f"{i}" for i in range(4)]) for r in ("sgd", "linearized")]
    _assert_png(plot_grid(rows, shape, "Top-4 test examples — sgd vs linearized", tmp_path / "g",
                          tokens=tokens))


def test_featviz_analyze_run(mlp_run, tmp_path):
    df = featviz.analyze_run(mlp_run, tmp_path, k=4, actmax_steps=20)
    assert set(df["regime"]) == {"sgd", "linearized", "kernel"}
    overlap = df[df.metric.str.startswith("topk_overlap_init/")]
    units = sorted(m.split("/")[1] for m in overlap.metric.unique())
    assert len(units) == 4 and units[:2] == ["neuron" + u[6:] for u in units[:2]]
    assert units[2:] == ["pc1", "pc2"]
    assert np.allclose(overlap[overlap.step == 0].value, 1.0)  # θ0 agrees with itself
    assert set(df[df.metric.str.startswith("actmax_objective/")].regime) == {"sgd", "linearized",
                                                                            "kernel"}
    hook = featviz.default_hook(mlp_run).replace(".", "-")
    for name in ["pca", "actmax", "topk"]:
        paths = list(tmp_path.glob(f"featviz_{name}_{hook}*.png"))
        assert paths, name
        for p in paths:
            _assert_png(p)
    assert (tmp_path / "featviz.csv").exists()
    assert set(featviz.headline(df)["mean_topk_overlap_with_init"]) == {
        "sgd", "linearized", "linearized/tangent", "kernel", "kernel/tangent"}


def test_featviz_tokens(tf_run, tmp_path):
    df = featviz.analyze_run(tf_run, tmp_path, k=4)
    assert "blocks.0.mlp.hook_post" in set(df.hook)
    assert not list(tmp_path.glob("featviz_actmax_*"))  # discrete inputs: no actmax
    _assert_png(next(tmp_path.glob("featviz_topk_*pc1.png")))


@pytest.mark.slow
def test_featviz_umap(mlp_run, tmp_path):
    featviz.analyze_run(mlp_run, tmp_path, k=4, actmax=False, umap=True)
    _assert_png(next(tmp_path.glob("featviz_umap_*.png")))


# -- Fourier -----------------------------------------------------------------------------------
def test_embed_spectrum_recovers_single_frequency():
    p, f = 23, 4
    t = np.arange(p + 1)[:, None]
    w_e = np.cos(2 * np.pi * f * t / p) * [1.0, 0.5, 0] + np.sin(2 * np.pi * f * t / p) * [0, 1, 2]
    m = fourier_run.embed_spectrum(w_e, p, k=1)
    assert m[f"embed_power_fraction/k{f}"] == pytest.approx(1.0)
    assert m["embed_top1_fraction"] == pytest.approx(1.0)
    assert len([k for k in m if k.startswith("embed_power_fraction/")]) == (p - 1) // 2


def test_mlp_spectrum_puts_cos_of_sum_on_the_diagonal():
    p, f = 11, 3
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    acts = np.stack([np.cos(2 * np.pi * f * (a + b) / p), np.sin(2 * np.pi * f * (a + b) / p)], -1)
    spectrum = fourier_run.mlp_spectrum(acts, p)
    assert spectrum.shape == ((p + 1) // 2,) * 2
    assert spectrum[f, f] / spectrum.sum() == pytest.approx(1.0)
    assert fourier_run.mlp_metrics(spectrum)["mlp_power_fraction/diagonal"] == pytest.approx(1.0)


def test_fourier_analyze_run(tf_run, tmp_path):
    df = fourier_run.analyze_run(tf_run, tmp_path)
    top = df[df.metric == "embed_top5_fraction"]
    assert {(r, s) for r, s in zip(top.regime, top.step)} == {
        (r, s) for r in ("sgd", "linearized") for s in (0, 2, 4)}
    assert set(df[df.metric == "mlp_top5_fraction"].regime) == {"sgd", "linearized"}
    parts = df[df.metric.str.startswith("mlp_power_fraction/")].groupby("regime").value.sum()
    assert np.allclose(parts, 1.0)
    for name in ["embed_spectrum", "embed_top5_fraction", "mlp_spectrum", "attention"]:
        _assert_png(tmp_path / f"fourier_{name}.png")
    assert set(fourier_run.headline(df)["embed_top5_fraction"]) == {"sgd", "linearized"}


def test_grid_activations_recomputed_equals_cached(tf_run):
    p = 11
    model0 = model_at_init(tf_run)
    assert len({(a, b) for a, b, _ in tf_run.probe.x.tolist()}) == p * p  # probe covers the grid

    class PartialProbe:  # the same run, but a probe set that misses pairs → recomputed
        def __getattr__(self, name):
            return getattr(tf_run, name)

        probe = Probe(tf_run.probe.x[:5], tf_run.probe.y[:5], tf_run.probe.split[:5])

    for regime, view in (("sgd", "network"), ("linearized", "tangent")):
        cached = fourier_run.grid_activations(tf_run, regime, 4, view, "blocks.0.mlp.hook_post", p,
                                              model0)
        recomputed = fourier_run.grid_activations(PartialProbe(), regime, 4, view,
                                                  "blocks.0.mlp.hook_post", p, model0)
        assert cached.shape == (p, p, 3, 32)
        assert np.allclose(cached, recomputed, atol=1e-5), regime


def test_fourier_skips_other_runs(mlp_run, tmp_path):
    assert fourier_run.analyze_run(mlp_run, tmp_path).empty
    assert not list(tmp_path.iterdir())
