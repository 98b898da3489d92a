"""Linear probes: planted features are recovered, shuffled labels give chance."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.preprocessing import StandardScaler

from tangentlens.metrics.probes import ALPHA_GRID, _train_span, fit_probe


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_planted_linear_feature_is_recovered(rng):
    x = rng.standard_normal((800, 40))
    w = rng.standard_normal((40, 3))
    y = np.argmax(x @ w, axis=1)
    out = fit_probe(torch.tensor(x[:500]), y[:500], x[500:], torch.tensor(y[500:]))
    assert out["score"] > 0.9 and 0.3 < out["chance"] < 0.6 and out["C"] > 0


def test_shuffled_labels_give_chance(rng):
    x = rng.standard_normal((1000, 30))
    y = rng.integers(0, 4, size=1000)
    out = fit_probe(x[:600], y[:600], x[600:], y[600:], seed=1)
    assert abs(out["score"] - 0.25) < 0.08 and abs(out["chance"] - 0.25) < 0.08


def test_regression_on_latents(rng):
    x = rng.standard_normal((600, 3, 10))
    z = x.reshape(600, -1) @ rng.standard_normal((30, 3)) + 0.1 * rng.standard_normal((600, 3))
    out = fit_probe(x[:400], z[:400], x[400:], z[400:], kind="regression")
    assert out["scores"].shape == (3,) and np.all(out["scores"] > 0.95)
    assert out["alpha"].shape == (3,) and out["chance"] < 0.05
    noise = fit_probe(
        x[:400], rng.standard_normal(400), x[400:], rng.standard_normal(200), kind="regression"
    )
    assert noise["score"] < 0.05


def test_rare_train_feature_does_not_wreck_test_predictions(rng):
    x = rng.standard_normal((500, 21))
    x[:300, 20] = 0.0
    x[0, 20] = 1e-3  # active once in train, often in test: plain standardization blows it up
    z = x[:, :20] @ rng.standard_normal(20) + 0.5 * rng.standard_normal(500)
    out = fit_probe(x[:300], z[:300], x[300:], z[300:], kind="regression")
    assert out["score"] > 0.9


def test_train_span_projection_is_exact_for_logistic_regression(rng):
    x = rng.standard_normal((90, 200))
    x = StandardScaler().fit(x[:60]).transform(x)
    y = (x[:, 0] + 0.5 * rng.standard_normal(90) > 0).astype(int)
    ptr, pte = _train_span(x[:60], x[60:])
    assert ptr.shape == (60, 59)  # centered train rows span n - 1 dims
    full, proj = (
        LogisticRegression(C=0.1, tol=1e-12, max_iter=10000).fit(a, y[:60]) for a in (x[:60], ptr)
    )
    np.testing.assert_allclose(
        proj.decision_function(pte), full.decision_function(x[60:]), atol=1e-6
    )


def test_wide_regression_matches_sklearn_pipeline(rng):
    x = rng.standard_normal((150, 400))
    z = x[:, :5] @ rng.standard_normal((5, 2)) + 0.1 * rng.standard_normal((150, 2))
    out = fit_probe(x[:100], z[:100], x[100:], z[100:], kind="regression")
    sc = StandardScaler().fit(x[:100])  # equals the floored scaling: no low-variance features
    ref = RidgeCV(alphas=ALPHA_GRID, alpha_per_target=True).fit(sc.transform(x[:100]), z[:100])
    pred = ref.predict(sc.transform(x[100:]))
    r2 = 1 - np.sum((z[100:] - pred) ** 2, 0) / np.sum((z[100:] - z[100:].mean(0)) ** 2, 0)
    np.testing.assert_allclose(out["scores"], r2, rtol=1e-6)
    np.testing.assert_allclose(out["alpha"], ref.alpha_)


def test_probe_input_errors(rng):
    x = rng.standard_normal((20, 4))
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="y_train needs 20 rows"):
        fit_probe(x, y[:10], x, y)
    with pytest.raises(ValueError, match="kind must be 'classification' or 'regression'"):
        fit_probe(x, y, x, y, kind="ranking")
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_probe(x, np.zeros(20, dtype=int), x, y)
