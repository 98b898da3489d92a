"""``findings(scale, out, data, reuse)``: run or reuse the experiments, answer every
question of the registry, and write ``findings.json`` then, from it alone,
``findings.md`` and ``findings.html`` (figures under ``figures/findings/``)."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from ..lenses.registry import jsonable
from . import experiments, render
from .common import FIGURES
from .registry import EXPERIMENTS, QUESTIONS
from .stats import LEVEL, METHOD, MIN_SEEDS

SCALES = ("tiny", "quick", "default", "full")
SCALE_NOTES = {
    "tiny": "Scale: tiny — a smoke test (one seed, a few steps); no verdict here means anything.",
    "quick": "Scale: quick — reduced sizes and steps of every experiment, 3 seeds, for a "
             "shared 2-core CPU; the default scale is the reference for CPU results.",
    "default": "Scale: default — every experiment at its CPU default.",
    "full": "Scale: full — every experiment at its GPU size.",
}


def _restore(x):
    """JSON's null back to NaN in estimate fields, so the renderer sees numbers."""
    if isinstance(x, dict):
        return {k: (math.nan if v is None and k in ("mean", "lo", "hi") else _restore(v))
                for k, v in x.items()}
    if isinstance(x, list):
        return [_restore(v) for v in x]
    return x


def findings(scale: str = "default", out: str | Path | None = None,
             data: str | Path = "data", reuse: bool = False, device: str = "cpu") -> Path:
    """Write OUT/findings.{json,md,html}; returns the markdown's path. ``out`` defaults to
    docs/ at the default scale and to DATA/findings-<scale>/ otherwise."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    cmd = " ".join(["tangentlens findings --scale", scale, *(["--out", str(out)] if out else []),
                    *(["--data", str(data)] if str(data) != "data" else []),
                    *(["--reuse"] if reuse else [])])
    out = Path(out) if out is not None else (Path("docs") if scale == "default"
                                             else Path(data) / f"findings-{scale}")
    t0 = time.time()
    done = {name: experiments.ensure(name, scale, Path(data), reuse) for name in EXPERIMENTS}
    figures = out / FIGURES
    shutil.rmtree(figures, ignore_errors=True)
    figures.mkdir(parents=True, exist_ok=True)
    sections = []
    for qid, names, answer in QUESTIONS:
        t = time.time()
        if not names:
            s = answer(scale, out, [cmd], device=device)
        else:
            s = answer(*(Path(done[n]["out"]) for n in names), out,
                       [cmd, *(done[n]["command"] for n in names)])
        s["seconds"] = round(time.time() - t, 1)
        sections.append(s)
    doc = {"title": "tangentlens findings: NTK / linearized vs trained networks",
           "scale": scale, "scale_note": SCALE_NOTES[scale], "command": cmd,
           "ci_level": LEVEL, "ci_level_percent": round(100 * LEVEL), "ci_method": METHOD,
           "min_seeds": MIN_SEEDS,
           "ci_note": (f"Every interval is a {round(100 * LEVEL)}% Student-t interval of the "
                       "mean over seeds (mean ± t·s/√n, n − 1 degrees of freedom); a verdict "
                       f"needs at least {MIN_SEEDS} seeds and is read off the interval."),
           "experiments": list(done.values()), "sections": sections,
           "seconds": round(time.time() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.json").write_text(json.dumps(jsonable(doc), indent=1))
    doc = _restore(json.loads((out / "findings.json").read_text()))
    (out / "findings.md").write_text(render.markdown(doc))
    (out / "findings.html").write_text(render.page(doc))
    return out / "findings.md"
