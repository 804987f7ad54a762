"""The executed notebooks, their figures and the claims report as a static HTML site.

``python -m robust_saliency.site [--out site]`` (``make site``) writes, from the committed
notebooks and ``results/``:

* ``<notebook>.html`` for every ``notebooks/NN_*.ipynb``: the executed notebook (nbconvert's
  ``basic`` template: markdown, code, tables and the figures embedded as images) in a page of our
  own, with a link back to the index; the claims section keeps its anchor (``#Claims``);
* ``<notebook>-claims.html``: the notebook's claims table alone (from its results JSON), with
  its tally, provenance and a link to the notebook page;
* ``report.html``: ``results/REPORT.md`` rendered (mistune, with tables);
* ``index.html``: one row per notebook with its paper, the tally of the paper's claims per verdict
  (and the rows beyond the paper) from ``results/<notebook>_<profile>.json``, the commit and wall
  time, and links to the notebook page, its claims page and the report.

The pages load nothing from the network (no MathJax, no require.js, no web fonts): they open
from disk or a local server on a machine without internet.  Every file is written atomically.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import claims as _claims
from .cache import atomic_write_bytes
from .report import PAPERS, claims_markdown
from .results import repo_root

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

__all__ = ["build", "notebook_page", "claims_page", "index_page", "main"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5rem; color: #1f2328; line-height: 1.45; }
nav { margin-bottom: 1rem; font-size: 0.95rem; }
a { color: #0b57d0; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.5rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }
.jp-InputArea pre, .input_area pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; }
.jp-OutputArea pre { overflow-x: auto; }
.jp-OutputPrompt, .jp-InputPrompt, .prompt { display: none; }
img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon, .jp-OutputArea-output { overflow-x: auto; }
.anchor-link { display: none; }
.verdict-count { text-align: right; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def notebook_page(notebook: str | os.PathLike) -> str:
    """The executed ``notebook`` as one self-contained HTML page."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nb)
    name = Path(notebook).stem
    nav = (f"<nav><a href=\"index.html\">← all notebooks</a> · <a href=\"#Claims\">claims section</a> · "
           f"<a href=\"report.html\">claims report</a> · <code>notebooks/{html.escape(name)}.ipynb</code></nav>")
    return _page(f"{name} · robust saliency", nav + "\n" + body)


def _markdown(text):
    import mistune

    return mistune.create_markdown(plugins=["table"], escape=True)(text)


def claims_page(root: str | os.PathLike, name: str, profile: str = "cpu") -> str | None:
    """The claims table of notebook ``name`` (from ``results/<name>_<profile>.json``) as a page;
    None when the notebook has no claims."""
    doc = _results(root, name, profile)
    rows = ((doc or {}).get("results") or {}).get("claims") or []
    if not rows:
        return None
    prov = doc.get("provenance") or {}
    head = (f"<nav><a href=\"index.html\">← all notebooks</a> · <a href=\"{html.escape(name)}.html\">the notebook</a> · "
            f"<a href=\"report.html\">claims report</a></nav>\n<h1>Claims: {html.escape(PAPERS.get(name, name))}</h1>\n"
            f"<p>{html.escape(_claims.tally_text(rows))}. Profile <code>{html.escape(profile)}</code>, seeds "
            f"{html.escape(str(doc.get('seeds')))}, commit <code>{html.escape(str(prov.get('commit') or 'unknown')[:12])}</code>.</p>")
    return _page(f"Claims · {name}", head + "\n" + _markdown(claims_markdown(rows)))


def _results(root, name, profile):
    path = Path(root) / "results" / f"{name}_{profile}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def index_page(root: str | os.PathLike, names: Sequence[str], profile: str = "cpu") -> str:
    """The site's index: each notebook of ``names`` with its paper, claims tally, commit and links."""
    head = ["notebook", "paper", *_claims.VERDICTS, "beyond the paper", "commit", "wall time"]
    rows = []
    for name in names:
        doc = _results(root, name, profile)
        claims = ((doc or {}).get("results") or {}).get("claims") or []
        prov = (doc or {}).get("provenance") or {}
        paper = PAPERS.get(name, "the library tour" if name.startswith("00_") else name)
        link = f"<a href=\"{html.escape(name)}.html\">{html.escape(name)}</a>"
        if claims:
            counts = _claims.tally(claims, "paper")
            ours = _claims.tally(claims, "beyond the paper")
            cells = [f"<a href=\"{html.escape(name)}-claims.html\">{n}</a>" for n in counts.values()]
            beyond = ", ".join(f"{n} {v}" for v, n in ours.items() if n) or "0"
            if any(ours.values()):  # notebook 05 has rows of ours only: they link to its claims page too
                beyond = f"<a href=\"{html.escape(name)}-claims.html\">{html.escape(beyond)}</a>"
            else:
                beyond = html.escape(beyond)
        else:
            cells, beyond = ["–"] * len(_claims.VERDICTS), "–"
        wall = prov.get("wall_time_s")
        rows.append([link, html.escape(paper), *cells, beyond, f"<code>{html.escape(str(prov.get('commit') or 'unknown')[:7])}</code>",
                     f"{float(wall) / 60:.1f} min" if wall is not None else "–"])
    table = ("<table id=\"tally\">\n<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead>\n<tbody>\n"
             + "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "\n</tbody>\n</table>")
    body = (f"<h1>Robust saliency: a paper companion</h1>\n"
            f"<p>Each notebook re-runs one paper's experiments at the <code>{html.escape(profile)}</code> profile and "
            f"ends with a claims table: which of the paper's claims hold, which are refuted, which this scale cannot "
            f"decide. The counts below are the paper's own claims per verdict (they link to the notebook's claims "
            f"page); rows beyond the paper are ours. Every claim, with its numbers, is in the "
            f"<a href=\"report.html\">claims report</a>.</p>\n{table}\n"
            f"<p>Verdicts: <b>holds</b> (the claimed direction is significant), <b>contradicted</b> (the opposite is), "
            f"<b>smaller than reported</b> (the paper's effect is ruled out), <b>inconclusive</b>, <b>not testable here</b> "
            f"(decided by construction). Paired one-sided t-tests over seeds, Holm-adjusted per notebook at "
            f"α = {_claims.ALPHA}.</p>")
    return _page("Robust saliency · claims", body)


def _report_page(root):
    path = Path(root) / "results" / "REPORT.md"
    if not path.is_file():
        return None
    text = path.read_text()
    for name in PAPERS:  # the report's links point into the repository; here, to the notebook pages
        text = text.replace(f"(../notebooks/{name}.ipynb)", f"({name}.html)")
    body = _markdown(text)
    return _page("Claims report · robust saliency", "<nav><a href=\"index.html\">← all notebooks</a></nav>\n" + body)


def build(out: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
          profile: str = "cpu") -> Path:
    """Write the site (module docstring) into ``out`` (default ``<root>/site``) from the notebooks
    and results under ``root`` (default the repository); return ``out``.  ValueError if ``root``
    has no executed notebooks."""
    root = Path(root) if root is not None else repo_root()
    out = Path(out) if out is not None else root / "site"
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise ValueError(f"root={str(root)!r} has no notebooks/NN_*.ipynb; accepted: the repository folder")
    out.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        atomic_write_bytes(notebook_page(nb).encode(), out / f"{nb.stem}.html")
        page = claims_page(root, nb.stem, profile)
        if page is not None:
            atomic_write_bytes(page.encode(), out / f"{nb.stem}-claims.html")
    report = _report_page(root)
    if report is not None:
        atomic_write_bytes(report.encode(), out / "report.html")
    atomic_write_bytes(index_page(root, [nb.stem for nb in notebooks], profile).encode(), out / "index.html")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robust_saliency.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output folder (default site/ under the repository)")
    parser.add_argument("--profile", default="cpu", help="the results profile the index tallies (default cpu)")
    args = parser.parse_args(argv)
    try:
        out = build(args.out, profile=args.profile)
    except ValueError as err:
        parser.error(str(err))
    pages = [p for p in out.glob("[0-9][0-9]_*.html") if not p.stem.endswith("-claims")]
    print(f"wrote {out}/index.html, report.html and {len(pages)} notebook page(s) with their claims pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
