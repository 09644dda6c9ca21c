"""The model report (hmodels.report): checklist sections, numbers matching the tables, standalone HTML."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hmodels.report import DECIMALS, SECTIONS  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
TOL = 0.5 * 10 ** -DECIMALS + 1e-12  # rounding to DECIMALS places


@pytest.fixture(scope="module")
def reports(sleep_fit, cbpp_fit):
    return {name: (fit, fit.report(), fit.report(format="html")) for name, fit in
            (("sleepstudy", sleep_fit), ("cbpp", cbpp_fit))}


def _md_table_after(md: str, heading: str, first_col: str) -> dict[str, list[str]]:
    """Rows (first cell -> other cells) of the first markdown table under a section.

    The table is the first one whose header starts with first_col.
    """
    sec = md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = sec.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_col} |"))
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("name", ["sleepstudy", "cbpp"])
def test_report_has_every_checklist_section(reports, name):
    fit, md, html = reports[name]
    positions = [md.index(f"\n## {s}\n") for s in SECTIONS]
    assert positions == sorted(positions)  # in checklist order
    for s in SECTIONS:
        assert f"<h2>{s}</h2>" in html
    assert "Bayesian" in md and f"Family: {fit.family.name}; link: {fit.family.link}" in md
    assert f"Chains: {fit.settings.chains}; draws per chain: {fit.settings.draws}" in md
    assert f"Seed: {fit.settings.seed}" in md and "pymc 6." in md


@pytest.mark.parametrize("name", ["sleepstudy", "cbpp"])
def test_report_numbers_match_the_tables(reports, name):
    fit, md, _ = reports[name]
    fe = fit.fixed_effects()
    rows = _md_table_after(md, "Fixed effects", "term")
    assert set(rows) == set(fe.index)
    for term, cells in rows.items():
        got = np.array([float(c) for c in cells[:4]])
        np.testing.assert_allclose(got, fe.loc[term, ["mean", "sd", "hdi_low", "hdi_high"]].to_numpy(float), atol=TOL)
    vc = fit.variance_components()
    rows = _md_table_after(md, "Variance components", "parameter")
    assert list(rows) == list(vc.index)
    for label, cells in rows.items():
        np.testing.assert_allclose(float(cells[3]), vc.loc[label, "mean"], atol=TOL)
        np.testing.assert_allclose(float(cells[5]), vc.loc[label, "hdi_low"], atol=TOL)
    r2 = fit.r2()
    rows = _md_table_after(md, "Variance components", "r2")
    np.testing.assert_allclose(float(rows["conditional"][0]), r2.loc["conditional", "mean"], atol=TOL)


def test_grouping_structure_numbers(reports):
    fit, md, _ = reports["cbpp"]
    n = fit.data.groupby("herd", observed=True).size()
    rows = _md_table_after(md, "Data and grouping structure", "factor")
    assert rows["herd"][:2] == [str(n.size), str(n.min())]
    assert float(rows["herd"][2]) == pytest.approx(float(np.median(n)))
    assert rows["herd"][3] == str(n.max())
    assert f"({len(fit.data)} observations of incidence used" in md
    assert "Bayesian generalized linear mixed model (GLMM)" in md
    _, md_s, _ = reports["sleepstudy"]
    assert "18 levels of Subject" in md_s and "Bayesian linear mixed model (LMM)" in md_s


def test_html_is_standalone(reports, tmp_path):
    _, _, html = reports["sleepstudy"]
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('src="data:image/png;base64,') == 2
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from outside


def test_report_writes_file(sleep_fit, tmp_path):
    out = tmp_path / "r.md"
    text = sleep_fit.report(path=out)
    assert out.read_text(encoding="utf-8") == text


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("name", ["sleepstudy", "cbpp"])
def test_html_renders_in_headless_chromium(reports, name, tmp_path):
    _, _, html = reports[name]
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / f"{name}.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1000,1400", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))[..., :3]
    assert img.shape[0] == 1400 and img.shape[1] == 1000
    ink = (img.mean(axis=-1) < 0.9).mean()  # share of non-white pixels
    assert ink > 0.02, f"screenshot looks blank ({ink:.3%} non-white)"
