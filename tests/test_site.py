"""Tests of robust_saliency.site (make site): the static site of the executed notebooks, their
claims and the report, built from the committed files, and rendered in headless Chromium."""
import functools
import http.server
import json
import re
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robust_saliency import claims, site
from robust_saliency.results import repo_root

ROOT = repo_root()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As root and on a closed network: no sandbox, no GPU, none of Chromium's own connections.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return site.build(tmp_path_factory.mktemp("site"), ROOT)


def _claims_notebooks():
    out = []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        res = ROOT / "results" / f"{nb.stem}_cpu.json"
        if res.is_file() and json.loads(res.read_text())["results"].get("claims"):
            out.append(nb.stem)
    return out


def test_the_index_tallies_every_paper_and_links_pages_that_exist(built):
    index = (built / "index.html").read_text()
    names = _claims_notebooks()
    assert names, "no committed results with claims"
    for name in names:
        rows = json.loads((ROOT / "results" / f"{name}_cpu.json").read_text())["results"]["claims"]
        counts = list(claims.tally(rows, "paper").values())
        row = re.search(rf"<tr><td><a href=\"{name}.html\">.*?</tr>", index).group(0)
        assert re.findall(rf"<a href=\"{name}-claims.html\">(\d+)</a>", row) == [str(n) for n in counts]
        ours = claims.tally(rows, "beyond the paper")
        if any(ours.values()):  # rows of ours link to the claims page too (notebook 05 has no others)
            text = ", ".join(f"{n} {v}" for v, n in ours.items() if n)
            assert f"<a href=\"{name}-claims.html\">{text}</a>" in row
        page = (built / f"{name}-claims.html").read_text()
        assert page.count("<tr>") == len(rows) + 1 and claims.tally_text(rows) in page
    for page in built.glob("*.html"):  # every local link resolves; nothing comes from the network
        text = page.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), page.name
        for target in re.findall(r"href=\"([^\"#:]+\.html)", text):
            assert (built / target).is_file(), (page.name, target)
    assert "<table" in (built / "report.html").read_text()


def test_a_notebook_page_keeps_its_figures_and_its_claims_section(built):
    page = (built / "04_marginal_density.html").read_text()
    assert 'id="Claims"' in page and "<table" in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) >= 5


@pytest.fixture(scope="module")
def served(built):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built))
    handler.log_message = lambda *a: None
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()


def _chromium(url, tmp_path, *args):
    profile = tmp_path / f"profile-{abs(hash((url, args)))}"
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True,
                         text=True, timeout=120)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return out, console


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                              ".ci/run installs it): the browser test needs it")
@pytest.mark.parametrize("page,must", [("index.html", "<table id=\"tally\""),
                                       ("04_marginal_density-claims.html", "smaller than reported"),
                                       ("00_tour.html", "data:image/png")])
def test_pages_render_in_headless_chromium_without_console_errors(served, tmp_path, page, must):
    shot = tmp_path / "shot.png"
    out, console = _chromium(f"{served}/{page}", tmp_path, "--window-size=1280,3000", f"--screenshot={shot}")
    assert shot.is_file(), out.stderr[-2000:]
    assert console == [], console
    grey = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert grey.std() > 10 and (grey < 128).mean() > 0.005  # text, tables or figures drawn, not a blank page
    dom, console = _chromium(f"{served}/{page}", tmp_path, "--dump-dom")
    assert must in dom.stdout and console == []
    if page.startswith("00_"):  # a figure: its image decodes to a non-blank picture
        import base64
        import io

        b64 = re.search(r'src="data:image/png;base64,([^"]+)"', dom.stdout).group(1)
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"), dtype=float)
        assert img.std() > 10


def test_bad_root_says_what_is_accepted(tmp_path):
    with pytest.raises(ValueError, match="has no notebooks/NN_\\*.ipynb"):
        site.build(tmp_path / "out", tmp_path)


def test_the_site_builds_from_the_command_line(tmp_path, capsys):
    assert site.main(["--out", str(tmp_path / "s")]) == 0
    assert "index.html" in capsys.readouterr().out and (tmp_path / "s" / "report.html").is_file()
    assert Path(tmp_path / "s" / "04_marginal_density-claims.html").is_file()
