"""Nonlinear mixed models: a nonlinear mean expression whose parameters each have a mixed-model formula.

``hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, nonlinear={"Asym": "1 + (1 | Tree)"})``.

- :mod:`hmodels.nonlinear.expression` parses the expression safely (a whitelist, no ``eval``), checks its
  names and evaluates it with NumPy, PyTensor or sympy, with exact sympy derivatives.
- :mod:`hmodels.nonlinear.selfstart` holds R's self-starting shapes (``SSlogis``, ``SSfol``, ...) with R's
  starting-value algorithms (``getInitial``) and the population nonlinear least-squares fit
  (:func:`nls_start`) used for default priors and initial values.
- ``design``, ``build`` and ``priors`` turn a model into the stacked design and the PyMC graph.

This package imports neither PyMC nor PyTensor at import time.
"""

from .expression import FUNCTIONS, NonlinearExpression, parse_expression
from .selfstart import SELF_STARTS, NlsResult, SelfStart, expand_self_start, nls_start

__all__ = [
    "FUNCTIONS",
    "NonlinearExpression",
    "parse_expression",
    "SELF_STARTS",
    "SelfStart",
    "NlsResult",
    "expand_self_start",
    "nls_start",
]
