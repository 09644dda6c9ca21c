"""HTML output renders in a real browser: headless Chromium screenshots are not blank.

Needs the ``chromium`` Debian package (``apt-get install -y --no-install-recommends chromium``);
skipped with a reason when it is absent.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(tmp_path: Path, html: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, html.as_uri()],
                          capture_output=True, text=True, timeout=120)


def _check_renders(tmp_path: Path, html: Path, headings: list[str]) -> None:
    from PIL import Image

    png = tmp_path / (html.stem + ".png")
    res = _chromium(tmp_path, html, f"--screenshot={png}", "--window-size=1200,1600")
    assert png.exists(), res.stderr[-2000:]
    img = Image.open(png).convert("L")
    assert img.size == (1200, 1600)
    hist = img.histogram()
    non_white = sum(hist[:200]) / (img.size[0] * img.size[1])
    assert len([h for h in hist if h]) > 2, "screenshot has a single colour"
    assert non_white > 0.01, f"screenshot nearly blank ({non_white:.2%} non-white pixels)"
    dom = _chromium(tmp_path, html, "--dump-dom").stdout
    for h in headings:
        assert h in dom, f"{h!r} not in the rendered page"


def test_fit_display_with_plot_renders(sleep_fit, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    fig = sleep_fit.plot_trajectories("Days", by="Subject", levels=["308", "309", "310"])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    img = base64.b64encode(buf.getvalue()).decode()
    page = tmp_path / "fit.html"
    page.write_text(f"<html><body>{sleep_fit._repr_html_()}<img src='data:image/png;base64,{img}'></body></html>",
                    encoding="utf-8")
    _check_renders(tmp_path, page, ["Fixed effects (95% HDI)", "Variance components", "hdi_low", "r_hat"])


def test_html_report_renders(sleep_fit, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(sleep_fit.report(format="html"), encoding="utf-8")
    _check_renders(tmp_path, page, ["Fixed effects", "Variance components", "Days", "Subject"])


def test_executed_notebook_exported_to_html_renders(tmp_path):
    """The sleep-study notebook, executed and exported to HTML as a reader would share it."""
    import os

    import nbclient
    import nbconvert
    import nbformat

    path = Path(__file__).resolve().parents[1] / "notebooks" / "sleep_deprivation_random_slopes.ipynb"
    book = nbformat.read(path, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    body, _ = nbconvert.HTMLExporter().from_notebook_node(book)
    page = tmp_path / "notebook.html"
    page.write_text(body, encoding="utf-8")
    # section headings, and the column headings of the executed fixed-effects / variance tables
    _check_renders(tmp_path, page, ["Sleep deprivation", "Shrinkage", "Checks on the key numbers", "hdi_low",
                                    "ess_bulk", "sd(Subject, Days)"])
