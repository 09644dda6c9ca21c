"""Formula strings -> ModelSpec (formulae does the term parsing)."""

import pytest

import hmodels as hm


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("Reaction ~ Days + (Days | Subject)", "Reaction ~ 1 + Days + (1 + Days | Subject)"),
        ("y ~ x + (x || g)", "y ~ 1 + x + (1 | g) + (0 + x | g)"),
        ("strength ~ 1 + (1 | batch/cask)", "strength ~ 1 + (1 | batch) + (1 | batch:cask)"),
        ("diameter ~ (1|plate) + (1|sample)", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        ("y ~ 0 + x*z + scale(w) + (0 + x | g)", "y ~ 0 + x + z + x:z + scale(w) + (0 + x | g)"),
        ("y ~ -1 + x + (1|g)", "y ~ 0 + x + (1 | g)"),
        ("y ~ (1|g) + x + (z|h)", "y ~ 1 + x + (1 | g) + (1 + z | h)"),
        ("y ~ C(k) + center(x) + (1 | g)", "y ~ 1 + C(k) + center(x) + (1 | g)"),
        # formulae's own term names drop these parentheses and backticks; the spec must keep them
        ("y ~ I((x + 1)**2) + I(x - (z - 1)) + (1 | g)", "y ~ 1 + I((x + 1) ** 2) + I(x - (z - 1)) + (1 | g)"),
        ("y ~ `my x` + np.log(`my z`) + (`my x` | `my g`)",
         "y ~ 1 + `my x` + np.log(`my z`) + (1 + `my x` | `my g`)"),
        ("y ~ poly(x, 2) + C(k, Sum) + bs(x, df=4) + (1 | a/`b c`)",
         "y ~ 1 + poly(x, 2) + C(k, Sum) + bs(x, df=4) + (1 | a) + (1 | a:`b c`)"),
    ],
)
def test_round_trip(formula, expected):
    assert hm.parse_formula(formula).formula == expected
    assert hm.parse_formula(expected) == hm.parse_formula(formula)


def test_binomial_forms_are_the_same_spec():
    a = hm.parse_formula("p(incidence, size) ~ period + (1 | herd)", family="binomial")
    b = hm.parse_formula("incidence | trials(size) ~ period + (1 | herd)", family="binomial")
    assert a == b
    assert a.response == "incidence" and a.trials == "size"


def test_known_se():
    s = hm.parse_formula("y | se(sigma) ~ 1 + (1 | school)")
    assert s.se == "sigma" and s.factors == ("school",)


def test_correlation_blocks():
    s = hm.parse_formula("y ~ x + (x | g)")
    assert s.group("g").blocks[0].correlated
    u = hm.parse_formula("y ~ x + (x || g)")
    assert not u.group("g").is_correlated
    assert len(u.group("g").blocks) == 2


def test_python_api_gives_same_spec():
    f = hm.parse_formula("Reaction ~ Days + (Days | Subject)")
    p = hm.spec(response="Reaction", fixed=["Days"],
                groups=[hm.RandomIntercept("Subject"), hm.RandomSlope("Days", by="Subject")])
    assert f == p
    u = hm.spec("y", ["x"], [hm.RandomIntercept("g"), hm.RandomSlope("x", by="g", correlated=False)])
    assert u == hm.parse_formula("y ~ x + (x || g)")


def test_spec_round_trips_through_plain_data():
    s = hm.parse_formula("p(k, n) ~ x + (x | g) + (1 | h)", family="binomial")
    assert hm.ModelSpec.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("y x", "exactly one '~'"),
        ("y ~ x + (1 | g", "Unbalanced"),
        ("y ~ x + ( | g)", "needs terms"),
        ("y | mi(m) ~ x", "mi(m)"),
        ("~ x", "no outcome"),
        ("y ~ my x + (1 | g)", "backticks, e.g. `my x`"),
        ("y ~ _x + (1 | g)", "backticks"),
        ("y ~ x + (offset(log_e) | g)", "cannot vary by group"),
        ("y ~ x:offset(log_e)", "not a term of its own"),
    ],
)
def test_bad_formulas(bad, fragment):
    with pytest.raises(hm.FormulaError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        hm.parse_formula(bad)


def test_trials_need_binomial():
    with pytest.raises(hm.FormulaError, match="binomial"):
        hm.parse_formula("p(k, n) ~ x", family="poisson")


def test_duplicate_group_term_rejected():
    with pytest.raises(hm.SpecificationError, match="appears twice"):
        hm.parse_formula("y ~ x + (x | g) + (0 + x | g)")


def test_unknown_family_and_link():
    with pytest.raises(hm.FamilyError, match="gaussian"):
        hm.parse_formula("y ~ x", family="gausian")
    with pytest.raises(hm.FamilyError, match="link"):
        hm.parse_formula("y ~ x", family="poisson", link="logit")
