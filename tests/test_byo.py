"""Bring your own model, data and checkpoint: hooks on named submodules, the Python API,
a factory in a user file, init_from bit for bit, spawn_step, and one-line bad-input errors."""

import json
import sys
import textwrap
import types

import numpy as np
import pytest
import torch
from torch import nn

from tangentlens import analyze, linearize, load_config, run, write_report
from tangentlens.cli import main
from tangentlens.config import ConfigError
from tangentlens.data import from_torch, load
from tangentlens.models.hooks import HookSet, run_with_cache
from tangentlens.models.user import load_factory
from tangentlens.rebuild import model_at_init
from tangentlens.store import open_run

# A ResNet-style module (BasicBlocks with BatchNorm and a shared ReLU, as torchvision's).
RESNET = textwrap.dedent('''
    import torch
    from torch import nn


    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)


    class ResNet(nn.Module):
        def __init__(self, width=4, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU()
            self.layer1 = nn.Sequential(BasicBlock(width, width))
            self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
            return self.fc(torch.flatten(self.avgpool(x), 1))


    def make_resnet(width=4, num_classes=10):
        return ResNet(width, num_classes)


    def not_a_module(**_):
        return 42
''')
SMALL = ["train.steps=4", "train.checkpoints=[2]", "train.batch_size=16", "train.progress=false",
         "probe.n_train=8", "probe.n_test=8", "train.kernel_max_train=16",
         "probe.hooks=['layer?.0', fc]"]


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "mymodels.py").write_text(RESNET)
    rng = np.random.default_rng(0)
    np.savez(d / "images.npz", x_train=rng.normal(size=(48, 3, 32, 32)).astype(np.float32),
             y_train=rng.integers(0, 10, 48), x_test=rng.normal(size=(16, 3, 32, 32)).astype(
                 np.float32), y_test=rng.integers(0, 10, 16))
    return d


@pytest.fixture(scope="module")
def resnet(user_dir):
    return load_factory("mymodels:make_resnet", str(user_dir))


def _config(user_dir, extra=()):
    path = user_dir / "config.yaml"
    path.write_text(textwrap.dedent(f'''
        data: {{name: npz, path: {user_dir / "images.npz"}}}
        model: {{kind: python, factory: "mymodels:make_resnet", options: {{width: 4}}}}
        train: {{regimes: [sgd, linearized, kernel]}}
    '''))
    return path, load_config(path, [*SMALL, *extra])


def test_hooks_of_a_plain_module(resnet):
    hooks = HookSet(resnet().eval(), torch.zeros(2, 3, 32, 32))
    assert hooks.default[:3] == ["conv1", "bn1", "relu"] and hooks.default[-1] == "fc"
    assert "layer1.0" in hooks.valid and "layer1.0" not in hooks.default  # not a leaf
    assert hooks.repeated == {"layer1.0.relu": 2, "layer2.0.relu": 2}  # shared ReLU
    assert hooks.select(["layer?.0", "fc"]) == ["layer1.0", "layer2.0", "fc"]
    assert "layer2.0.downsample.0" in hooks.select(["layer*.0"])  # fnmatch: * spans dots
    assert hooks.select(["layer2.0.bn?"]) == ["layer2.0.bn1", "layer2.0.bn2"]
    with pytest.raises(ValueError, match=r"'layer9' matches no hook; valid: conv1, bn1, relu,"):
        hooks.select(["layer9"])
    with pytest.raises(ValueError, match="'layer1.0.relu' runs 2 times per forward"):
        hooks.select(["layer1.0.relu"])


def test_tangent_view_of_a_plain_module_against_finite_differences(resnet):
    """BatchNorm in eval mode: h_lin = h(θ0) + J_h Δθ equals a float64 central difference."""
    torch.manual_seed(0)
    model = resnet().double().eval()
    with torch.no_grad():  # non-trivial running statistics, fixed during linearization
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x, hooks = torch.randn(3, 3, 32, 32, dtype=torch.float64), ["layer1.0.bn2", "layer2.0", "fc"]
    lin = linearize(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta = {n: torch.randn_like(p) * 1e-2 for n, p in theta0.items()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.add_(delta[n])
    _, tangent = lin.run_with_cache(x, view="tangent", names_filter=hooks)
    _, network = lin.run_with_cache(x, view="network", names_filter=hooks)

    def acts(t: float) -> dict:
        ref = linearize(resnet().double().eval())  # a fresh module: no shared hooks
        ref.model.load_state_dict(model.state_dict())
        with torch.no_grad():
            for n, p in ref.model.named_parameters():
                p.copy_(theta0[n] + t * delta[n])
        return run_with_cache(ref.model, x, hooks)[1]

    eps, a0 = 1e-6, acts(0.0)
    plus, minus = acts(eps), acts(-eps)
    for h in hooks:
        fd = a0[h] + (plus[h] - minus[h]) / (2 * eps)
        assert torch.allclose(tangent[h], fd, rtol=1e-6, atol=1e-8), h
        assert torch.allclose(network[h], acts(1.0)[h], atol=1e-12), h
    assert not torch.allclose(tangent["fc"], network["fc"], atol=1e-6)  # second order differs


def test_python_module_and_data_run_analyze_report(user_dir, resnet, tmp_path):
    """tangentlens.run(cfg, model=..., data=...) through analyze and the report; without the
    module, the analyses that need it are skipped with the reason."""
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(40, 3, 32, 32)), dtype=torch.float32)
    data = torch.utils.data.TensorDataset(x, torch.as_tensor(rng.integers(0, 10, 40)))
    cfg = load_config(None, [*SMALL, "train.regimes=[sgd,linearized]"])
    model = resnet(width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run(cfg, tmp_path / "r", model=model, data=data)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # copied
    with open_run(result.path) as r:
        assert r.hooks == ["layer1.0", "layer2.0", "fc"]
        assert r.config["model"]["kind"] == "python" and r.config["model"]["factory"] is None
        assert r.config["data"]["options"]["input_shape"] == [3, 32, 32]
        assert torch.equal(torch.as_tensor(r.params("sgd", 0)["fc.weight"]), before["fc.weight"])
    s = json.loads(analyze(result.path, tmp_path / "a", only=["gradient_span"]).read_text())
    assert not s["analyses"] and "passed from Python" in s["skipped"]["gradient_span"][0]
    only = ["change", "gradient_span", "kernel_drift", "fourier"]
    s = json.loads(analyze(result.path, tmp_path / "c", only=["gradient_span"], model=model
                           ).read_text())
    assert "passed from Python (tangentlens.run(data=" in s["skipped"]["gradient_span"][0]
    s = json.loads(analyze(result.path, tmp_path / "b", only=only, model=model, data=data
                           ).read_text())
    assert list(s["analyses"]) == ["change", "gradient_span", "kernel_drift"]
    assert "modular-addition transformers only" in s["skipped"]["fourier"][0]
    page = write_report([result.path], tmp_path / "b" / "report.html", analysis_dir=tmp_path / "b")
    assert page.read_text().count("<img") >= 3


@pytest.mark.slow
def test_factory_in_user_file_through_cli_analyze_report(user_dir, tmp_path, capsys):
    """A ResNet-style module in a user file next to its config: run + analyze + report, every
    analysis applies or says why not."""
    path, _ = _config(user_dir)
    args = ["run", str(path), *SMALL, "--out", str(tmp_path / "r")]
    assert main(args) == 0
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "report.html")]) == 0
    s = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert set(s["analyses"]) == {"change", "gradient_span", "kernel_drift", "probing", "featviz"}
    assert list(s["skipped"]) == ["fourier"]
    assert "featviz_actmax" in " ".join(s["analyses"]["featviz"]["figures"])
    assert "<img" in (tmp_path / "report.html").read_text()


def test_factory_run_rebuilds_from_its_config(user_dir, tmp_path):
    path, cfg = _config(user_dir, ["train.regimes=[sgd]", "probe.hooks=[fc]"])
    assert cfg.model.factory_path == str(user_dir)
    result = run(cfg, tmp_path)
    with open_run(result.path) as r:
        model = model_at_init(r)
        p0 = r.params("sgd", 0)
    sys.modules.pop("mymodels", None)
    assert all(torch.equal(p, torch.as_tensor(p0[n])) for n, p in model.named_parameters())
    assert type(model).__name__ == "ResNet" and not model.training


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_init_from_checkpoint_is_theta0_bit_for_bit(user_dir, resnet, tmp_path, suffix):
    trained = resnet(width=4)
    with torch.no_grad():
        for t in trained.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t))  # not the factory's init, BN statistics too
    ckpt = tmp_path / f"trained{suffix}"
    if suffix == ".pt":
        torch.save(trained.state_dict(), ckpt)
    else:
        from safetensors.torch import save_file

        save_file(trained.state_dict(), str(ckpt))
    _, cfg = _config(user_dir, ["train.regimes=[sgd,linearized]", f"model.init_from={ckpt}"])
    result = run(cfg, tmp_path / "r")
    state = trained.state_dict()
    with open_run(result.path) as r:
        for regime in ("sgd", "linearized"):
            p0 = r.params(regime, 0)
            assert all(np.array_equal(p0[n], state[n].numpy()) for n, _ in trained.named_parameters())
        model = model_at_init(r)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # buffers too


def test_spawn_step_starts_the_other_regimes_at_theta_k(user_dir, tmp_path):
    _, cfg = _config(user_dir, ["train.regimes=[linearized,sgd,kernel]", "train.spawn_step=2",
                                "train.checkpoints=[1,3]"])
    result = run(cfg, tmp_path)
    with open_run(result.path) as r:
        assert r.steps("sgd") == [0, 1, 2, 3, 4]
        assert r.steps("linearized") == [2, 3, 4] and r.steps("kernel") == [2, 4]
        k = r.params("sgd", 2)
        for regime in ("linearized", "kernel"):
            assert all(np.array_equal(k[n], v) for n, v in r.params(regime, 2).items())
    sgd2, lin2 = (next(row for row in result.metrics[g] if row["step"] == 2)
                  for g in ("sgd", "linearized"))
    assert sgd2 == lin2  # the Taylor model at θ_K is the network at θ_K
    s = json.loads(analyze(result.path, tmp_path / "a", only=["change", "kernel_drift"]
                           ).read_text())
    assert set(s["analyses"]) == {"change", "kernel_drift"}


def test_npz_and_torch_datasets(user_dir):
    ds = load("npz", path=str(user_dir / "images.npz"), n_train=32)
    assert ds.task == "classification" and ds.input_shape == (3, 32, 32) and ds.n_train == 32
    reg = from_torch(torch.utils.data.TensorDataset(torch.randn(10, 2), torch.randn(10, 3)))
    assert reg.task == "regression" and reg.n_outputs == 3 and (reg.n_train, reg.n_test) == (8, 2)


def _fake_torchvision(monkeypatch, files_present: bool):
    class CIFAR10(torch.utils.data.Dataset):
        classes = list("0123456789")

        def __init__(self, root, train, download, transform):
            if not files_present:
                raise RuntimeError("Dataset not found or corrupted.")
            self.n = 20 if train else 10

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return torch.full((3, 4, 4), float(i)), i % 10

    tv = types.ModuleType("torchvision")
    tv.datasets = types.SimpleNamespace(CIFAR10=CIFAR10)
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor = lambda: None
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", transforms)


def test_torchvision_dataset_by_name(monkeypatch, tmp_path):
    _fake_torchvision(monkeypatch, files_present=True)
    ds = load("torchvision", dataset="CIFAR10", root=str(tmp_path))
    assert (ds.n_train, ds.n_test, ds.n_outputs, ds.input_shape) == (20, 10, 10, (3, 4, 4))
    assert torch.allclose(ds.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-6)
    with pytest.raises(ValueError, match="data.dataset='CIFAR11' is not a torchvision dataset; "
                                         "valid: CIFAR10"):
        load("torchvision", dataset="CIFAR11", root=str(tmp_path))
    _fake_torchvision(monkeypatch, files_present=False)
    with pytest.raises(FileNotFoundError, match=r"data.dataset='CIFAR10': files not found under "
                                                r"data.root='.*' \(Dataset not found"):
        load("torchvision", dataset="CIFAR10", root=str(tmp_path))


@pytest.mark.parametrize("overrides,match", [
    (["model.factory=nopkg.models:make"], r"model.factory='nopkg.models:make': cannot import "
                                          r"'nopkg.models' from .* \(ModuleNotFoundError"),
    (["model.factory=mymodels:nothing"], "module 'mymodels' has no attribute 'nothing'"),
    (["model.factory=mymodels"], "model.factory='mymodels' is not valid; use 'module:function'"),
    (["model.factory=mymodels:not_a_module"], "returned a int, not a torch.nn.Module"),
    (["model.options={depth: 3}"], r"rejected model.options=\{'depth': 3\}"),
    (["model.init_from=CKPT_WIDE"], r"does not match the model: missing \[conv1.weight, bn1.weight"
                                    r", .*\(\+\d+ more\); unexpected \[extra\]"),
    (["model.init_from=CKPT_SHAPE"], r"shape mismatch \[fc.weight \(3, 8\) vs model \(10, 8\)\]"),
    (["model.init_from=/no/such.pt"], "model.init_from='/no/such.pt': no such file"),
    (["data.path=/no/such.npz"], "data.path='/no/such.npz': no such file"),
    (["probe.hooks=[layer1.0.relu]"], "runs 2 times per forward"),
    (["train.spawn_step=9"], r"train.spawn_step=9 is not valid; it must be in \[0, train.steps=4\)"),
])
def test_bad_input_is_one_line_naming_the_value(user_dir, resnet, tmp_path, capsys, overrides,
                                                match):
    bad = resnet(width=4).state_dict()
    torch.save({"extra": torch.zeros(1)}, tmp_path / "wide.pt")
    bad["fc.weight"] = torch.zeros(3, 8)
    torch.save(bad, tmp_path / "shape.pt")
    overrides = [o.replace("CKPT_WIDE", str(tmp_path / "wide.pt")).replace(
        "CKPT_SHAPE", str(tmp_path / "shape.pt")) for o in overrides]
    path, _ = _config(user_dir)
    assert main(["run", str(path), *SMALL, *overrides, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(match, err), err


def test_torchvision_missing_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails
    with pytest.raises(ValueError, match="data.name='torchvision' needs the torchvision package"):
        load("torchvision", dataset="CIFAR10", root=str(tmp_path))
    with pytest.raises(ConfigError, match="model.kind='resnet' is not valid"):
        load_config(None, ["model.kind=resnet"])


@pytest.mark.slow
def test_torchvision_resnet18(tmp_path):
    """torchvision's ResNet-18 (random init, 10 classes, BatchNorm in eval mode) on 32×32×3."""
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(24, 3, 32, 32)), dtype=torch.float32)
    data = (torch.utils.data.TensorDataset(x[:16], torch.as_tensor(rng.integers(0, 10, 16))),
            torch.utils.data.TensorDataset(x[16:], torch.as_tensor(rng.integers(0, 10, 8))))
    cfg = load_config(None, ["model.kind=python", "model.factory=torchvision.models:resnet18",
                             "model.options={num_classes: 10}", "train.regimes=[sgd,linearized]",
                             "train.steps=2", "train.checkpoints=2", "train.batch_size=8",
                             "probe.n_train=4", "probe.n_test=4", "train.progress=false",
                             "probe.hooks=[layer*.1, fc]"])
    result = run(cfg, tmp_path / "r", data=data)
    with open_run(result.path) as r:
        assert r.hooks == ["layer1.1", "layer2.1", "layer3.1", "layer4.1", "fc"]
    page = write_report([result.path], tmp_path / "report.html",
                        only=["change", "gradient_span", "kernel_drift"])
    s = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert set(s["analyses"]) == {"change", "gradient_span", "kernel_drift"}
    assert "<img" in page.read_text()
