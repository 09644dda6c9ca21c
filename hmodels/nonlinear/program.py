"""The nonlinear mean as a program for the compiled engine: a stack machine in postfix order.

:func:`compile_program` walks the checked expression tree (the one every other backend walks, see
:mod:`hmodels.nonlinear.expression`) and writes one operation per node, children first: push a
constant, a parameter (its linear predictor) or a covariate; apply ``+ - * / **``, a comparison,
``where`` or a function of :data:`~hmodels.nonlinear.expression.FUNCTIONS`. ``kernels.c``
(``nl_forward``) runs it on every observation in forward mode — each value carries its derivatives
in the parameters — so the gradient is exact and nothing is compiled per expression: a new
expression, or the same one on new data, reuses the one compiled library.

Examples
--------
>>> from hmodels.nonlinear.expression import parse_expression
>>> e = parse_expression("Asym / (1 + exp((xmid - age) / scal))", ["age"], ["Asym", "xmid", "scal"])
>>> prog = compile_program(e, ["Asym", "xmid", "scal"], ["age"])
>>> prog.n_ops, prog.depth, prog.constants.tolist()
(10, 4, [1.0])
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from ..engine import codes as K
from ..errors import SpecificationError

__all__ = ["Program", "compile_program", "program_gap"]

_BIN = {ast.Add: K.NL_ADD, ast.Sub: K.NL_SUB, ast.Mult: K.NL_MUL, ast.Div: K.NL_DIV, ast.Pow: K.NL_POW}
_CMP = {ast.Lt: K.NL_LT, ast.LtE: K.NL_LE, ast.Gt: K.NL_GT, ast.GtE: K.NL_GE, ast.Eq: K.NL_EQ, ast.NotEq: K.NL_NE}
_CALL = {"exp": K.NL_EXP, "log": K.NL_LOG, "log1p": K.NL_LOG1P, "expm1": K.NL_EXPM1, "sqrt": K.NL_SQRT,
         "inv_logit": K.NL_INVLOGIT, "logit": K.NL_LOGIT, "abs": K.NL_ABS, "Phi": K.NL_PHI, "lgamma": K.NL_LGAMMA}


@dataclass(frozen=True)
class Program:
    """A compiled nonlinear mean: ``ops`` (n_ops x 2 int64: code, argument), its constants and stack depth."""

    ops: np.ndarray
    constants: np.ndarray
    depth: int

    @property
    def n_ops(self) -> int:
        """Number of operations."""
        return int(self.ops.shape[0])


def compile_program(expression, parameters, covariates) -> Program:
    """The engine's program of a parsed nonlinear expression.

    Parameters
    ----------
    expression : NonlinearExpression
    parameters : sequence of str
        The nonlinear parameters in stacking order (parameter ``j`` is the engine's block ``j``).
    covariates : sequence of str
        The data columns the expression reads, in the order the engine stores them.

    Returns
    -------
    Program

    Examples
    --------
    >>> from hmodels.nonlinear.expression import parse_expression
    >>> e = parse_expression("a * where(x > 1, x, 1)", ["x"], ["a"])
    >>> compile_program(e, ["a"], ["x"]).ops[:, 0].tolist()  # a x 1 > x 1 where *
    [1, 2, 0, 22, 2, 0, 19, 5]
    """
    params = {p: j for j, p in enumerate(parameters)}
    covs = {c: j for j, c in enumerate(covariates)}
    ops: list[tuple[int, int]] = []
    consts: list[float] = []
    depth = [0, 0]  # current, deepest

    def push(code: int, arg: int) -> None:
        ops.append((code, arg))
        depth[0] += 1
        depth[1] = max(depth[1], depth[0])

    def apply(code: int, pops: int) -> None:
        ops.append((code, 0))
        depth[0] -= pops - 1

    def walk(node) -> None:
        if isinstance(node, ast.Constant):
            consts.append(float(node.value))
            push(K.NL_CONST, len(consts) - 1)
        elif isinstance(node, ast.Name):
            if node.id in params:
                push(K.NL_PARAM, params[node.id])
            elif node.id in covs:
                push(K.NL_COV, covs[node.id])
            else:
                raise SpecificationError(f"The nonlinear expression reads {node.id!r}, which is neither a parameter "
                                         "nor a covariate of the model.")
        elif isinstance(node, ast.BinOp):
            walk(node.left)
            walk(node.right)
            apply(_BIN[type(node.op)], 2)
        elif isinstance(node, ast.UnaryOp):
            walk(node.operand)
            if isinstance(node.op, ast.USub):
                apply(K.NL_NEG, 1)
        elif isinstance(node, ast.Compare):
            walk(node.left)
            walk(node.comparators[0])
            apply(_CMP[type(node.ops[0])], 2)
        elif isinstance(node, ast.Call):
            for a in node.args:
                walk(a)
            name = node.func.id
            if name == "where":
                apply(K.NL_WHERE, 3)
            elif name == "pow":
                apply(K.NL_POW, 2)
            else:
                apply(_CALL[name], 1)
        else:  # pragma: no cover - parse_expression's checker rejects every other node
            raise SpecificationError(f"The engine cannot run the node {type(node).__name__} of a nonlinear expression.")

    walk(expression._tree.body)
    return Program(np.asarray(ops, dtype=np.int64).reshape(-1, K.NLW), np.asarray(consts, dtype=float), depth[1])


def program_gap(design) -> str | None:
    """Why the engine cannot run this nonlinear design's program (words for the plan), or None when it can.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", hm.datasets.load("orange"),
    ...              nonlinear={"Asym": "1 + (1 | Tree)"})
    >>> program_gap(m.design) is None
    True
    """
    names = [p.name for p in design.predictors]
    if len(names) > K.NL_MAXPAR:
        return f"the compiled engine runs nonlinear means of at most {K.NL_MAXPAR} parameters"
    prog = compile_program(design.expression, names, list(design.covariates))
    if prog.depth > K.NL_MAXDEPTH:
        return f"the nonlinear expression nests deeper than the compiled engine's {K.NL_MAXDEPTH} levels"
    return None
