"""abc-parametrizations: code table == docs table; activation scales at init vs width."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tangentlens.models import PARAMETRIZATIONS, build_model
from tangentlens.models.parametrization import ADAM_C, TABLE, layer_scale

DOC = Path(__file__).parents[1] / "docs" / "parametrizations.md"


def doc_rows(header_start: str) -> list[list[str]]:
    """Body rows of the markdown table whose header row starts with ``header_start``."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def exponent(cell: str) -> float:
    return float(Fraction(cell))


def test_abc_table_matches_doc():
    rows = doc_rows("| parametrization | layer |")
    assert len(rows) == 3 * len(PARAMETRIZATIONS)
    for p, kind, a, b, c, c_adam in rows:
        assert TABLE[p][kind] == (exponent(a), exponent(b), exponent(c)), (p, kind)
        assert ADAM_C[p][kind] == exponent(c_adam), (p, kind)


def test_mf_is_mup_shifted_by_symmetry():
    for kind in ("input", "hidden", "output"):
        a, b, c = TABLE["mup"][kind]
        assert TABLE["mf"][kind] == (a + 0.5, b - 0.5, c - 1.0)
        assert ADAM_C["mf"][kind] == ADAM_C["mup"][kind] - 0.5


@pytest.mark.parametrize("p", PARAMETRIZATIONS)
def test_layer_scale_values(p):
    m = 16
    for kind in ("input", "hidden", "output"):
        s = layer_scale(p, kind, fan_in_base=64, width=64 * m, base_width=64, gain=2.0)
        a, b, c = TABLE[p][kind]
        assert math.isclose(s.weight_mult * s.weight_std, 2.0 / 8.0 * m ** -(a + b))
        assert math.isclose(s.lr_weight, m**-c)
        assert math.isclose(s.lr_weight_adam, m ** -ADAM_C[p][kind])
        if kind == "output":  # scalar-like readout bias: not width-scaled
            assert (s.bias_mult, s.lr_bias, s.lr_bias_adam) == (1.0, 1.0, 1.0)
        else:
            a_in, _, c_in = TABLE[p]["input"]
            assert math.isclose(s.bias_mult, m**-a_in) and math.isclose(s.lr_bias, m**-c_in)
    with pytest.raises(ValueError, match="'bogus'.*input, hidden, output"):
        layer_scale(p, "bogus", fan_in_base=1, width=1, base_width=1)


WIDTHS = (64, 256, 1024, 4096)
SEEDS = (0, 1, 2)


def measured_slopes(parametrization: str) -> dict[str, float]:
    """log-log slope of activation RMS vs width at init (depth-2 relu MLP)."""
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(123))
    rms: dict[str, list[float]] = {}
    for width in WIDTHS:
        sq: dict[str, float] = {}
        for seed in SEEDS:
            cfg = SimpleNamespace(kind="mlp", width=width, depth=2, activation="relu",
                                  parametrization=parametrization, base_width=64)
            model = build_model(cfg, (32,), 16, seed=seed)
            with torch.no_grad():
                _, cache = model.run_with_cache(x)
            for name, act in cache.items():
                sq[name] = sq.get(name, 0.0) + act.pow(2).mean().item() / len(SEEDS)
        for name, value in sq.items():
            rms.setdefault(name, []).append(math.sqrt(value))
    logw = np.log(WIDTHS)
    return {name: float(np.polyfit(logw, np.log(v), 1)[0]) for name, v in rms.items()}


@pytest.mark.parametrize("p", PARAMETRIZATIONS)
def test_init_scales_match_doc(p):
    expected = {row[0]: [exponent(c) for c in row[1:]]
                for row in doc_rows("| parametrization | hidden pre-activation |")}[p]
    slopes = measured_slopes(p)
    for i in range(2):
        assert abs(slopes[f"layers.{i}.hook_pre"] - expected[0]) < 0.1, slopes
        assert abs(slopes[f"layers.{i}.hook_post"] - expected[1]) < 0.1, slopes
    assert abs(slopes["hook_logits"] - expected[2]) < 0.1, slopes
