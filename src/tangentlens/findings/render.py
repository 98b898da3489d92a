"""docs/findings.md and its HTML twin, rendered from the findings JSON only (every number
passes through ``stats.fmt``; every HTML string through ``html.escape``)."""

from __future__ import annotations

import html
import math

from .stats import fmt

CLAIM_SIGN = {"greater": ">", "less": "<", "equal": "="}


def claim_text(r: dict) -> str:
    if not r.get("claim"):
        return ""
    tol = f" ± {fmt(r['tol'])}" if r.get("tol") is not None else ""
    return f"{CLAIM_SIGN[r['claim']]} {fmt(r['null'])}{tol}"


def number_text(r: dict) -> str:
    if not r["n"]:
        return "n/a"
    ci = (f"{fmt(r['mean'])} [{fmt(r['lo'])}, {fmt(r['hi'])}]"
          if math.isfinite(r["lo"] if r["lo"] is not None else math.nan) else fmt(r["mean"]))
    return f"{ci} (n = {r['n']} seeds)"


def _cells(r: dict) -> list[str]:
    return [r["label"], number_text(r), claim_text(r),
            r.get("verdict", ""), r.get("reason", "")]


def _header(doc: dict) -> list[str]:
    return ["row", f"mean [{doc['ci_level_percent']}% CI]", "claim", "verdict", "why"]


def markdown(doc: dict) -> str:
    md = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = [f"# {doc['title']}", "", doc["scale_note"], "", doc["ci_note"], "",
           f"Command: `{doc['command']}` — total {fmt(doc['seconds'])} s.", "",
           "| experiment | command | seconds | reused |", "|---|---|---|---|"]
    out += [f"| {e['experiment']} | `{e['command']}` | {fmt(e['seconds'])} | "
            f"{'yes' if e['reused'] else 'no'} |" for e in doc["experiments"]]
    out += ["", "| question | verdict |", "|---|---|"]
    out += [f"| [{s['id']}](#{s['id'].lower()}) {md(s['title'])} | {s['verdict']} |"
            for s in doc["sections"]]
    for s in doc["sections"]:
        h = s["headline"]
        out += ["", f"## {s['id']}", "", f"### {s['title']}", "",
                f"**Question.** {s['question']}", "", f"**Claim.** {s['claim']}", "",
                "**Command.** " + "; ".join(f"`{c}`" for c in s["commands"]), ""]
        if h:
            out += [f"**Number.** {h['label']}: {number_text(h)}", ""]
        out += [f"**Verdict.** {s['verdict']} — {s['reason']}", ""]
        out += [f"![{s['id']} figure]({f})" for f in s["figures"]]
        out += ["", "| " + " | ".join(_header(doc)) + " |", "|---|---|---|---|---|"]
        out += ["| " + " | ".join(md(c) for c in _cells(r)) + " |" for r in s["rows"]]
        out += [""] + [f"- {n}" for n in s["notes"]]
    return "\n".join(out) + "\n"


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid "
         "#ccc;padding:3px 8px}th{background:#f3f3f3}img{max-width:100%}code{background:#f5f5f5}"
         ".supported{color:#1a7f37}.not{color:#b3261e}.inconclusive{color:#8a6d00}")


def _cls(verdict: str) -> str:
    return {"supported": "supported", "not supported": "not"}.get(verdict, "inconclusive")


def page(doc: dict) -> str:
    e = lambda s: html.escape(str(s))  # noqa: E731
    table = lambda head, rows: (  # noqa: E731
        "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>")
    parts = [f"<h1>{e(doc['title'])}</h1><p>{e(doc['scale_note'])}</p><p>{e(doc['ci_note'])}"
             f"</p><p>Command: <code>{e(doc['command'])}</code> — total "
             f"{e(fmt(doc['seconds']))} s.</p>",
             table(["experiment", "command", "seconds", "reused"],
                   [[e(x["experiment"]), f"<code>{e(x['command'])}</code>", e(fmt(x["seconds"])),
                     "yes" if x["reused"] else "no"] for x in doc["experiments"]]),
             table(["question", "verdict"],
                   [[f"<a href='#{e(s['id'].lower())}'>{e(s['id'])}</a> {e(s['title'])}",
                     f"<span class='{_cls(s['verdict'])}'>{e(s['verdict'])}</span>"]
                    for s in doc["sections"]])]
    for s in doc["sections"]:
        h = s["headline"]
        parts.append(
            f"<h2 id='{e(s['id'].lower())}'>{e(s['id'])}. {e(s['title'])}</h2>"
            f"<p><b>Question.</b> {e(s['question'])}</p><p><b>Claim.</b> {e(s['claim'])}</p>"
            "<p><b>Command.</b> " + "; ".join(f"<code>{e(c)}</code>" for c in s["commands"])
            + "</p>"
            + (f"<p><b>Number.</b> {e(h['label'])}: {e(number_text(h))}</p>" if h else "")
            + f"<p><b>Verdict.</b> <span class='{_cls(s['verdict'])}'>{e(s['verdict'])}</span>"
            f" — {e(s['reason'])}</p>"
            + "".join(f"<figure><img alt='{e(s['id'])} figure' src='{e(f)}'></figure>"
                      for f in s["figures"])
            + table(_header(doc), [[e(c) for c in _cells(r)] for r in s["rows"]])
            + "<ul>" + "".join(f"<li>{e(n)}</li>" for n in s["notes"]) + "</ul>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(doc['title'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
