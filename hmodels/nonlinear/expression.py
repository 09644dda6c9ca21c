"""The nonlinear mean expression: parsed safely, evaluated by NumPy, PyTensor or sympy, differentiated exactly.

``parse_expression("Asym / (1 + exp((xmid - age) / scal))", columns, parameters)`` reads the right-hand
side of a nonlinear formula with Python's :mod:`ast` and accepts only a whitelist: numbers, names, the
operators ``+ - * / **`` (and R's ``^``, read as ``**``), unary minus, comparisons, and calls to the
functions in :data:`FUNCTIONS`. Nothing is ever passed to ``eval``: every backend walks the same checked
tree with its own table of functions (:data:`_NUMPY`, :data:`_PYTENSOR`, :data:`_SYMPY`; one table per
backend, one list of names), so the three evaluations cannot disagree about what a name means.

Every name is a data column (a *covariate*) or a nonlinear parameter; anything else is a
:class:`~hmodels.errors.FormulaError` naming it and the closest known names.

The exact gradient with respect to the parameters comes from sympy (differentiated once per expression and
cached); the derivative trees are evaluated by the same kind of table-driven walker (numbers never go through
text), so ``gradient(env, lib="pytensor")`` is a PyTensor graph and ``lib="numpy"`` arrays.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ..errors import DataError, FormulaError, SpecificationError, closest, row_labels

__all__ = ["FUNCTIONS", "NonlinearExpression", "parse_expression"]

#: function name -> (number of arguments, what it computes); the whitelist of calls in an expression.
FUNCTIONS: dict[str, tuple[int, str]] = {
    "exp": (1, "exponential"),
    "log": (1, "natural logarithm"),
    "log1p": (1, "log(1 + x), accurate for small x"),
    "expm1": (1, "exp(x) - 1, accurate for small x"),
    "sqrt": (1, "square root"),
    "inv_logit": (1, "1 / (1 + exp(-x))"),
    "logit": (1, "log(x / (1 - x))"),
    "pow": (2, "pow(x, y) = x ** y"),
    "abs": (1, "absolute value"),
    "where": (3, "where(condition, a, b): a where the condition holds, else b"),
    "Phi": (1, "standard normal cumulative distribution function"),
    "lgamma": (1, "log of the gamma function"),
}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_BAD_BINOPS = {
    ast.Mod: "'%' (modulo)", ast.FloorDiv: "'//' (integer division)", ast.MatMult: "'@' (matrix product)",
    ast.BitAnd: "'&'", ast.BitOr: "'|'", ast.LShift: "'<<'", ast.RShift: "'>>'", ast.BitXor: "'^'",
}
_MAX_LENGTH = 5000


# ----------------------------------------------------------------------------------------------------
# parsing and validation


def _error(text: str, what: str) -> FormulaError:
    return FormulaError(f"In the nonlinear expression {text!r}: {what}")


def _to_python(text: str) -> str:
    """R's ``^`` as Python's ``**``: same precedence (above unary minus) and right associativity.

    Safe because an expression holds no strings and no bitwise operators, so every ``^`` is a power.
    """
    return " ".join(text.replace("^", "**").split())


def _parse_tree(text: str) -> ast.Expression:
    if not isinstance(text, str):
        raise FormulaError(f"A nonlinear expression must be a string, got {type(text).__name__}.")
    if not text.strip():
        raise FormulaError("The nonlinear expression is empty: write the mean as a function of columns and parameters, "
                           "e.g. 'Asym / (1 + exp((xmid - age) / scal))'.")
    if len(text) > _MAX_LENGTH:
        raise _error(text[:60] + "...", f"it is longer than {_MAX_LENGTH} characters; write a shorter expression.")
    try:
        tree = ast.parse(_to_python(text), mode="eval")
        if _depth(tree.body) > _MAX_DEPTH:  # explicit: the recursion limit differs between processes
            raise RecursionError
        _check(tree.body, text)
    except SyntaxError as exc:
        raise _error(text, f"it is not a valid arithmetic expression ({exc.msg}). Use + - * / ** (or ^), "
                     "parentheses, numbers, column and parameter names and the functions "
                     f"{', '.join(FUNCTIONS)}.") from None
    except (RecursionError, MemoryError):
        raise _error(text[:60] + "...", "it is nested too deeply; write a shorter expression.") from None
    return tree


_MAX_DEPTH = 300  # nodes from the root to the deepest leaf; a model's mean needs a few dozen


def _depth(node: ast.AST) -> int:
    """Depth of an expression tree, without recursion."""
    best, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return best


def _check(node: ast.AST, text: str) -> None:
    """Reject every node outside the whitelist, with the reason and the fix."""
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _error(text, f"the constant {v!r} is not a real number; only numbers, column names and "
                         "parameter names may appear (no strings, booleans or None).")
        return
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _error(text, f"the operator {_BAD_BINOPS.get(type(node.op), type(node.op).__name__)} is not "
                         "allowed; use + - * / ** and where(condition, a, b) for case distinctions.")
        _check(node.left, text)
        _check(node.right, text)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _error(text, "only unary minus and plus are allowed (no 'not' or '~'); use where(condition, a, b).")
        _check(node.operand, text)
        return
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise _error(text, "chained comparisons such as 'a < b < c' are not allowed; nest where() calls "
                         "or multiply two comparisons: (a < b) * (b < c).")
        if type(node.ops[0]) not in _CMPOPS:
            raise _error(text, "only the comparisons < <= > >= == != are allowed (no 'in' or 'is').")
        _check(node.left, text)
        _check(node.comparators[0], text)
        return
    if isinstance(node, ast.Call):
        f = node.func
        if not isinstance(f, ast.Name):
            what = "a method or attribute call" if isinstance(f, ast.Attribute) else "a call of a computed value"
            raise _error(text, f"{what} ({ast.unparse(f)}(...)) is not allowed; only the functions "
                         f"{', '.join(FUNCTIONS)} may be called.")
        if f.id not in FUNCTIONS:
            hint = closest(f.id, FUNCTIONS)
            if f.id.startswith("SS"):
                hint += (" A self-starting shape such as SSlogis(age, Asym, xmid, scal) must be the whole "
                         "right-hand side of the formula, not part of a larger expression.")
            raise _error(text, f"the function {f.id!r} is not allowed.{hint} Allowed functions: "
                         f"{', '.join(FUNCTIONS)}.")
        if node.keywords:
            raise _error(text, f"{f.id}() takes positional arguments only (no name=value).")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _error(text, f"{f.id}() takes plain arguments (no *args).")
        nargs = FUNCTIONS[f.id][0]
        if len(node.args) != nargs:
            raise _error(text, f"{f.id}() takes {nargs} argument{'s' if nargs > 1 else ''}, got {len(node.args)}.")
        for a in node.args:
            _check(a, text)
        return
    kinds = {ast.Attribute: "attribute access (a.b)", ast.Subscript: "subscripts (x[...])",
             ast.Lambda: "lambda functions", ast.BoolOp: "'and' / 'or'", ast.IfExp: "'a if c else b'",
             ast.Tuple: "tuples", ast.List: "lists", ast.Dict: "dictionaries", ast.Set: "sets",
             ast.NamedExpr: "assignments (:=)", ast.JoinedStr: "strings", ast.Starred: "starred arguments",
             ast.ListComp: "comprehensions", ast.GeneratorExp: "generators", ast.Await: "await",
             ast.Yield: "yield", ast.Slice: "slices"}
    what = next((v for k, v in kinds.items() if isinstance(node, k)), type(node).__name__)
    fix = " Use where(condition, a, b) instead." if isinstance(node, (ast.BoolOp, ast.IfExp)) else ""
    raise _error(text, f"{what} {'are' if what.endswith('s') else 'is'} not allowed in an expression.{fix} "
                 "Only numbers, column and parameter names, + - * / ** (or ^), comparisons and the functions "
                 f"{', '.join(FUNCTIONS)} may appear.")


def _names_in_order(tree: ast.Expression) -> list[str]:
    """Value names (not called function names) in order of first appearance in the text."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    names.sort(key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.id for n in names))


def parse_expression(text: str, columns: Iterable[str], parameters: Iterable[str]) -> NonlinearExpression:
    """Parse the right-hand side of a nonlinear formula safely and check every name.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"Asym / (1 + exp((xmid - age) / scal))"``. Allowed: numbers, names,
        ``+ - * / **`` (R's ``^`` is read as ``**``), unary minus, comparisons ``< <= > >= == !=``, and
        calls to :data:`FUNCTIONS` (``exp, log, log1p, expm1, sqrt, inv_logit, logit, pow, abs, where,
        Phi, lgamma``).
    columns : iterable of str
        The data columns; names of the expression found here are covariates.
    parameters : iterable of str
        The nonlinear parameters (the keys of ``nonlinear=``); each must appear in the expression.

    Returns
    -------
    NonlinearExpression

    Raises
    ------
    FormulaError
        Syntax outside the whitelist, or a name that is neither a column nor a parameter (the message
        names it and the closest names).
    SpecificationError
        A parameter that the expression does not use, or a name that is both a column and a parameter.

    Examples
    --------
    >>> e = parse_expression("Asym / (1 + exp((xmid - age) / scal))", ["age", "circumference", "Tree"],
    ...                      ["Asym", "xmid", "scal"])
    >>> e.parameters, e.covariates
    (('Asym', 'xmid', 'scal'), ('age',))
    >>> float(e.evaluate({"Asym": 200.0, "xmid": 700.0, "scal": 350.0, "age": 700.0}))
    100.0
    >>> parse_expression("Asym * exp(-age / scl)", ["age"], ["Asym", "scal"])
    Traceback (most recent call last):
    ...
    hmodels.errors.FormulaError: The name 'scl' in the nonlinear expression 'Asym * exp(-age / scl)' is neither a data column nor a nonlinear parameter. Did you mean 'scal'? ...
    """  # noqa: E501
    columns = [str(c) for c in columns]
    parameters = [str(p) for p in parameters]
    tree = _parse_tree(text)
    dup = [p for p in dict.fromkeys(parameters) if parameters.count(p) > 1]
    if dup:
        raise SpecificationError(f"The nonlinear parameter(s) {', '.join(map(repr, dup))} are listed twice; "
                                 "name each parameter once.")
    colset, parset = set(columns), set(parameters)
    both = [p for p in parameters if p in colset]
    if both:
        raise SpecificationError(
            f"The nonlinear parameter(s) {', '.join(map(repr, both))} have the same name as data column(s), so "
            f"the expression {text!r} is ambiguous: rename the parameter (e.g. {both[0] + '_p'!r}) in the "
            "expression and in nonlinear=, or rename the column.")
    names = _names_in_order(tree)
    for n in names:
        if n not in colset and n not in parset:
            kind = " (it is a function: call it, e.g. exp(x))" if n in FUNCTIONS else ""
            raise FormulaError(
                f"The name {n!r} in the nonlinear expression {text!r} is neither a data column nor a nonlinear "
                f"parameter{kind}.{closest(n, [*parameters, *columns])} Parameters: "
                f"{', '.join(parameters) or '(none)'}; add {n!r} to nonlinear= if it is a parameter, or to the "
                "data if it is a column.")
    unused = [p for p in parameters if p not in names]
    if unused:
        raise SpecificationError(
            f"The nonlinear parameter(s) {', '.join(map(repr, unused))} do not appear in the expression {text!r}: "
            "remove them from nonlinear= or use them in the expression.")
    expr = NonlinearExpression(text, tuple(n for n in names if n in parset), tuple(n for n in names if n in colset))
    expr.__dict__["_tree"] = tree  # already parsed; cached_property slot
    return expr


# ----------------------------------------------------------------------------------------------------
# the backends: one table each


def _np_float(x):
    return np.asarray(x, dtype=float)


def _np_cmp(op):
    return lambda a, b: _np_float(op(a, b))


_NUMPY: dict[str, Any] = {
    "const": float, "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "pow": lambda a, b: np.power(_np_float(a), b), "neg": np.negative,
    "lt": _np_cmp(np.less), "le": _np_cmp(np.less_equal), "gt": _np_cmp(np.greater),
    "ge": _np_cmp(np.greater_equal), "eq": _np_cmp(np.equal), "ne": _np_cmp(np.not_equal),
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt,
    "inv_logit": special.expit, "logit": special.logit, "abs": np.abs, "Phi": special.ndtr,
    "lgamma": special.gammaln, "where": lambda c, a, b: np.where(np.asarray(c) != 0, a, b),
    # only in derivatives
    "sign": np.sign, "erf": special.erf, "erfc": special.erfc, "digamma": special.digamma,
    "polygamma": lambda k, x: special.polygamma(int(k), x),
    "and": lambda a, b: _np_float(np.logical_and(a, b)), "or": lambda a, b: _np_float(np.logical_or(a, b)),
    "not": lambda a: _np_float(np.logical_not(a)),
}


@functools.cache
def _pytensor_table() -> dict[str, Any]:
    import pytensor.tensor as pt

    def cmp(op):
        return lambda a, b: pt.cast(op(a, b), "float64")

    return {
        "const": lambda v: pt.constant(float(v), dtype="float64"), "add": pt.add, "sub": pt.sub, "mul": pt.mul,
        "div": pt.true_div, "pow": pt.pow, "neg": pt.neg,
        "lt": cmp(pt.lt), "le": cmp(pt.le), "gt": cmp(pt.gt), "ge": cmp(pt.ge), "eq": cmp(pt.eq), "ne": cmp(pt.neq),
        "exp": pt.exp, "log": pt.log, "log1p": pt.log1p, "expm1": pt.expm1, "sqrt": pt.sqrt,
        "inv_logit": pt.sigmoid, "logit": lambda x: pt.log(x) - pt.log1p(-x), "abs": pt.abs,
        "Phi": lambda x: 0.5 * pt.erfc(-x / math.sqrt(2.0)), "lgamma": pt.gammaln,
        "where": lambda c, a, b: pt.switch(pt.neq(c, 0), a, b),
        "sign": pt.sign, "erf": pt.erf, "erfc": pt.erfc, "digamma": pt.digamma,
        "polygamma": lambda k, x: pt.polygamma(int(k), x),
        "and": lambda a, b: pt.cast(pt.and_(pt.neq(a, 0), pt.neq(b, 0)), "float64"),
        "or": lambda a, b: pt.cast(pt.or_(pt.neq(a, 0), pt.neq(b, 0)), "float64"),
        "not": lambda a: pt.cast(pt.eq(a, 0), "float64"),
    }


@functools.cache
def _sympy_table() -> dict[str, Any]:
    import sympy as sp

    def cmp(rel):
        return lambda a, b: sp.Piecewise((1, rel(a, b)), (0, True))

    def cond(c):  # a comparison used as a condition: back to the relation
        if isinstance(c, sp.Piecewise) and len(c.args) == 2 and c.args[0].expr == 1 and c.args[1].expr == 0:
            return c.args[0].cond
        return sp.Ne(c, 0)

    return {
        "const": lambda v: sp.Integer(v) if float(v).is_integer() and abs(v) < 2**53 else sp.Float(v, 17),
        "add": sp.Add, "sub": lambda a, b: a - b, "mul": sp.Mul, "div": lambda a, b: a / b, "pow": sp.Pow,
        "neg": lambda a: -a,
        "lt": cmp(sp.Lt), "le": cmp(sp.Le), "gt": cmp(sp.Gt), "ge": cmp(sp.Ge), "eq": cmp(sp.Eq), "ne": cmp(sp.Ne),
        "exp": sp.exp, "log": sp.log, "log1p": lambda x: sp.log(1 + x), "expm1": lambda x: sp.exp(x) - 1,
        "sqrt": sp.sqrt, "inv_logit": lambda x: 1 / (1 + sp.exp(-x)), "logit": lambda x: sp.log(x / (1 - x)),
        "abs": sp.Abs, "Phi": lambda x: (1 + sp.erf(x / sp.sqrt(2))) / 2, "lgamma": sp.loggamma,
        "where": lambda c, a, b: sp.Piecewise((a, cond(c)), (b, True)),
    }


def _table(lib: str) -> dict[str, Any]:
    if lib == "numpy":
        return _NUMPY
    if lib == "pytensor":
        return _pytensor_table()
    if lib == "sympy":
        return _sympy_table()
    raise SpecificationError(f"lib must be 'numpy', 'pytensor' or 'sympy', got {lib!r}.")


def _walk(node: ast.AST, env: Mapping[str, Any], t: Mapping[str, Any]):
    """Evaluate a checked tree with the functions of one backend table."""
    if isinstance(node, ast.Constant):
        return t["const"](node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return t[_BINOPS[type(node.op)]](_walk(node.left, env, t), _walk(node.right, env, t))
    if isinstance(node, ast.UnaryOp):
        v = _walk(node.operand, env, t)
        return t["neg"](v) if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Compare):
        return t[_CMPOPS[type(node.ops[0])]](_walk(node.left, env, t), _walk(node.comparators[0], env, t))
    if isinstance(node, ast.Call):
        return t[node.func.id](*(_walk(a, env, t) for a in node.args))
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover - _check rejects these


def _walk_sympy(e, env: Mapping[str, Any], t: Mapping[str, Any]):
    """Evaluate a sympy tree (a derivative) with one backend table."""
    import sympy as sp

    if e.is_Symbol:
        return env[e.name]
    if e.is_Number or isinstance(e, sp.NumberSymbol):
        if e.is_infinite or e is sp.nan:
            raise ArithmeticError(f"the derivative has the non-finite constant {e}")
        return t["const"](float(e))
    args = [_walk_sympy(a, env, t) for a in e.args] if not isinstance(e, sp.Piecewise) else None
    if isinstance(e, sp.Add):
        return functools.reduce(t["add"], args)
    if isinstance(e, sp.Mul):
        return functools.reduce(t["mul"], args)
    if isinstance(e, sp.Pow):
        return t["pow"](*args)
    if isinstance(e, sp.Piecewise):
        out = None
        for expr, cond in reversed(e.args):
            val = _walk_sympy(expr, env, t)
            out = val if cond is sp.true or out is None else t["where"](_walk_sympy(cond, env, t), val, out)
        return out
    if e is sp.true or e is sp.false:
        return t["const"](1.0 if e is sp.true else 0.0)
    simple = {sp.exp: "exp", sp.log: "log", sp.Abs: "abs", sp.sign: "sign", sp.erf: "erf", sp.erfc: "erfc",
              sp.loggamma: "lgamma", sp.digamma: "digamma", sp.polygamma: "polygamma",
              sp.StrictLessThan: "lt", sp.LessThan: "le", sp.StrictGreaterThan: "gt", sp.GreaterThan: "ge",
              sp.Equality: "eq", sp.Unequality: "ne", sp.And: "and", sp.Or: "or", sp.Not: "not"}
    name = simple.get(e.func)
    if name is None:
        raise NotImplementedError(f"cannot evaluate the sympy function {e.func.__name__} of a derivative")
    if name in ("and", "or") and len(args) > 2:
        return functools.reduce(t[name], args)
    if name == "polygamma":
        return t[name](float(e.args[0]), args[1])
    return t[name](*args)


# ----------------------------------------------------------------------------------------------------
# the expression


@dataclass(frozen=True)
class NonlinearExpression:
    """A checked nonlinear mean expression of data columns and parameters.

    Create it with :func:`parse_expression`, which checks the syntax and the names.

    Attributes
    ----------
    text : str
        The right-hand side as written (after self-start expansion).
    parameters : tuple of str
        Names that are nonlinear parameters, in order of first appearance.
    covariates : tuple of str
        Names that are data columns, in order of first appearance.

    Examples
    --------
    >>> e = parse_expression("Vm * conc / (K + conc)", ["conc", "rate"], ["Vm", "K"])
    >>> g = e.gradient({"Vm": 200.0, "K": 0.1, "conc": 0.1})
    >>> round(float(g["Vm"]), 6), round(float(g["K"]), 6)
    (0.5, -500.0)
    >>> e.sympy()
    Vm*conc/(K + conc)
    """

    text: str
    parameters: tuple[str, ...]
    covariates: tuple[str, ...]

    def __reduce__(self):  # pickle the text and names only; trees and derivatives are rebuilt on use
        return (NonlinearExpression, (self.text, self.parameters, self.covariates))

    @functools.cached_property
    def _tree(self) -> ast.Expression:
        return _parse_tree(self.text)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the expression reads: parameters then covariates."""
        return self.parameters + self.covariates

    def _env(self, env: Mapping[str, Any]) -> Mapping[str, Any]:
        missing = [n for n in self.names if n not in env]
        if missing:
            raise SpecificationError(f"Values are missing for {', '.join(map(repr, missing))} of the nonlinear "
                                     f"expression {self.text!r}: pass every parameter and covariate.")
        return env

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy"):
        """Value of the expression.

        Parameters
        ----------
        env : mapping
            Every parameter and covariate name -> a number, array or tensor (they broadcast).
        lib : {"numpy", "pytensor", "sympy"}
            ``"numpy"`` returns an array (floating-point warnings are silenced: callers check
            finiteness), ``"pytensor"`` a PyTensor graph, ``"sympy"`` a sympy expression.

        Examples
        --------
        >>> import numpy as np
        >>> e = parse_expression("a * exp(-b * t)", ["t"], ["a", "b"])
        >>> e.evaluate({"a": 2.0, "b": np.log(2), "t": np.array([0.0, 1.0, 2.0])})
        array([2. , 1. , 0.5])
        """
        env = self._env(env)
        t = _table(lib)
        if lib == "numpy":
            env = {k: (np.asarray(v, dtype=float) if k in self.names else v) for k, v in env.items()}
            with np.errstate(all="ignore"):
                return _walk(self._tree.body, env, t)
        return _walk(self._tree.body, env, t)

    def sympy(self):
        """The sympy expression, with one real symbol per name.

        Examples
        --------
        >>> parse_expression("Asym * (1 - exp(-exp(lrc) * x))", ["x"], ["Asym", "lrc"]).sympy()
        Asym*(1 - exp(-x*exp(lrc)))
        """
        return self._sympy

    @functools.cached_property
    def _symbols(self) -> dict:
        import sympy as sp

        return {n: sp.Symbol(n, real=True) for n in self.names}

    @functools.cached_property
    def _sympy(self):
        return _walk(self._tree.body, self._symbols, _sympy_table())

    @functools.cached_property
    def derivatives(self) -> dict:
        """Sympy derivative of the expression with respect to each parameter (computed once)."""
        import sympy as sp

        e = self._sympy
        return {p: sp.diff(e, self._symbols[p]) for p in self.parameters}

    def gradient(self, env: Mapping[str, Any], lib: str = "numpy") -> dict:
        """Exact derivative with respect to each parameter, broadcast to the shape of the value.

        Parameters
        ----------
        env : mapping
            As for :meth:`evaluate`.
        lib : {"numpy", "pytensor"}

        Returns
        -------
        dict
            Parameter name -> array (or PyTensor graph) of d expression / d parameter.

        Examples
        --------
        >>> e = parse_expression("Asym * (1 - exp(-exp(lrc) * x))", ["x"], ["Asym", "lrc"])
        >>> g = e.gradient({"Asym": 2.0, "lrc": 0.0, "x": [0.0, 1.0]})
        >>> g["Asym"].round(6), g["lrc"].round(6)
        (array([0.      , 0.632121]), array([0.      , 0.735759]))
        """
        if lib == "sympy":
            return dict(self.derivatives)
        env = self._env(env)
        t = _table(lib)
        if lib == "numpy":
            env = {k: np.asarray(env[k], dtype=float) for k in self.names}
            shape = np.broadcast_shapes(*(v.shape for v in env.values()))
            with np.errstate(all="ignore"):
                return {p: np.array(np.broadcast_to(np.asarray(_walk_sympy(d, env, t), dtype=float), shape))
                        for p, d in self.derivatives.items()}
        import pytensor.tensor as pt

        value = self.evaluate(env, lib)
        return {p: pt.broadcast_to(_walk_sympy(d, env, t), value.shape) for p, d in self.derivatives.items()}

    def check_covariates(self, data: Mapping[str, Any], labels=None) -> None:
        """Raise a :class:`~hmodels.errors.DataError` when the data alone make the expression undefined.

        Checks every denominator, logarithm and square root whose argument depends on covariates only
        (not on parameters): a division by a column that is 0 in some rows, the log of a non-positive
        column, the square root of a negative one. The message names the rows.

        Parameters
        ----------
        data : mapping
            Covariate name -> values (n,).
        labels : sequence, optional
            Row labels for the message (default 0..n-1).

        Examples
        --------
        >>> e = parse_expression("a / dose", ["dose"], ["a"])
        >>> e.check_covariates({"dose": [1.0, 0.0, 2.0]})
        Traceback (most recent call last):
        ...
        hmodels.errors.DataError: The nonlinear expression 'a / dose' divides by 'dose', which is 0 in 1 row (index 1): ...
        """  # noqa: E501
        env = {c: np.asarray(data[c], dtype=float) for c in self.covariates}
        n = max((v.size for v in env.values()), default=0)
        labels = np.arange(n) if labels is None else np.asarray(labels)
        pars = set(self.parameters)
        for node in ast.walk(self._tree.body):
            checks = []
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                checks.append((node.right, lambda v: v == 0, "divides by", "0"))
            if isinstance(node, ast.Call) and node.func.id in ("log", "sqrt", "lgamma", "logit"):
                arg = node.args[0]
                if node.func.id == "sqrt":
                    checks.append((arg, lambda v: v < 0, "takes the square root of", "negative"))
                elif node.func.id == "logit":
                    checks.append((arg, lambda v: (v <= 0) | (v >= 1), "takes logit() of", "outside (0, 1)"))
                else:
                    checks.append((arg, lambda v: v <= 0, f"takes {node.func.id}() of", "not positive"))
            for sub, bad_fn, verb, what in checks:
                used = {m.id for m in ast.walk(sub) if isinstance(m, ast.Name)}
                if used & pars or not used:
                    continue
                with np.errstate(all="ignore"):
                    v = np.broadcast_to(np.asarray(_walk(sub, env, _NUMPY), dtype=float), (n,))
                bad = bad_fn(v)
                if np.any(bad):
                    raise DataError(
                        f"The nonlinear expression {self.text!r} {verb} {ast.unparse(sub)!r}, which is {what} in "
                        f"{row_labels(labels, bad)}: remove or correct those rows, or rewrite the expression.")
