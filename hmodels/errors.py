"""The hmodels exception hierarchy.

Every error raised for bad user input is a subclass of :class:`HModelsError` and of the
matching built-in exception, so callers can catch either (``except ValueError`` still works).
Messages name the culprit (column, term, prior key, file) and say what to do instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HModelsError",
    "SpecificationError",
    "FormulaError",
    "DataError",
    "MissingColumnError",
    "PriorError",
    "FamilyError",
    "SamplingError",
    "FitFileError",
]


class HModelsError(Exception):
    """Base class of every error raised by hmodels for bad input or unusable results."""


class SpecificationError(HModelsError, ValueError):
    """The model specification (terms, grouping factors, options) is invalid."""


class FormulaError(SpecificationError):
    """A formula string could not be understood."""


class DataError(HModelsError, ValueError):
    """The data do not fit the model: wrong types, impossible values, missing rows."""


class MissingColumnError(DataError, KeyError):
    """A column named in the model is not in the data."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PriorError(HModelsError, ValueError):
    """A prior is unknown, refers to no parameter, or has impossible parameters."""


class FamilyError(SpecificationError):
    """Unknown family or link, or a link the family does not support."""


class SamplingError(HModelsError, RuntimeError):
    """A sampler is unknown, not installed, or failed."""


class FitFileError(HModelsError, ValueError):
    """A saved fit cannot be read: not an hmodels file, corrupted, or from an incompatible version."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a 'Did you mean ...?' fragment listing the choices closest to ``name``.

    Examples
    --------
    >>> closest("Reacton", ["Reaction", "Days", "Subject"])
    " Did you mean 'Reaction'?"
    """
    choices = [str(c) for c in choices]
    matches = difflib.get_close_matches(str(name), choices, n=n, cutoff=0.5)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


def row_labels(labels, mask) -> str:
    """``"3 rows (index 4, 9, 12)"``: how many rows ``mask`` selects and the first few index labels.

    Examples
    --------
    >>> import numpy as np
    >>> row_labels(np.array([10, 11, 12]), np.array([False, True, True]))
    '2 rows (index 11, 12)'
    """
    pos = [i for i, m in enumerate(mask) if m]
    shown = ", ".join(str(labels[i]) for i in pos[:5])
    more = ", ..." if len(pos) > 5 else ""
    return f"{len(pos)} row{'' if len(pos) == 1 else 's'} (index {shown}{more})"


class ConvergenceWarning(UserWarning):
    """The sampler reported a problem (divergences, R-hat, low ESS); the message gives the remedy."""


class DataWarning(UserWarning):
    """The data are usable but carry little information about part of the model, or were adjusted.

    The message names the column, term or rows, says what the consequence is and what to do.
    """


__all__ += ["ConvergenceWarning", "DataWarning"]
