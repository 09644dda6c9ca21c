"""Formula text: writing terms back as formulae reads them, quoting names, and plain-language parse errors.

The lowest layer of formula handling (it imports no other hmodels module but the errors), shared by
:mod:`hmodels.spec` (offsets are normalised there) and :mod:`hmodels.formula` (the parser).
"""

from __future__ import annotations

import re

from .errors import FormulaError

__all__ = ["quote_name", "term_source"]

# two names separated by blanks only: formulae silently keeps the first ('my col' -> 'my')
_SPACED = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)[ \t]+([A-Za-z_][\w.]*)")
_SHOW = 120  # characters of a formula quoted in a message


def quote_name(name: str) -> str:
    """Write a column name as a formula can refer to it: bare if formulae reads it as a name, else in backticks.

    formulae reads a bare name that starts with a letter and continues with letters, digits, ``_``
    and ``.``; anything else (spaces, a leading ``_`` or digit, operators) needs backticks.

    Examples
    --------
    >>> quote_name("Days"), quote_name("my col"), quote_name("_x")
    ('Days', '`my col`', '`_x`')
    """
    name = str(name)
    if name[:1].isalpha() and all(ch.isalnum() or ch in "._" for ch in name):
        return name
    return f"`{name}`"  # a name that itself holds a backtick cannot be written in a formula at all


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
