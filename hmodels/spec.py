"""The model specification: a frozen, printable data object with no PyMC and no data.

Both the formula parser (:mod:`hmodels.formula`) and the Python builder API (:func:`spec`,
:class:`RandomIntercept`, :class:`RandomSlope`) produce a :class:`ModelSpec`, normalised so that
equivalent specifications compare equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import SpecificationError
from .families import get_family

__all__ = ["GroupBlock", "GroupTerm", "ModelSpec", "RandomIntercept", "RandomSlope", "spec"]


@dataclass(frozen=True)
class GroupBlock:
    """Group-specific terms of one factor whose effects share one covariance block.

    Parameters
    ----------
    terms : tuple of str
        Term expressions other than the intercept, as formulae reads them (``"Days"``,
        ``"C(period)"``, ``"x:z"``).
    intercept : bool
        Whether the block has a group-specific intercept.
    correlated : bool
        Whether the effects in the block are correlated (LKJ prior). Always ``False`` for a
        block with a single effect.
    """

    terms: tuple[str, ...] = ()
    intercept: bool = True
    correlated: bool = True

    @property
    def expression(self) -> str:
        """The block's right-hand side, for formulae (``"1 + Days"``, ``"0 + Days"``)."""
        return " + ".join(["1" if self.intercept else "0", *self.terms])


@dataclass(frozen=True)
class GroupTerm:
    """All group-specific effects of one grouping factor.

    Parameters
    ----------
    factor : str
        The grouping factor: a column (``"Subject"``) or an interaction of columns for nested
        designs (``"batch:cask"``).
    blocks : tuple of GroupBlock
        Independent covariance blocks (``(x|g)`` is one correlated block;
        ``(x||g)`` is two single-effect blocks).
    """

    factor: str
    blocks: tuple[GroupBlock, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The data columns that make up the factor."""
        return tuple(self.factor.split(":"))

    @property
    def is_correlated(self) -> bool:
        """Whether any block carries a correlation."""
        return any(b.correlated for b in self.blocks)


@dataclass(frozen=True)
class ModelSpec:
    """A mixed-model specification as plain data.

    Parameters
    ----------
    response : str
        Outcome column or expression (``"Reaction"``, ``"p(incidence, size)"``).
    fixed : tuple of str
        Population-level terms besides the intercept, as formulae terms.
    intercept : bool
        Whether the model has a population-level intercept.
    groups : tuple of GroupTerm
        Group-specific effects, one entry per grouping factor.
    family, link : str
        Response family and link (see :mod:`hmodels.families`).
    trials : str, optional
        Column with the number of trials (binomial).
    se : str, optional
        Column with known standard errors of the outcome (gaussian meta-analysis).

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.spec(response="Reaction", fixed=["Days"],
    ...             groups=[hm.RandomIntercept("Subject"), hm.RandomSlope("Days", by="Subject")])
    >>> s.formula
    'Reaction ~ 1 + Days + (1 + Days | Subject)'
    >>> s == hm.parse_formula("Reaction ~ Days + (Days | Subject)")
    True
    """

    response: str
    fixed: tuple[str, ...] = ()
    intercept: bool = True
    groups: tuple[GroupTerm, ...] = ()
    family: str = "gaussian"
    link: str = "identity"
    trials: str | None = None
    se: str | None = None

    def __post_init__(self):
        fam = get_family(self.family, self.link)
        object.__setattr__(self, "family", fam.name)
        object.__setattr__(self, "link", fam.link)
        object.__setattr__(self, "fixed", tuple(self.fixed))
        object.__setattr__(self, "groups", _normalise_groups(self.groups))
        if fam.name == "binomial" and self.trials is None:
            raise SpecificationError(
                f"The binomial family needs the number of trials: write 'p({self.response}, n) ~ ...' "
                f"or '{self.response} | trials(n) ~ ...', or pass trials='n'."
            )
        if self.se is not None and fam.name != "gaussian":
            raise SpecificationError(
                f"Known standard errors (se({self.se})) are only available for the gaussian family, "
                f"not {fam.name!r}."
            )

    @property
    def factors(self) -> tuple[str, ...]:
        """Names of the grouping factors, in order."""
        return tuple(g.factor for g in self.groups)

    def group(self, factor: str) -> GroupTerm:
        """Return the :class:`GroupTerm` of one grouping factor."""
        for g in self.groups:
            if g.factor == factor:
                return g
        raise SpecificationError(
            f"{factor!r} is not a grouping factor of this model; the factors are: {', '.join(self.factors) or 'none'}."
        )

    @property
    def formula(self) -> str:
        """An equivalent lme4/brms-style formula string."""
        lhs = self.response
        aterms = []
        if self.trials is not None:
            aterms.append(f"trials({self.trials})")
        if self.se is not None:
            aterms.append(f"se({self.se})")
        if aterms:
            lhs = f"{lhs} | {' + '.join(aterms)}"
        rhs = ["1" if self.intercept else "0", *self.fixed]
        for g in self.groups:
            for b in g.blocks:
                rhs.append(f"({b.expression} | {g.factor})")
        return f"{lhs} ~ {' + '.join(rhs)}"

    def to_dict(self) -> dict:
        """The spec as JSON-compatible plain data (for saving fits)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Rebuild a spec from :meth:`to_dict` output."""
        groups = tuple(
            GroupTerm(g["factor"], tuple(GroupBlock(tuple(b["terms"]), b["intercept"], b["correlated"]) for b in g["blocks"]))
            for g in data.get("groups", ())
        )
        kw = {k: v for k, v in data.items() if k != "groups"}
        kw["fixed"] = tuple(kw.get("fixed", ()))
        return cls(groups=groups, **kw)

    def __str__(self) -> str:
        return f"{self.formula}  [family={self.family}, link={self.link}]"


def _normalise_groups(groups) -> tuple[GroupTerm, ...]:
    """Merge blocks per factor, split uncorrelated blocks into one effect each, reject duplicates."""
    by_factor: dict[str, list[GroupBlock]] = {}
    for g in groups:
        if not isinstance(g, GroupTerm):
            raise SpecificationError(f"groups must hold GroupTerm objects, got {type(g).__name__}.")
        factor = ":".join(p.strip() for p in g.factor.split(":"))
        by_factor.setdefault(factor, []).extend(g.blocks)
    out = []
    for factor, blocks in by_factor.items():
        norm: list[GroupBlock] = []
        for b in blocks:
            n_eff = int(b.intercept) + len(b.terms)
            if n_eff == 0:
                raise SpecificationError(f"A group-specific block for {factor!r} has no terms: '(0 | {factor})'.")
            if b.correlated and n_eff > 1:
                norm.append(GroupBlock(tuple(b.terms), b.intercept, True))
                continue
            if b.intercept:
                norm.append(GroupBlock((), True, False))
            norm.extend(GroupBlock((t,), False, False) for t in b.terms)
        seen: set[str] = set()
        for b in norm:
            names = (["Intercept"] if b.intercept else []) + list(b.terms)
            for name in names:
                if name in seen:
                    raise SpecificationError(
                        f"The group-specific term {name!r} appears twice for factor {factor!r}; "
                        f"list each term once, e.g. '({name} | {factor})'."
                    )
                seen.add(name)
        out.append(GroupTerm(factor, tuple(norm)))
    return tuple(out)


@dataclass(frozen=True)
class RandomIntercept:
    """A group-specific intercept for the grouping factor ``by`` (``(1 | by)``).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.RandomIntercept("Subject")
    RandomIntercept(by='Subject')
    """

    by: str


@dataclass(frozen=True)
class RandomSlope:
    """A group-specific slope of ``term`` for the grouping factor ``by``.

    Slopes are correlated with the intercept and the other correlated slopes of the same
    factor unless ``correlated=False`` (``(0 + term | by)`` as a separate block).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.RandomSlope("Days", by="Subject")
    RandomSlope(term='Days', by='Subject', correlated=True)
    """

    term: str
    by: str
    correlated: bool = field(default=True)


def spec(
    response: str,
    fixed=(),
    groups=(),
    *,
    intercept: bool = True,
    family: str = "gaussian",
    link: str | None = None,
    trials: str | None = None,
    se: str | None = None,
) -> ModelSpec:
    """Build a :class:`ModelSpec` without a formula.

    Parameters
    ----------
    response : str
        Outcome column.
    fixed : list of str
        Population-level terms (formulae expressions such as ``"Days"``, ``"C(period)"``).
    groups : list of RandomIntercept, RandomSlope or GroupTerm
        Group-specific effects. Intercepts and correlated slopes of the same factor form one
        correlated block, as ``(x | g)`` does.
    intercept : bool
        Population-level intercept (default ``True``).
    family, link : str
        Response family and link.
    trials, se : str, optional
        Columns with binomial trials or known standard errors.

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.spec(response="y", fixed=["x"], groups=[hm.RandomIntercept("g"), hm.RandomSlope("x", by="g")])
    >>> s.formula
    'y ~ 1 + x + (1 + x | g)'
    """
    if isinstance(fixed, str):
        fixed = [fixed]
    order: list[str] = []
    merged: dict[str, dict] = {}
    extra: list[GroupTerm] = []
    for g in groups:
        if isinstance(g, GroupTerm):
            extra.append(g)
            continue
        if not isinstance(g, (RandomIntercept, RandomSlope)):
            raise SpecificationError(
                f"groups entries must be hm.RandomIntercept, hm.RandomSlope or GroupTerm, got {g!r}."
            )
        entry = merged.setdefault(g.by, {"intercept": False, "cor": [], "uncor": []})
        if g.by not in order:
            order.append(g.by)
        if isinstance(g, RandomIntercept):
            entry["intercept"] = True
        elif g.correlated:
            entry["cor"].append(g.term)
        else:
            entry["uncor"].append(g.term)
    terms: list[GroupTerm] = []
    for by in order:
        e = merged[by]
        blocks = []
        if e["intercept"] or e["cor"]:
            blocks.append(GroupBlock(tuple(e["cor"]), e["intercept"], True))
        blocks.extend(GroupBlock((t,), False, False) for t in e["uncor"])
        terms.append(GroupTerm(by, tuple(blocks)))
    fam = get_family(family, link)
    return ModelSpec(
        response=response, fixed=tuple(fixed), intercept=intercept, groups=tuple(terms + extra),
        family=fam.name, link=fam.link, trials=trials, se=se,
    )
