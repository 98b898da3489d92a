"""tangentlens.data: shapes, dtypes, determinism, error messages, file-backed loaders."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tangentlens.data as data
from tangentlens.data.mnist import MD5


def find_shared_mnist() -> Path | None:
    """The directory holding the t10k files: $TANGENTLENS_DATA(/mnist) or ../shared/data/mnist."""
    env = os.environ.get("TANGENTLENS_DATA")
    candidates = [Path(env), Path(env) / "mnist"] if env else []
    candidates.append(Path(__file__).parents[2] / "shared/data/mnist")
    return next((p for p in candidates if (p / "t10k-labels-idx1-ubyte.gz").is_file()), None)


SHARED_MNIST = find_shared_mnist()
needs_mnist = pytest.mark.skipif(SHARED_MNIST is None, reason="shared MNIST t10k files not found")


def write_cifar(root: Path, n: int = 6) -> None:
    """Tiny CIFAR-10 batches (n images each) in the original pickle format under root."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    gen = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batch = {b"data": gen.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [(i + j) % 10 for j in range(n)], b"batch_label": name.encode()}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)


# name → options that make each dataset small and fast; file-backed ones get data_dir later
FAST = {
    "digits": {},
    "mnist1d": {"num_samples": 500},
    "teacher": {"d": 8, "k": 2},
    "teacher_cls": {"d": 8, "task": "classification", "n_classes": 3},
    "modular_addition": {"p": 13},
}


def load_fast(key: str, **kw) -> data.Dataset:
    name = "teacher" if key == "teacher_cls" else key
    return data.load(name, **{**FAST[key], **kw})


def check_contract(ds: data.Dataset) -> None:
    assert ds.task in ("classification", "regression")
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.shape[1:] == ds.input_shape and len(x) == len(y) > 0
        assert x.dtype == (torch.int64 if ds.name == "modular_addition" else torch.float32)
        if ds.task == "classification":
            assert y.dtype == torch.int64 and y.shape == (len(x),)
            assert 0 <= y.min() and y.max() < ds.n_outputs
        else:
            assert y.dtype == torch.float32 and y.shape == (len(x), ds.n_outputs)
    if ds.latents_train is not None:
        assert ds.latents_train.shape == (ds.n_train, len(ds.latent_names))
        assert ds.latents_test.shape == (ds.n_test, len(ds.latent_names))
        assert ds.latents_train.dtype == torch.float32
    json.dumps(ds.info)
    assert ds.name in repr(ds) and str(ds.input_shape) in ds.summary()


def same(a: data.Dataset, b: data.Dataset) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("x_train", "y_train", "x_test", "y_test"))


@pytest.mark.parametrize("key", list(FAST))
def test_contract_and_determinism(key):
    a, b, c = load_fast(key, seed=1), load_fast(key, seed=1), load_fast(key, seed=2)
    check_contract(a)
    assert same(a, b)
    assert not same(a, c)


@pytest.mark.parametrize("key", ["digits", "teacher", "modular_addition"])
def test_subsets_are_seeded_and_sized(key):
    a = load_fast(key, seed=3, n_train=40, n_test=30)
    assert (a.n_train, a.n_test) == (40, 30)
    assert same(a, load_fast(key, seed=3, n_train=40, n_test=30))
    assert not same(a, load_fast(key, seed=4, n_train=40, n_test=30))


def test_subsets_nested_and_stratified():
    full = data.load("digits", seed=0)
    small, big = (data.load("digits", seed=0, n_train=n) for n in (100, 200))
    rows = {tuple(r.flatten().tolist()) for r in big.x_train}
    assert all(tuple(r.flatten().tolist()) in rows for r in small.x_train)
    assert torch.bincount(small.y_train, minlength=10).tolist() == [10] * 10
    assert abs(full.x_train.mean()) < 1e-4 and abs(full.x_train.std() - 1) < 1e-3


def test_no_global_rng_change():
    states = np.random.get_state(), random.getstate(), torch.get_rng_state()
    for key in FAST:
        load_fast(key)
    after = np.random.get_state(), random.getstate(), torch.get_rng_state()
    assert all(np.array_equal(x, y) for x, y in zip(states[0], after[0]))
    assert states[1] == after[1] and torch.equal(states[2], after[2])


def test_mnist1d_shape_and_split():
    ds = data.load("mnist1d", num_samples=500, n_train=100)
    assert ds.input_shape == (1, 40) and ds.n_outputs == 10
    assert (ds.n_train, ds.n_test) == (100, 100)


def test_teacher_latents_and_directions():
    a = data.load("teacher", d=16, k=3, seed=0, n_train=64)
    u = torch.tensor(a.info["directions"], dtype=torch.float64)
    assert u.shape == (3, 16) and a.latent_names == ["z0", "z1", "z2"]
    torch.testing.assert_close(u @ u.T, torch.eye(3, dtype=torch.float64))
    for x, z in ((a.x_train, a.latents_train), (a.x_test, a.latents_test)):
        torch.testing.assert_close(z, (x.double() @ u.T).float(), atol=1e-5, rtol=1e-5)
    b = data.load("teacher", d=16, k=3, seed=5, link="he2")
    assert b.info["directions"] == a.info["directions"]
    assert data.load("teacher", d=16, k=3, directions_seed=1).info["directions"] != a.info[
        "directions"]
    assert abs(b.y_train.std().item() - 1) < 1e-3  # unit variance on train
    noisy = data.load("teacher", d=16, k=3, noise=0.5)
    assert 1.0 < noisy.y_train.var().item() < 1.5
    cls = data.load("teacher", task="classification")
    assert cls.n_outputs == 2 and cls.y_train.bincount().tolist() == [512, 512]


def test_modular_addition_labels():
    ds = data.load("modular_addition", p=17, train_frac=0.5)
    assert ds.info["d_vocab"] == 18 and ds.n_train + ds.n_test == 17 * 17
    x, y = torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test])
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 17) and torch.all(x[:, 2] == 17)
    assert len({tuple(r) for r in x.tolist()}) == 17 * 17  # every pair exactly once


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: data.load("imagenet"), ["'imagenet'", "digits", "modular_addition"]),
        (lambda: data.load("digits", colour=True), ["'colour'", "test_fraction"]),
        (lambda: data.load("teacher", link="sin"), ["'sin'", "relu", "he3"]),
        (lambda: data.load("digits", n_train=5000), ["n_train=5000", "[1, 1438]"]),
        (lambda: data.load("teacher", n_test=-3), ["n_test=-3", "[1, "]),
        (lambda: data.load("teacher", d=4, k=5), ["k=5", "[1, 4]"]),
        (lambda: data.load("digits", test_fraction=1.5), ["test_fraction=1.5", "[0.0, 1.0]"]),
        (lambda: data.load("modular_addition", p=5, n_train=25), ["n_train=25", "[1, 24]"]),
        (lambda: data.load("teacher", n_classes=3), ["n_classes=3", "classification"]),
    ],
)
def test_errors_name_value_and_choices(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert all(w in str(err.value) for w in words), str(err.value)


@needs_mnist
def test_mnist_shared_t10k_split():
    ds = data.load("mnist", data_dir=SHARED_MNIST, seed=0)
    check_contract(ds)
    assert ds.input_shape == (1, 28, 28) and ds.n_train + ds.n_test == 10_000
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_test]), minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "t10k" in ds.info["split"] and ds.n_test == 2000
    assert abs(ds.x_train.mean()) < 1e-4 and abs(ds.x_train.std() - 1) < 1e-3
    other = data.load("mnist", data_dir=SHARED_MNIST, seed=1, n_train=50)
    assert other.n_train == 50 and not torch.equal(other.y_test, ds.y_test)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "download_mnist" in msg
    assert all(name in msg for name in MD5)


@needs_mnist
def test_mnist_corrupted_file(tmp_path):
    shutil.copy(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", tmp_path)
    labels = gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels[:-1] + b"\x00"))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is corrupted: md5"):
        data.load("mnist", data_dir=tmp_path)


def test_cifar10_tiny_batches(tmp_path):
    write_cifar(tmp_path)
    ds = data.load("cifar10", data_dir=tmp_path)
    check_contract(ds)
    assert (ds.n_train, ds.n_test, ds.input_shape) == (30, 6, (3, 32, 32))
    per_channel = ds.x_train.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(3), atol=1e-3, rtol=0)
    assert ds.y_test.tolist() == [(5 + j) % 10 for j in range(6)]
    assert data.load("cifar10", data_dir=tmp_path, n_train=10, seed=1).n_train == 10
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.load("cifar10", data_dir=tmp_path / "nowhere")
