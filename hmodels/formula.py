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
from .formula_text import _check_spaced_names, _formulae_error, _show, term_source  # noqa: F401
from .spec import GroupBlock, GroupTerm, ModelSpec

__all__ = ["parse_formula", "term_source"]

_PROPORTION = re.compile(r"^\s*p\s*\(\s*([^(),]+?)\s*,\s*([^(),]+?)\s*\)\s*$")
_ATERM = re.compile(r"^\s*(trials|se|cens|weights|trunc)\s*\(\s*(.*?)\s*\)\s*$")


def parse_formula(formula: str, family: str = "gaussian", link: str | None = None) -> ModelSpec:
    """Parse an lme4/brms-style formula into a :class:`ModelSpec`.

    Parameters
    ----------
    formula : str
        ``response ~ fixed + (terms | factor) + ...``. Supported: ``(x | g)`` correlated,
        ``(x || g)`` uncorrelated, ``(1 | a/b)`` nested, crossed factors, ``p(k, n)`` or
        ``k | trials(n)`` binomial responses, ``y | se(s)`` known standard errors,
        ``time | cens(censored)`` censoring (brms's coding: 1 = right-censored, 0 = observed,
        -1 = left-censored), ``y | trunc(lb=0, ub=10)`` truncation, ``y | weights(w)`` observation
        weights (several additions joined with ``+``), and every
        term formulae understands (``a*b``, ``C(x)``, ``C(x, Sum)``, ``scale(x)``, ``center(x)``,
        ``I(x**2)``, ``poly(x, 2)``, ``bs(x, df=4)``, ``np.log(x)``). A column whose name is not a
        plain name (spaces, a leading ``_``) is written in backticks: ``y ~ `my col` + (1 | g)``.
        ``offset(expr)`` adds ``expr`` to the linear predictor with coefficient 1 (several offsets
        are summed); an offset inside a group term, an interaction or the outcome raises
        :class:`~hmodels.errors.FormulaError`.
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
    >>> hm.parse_formula("count ~ x + offset(np.log(expo)) + (1 | g)", family="poisson").offset
    'np.log(expo)'
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
    response, trials, se, additions = _parse_lhs(lhs, formula)
    fixed_text, blocks = _split_random(rhs, formula)
    fixed_text, offsets = _extract_offsets(fixed_text, formula)
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
        family=fam.name, link=fam.link, trials=trials, se=se, offset=tuple(offsets) or None, **additions,
    )


def _extract_offsets(text: str, formula: str) -> tuple[str, list[str]]:
    """Take the top-level ``offset(...)`` terms out of the population-level part: (rest, their arguments).

    An offset must be a term of its own, added with ``+`` (or first); ``x:offset(z)``,
    ``- offset(z)`` or ``offset(z) * x`` cannot be honoured and raise :class:`FormulaError`.
    """
    offsets: list[str] = []
    out, i, depth, quoted = [], 0, 0, False
    while i < len(text):
        ch = text[i]
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        m = None
        if not quoted and depth == 0 and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "._`")):
            m = re.match(r"offset\s*\(", text[i:])
        if m is None:
            out.append(ch)
            i += 1
            continue
        start, d, j = i + m.end() - 1, 0, None
        for k in range(start, len(text)):
            d += text[k] == "("
            d -= text[k] == ")"
            if d == 0:
                j = k
                break
        if j is None:
            raise FormulaError(f"Unbalanced '(' in {_show(formula)}.")
        before = "".join(out).rstrip()
        after = text[j + 1:].lstrip()
        if (before and not before.endswith(("+", "~"))) or (after and after[0] not in "+-"):
            raise FormulaError(
                f"The offset {text[i:j + 1]!r} in {_show(formula)} is not a term of its own: an offset is added "
                "to the linear predictor with coefficient 1, so it cannot be interacted, subtracted or "
                "transformed outside its parentheses. Add it with '+', e.g. 'y ~ x + offset(np.log(exposure))', "
                "and put any transformation inside: offset(-z), offset(2 * np.log(e))."
            )
        offsets.append(text[start + 1:j])
        i = j + 1
    return "".join(out), offsets


def _parse_trunc(args: str, formula: str) -> tuple:
    """``trunc(lb=0, ub=10)`` -> ``(0.0, 10.0)`` (a missing bound is None); numbers only."""
    import ast

    bad = FormulaError(
        f"Could not read trunc({args}) in {_show(formula)}: write the bounds as numbers, e.g. 'y | trunc(lb=0)', "
        "'y | trunc(ub=100)' or 'y | trunc(lb=0, ub=100)'."
    )
    try:
        call = ast.parse(f"trunc({args})", mode="eval").body
    except SyntaxError:
        raise bad from None
    if not isinstance(call, ast.Call):
        raise bad
    values = dict(zip(("lb", "ub"), call.args))
    for kw in call.keywords:
        if kw.arg not in ("lb", "ub") or kw.arg in values:
            raise bad
        values[kw.arg] = kw.value
    if len(call.args) > 2 or not values:
        raise bad
    out = []
    for key in ("lb", "ub"):
        node = values.get(key)
        if node is None:
            out.append(None)
            continue
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError):
            raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # trunc(lb=True) is not a bound of 1
            raise bad
        out.append(float(value))
    return tuple(out)


def _top_level_split(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside parentheses: ``"cens(c) + weights(a + b)"`` -> two pieces."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


def _parse_lhs(lhs: str, formula: str):
    parts = [p.strip() for p in lhs.split("|")]
    response, trials, se = parts[0], None, None
    additions: dict = {}
    if len(parts) > 2:
        raise FormulaError(
            f"The outcome {lhs!r} in {_show(formula)} has more than one '|'; write 'y | trials(n)' or 'y | se(s)'."
        )
    if len(parts) == 2:
        for aterm in (a.strip() for a in _top_level_split(parts[1], "+")):  # weights(w1 + w2): one term
            m = _ATERM.match(aterm)
            if not m:
                raise FormulaError(
                    f"Unknown response addition {aterm!r} in {_show(formula)}; hmodels understands "
                    "'trials(n)' (binomial), 'se(s)' (known standard errors), 'cens(c)' (censoring), "
                    "'trunc(lb=, ub=)' (truncation) and 'weights(w)' (observation weights)."
                )
            kind, arg = m.group(1), m.group(2)
            if kind in additions or (kind == "trials" and trials is not None) or (kind == "se" and se is not None):
                raise FormulaError(f"{_show(formula)} gives {kind}(...) twice; write it once.")
            if not arg.strip():
                raise FormulaError(f"{kind}() in {_show(formula)} needs an argument, e.g. {kind}(x).")
            if kind == "trials":
                trials = arg
            elif kind == "se":
                se = arg
            elif kind == "trunc":
                additions["trunc"] = _parse_trunc(arg, formula)
            else:
                additions[kind] = arg
    if not response:
        raise FormulaError(f"The formula {_show(formula)} has no outcome before '|'.")
    m = _PROPORTION.match(response)
    if m:  # p(k, n) is the same model as k | trials(n)
        if trials is not None:
            raise FormulaError(f"{_show(formula)} gives the trials twice: use either 'p(k, n)' or 'k | trials(n)'.")
        response, trials = m.group(1), m.group(2)
    return response, trials, se, additions


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
            source = term_source(t)
            if re.search(r"(?<![\w.`])offset\s*\(", source):
                raise FormulaError(
                    f"The term {source!r} of {_show(formula)} uses an offset inside another term: an offset is "
                    "added on its own with coefficient 1. Write it as a separate term, e.g. "
                    "'y ~ x + offset(np.log(exposure))'."
                )
            terms.append(source)
        elif kind in ("GroupSpecificTerm",):
            continue
        else:
            raise FormulaError(f"Unsupported term {t!r} in {_show(formula)}.")
    return intercept, tuple(terms)


def _parse_block(expr: str, factor: str, correlated: bool, formula: str):
    if re.search(r"(?<![\w.`])offset\s*\(", expr):
        raise FormulaError(
            f"The group-specific term '({expr} | {factor})' in {_show(formula)} contains an offset: an offset has "
            "coefficient 1 for every row, so it cannot vary by group. Write it outside the group term, e.g. "
            f"'y ~ x + offset(np.log(exposure)) + (1 | {factor})'."
        )
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
