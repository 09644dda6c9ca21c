"""Rich display: the HTML shown in notebooks contains the tables' headings."""

from __future__ import annotations

import hmodels as hm


def test_model_and_prior_table_html():
    model = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    html = model._repr_html_()
    assert "<table" in html and "Priors" in html
    for heading in ("parameter", "prior", "source"):
        assert heading in model.priors._repr_html_()
    assert "Subject" in repr(model)


def test_fit_html_has_tables_and_headings(sleep_fit):
    html = sleep_fit._repr_html_()
    assert "Fixed effects (95% HDI)" in html and "Variance components" in html
    assert html.count("<table") >= 2
    for col in ("mean", "hdi_low", "hdi_high", "r_hat", "ess_bulk"):
        assert f"<th>{col}</th>" in html
    assert "<th>group</th>" in html and "<td>Subject</td>" in html
    text = repr(sleep_fit)
    assert "Fixed effects" in text and "Days" in text


def test_plot_collection_displays_in_notebooks(sleep_fit):
    import matplotlib

    matplotlib.use("Agg")
    pc = sleep_fit.plot_effects()
    assert hasattr(pc, "_repr_html_") or hasattr(pc, "_display_")
