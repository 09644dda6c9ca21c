"""Plots return figures with the expected panels, lines and labels (no pixel comparisons)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import hmodels as hm  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_effects_forest_of_fixed_effects(sleep_fit):
    pc = sleep_fit.plot_effects()
    fig = pc.viz["figure"].item()
    assert isinstance(fig, matplotlib.figure.Figure)
    # the intercept is left out by default: one term, Days, with a 50% and a 95% interval line
    assert list(pc.viz["twig"]["b"].coords["term"].values) == ["Days"]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "Days" in texts and "Intercept" not in texts
    # the 95% HDI drawn is the one fixed_effects() reports
    twig = pc.viz["twig"]["b"].sel(term="Days").item()
    lo, hi = sorted(twig.get_xdata())
    fe = sleep_fit.fixed_effects().loc["Days"]
    assert lo == pytest.approx(fe["hdi_low"], abs=0.05 * fe["sd"])
    assert hi == pytest.approx(fe["hdi_high"], abs=0.05 * fe["sd"])
    pc2 = sleep_fit.plot_effects(intercept=True)
    assert list(pc2.viz["twig"]["b"].coords["term"].values) == ["Intercept", "Days"]


def test_plot_groups_caterpillar(sleep_fit):
    fig = sleep_fit.plot_groups("Subject")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["Intercept", "Days"]
    ax = fig.axes[1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels) == sorted(sleep_fit.meta["factors"]["Subject"]["levels"])
    # levels are sorted by posterior mean: the plotted points increase along the axis
    means = ax.lines[0].get_xdata()
    assert np.all(np.diff(means) >= 0)
    ge = sleep_fit.group_effects("Subject").query("term == 'Days'").set_index("level")
    assert means[-1] == pytest.approx(ge["mean"].max())
    assert len(sleep_fit.plot_groups("Subject", term="Days").axes) == 1
    with pytest.raises(hm.SpecificationError, match="Subjct.*Did you mean 'Subject'"):
        sleep_fit.plot_groups("Subjct")


def test_plot_trajectories_one_panel_per_subject(sleep_fit):
    fig = sleep_fit.plot_trajectories("Days", by="Subject")
    assert len(fig.axes) == 18
    ax = fig.axes[0]
    assert ax.get_title() == "Subject 308"
    # fitted line, population line, data points; one band
    assert len(ax.lines) == 3 and len(ax.collections) == 1
    data_y = ax.lines[2].get_ydata()
    d = hm.datasets.load("sleepstudy")
    np.testing.assert_allclose(np.sort(data_y), np.sort(d.loc[d.Subject == "308", "Reaction"].to_numpy()))
    # the fitted line at Days = 0 is Intercept + r_308 (posterior mean)
    fitted0 = ax.lines[0].get_ydata()[0]
    b0 = float(sleep_fit.draws["b"].sel(term="Intercept").mean())
    r0 = float(sleep_fit.draws["r_Subject"].sel(Subject="308", Subject__term="Intercept").mean())
    assert fitted0 == pytest.approx(b0 + r0, rel=1e-6)
    assert len(sleep_fit.plot_trajectories("Days", by="Subject", levels=["308", "309"]).axes) == 2
    with pytest.raises(hm.MissingColumnError, match="Dayz.*Did you mean 'Days'"):
        sleep_fit.plot_trajectories("Dayz", by="Subject")


def test_plot_components_sds_and_correlation(sleep_fit):
    fig = sleep_fit.plot_components()
    assert [ax.get_title() for ax in fig.axes] == ["standard deviations", "correlations"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["sd(Subject, Intercept)", "sd(Subject, Days)", "sigma"]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["cor(Subject, Intercept:Days)"]
    assert fig.axes[1].get_xlim() == pytest.approx((-1.05, 1.05))


def test_plot_components_without_correlations(cbpp_fit):
    fig = cbpp_fit.plot_components()
    assert len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["sd(herd, Intercept)"]


def test_plot_conditional_binomial_on_probability_scale(cbpp_fit):
    fig = cbpp_fit.plot_conditional("period")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert "response scale" in ax.get_ylabel()
    means = ax.lines[1].get_ydata()  # lines[0]: jittered data
    b = cbpp_fit.draws["b"]
    p1 = float((1 / (1 + np.exp(-b.sel(term="Intercept")))).mean())
    assert means[0] == pytest.approx(p1, rel=1e-6)
    assert np.all((means > 0) & (means < 1))
    assert means[0] > means[3]  # incidence falls over the periods
    with pytest.raises(hm.MissingColumnError, match="herd"):
        cbpp_fit.plot_conditional("herd")  # a grouping factor, not a predictor


def test_plot_conditional_numeric_line_and_band(sleep_fit):
    fig = sleep_fit.plot_conditional("Days", n_points=20)
    ax = fig.axes[0]
    line = ax.lines[-1]
    assert len(line.get_xdata()) == 20
    b = sleep_fit.draws["b"].mean(("chain", "draw"))
    expected = float(b.sel(term="Intercept")) + float(b.sel(term="Days")) * line.get_xdata()
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-6)
    assert ax.get_xlabel() == "Days"


def test_plot_conditional_with_a_zero_inflation_formula_is_refused_not_misaligned():
    # zi differs by row; the fitted rows' zi laid over the grid's rows was a broadcast error (or, with as many grid
    # points as rows, a silently wrong curve)
    from _sim_fits import zi_formula_fit

    fit = zi_formula_fit()
    for n_points in (50, fit.meta["n_obs"]):
        with pytest.raises(hm.SpecificationError, match="zi, which has its own formula"):
            fit.plot_conditional("x", n_points=n_points)


def test_expected_outcome_plots_of_a_truncated_outcome():
    """plot_conditional draws the truncated mean; plot_trajectories (fitted group means) still refuses."""
    from _sim_fits import zero_truncated_fit

    fit = zero_truncated_fit()
    assert len(fit.plot_conditional("x", data_points=False).axes[0].lines) >= 1
    with pytest.raises(hm.SpecificationError, match="truncated"):
        fit.plot_trajectories("x", by="g")
