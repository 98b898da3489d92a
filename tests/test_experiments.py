"""The experiment scripts (analyses/*.py) at tiny scale, and analyses.finetune against
independent references (explicit Jacobians, exact linear targets)."""

from __future__ import annotations

import base64
import importlib.util
import math
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, jacrev

from tangentlens.experiments.finetune import features, fit, linear_probe, score, trainer_at
from tangentlens.config import RunConfig
from tangentlens.models import build_model

SCRIPTS = Path(__file__).parents[1] / "analyses"
VOID = {"meta", "img", "br", "hr", "link", "input"}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page(HTMLParser):
    """Collects embedded images and figure captions; checks that tags nest."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.captions, self.errors = [], [], [], []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)
        self._in_caption = tag == "figcaption"

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)
        self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)


def _check_report(out: Path, n_figures: int) -> None:
    page = _Page()
    page.feed((out / "report.html").read_text())
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert len(page.images) == len(page.captions) == n_figures
    for src, name in zip(page.images, page.captions):
        assert (out / name).is_file()
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):]) == (out / name).read_bytes()


def _columns(path: Path, expected: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    assert list(df.columns) == expected, path.name
    assert len(df) > 0
    return df


def test_regime_gap_tiny(tmp_path: Path) -> None:
    script = _script("regime_gap")
    script.main(["--scale", "tiny", "--out", str(tmp_path), "--threads", "1"])
    df = _columns(tmp_path / "regime_gap.csv",
                  ["task", "kind", "width", "seed", "regime", "metric", "value", "train_loss",
                   "test_loss", "test_acc", "diverged"])
    assert set(df.regime) == {"sgd", "linearized", "kernel", "kernel_infinite"}
    gap = _columns(tmp_path / "gaps.csv", ["task", "metric", "width", "seed", "sgd",
                                           "linearized", "kernel", "kernel_infinite", "gap"])
    np.testing.assert_allclose(gap.gap, gap.sgd - gap.linearized)
    _check_report(tmp_path, 2)
    spec = script.yaml.safe_load(script.CONFIG.read_text())
    scale = {**spec["scales"]["tiny"], "tasks": ["mnist"]}
    for data_dir, note in ((None, "no data directory"), (str(tmp_path), "MNIST files not found")):
        df, notes = script.measure(spec, scale, tmp_path, data_dir)
        assert df.empty and len(notes) == 1 and note in notes[0]


def test_transfer_tiny(tmp_path: Path) -> None:
    _script("transfer").main(["--scale", "tiny", "--out", str(tmp_path), "--threads", "1"])
    pre = _columns(tmp_path / "pretrain.csv", ["family", "regime", "test_loss_A", "test_acc_A",
                                               "train_loss_A", "null_loss_A", "fits_A"])
    assert set(pre.family) == {"teacher", "digits"}
    keys = ["family", "task", "rep", "n", "regime"]
    df = _columns(tmp_path / "transfer.csv", [*keys, "start", "method", "test_loss", "test_acc"])
    assert set(df.task) == {"same", "sign_flip", "related", "unrelated", "permuted", "parity",
                            "ge5"}
    assert set(df.method) == {"finetune", "probe"} and set(df.start) == {"pretrained", "scratch"}
    d = _columns(tmp_path / "transfer_delta.csv",
                 [*keys, "method", "test_loss_pretrained", "test_acc_pretrained",
                  "test_loss_scratch", "test_acc_scratch", "delta", "delta_acc"])
    assert len(d) * 2 == len(df)
    np.testing.assert_allclose(d.delta, d.test_loss_pretrained - d.test_loss_scratch)
    _check_report(tmp_path, 3)


def test_modular_addition_tiny(tmp_path: Path) -> None:
    _script("modular_addition").main(["--scale", "tiny", "--out", str(tmp_path), "--threads", "1"])
    _columns(tmp_path / "accuracy.csv",
             ["step", "train_loss", "train_acc", "test_loss", "test_acc", "regime"])
    s = _columns(tmp_path / "summary.csv",
                 ["regime", "step", "train_acc", "test_acc", "W_E_top5_share_init",
                  "W_E_top5_share", "mlp_top5_share", "mlp_diagonal_share"])
    assert list(s.regime) == ["sgd", "linearized"]
    _check_report(tmp_path, 5)


def _mlp(width: int = 8) -> torch.nn.Module:
    cfg = SimpleNamespace(kind="mlp", width=width, depth=1, activation="tanh", bias=True,
                          parametrization="ntk", base_width=8)
    return build_model(cfg, (3,), 1, seed=0).double()


def _cfg(lr: float, steps: int) -> RunConfig:
    return RunConfig.from_dict({"train": {"regimes": ["linearized"], "optimizer": "sgd", "lr": lr,
                                          "momentum": 0.9, "steps": steps, "dtype": "float64"}})


def test_linearized_finetune_converges_to_kernel_interpolant() -> None:
    """Gradient descent on the linearized model from θ_A ≠ θ0 interpolates with the NTK at θ0:
    f(x) → f_A(x) + K(x, X) K(X, X)⁻¹ (Y − f_A(X)), f_A = f0 + J(θ_A − θ0) (explicit J)."""
    model0 = _mlp()
    gen = torch.Generator().manual_seed(1)
    theta0 = {n: p.detach().clone() for n, p in model0.named_parameters()}
    theta_a = {n: p + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
               for n, p in theta0.items()}
    x, x_test = torch.randn(5, 3, generator=gen).double(), torch.randn(7, 3, generator=gen).double()
    y = torch.randn(5, 1, generator=gen).double()

    def jac(inputs):
        j = jacrev(lambda p: functional_call(model0, p, (inputs,)).squeeze(-1))(theta0)
        return torch.cat([j[n].reshape(len(inputs), -1) for n in theta0], 1)

    delta = torch.cat([(theta_a[n] - theta0[n]).reshape(-1) for n in theta0])
    with torch.no_grad():
        f0, f0_test = model0(x).squeeze(-1), model0(x_test).squeeze(-1)
    j, j_test = jac(x), jac(x_test)
    fa, fa_test = f0 + j @ delta, f0_test + j_test @ delta
    expected = fa_test + j_test @ j.T @ torch.linalg.solve(j @ j.T, y.squeeze(-1) - fa)

    trainer = trainer_at("linearized", model0, theta_a, _cfg(lr=0.5, steps=3000))
    with torch.no_grad():
        torch.testing.assert_close(trainer.output(x_test).squeeze(-1), fa_test)  # starts at θ_A
    fit(trainer, x, y, steps=3000, batch_size=5)
    with torch.no_grad():
        torch.testing.assert_close(trainer.output(x_test).squeeze(-1), expected,
                                   rtol=1e-6, atol=1e-6)
    assert score(trainer, x, y, "mse")["test_loss"] < 1e-12
    # the expansion point is still θ0
    for n, p in trainer.module.params0().items():
        torch.testing.assert_close(p, theta0[n])


def test_features_views_and_linear_probe() -> None:
    """Tangent features at θ_A match h(θ0) + J_h(θ_A − θ0); a probe recovers an exact linear
    readout of the features; the kernel regime cannot be fine-tuned."""
    model0 = _mlp(width=6)
    gen = torch.Generator().manual_seed(2)
    theta_a = {n: p.detach() + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
               for n, p in model0.named_parameters()}
    x = torch.randn(40, 3, generator=gen).double()
    hook = "layers.0.hook_post"
    lin, net = (trainer_at(r, model0, theta_a, _cfg(0.1, 1)) for r in ("linearized", "sgd"))
    w, b = model0.layers[0].linear.weight, model0.layers[0].linear.bias
    mult, bmult = model0.layers[0].linear.weight_mult, model0.layers[0].linear.bias_mult
    pre0 = x @ (mult * w).T + bmult * b
    dpre = x @ (mult * (theta_a["layers.0.linear.weight"] - w)).T + bmult * (
        theta_a["layers.0.linear.bias"] - b)
    torch.testing.assert_close(features(lin, x, hook),
                               torch.tanh(pre0) + dpre / torch.cosh(pre0) ** 2)
    pre_a = (x @ (mult * theta_a["layers.0.linear.weight"]).T
             + bmult * theta_a["layers.0.linear.bias"])
    torch.testing.assert_close(features(net, x, hook), torch.tanh(pre_a))

    f = features(net, x, hook)
    y = (f @ torch.arange(1.0, 7.0, dtype=f.dtype) + 0.5)[:, None]
    probe = linear_probe(f[:30], y[:30], f[30:], y[30:], n_outputs=1)
    assert probe["test_loss"] < 1e-4 and math.isnan(probe["test_acc"])
    with pytest.raises(ValueError, match="regime='kernel'"):
        trainer_at("kernel", model0, theta_a, _cfg(0.1, 1))
