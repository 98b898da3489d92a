"""Shared plumbing of the experiment scripts in ``analyses/``: the command line and a
self-contained HTML report section (figures as base64 PNG, a table, a generated caption)."""

from __future__ import annotations

import argparse
import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:3px 8px;text-align:right}th{background:#f3f3f3}figure{margin:.8em 0}"
         "img{max-width:100%}figcaption,.note{font-size:.9em;color:#444}")


def parser(doc: str | None, name: str, scales: Sequence[str]) -> argparse.ArgumentParser:
    """Command line of an experiment: ``--scale`` (one of ``scales``, default ``default``),
    ``--out`` (default ``data/<name>``) and ``--threads`` (torch CPU threads)."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=list(scales), default="default",
                   help="problem size: %(choices)s (default: %(default)s; full is for a GPU)")
    p.add_argument("--out", type=Path, default=Path("data") / name,
                   help="output directory (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small matmuls rarely gain from more, "
                        "and a busy machine loses a lot)")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--threads``."""
    import torch

    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def fmt(v: Any) -> str:
    """A table cell: floats to 4 significant digits, NaN/None as an en dash."""
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.4g}"
    return "–" if v is None else html.escape(str(v))


def table_html(rows: Sequence[dict]) -> str:
    """An HTML table from row dicts (columns: the first row's keys)."""
    if not rows:
        return "<p class='note'>(no rows)</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(k))}</td>" for k in rows[0]) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_section(out_html: str | Path, title: str, table_rows: Sequence[dict],
                  figures: Sequence[str | Path], caption: str,
                  notes: Sequence[str] = ()) -> Path:
    """Write a self-contained page: title, caption, notes, key-number table, embedded figures
    (each captioned with its file name, which must sit next to ``out_html`` or be absolute)."""
    out = Path(out_html)
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(caption)}</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    parts.append(table_html(table_rows))
    for fig in figures:
        path = Path(fig) if Path(fig).is_absolute() else out.parent / fig
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f'<figure><img alt="{html.escape(path.name)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{html.escape(path.name)}'
                     "</figcaption></figure>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                   f"{html.escape(title)}</title><style>{STYLE}</style></head><body>"
                   f"{''.join(parts)}</body></html>")
    return out
