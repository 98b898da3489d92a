"""A self-contained HTML page for a run or a sweep: key numbers, then each analysis's
figures (embedded as base64 PNG) with captions generated from the numbers just computed.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from .lenses.registry import analyze

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}figure{display:inline-block;margin:.5em;max-width:520px}
img{max-width:100%}figcaption{font-size:.9em;color:#444}h2{border-bottom:1px solid #ddd}"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.4g}"
    return "–" if v is None else html.escape(str(v))


def _headline_pairs(block: dict) -> list[tuple[str, str, float]]:
    """Flatten {regime: {hook: value}} or {regime: value} into (regime, hook, value)."""
    out = []
    for regime, val in block.items():
        if isinstance(val, dict):
            out += [(regime, hook, v) for hook, v in val.items() if isinstance(v, (int, float))]
        elif isinstance(val, (int, float)):
            out.append((regime, "", val))
    return out


def caption(name: str, headline: dict) -> str:
    """Two sentences stating the analysis's final-step numbers (no pre-written conclusions)."""
    sentences = []
    for metric, block in headline.items():
        pairs = _headline_pairs(block)
        if not pairs:
            continue
        hook = pairs[0][1]
        same = [(r, v) for r, h, v in pairs if h == hook and v is not None]
        if not same:
            continue
        listed = ", ".join(f"{r} {v:.3g}" for r, v in same)
        hi = max(same, key=lambda t: t[1])
        where = f" at {hook}" if hook else ""
        sentences.append(f"Final-step {metric}{where}: {listed}; highest under {hi[0]}.")
        if len(sentences) == 2:
            break
    return " ".join(sentences) or f"{name}: no headline numbers (see the CSV)."


def _metrics_table(paths: list[Path]) -> str:
    from .store import open_run

    rows = []
    for p in paths:
        with open_run(p) as run:
            m = run.metrics()
            cfg = run.config
            for regime, g in m.groupby("regime", sort=False):
                last = g.sort_values("step").iloc[-1]
                user = cfg["model"]["kind"] == "python"  # a user's model: no width/param.
                rows.append([cfg.get("name", p.parent.name), None if user else cfg["model"]["width"],
                             None if user else cfg["model"]["parametrization"], regime,
                             int(last["step"]),
                             float(last["train_loss"]), float(last["test_loss"]),
                             float(last.get("test_acc", math.nan))])
    head = ["run", "width", "param.", "regime", "step", "train loss", "test loss", "test acc"]
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{body}</table>"


def _headline_table(summary: dict) -> str:
    rows = []
    for name, a in summary.get("analyses", {}).items():
        for metric, block in a.get("headline", {}).items():
            rows += [(name, metric, r, h, v) for r, h, v in _headline_pairs(block)]
    head = ["analysis", "metric", "regime", "hook", "final value"]
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{body}</table>"


def write_report(runs, out: str | Path, analysis_dir: str | Path | None = None,
                 only: list[str] | None = None, model: Any = None, data: Any = None) -> Path:
    """Analyze ``runs`` (run files/dirs or an index) unless ``analysis_dir`` already holds a
    summary.json, then write one self-contained HTML page to ``out`` (``model``, ``data``:
    see ``analyze``).

    >>> import tempfile
    >>> from tangentlens import load_config, run, write_report
    >>> out = tempfile.mkdtemp()
    >>> cfg = load_config(None, ["model.width=16", "train.steps=4", "train.checkpoints=2",
    ...                          "train.regimes=[sgd,linearized]", "probe.n_train=8",
    ...                          "probe.n_test=8", "train.batch_size=16"])
    >>> page = write_report([run(cfg, out).path], out + "/report.html", only=["change"])
    >>> "<img" in page.read_text()
    True
    """
    out = Path(out)
    paths = _resolve(runs)
    adir = Path(analysis_dir) if analysis_dir else out.parent / "analysis"
    if not (adir / "summary.json").exists():
        analyze(paths, adir, only=only, model=model, data=data)
    summary = json.loads((adir / "summary.json").read_text())
    title = "tangentlens report — " + ", ".join(r["label"] for r in summary["runs"])
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<h2>Key numbers</h2>", _metrics_table(paths), _headline_table(summary)]
    for name, a in summary.get("analyses", {}).items():
        cap = html.escape(caption(name, a.get("headline", {})))
        parts.append(f"<h2>{html.escape(name)}</h2><p>{cap}</p>")
        for fig in a.get("figures", []):
            data = base64.b64encode((adir / fig).read_bytes()).decode()
            parts.append(f'<figure><img alt="{html.escape(fig)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(fig)}</figcaption></figure>")
    for name, reasons in summary.get("skipped", {}).items():
        parts.append(f"<p><b>{html.escape(name)}</b> skipped: {html.escape('; '.join(reasons))}</p>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                   f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return out


def _resolve(runs) -> list[Path]:
    """Run files from run files, run directories, globs or a sweep index file."""
    from .store import open_runs

    items = [runs] if isinstance(runs, (str, Path)) else list(runs)
    paths: list[Path] = []
    for item in items:
        found = open_runs(item)
        paths += [Path(r.path) for r in found]
        found.close()
    if not paths:
        raise FileNotFoundError(f"no run files in {items}")
    return paths
