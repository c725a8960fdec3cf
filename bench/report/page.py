"""`index.html`: one self-contained page (inline style, relative links, nothing from the network)
that lays out the tables, plots and traversal sheets of a report."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from disentbench.bench.io import write_text

STYLE = """
body{font-family:sans-serif;max-width:1400px;margin:auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px;display:block;max-width:100%;
  overflow-x:auto}
caption{text-align:left;font-weight:bold;padding:.3em 0}
th,td{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444}
p.note{font-size:12px;color:#555;margin:.2em 0}
p.warning{background:#fff3cd;border:1px solid #e0c060;padding:.4em .6em}
img{max-width:100%;border:1px solid #eee}
figure{display:inline-block;margin:.5em;vertical-align:top}
figcaption{font-size:12px;color:#555}
.sheets figure img{max-width:460px}
"""


# Profiles whose models are untrained (tens to a hundred steps): their numbers check the pipeline.
UNTRAINED = ("smoke", "quick")
TRAINED_COMMAND = "disentbench --profile paper --device cuda --methods all --seeds 10"


def untrained_note(profiles) -> str:
    """One line for runs of the smoke or quick profile (else ""): their models are untrained."""
    found = [p for p in UNTRAINED if p in set(profiles)]
    if not found:
        return ""
    return (f"untrained models ({' and '.join(found)} profile): these numbers check the "
            f"pipeline and cannot rank the methods; trained models: {TRAINED_COMMAND}")


def _img(out: Path, path: Path, caption: str) -> str:
    rel = html.escape(Path(path).relative_to(out).as_posix())
    return (f'<figure><a href="{rel}"><img src="{rel}" alt="{html.escape(caption)}"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _rows(frame: pd.DataFrame, columns) -> str:
    if frame.empty:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns)
                   + "</tr>" for r in frame.to_dict("records"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write(out: Path, runs: pd.DataFrame, problems, header: dict, overall: dict,
          sections: list[dict], files: list[Path]) -> Path:
    """`header`: facts for the top line; `overall`: {"tables": [html], "figures": [(path,
    caption)]}; each section: {"dataset", "tables": [(title, html)], "figures": [(path,
    caption)], "sheets": [{"label", "seed", "images": [(path, caption)]}]}."""
    out = Path(out)
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    facts = [f"{len(runs)} runs ({', '.join(f'{v} {k}' for k, v in counts.items()) or 'none'})"]
    facts += [f"{k}: {v}" for k, v in header.items() if v]
    links = [f'<a href="#{html.escape(s["dataset"])}">{html.escape(s["dataset"])}</a>'
             for s in sections]
    if overall["tables"] or overall["figures"]:
        links.append('<a href="#all">all datasets</a>')
    nav = " · ".join(links)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>disentbench results</title>"
             f"<style>{STYLE}</style></head><body>", "<h1>disentbench results</h1>",
             f"<p>{html.escape(' · '.join(facts))}</p>", f"<p>datasets: {nav or 'none'}</p>"]
    warning = untrained_note(runs["profile"].dropna()) if "profile" in runs else ""
    if warning:
        parts.insert(2, f"<p class=warning>{html.escape(warning[0].upper() + warning[1:])}.</p>")
    if problems:
        items = "".join(f"<li>{html.escape(run)}: {html.escape(why)}</li>" for run, why in problems)
        parts.append(f"<h2>Unreadable run files</h2><ul class=problems>{items}</ul>")
    for section in sections:
        name = html.escape(section["dataset"])
        parts.append(f'<h2 id="{name}">{name}</h2>')
        parts += [f"<h3>{html.escape(title)}</h3>{table}" for title, table in section["tables"]]
        parts += [_img(out, p, c) for p, c in section["figures"]]
        if section["sheets"]:
            parts.append("<h3>Latent traversals and reconstructions (median-scoring seed)</h3>"
                         "<div class=sheets>")
            for sheet in section["sheets"]:
                parts += [_img(out, p, c) for p, c in sheet["images"]]
            parts.append("</div>")
    if overall["tables"] or overall["figures"]:
        parts.append('<h2 id="all">All datasets</h2>')
        parts += overall["tables"]
        parts += [_img(out, p, c) for p, c in overall["figures"]]
    failed = runs[runs["status"] != "done"] if len(runs) else runs
    warned = runs[runs["warnings"].fillna("") != ""] if len(runs) else runs
    parts += ["<h2>Runs not done</h2>", _rows(failed, ["run_dir", "status", "step", "reason"]),
              "<h2>Runs with warnings</h2>", _rows(warned, ["run_dir", "status", "warnings"]),
              "<h2>Files</h2><ul>"]
    parts += [f'<li><a href="{html.escape(p.relative_to(out).as_posix())}">'
              f"{html.escape(p.relative_to(out).as_posix())}</a></li>"
              for p in files if p.suffix != ".png"]
    parts.append("</ul></body></html>\n")
    write_text(out / "index.html", "\n".join(parts))
    return out / "index.html"
