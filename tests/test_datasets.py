"""Bundled datasets load offline with the right types."""

import pytest

import hmodels as hm


def test_all_bundled_datasets_load():
    expected = {"sleepstudy": (180, 3), "cbpp": (56, 4), "penicillin": (144, 3), "pastes": (60, 4),
                "dyestuff": (30, 2), "orthodont": (108, 4), "radon": (919, 4), "eight_schools": (8, 3),
                "chickweight": (578, 4), "theoph": (132, 5), "grouseticks": (403, 6),
                "orange": (35, 3), "co2": (84, 5), "salamanders": (644, 9), "owls": (599, 8), "wine": (72, 6)}
    assert set(hm.datasets.list()) == set(expected)
    for name, shape in expected.items():
        assert hm.datasets.load(name).shape == shape


def test_factor_columns_are_categorical_in_natural_order():
    cbpp = hm.datasets.load("cbpp")
    assert str(cbpp["herd"].dtype) == "category" and str(cbpp["period"].dtype) == "category"
    assert list(cbpp["herd"].cat.categories[:3]) == ["1", "2", "3"]
    assert list(hm.datasets.load("orthodont")["Sex"].cat.categories) == ["Female", "Male"]
    assert str(hm.datasets.load("radon")["county"].dtype) == "category"


def test_eight_schools_columns():
    assert list(hm.datasets.load("eight_schools").columns) == ["school", "y", "sigma"]


def test_unknown_dataset():
    with pytest.raises(hm.DataError, match="Did you mean 'sleepstudy'"):
        hm.datasets.load("sleepstudyy")


def test_orange_and_co2_types_and_reference_levels():
    orange = hm.datasets.load("orange")
    assert list(orange.columns) == ["Tree", "age", "circumference"]
    assert list(orange["Tree"].cat.categories) == ["1", "2", "3", "4", "5"]
    co2 = hm.datasets.load("co2")
    assert list(co2.columns) == ["Plant", "Type", "Treatment", "conc", "uptake"]
    assert list(co2["Type"].cat.categories) == ["Quebec", "Mississippi"]  # R's reference level first
    assert list(co2["Treatment"].cat.categories) == ["nonchilled", "chilled"]
    assert co2["Plant"].nunique() == 12 and co2["conc"].nunique() == 7
