"""Bundled real datasets, loaded offline with the right column types.

Provenance of every file is in ``hmodels/datasets/data/SOURCES.md`` (exported from R 4.2.2 with
lme4 1.1-31, nlme 3.1-162 and datasets; radon_mn from posteriordb; eight schools from Rubin 1981).
Grouping and factor columns are categorical even where the CSV holds digits.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from ..errors import DataError, closest

__all__ = ["load", "list", "describe", "DATASETS"]

#: name -> (file, {column: categories order or None for natural order}, one-line description)
DATASETS: dict[str, tuple[str, dict, str]] = {
    "sleepstudy": ("sleepstudy.csv", {"Subject": None},
                   "Reaction times of 18 subjects over 10 days of sleep restriction (lme4::sleepstudy)."),
    "cbpp": ("cbpp.csv", {"herd": None, "period": None},
             "Contagious bovine pleuropneumonia cases in 15 herds over 4 periods (lme4::cbpp)."),
    "penicillin": ("penicillin.csv", {"plate": None, "sample": None},
                   "Penicillin assay: 6 samples crossed with 24 plates (lme4::Penicillin)."),
    "pastes": ("pastes.csv", {"batch": None, "cask": None, "sample": None},
               "Paste strength: casks nested in 10 batches, 2 assays each (lme4::Pastes)."),
    "dyestuff": ("dyestuff.csv", {"Batch": None}, "Dyestuff yield of 6 batches, 5 preparations each (lme4::Dyestuff)."),
    "orthodont": ("orthodont.csv", {"Subject": None, "Sex": ["Female", "Male"]},
                  "Orthodontic distance of 27 children at ages 8-14 (nlme::Orthodont); Female is the reference."),
    "radon": ("radon_mn.csv", {"county": None},
              "Log radon in 919 Minnesota homes in 85 counties (Gelman & Hill 2006; posteriordb radon_mn)."),
    "eight_schools": ("eight_schools.csv", {"school": None},
                      "Coaching effects and standard errors in 8 schools (Rubin 1981)."),
    "chickweight": ("chickweight.csv", {"Chick": None, "Diet": None},
                    "Body weight of 50 chicks on 4 diets, days 0-21 (datasets::ChickWeight)."),
    "theoph": ("theoph.csv", {"Subject": None},
               "Theophylline concentrations in 12 subjects after an oral dose (datasets::Theoph)."),
    "orange": ("orange.csv", {"Tree": None},
               "Trunk circumference of 5 orange trees at 7 ages (datasets::Orange); Tree in natural order 1-5."),
    "co2": ("co2.csv", {"Plant": None, "Type": ["Quebec", "Mississippi"], "Treatment": ["nonchilled", "chilled"]},
            "CO2 uptake of 12 grass plants at 7 ambient concentrations (datasets::CO2); R's reference levels."),
    "grouseticks": ("grouseticks.csv", {"INDEX": None, "BROOD": None, "YEAR": None, "LOCATION": None},
                    "Ticks on 403 red grouse chicks: 118 broods nested in 63 locations, 1995-97 (lme4::grouseticks)."),
    "salamanders": ("salamanders.csv", {"site": None, "mined": None, "spp": None},
                    "Salamander counts at 23 stream sites, mined or not, 7 species (glmmTMB::Salamanders)."),
    "owls": ("owls.csv", {"Nest": None, "FoodTreatment": None, "SexParent": None},
             "Begging calls (sibling negotiation) of barn owl broods in 27 nests (glmmTMB::Owls)."),
    "wine": ("wine.csv", {"temp": None, "contact": None, "bottle": None, "judge": None},
             "Bitterness ratings 1-5 of 8 wines by 9 judges (ordinal::wine); rating is the whole number 1-5."),
}
_ALIASES = {"radon_mn": "radon", "eightschools": "eight_schools", "8schools": "eight_schools"}


def _natural_key(s: str):
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`list` (``"sleepstudy"``, ``"cbpp"``, ``"radon"``, ...).

    Returns
    -------
    pandas.DataFrame
        Grouping and factor columns are ``category`` dtype, levels in natural order.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.datasets.load("sleepstudy")
    >>> d.shape, str(d["Subject"].dtype)
    ((180, 3), 'category')
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}. Bundled: {', '.join(DATASETS)}.{closest(str(name), DATASETS)}")
    fname, factors, _ = DATASETS[key]
    path = resources.files(__name__) / "data" / fname
    with path.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype={c: str for c in factors})
    for col, order in factors.items():
        cats = order if order is not None else sorted(df[col].unique(), key=_natural_key)
        df[col] = pd.Categorical(df[col], categories=cats)
    return df


def list() -> list:  # noqa: A001 - hm.datasets.list() is the documented name
    """Names of the bundled datasets.

    Examples
    --------
    >>> import hmodels as hm
    >>> "cbpp" in hm.datasets.list()
    True
    """
    return [*DATASETS]


def describe() -> pd.DataFrame:
    """Name, rows, columns and a one-line description of every bundled dataset."""
    rows = []
    for name, (_fname, _f, desc) in DATASETS.items():
        df = load(name)
        rows.append({"name": name, "rows": len(df), "columns": ", ".join(df.columns), "description": desc})
    return pd.DataFrame(rows)
