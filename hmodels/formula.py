"""Formula strings to :class:`~hmodels.spec.ModelSpec`, via formulae.

formulae parses every term (interactions, ``C()``, ``scale()``, nesting ``a/b``). It flattens
``(x | g)`` into one group-specific term per effect and does not read ``||``, so this module
only finds the top-level ``( ... | ... )`` blocks (to know which effects share a correlation
block) and the brms-style response additions ``| trials(n)`` / ``| se(s)``; everything inside a
block is handed back to formulae.
"""

from __future__ import annotations

import re

import formulae as fm

from .errors import FormulaError
from .families import get_family
from .spec import GroupBlock, GroupTerm, ModelSpec, quote_name

__all__ = ["parse_formula", "term_source"]

_PROPORTION = re.compile(r"^\s*p\s*\(\s*([^(),]+?)\s*,\s*([^(),]+?)\s*\)\s*$")
_ATERM = re.compile(r"^\s*(trials|se)\s*\(\s*([^()]+?)\s*\)\s*$")
# two names separated by blanks only: formulae silently keeps the first ('my col' -> 'my')
_SPACED = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)[ \t]+([A-Za-z_][\w.]*)")
_SHOW = 120  # characters of a formula quoted in a message


def _show(text: str) -> str:
    """``repr`` of a formula (part), shortened for messages."""
    text = str(text)
    if len(text) <= _SHOW:
        return repr(text)
    return repr(text[: _SHOW - 20] + " ... " + text[-15:]) + f" ({len(text)} characters)"


def _formulae_error(exc: BaseException, text: str) -> str:
    """Explain a formulae error, with a fix for the usual causes; short even for huge formulas."""
    if isinstance(exc, RecursionError):
        n = text.count("+") + 1
        return (f"it has about {n} terms, more than formulae's parser can nest (it recurses once per '+'; "
                "a few hundred terms at most). Use fewer terms")
    msg = str(exc)
    if len(msg) > 200:
        msg = msg[:200] + " ..."
    if "Unexpected character" in msg:
        msg += (". A column whose name is not a plain name (spaces, a leading '_' or digit, symbols) must be "
                "written in backticks, e.g. `my col` or `_x`, or renamed")
    return msg


def parse_formula(formula: str, family: str = "gaussian", link: str | None = None) -> ModelSpec:
    """Parse an lme4/brms-style formula into a :class:`ModelSpec`.

    Parameters
    ----------
    formula : str
        ``response ~ fixed + (terms | factor) + ...``. Supported: ``(x | g)`` correlated,
        ``(x || g)`` uncorrelated, ``(1 | a/b)`` nested, crossed factors, ``p(k, n)`` or
        ``k | trials(n)`` binomial responses, ``y | se(s)`` known standard errors, and every
        term formulae understands (``a*b``, ``C(x)``, ``C(x, Sum)``, ``scale(x)``, ``center(x)``,
        ``I(x**2)``, ``poly(x, 2)``, ``bs(x, df=4)``, ``np.log(x)``). A column whose name is not a
        plain name (spaces, a leading ``_``) is written in backticks: ``y ~ `my col` + (1 | g)``.
        ``offset(...)`` is not supported yet and raises :class:`~hmodels.errors.FormulaError`.
    family, link : str
        Response family and link.

    Returns
    -------
    ModelSpec

    Raises
    ------
    FormulaError
        The formula cannot be read; the message points at the part that failed.

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.parse_formula("strength ~ 1 + (1 | batch/cask)")
    >>> s.factors
    ('batch', 'batch:cask')
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise FormulaError(
            f"A formula needs exactly one '~' between the outcome and the predictors, got {_show(formula)}. "
            "Example: 'Reaction ~ Days + (Days | Subject)'."
        )
    _check_spaced_names(formula)
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise FormulaError(f"The formula {_show(formula)} has no outcome on the left of '~'.")
    response, trials, se = _parse_lhs(lhs, formula)
    fixed_text, blocks = _split_random(rhs, formula)
    intercept, fixed = _parse_fixed(fixed_text, formula)
    groups = []
    for expr, factor, correlated in blocks:
        groups.extend(_parse_block(expr, factor, correlated, formula))
    fam = get_family(family, link)
    if trials is not None and fam.outcome != "binomial":
        raise FormulaError(
            f"The outcome in {_show(formula)} gives a number of trials; use family='binomial' (got {fam.name!r})."
        )
    return ModelSpec(
        response=response, fixed=fixed, intercept=intercept, groups=tuple(groups),
        family=fam.name, link=fam.link, trials=trials, se=se,
    )


def _parse_lhs(lhs: str, formula: str):
    parts = [p.strip() for p in lhs.split("|")]
    response, trials, se = parts[0], None, None
    if len(parts) > 2:
        raise FormulaError(
            f"The outcome {lhs!r} in {_show(formula)} has more than one '|'; write 'y | trials(n)' or 'y | se(s)'."
        )
    if len(parts) == 2:
        for aterm in (a.strip() for a in parts[1].split("+")):
            m = _ATERM.match(aterm)
            if not m:
                raise FormulaError(
                    f"Unknown response addition {aterm!r} in {_show(formula)}; hmodels understands "
                    "'trials(n)' (binomial) and 'se(s)' (known standard errors)."
                )
            if m.group(1) == "trials":
                trials = m.group(2)
            else:
                se = m.group(2)
    if not response:
        raise FormulaError(f"The formula {_show(formula)} has no outcome before '|'.")
    m = _PROPORTION.match(response)
    if m:  # p(k, n) is the same model as k | trials(n)
        if trials is not None:
            raise FormulaError(f"{_show(formula)} gives the trials twice: use either 'p(k, n)' or 'k | trials(n)'.")
        response, trials = m.group(1), m.group(2)
    return response, trials, se


def _split_random(rhs: str, formula: str):
    """Separate top-level ``( ... | ... )`` blocks from the population-level part."""
    blocks, fixed_chars, depth, start = [], [], 0, None
    for i, ch in enumerate(rhs):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"Unbalanced ')' in {_show(formula)}.")
            if depth == 0:
                inner = rhs[start + 1 : i]
                if "|" in inner and _top_level_bar(inner) is not None:
                    pos, width = _top_level_bar(inner)
                    expr, factor = inner[:pos].strip(), inner[pos + width :].strip()
                    if not expr or not factor:
                        raise FormulaError(
                            f"The group-specific block '({inner})' in {_show(formula)} needs terms on the left of "
                            "'|' and a grouping factor on the right, e.g. '(1 | Subject)'."
                        )
                    blocks.append((expr, factor, width == 1))
                else:
                    fixed_chars.append(rhs[start : i + 1])
                start = None
            continue
        if depth == 0:
            fixed_chars.append(ch)
    if depth != 0:
        raise FormulaError(f"Unbalanced '(' in {_show(formula)}.")
    return "".join(fixed_chars), blocks


def _top_level_bar(text: str):
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            return (i, 2) if text[i : i + 2] == "||" else (i, 1)
    return None


def _parse_fixed(fixed_text: str, formula: str):
    cleaned = re.sub(r"\+\s*(?=\+)", "", fixed_text)  # '+' left behind by removed blocks
    cleaned = cleaned.strip().strip("+").strip()
    if not cleaned:
        return True, ()
    try:
        desc = fm.model_description(f"yresponse ~ {cleaned}")
    except Exception as exc:  # formulae raises several types (RecursionError for very long formulas)
        raise FormulaError(
            f"Could not read the population-level part {_show(cleaned)} of {_show(formula)}: "
            f"{_formulae_error(exc, cleaned)}."
        ) from None
    intercept, terms = False, []
    for t in desc.terms:
        kind = type(t).__name__
        if kind == "Intercept":
            intercept = True
        elif kind == "Term":
            terms.append(term_source(t))
        elif kind in ("GroupSpecificTerm",):
            continue
        else:
            raise FormulaError(f"Unsupported term {t!r} in {_show(formula)}.")
    return intercept, tuple(terms)


def _parse_block(expr: str, factor: str, correlated: bool, formula: str):
    try:
        desc = fm.model_description(f"0 + ({expr} | {factor})")
    except Exception as exc:
        raise FormulaError(
            f"Could not read the group-specific block {_show(f'({expr} | {factor})')} of {_show(formula)}: "
            f"{_formulae_error(exc, expr)}."
        ) from None
    per_factor: dict[str, dict] = {}
    for t in desc.terms:
        if type(t).__name__ != "GroupSpecificTerm":
            raise FormulaError(f"Unexpected term {t!r} inside '({expr} | {factor})' in {_show(formula)}.")
        fname = ":".join(c.name for c in t.factor.components)
        entry = per_factor.setdefault(fname, {"intercept": False, "terms": []})
        if type(t.expr).__name__ == "Intercept":
            entry["intercept"] = True
        else:
            entry["terms"].append(term_source(t.expr))
    return [
        GroupTerm(fname, (GroupBlock(tuple(e["terms"]), e["intercept"], correlated),))
        for fname, e in per_factor.items()
    ]


def _check_spaced_names(formula: str) -> None:
    """Refuse ``my col`` written without backticks (formulae would read it as ``my``)."""
    bare = re.sub(r"`[^`]*`|'[^']*'|\"[^\"]*\"", " ", formula)
    m = _SPACED.search(bare)
    if m:
        name = f"{m.group(1)} {m.group(2)}"
        raise FormulaError(
            f"{name!r} in {_show(formula)} is two names separated by a space; formulae would silently read only "
            f"{m.group(1)!r}. A column whose name contains spaces must be written in backticks, e.g. `{name}`; "
            "otherwise join the names with an operator ('+', ':', '*')."
        )


def term_source(term) -> str:
    """Write one formulae term as formula text that formulae reads back as the same term.

    formulae's own term names drop backticks (``my col``) and the parentheses that group operators
    inside calls (``I((x + 1)**2)`` is named ``I(x + 1 ** 2)``, which reads back as ``x + 1``), so
    the term is written out again from its parsed components.

    Examples
    --------
    >>> import formulae as fm
    >>> [term_source(t) for t in fm.model_description("y ~ I((x + 1)**2) + `my col`:z").terms[1:]]
    ['I((x + 1) ** 2)', '`my col`:z']
    """
    parts = []
    for c in term.components:
        if type(c).__name__ == "Call":
            parts.append(_lazy_source(c.call))
        else:
            parts.append(quote_name(c.name))
    return ":".join(parts)


def _lazy_source(node) -> str:
    kind = type(node).__name__
    if kind == "LazyVariable":
        return quote_name(node.name)
    if kind == "LazyValue":
        return str(node)
    if kind == "LazyCall":
        args = [_lazy_source(a) for a in node.args]
        args += [f"{k}={_lazy_source(v)}" for k, v in node.kwargs.items()]
        return f"{node.callee}({', '.join(args)})"
    if kind == "LazyOperator":
        def operand(a):
            text = _lazy_source(a)
            return f"({text})" if type(a).__name__ == "LazyOperator" else text

        if len(node.args) == 1:
            return f"{node.symbol}{operand(node.args[0])}"
        return f"{operand(node.args[0])} {node.symbol} {operand(node.args[1])}"
    raise FormulaError(f"Cannot write back the formula element {node!s} ({kind}).")
