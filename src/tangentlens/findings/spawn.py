"""Q9: linearizing at a trained checkpoint θ_K instead of θ0 (``train.spawn_step``, issue
13): the sgd − linearized test-accuracy gap as a function of the spawn step K, on digits
with the regime_gap recipe. Computed only when ``TrainConfig`` has ``spawn_step``."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from ..config import RunConfig, TrainConfig, apply_overrides
from .common import missing, row, section, estimate_figure

SCALES = {
    "tiny": dict(width=32, steps=10, n_train=64, spawn=[0, 5], seeds=[0]),
    "quick": dict(width=256, steps=200, n_train=256, spawn=[0, 25, 100], seeds=[0, 1, 2]),
    "default": dict(width=512, steps=400, n_train=512, spawn=[0, 50, 100, 200],
                    seeds=[0, 1, 2]),
    "full": dict(width=2048, steps=4000, n_train=2048, spawn=[0, 250, 1000, 2000],
                 seeds=[0, 1, 2, 3, 4]),
}


def available() -> bool:
    return "spawn_step" in {f.name for f in dataclasses.fields(TrainConfig)}


def config(scale: dict, k: int, seed: int, device: str) -> RunConfig:
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[3] / "analyses" / "configs" /
                           "regime_gap.yaml").read_text())
    base = {**spec["base"], "data": {"name": "digits"}}
    base["train"] = {**base["train"], "regimes": ["sgd", "linearized"]}
    return RunConfig.from_dict(apply_overrides(base, [
        f"model.width={scale['width']}", f"seed={seed}", f"data.n_train={scale['n_train']}",
        f"train.steps={scale['steps']}", f"train.spawn_step={k}", f"train.device={device}",
        f"train.batch_size={min(base['train']['batch_size'], scale['n_train'])}"]))


def spawn_gap(scale_name: str, out: Path, commands: list[str], device: str = "cpu") -> dict:
    """gap(K) = sgd − linearized test accuracy per spawn step; claim: gap(K_max) − gap(0) < 0."""
    scale = SCALES[scale_name]
    question = ("Linearizing at a trained checkpoint instead of θ0 (spawn step K): how does the "
                "gap close with K?")
    claim = ("The later the linearization point θ_K, the smaller the sgd − linearized test "
             "accuracy gap (Fort et al. 2020).")
    if not available():
        rows = [missing("gap(K_max) − gap(0)", "RunConfig has no train.spawn_step (issue 13)")]
        return section("Q9", "Linearizing at a trained checkpoint (spawn step K)", question,
                       claim, commands, [], rows, rows[0]["label"])
    import torch

    from ..train import run

    gaps: dict[int, list[float]] = defaultdict(list)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the experiments run: the same bits with or without --reuse
    try:
        for seed in scale["seeds"]:
            for k in scale["spawn"]:
                res = run(config(scale, k, seed, device))
                gaps[k].append(res.final("sgd")["test_acc"] - res.final("linearized")["test_acc"])
    finally:
        torch.set_num_threads(threads)
    k0, kmax = min(gaps), max(gaps)
    rows = [row(f"gap(K={kmax}) − gap(K={k0})", [a - b for a, b in zip(gaps[kmax], gaps[k0])],
                claim="less", theory=True)]
    rows += [row(f"gap sgd − linearized test accuracy, K={k}", v) for k, v in sorted(gaps.items())]
    figs = [estimate_figure(rows, out, "q9_spawn_gap.png", "sgd − linearized test accuracy vs "
                            "spawn step K (digits)", "accuracy difference")]
    return section(
        "Q9", "Linearizing at a trained checkpoint (spawn step K)", question, claim, commands,
        figs, rows, rows[0]["label"],
        [f"Digits, depth-2 ReLU MLP (regime_gap base config), width {scale['width']}, "
         f"{scale['n_train']} training points, {scale['steps']} steps, spawn steps "
         f"{scale['spawn']}."])
