"""Q1–Q3, read from the regime_gap runs (sgd, linearized and kernel from one θ0 on the
teacher, digits and MNIST-1D): what the representations look like inside (probes, CKA,
PCA, top-k examples), the kernel solution's own network, and whether PCA at θ0 finds the
directions that change. Every number is a per-seed value computed from the cached probe
activations with ``tangentlens.metrics`` and summarized over seeds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import metrics
from ..metrics.probes import fit_probe
from ..metrics.units import pca_directions, top_k
from ..store import open_run
from .common import estimate_figure, row, section

PCA_K = 10     # principal components of Q3
TOP_K = 8      # top-k examples per unit of Q1


def runs(regime_gap_out: Path) -> list[tuple[str, int, int, Path]]:
    """(task, width, seed, run file) of every regime_gap run, sorted."""
    out = []
    for p in sorted(Path(regime_gap_out).glob("runs/*/width=*__seed=*/run.h5")):
        width, seed = (int(part.split("=")[1]) for part in p.parent.name.split("__"))
        out.append((p.parent.parent.name, width, seed, p))
    return out


def _final(run, regime: str) -> int:
    return run.steps(regime)[-1]


def _acts(run, regime: str, step: int, hook: str, view: str, split: str = "all") -> np.ndarray:
    a = run.activations(regime, step, hook, view, split).numpy()
    return a.reshape(len(a), -1).astype(np.float64)


def _probe(run, h: np.ndarray) -> float:
    """Test score of a probe on activations ``h`` of every probe row (``_acts``): accuracy
    for labels, mean R² over the teacher's latents for regression tasks."""
    p = run.probe
    xtr, xte = h[p.split == 0], h[p.split == 1]
    if np.issubdtype(p.y.dtype, np.integer) and p.y.ndim == 1:
        return fit_probe(xtr, p.train.y, xte, p.test.y, kind="classification",
                         seed=run.seed or 0)["score"]
    target = (p.train.latents, p.test.latents) if p.latents is not None else (p.train.y,
                                                                              p.test.y)
    return fit_probe(xtr, target[0], xte, target[1], kind="regression")["score"]


def _topk_overlap(a: np.ndarray, b: np.ndarray, k: int = TOP_K) -> float:
    """Mean over units of |top-k examples of a ∩ of b| / k."""
    k = min(k, len(a))
    return float(np.mean([len(set(top_k(a[:, j], k)) & set(top_k(b[:, j], k))) / k
                          for j in range(a.shape[1])]))


def _hidden(run) -> list[str]:
    return [h for h in run.hooks if h.endswith("hook_post")]


def looking_inside(rg: Path, out: Path, commands: list[str]) -> dict:
    """Q1: probe score sgd − linearized (tangent view) per task and hidden layer at the
    widest width (claim > 0), with linear CKA(sgd, linearized), the ratio of their relative
    changes from θ0 and the top-k example overlap as context."""
    rs = runs(rg)
    wmax = {t: max(w for tt, w, _, _ in rs if tt == t) for t, _, _, _ in rs}
    vals: dict[tuple, list[float]] = defaultdict(list)
    for task, width, seed, path in rs:
        if width != wmax[task]:
            continue
        with open_run(path) as run:
            s, li = _final(run, "sgd"), _final(run, "linearized")
            for hook in _hidden(run):
                hs = _acts(run, "sgd", s, hook, "network")
                hl = _acts(run, "linearized", li, hook, "tangent")
                h0 = _acts(run, "sgd", 0, hook, "network")
                key = (task, hook)
                vals[("gap", *key)].append(_probe(run, hs) - _probe(run, hl))
                vals[("cka", *key)].append(metrics.linear_cka(hs, hl))
                vals[("ratio", *key)].append(metrics.relative_change(hs, h0)
                                             / metrics.relative_change(hl, h0))
                vals[("topk", *key)].append(_topk_overlap(hs, hl))
    names = {"gap": "probe score sgd − linearized", "cka": "linear CKA(sgd, linearized)",
             "ratio": "‖Δh‖ sgd / ‖Δh‖ linearized", "topk": f"top-{TOP_K} example overlap"}
    rows = [row(f"{t} w={wmax[t]} {h}: {names[m]}", v, **({"claim": "greater"} if m == "gap"
                                                          else {}))
            for (m, t, h), v in sorted(vals.items(), key=lambda kv: list(names).index(kv[0][0]))]
    gaps = [r for r in rows if "verdict" in r]
    figs = [estimate_figure(gaps, out, "q1_probe_gap.png", "Probe score sgd − linearized "
                            "(tangent view), widest width", "probe score difference"),
            estimate_figure([r for r in rows if "linear CKA" in r["label"]], out,
                            "q1_cka.png", "Linear CKA between sgd and linearized hidden "
                            "activations", "linear CKA")]
    return section(
        "Q1", "Looking inside: sgd vs linearized representations",
        "Do PCA, probes and top-k visualizations show different representations for sgd and "
        "linearized networks trained from the same θ0 (which layers, how much, on digits, "
        "MNIST-1D, the teacher with known latents)?",
        "A linear probe on a hidden layer of the sgd network scores higher than on the "
        "linearized network (tangent view) trained from the same θ0 (probe accuracy on "
        "digits/MNIST-1D, mean R² of the teacher's latents).",
        commands, figs, rows, gaps[-1]["label"] if gaps else "",
        ["Depth-2 ReLU MLP, NTK parametrization (the regime_gap runs); probes are fit on the "
         "probe-train rows and scored on the probe-test rows of the cached activations."])


def kernel_network(rg: Path, out: Path, commands: list[str]) -> dict:
    """Q2: the kernel regime's own network h(x; θ0 + Δθ_min-norm) at every width: CKA with
    linearized minus CKA with sgd (claim > 0), and its nonlinear remainder
    ‖h_net − h_tangent‖ / ‖h_tangent − h0‖ (claim < 1: the solution stays linear)."""
    rs = runs(rg)
    vals: dict[tuple, list[float]] = defaultdict(list)
    for task, width, seed, path in rs:
        with open_run(path) as run:
            hook = _hidden(run)[-1]
            k, s, li = _final(run, "kernel"), _final(run, "sgd"), _final(run, "linearized")
            hk = _acts(run, "kernel", k, hook, "network")
            hkt = _acts(run, "kernel", k, hook, "tangent")
            hs = _acts(run, "sgd", s, hook, "network")
            hl = _acts(run, "linearized", li, hook, "tangent")
            h0 = _acts(run, "sgd", 0, hook, "network")
            key = (task, width, hook)
            vals[("cka", *key)].append(metrics.linear_cka(hk, hl) - metrics.linear_cka(hk, hs))
            vals[("rem", *key)].append(float(np.linalg.norm(hk - hkt) / np.linalg.norm(hkt - h0)))
            vals[("kchange", *key)].append(metrics.relative_change(hk, h0))
            vals[("lchange", *key)].append(metrics.relative_change(hl, h0))
            vals[("schange", *key)].append(metrics.relative_change(hs, h0))
    spec = {"cka": ("CKA(kernel net, linearized) − CKA(kernel net, sgd)", {"claim": "greater"}),
            "rem": ("nonlinear remainder ‖h_net − h_tan‖/‖h_tan − h0‖ of the kernel solution",
                    {"claim": "less", "null": 1.0, "theory": True}),
            "kchange": ("relative change ‖h − h0‖/‖h0‖, kernel network", {}),
            "lchange": ("relative change, linearized (tangent)", {}),
            "schange": ("relative change, sgd", {})}
    rows = [row(f"{t} w={w} {h}: {spec[m][0]}", v, **spec[m][1])
            for (m, t, w, h), v in sorted(vals.items(), key=lambda kv: (list(spec).index(
                kv[0][0]), kv[0][1], kv[0][2]))]
    main = [r for r in rows if r.get("claim") == "greater"]
    figs = [estimate_figure(main, out, "q2_kernel_network.png", "Kernel solution's network: "
                            "CKA with linearized minus CKA with sgd", "CKA difference"),
            estimate_figure([r for r in rows if "relative change" in r["label"]], out,
                            "q2_relative_change.png", "Relative change from θ0 of the last "
                            "hidden layer", "‖h − h0‖_F / ‖h0‖_F")]
    return section(
        "Q2", "The closed-form kernel solution's own network",
        "The closed-form kernel solution's own network (θ0 + min-norm Δθ): what do its hidden "
        "activations look like next to linearized and sgd?",
        "The network θ0 + Δθ of the min-norm kernel solution has hidden activations closer (in "
        "linear CKA) to the linearized network's tangent view than to the sgd network's, and "
        "stays in the linear regime (its nonlinear remainder is below its linear change).",
        commands, figs, rows, main[-1]["label"] if main else "",
        ["The kernel regime is recorded at θ0 and at θ0 + Δθ (Δθ = the min-norm solution of "
         "kernel regression with the empirical NTK at θ0, ridge as in the config); its network "
         "view is h(x; θ0 + Δθ), its tangent view h(x; θ0) + J_h Δθ."])


def pca_share(rg: Path, out: Path, commands: list[str]) -> dict:
    """Q3: share of ‖Δh‖² in the top-k PCs of h0 minus the random share k/d (claim > 0),
    with the share in the top-k PCs after training as context, widest width."""
    rs = runs(rg)
    wmax = {t: max(w for tt, w, _, _ in rs if tt == t) for t, _, _, _ in rs}
    vals: dict[tuple, list[float]] = defaultdict(list)
    for task, width, seed, path in rs:
        if width != wmax[task]:
            continue
        with open_run(path) as run:
            for hook in _hidden(run):
                h0 = _acts(run, "sgd", 0, hook, "network")
                for regime, view in (("sgd", "network"), ("linearized", "tangent")):
                    h = _acts(run, regime, _final(run, regime), hook, view)
                    dh, k = h - h0, min(PCA_K, min(h0.shape) - 1)
                    at0 = metrics.gradient_span_fraction(dh, pca_directions(h0, k))
                    after = metrics.gradient_span_fraction(dh, pca_directions(h, k))
                    key = (task, hook, regime)
                    vals[("excess", *key)].append(at0["fraction"] - at0["random_baseline"])
                    vals[("at0", *key)].append(at0["fraction"])
                    vals[("after", *key)].append(after["fraction"])
                    vals[("random", *key)].append(at0["random_baseline"])
    spec = {"excess": (f"share of ‖Δh‖² in top-{PCA_K} PCs of h0 − random share",
                       {"claim": "greater"}),
            "at0": (f"share in top-{PCA_K} PCs of h0", {}),
            "after": (f"share in top-{PCA_K} PCs of h after training", {}),
            "random": ("random share k/d", {})}
    rows = [row(f"{t} w={wmax[t]} {h} {g}: {spec[m][0]}", v, **spec[m][1])
            for (m, t, h, g), v in sorted(vals.items(), key=lambda kv: list(spec).index(
                kv[0][0]))]
    main = [r for r in rows if "verdict" in r]
    figs = [estimate_figure([r for r in rows if "random share" not in r["label"]
                             and "−" not in r["label"]], out, "q3_pca_share.png",
                            f"Share of ‖Δh‖² in the top-{PCA_K} PCs, at θ0 vs after training",
                            "share of ‖Δh‖²")]
    return section(
        "Q3", "Does PCA find the directions that change?",
        "Does PCA of activations find the directions that change (share of Δh in the top "
        "principal components at θ0 vs after training)?",
        f"The top-{PCA_K} principal components of the activations at θ0 hold more of the "
        "change Δh = h − h0 than a random subspace of the same dimension.",
        commands, figs, rows,
        next((r["label"] for r in main if " sgd:" in r["label"]), main[0]["label"] if main
             else ""),
        ["Δh rows are probe inputs (train and test rows); PCs are of the centered "
         "activations; the random share is k/d."])
