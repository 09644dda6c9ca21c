"""Named prior sets: TOML files in the top-level ``priors/`` folder (shipped with the package).

A set maps prior keys (classes such as ``"fixed"``, ``"sd"``, ``"sd(Subject)"`` or single terms
such as ``"Days"``) to an entry ``{prior = "...", scale = "data" | "mad" | "none", rationale = "..."}``
and, with ``scale = "mad"``, an optional ``min_scale``.

``scale = "mad"`` reproduces brms's defaults: location and scale multiplied by one response-level
unit for every parameter, ``max(min_scale, round(mad(link(y)), 1))`` (the median absolute
deviation, R's ``mad``, of the outcome on the link scale; identity and log links only, else
``min_scale``), and the Intercept located at ``round(median(link(y)), 1)``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import PriorError, closest
from .distributions import Prior, from_string

__all__ = ["SetEntry", "PriorSet", "load_set", "list_sets", "sets_folder"]

_SCALES = ("data", "mad", "none")
_FIELDS = ["prior", "scale", "rationale", "min_scale"]


@dataclass(frozen=True)
class SetEntry:
    """One entry of a prior set."""

    key: str
    prior: Prior
    scale: str
    rationale: str
    min_scale: float = 0.0


@dataclass(frozen=True)
class PriorSet:
    """A named collection of prior entries."""

    name: str
    description: str
    entries: dict[str, SetEntry]
    path: str


def sets_folder() -> Path:
    """The folder holding the shipped prior sets (installed copy, else the source tree's ``priors/``)."""
    try:
        installed = resources.files("hmodels") / "prior_sets"
        if installed.is_dir():
            return Path(str(installed))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "priors"


def list_sets() -> list[str]:
    """Names of the shipped prior sets.

    Examples
    --------
    >>> import hmodels as hm
    >>> "default" in hm.priors.list_sets()
    True
    """
    return sorted(p.stem for p in sets_folder().glob("*.toml"))


def load_set(name_or_path: str | Path) -> PriorSet:
    """Load and validate a prior set by name (shipped) or path (a user's TOML file).

    Raises
    ------
    PriorError
        Unknown set, unreadable TOML, unknown fields, or an invalid distribution; the message names
        the file, the key (and its line) and the fix.

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.priors.load_set("default")
    >>> s.entries["sd"].prior
    HalfNormal(1)
    """
    p = Path(str(name_or_path))
    if p.suffix != ".toml":
        shipped = sets_folder() / f"{p.name}.toml"
        if not shipped.exists():
            raise PriorError(
                f"Unknown prior set {str(name_or_path)!r}. Shipped sets: {', '.join(list_sets())}; "
                f"or pass the path of a .toml file.{closest(str(name_or_path), list_sets())}"
            )
        p = shipped
    if not p.exists():
        raise PriorError(f"Prior set file {str(p)!r} does not exist.")
    if p.is_dir():
        raise PriorError(f"Prior set path {str(p)!r} is a directory; give the path of a .toml file inside it.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise PriorError(
            f"{p}:{line}: the prior set file is not UTF-8 text (byte {exc.object[exc.start]:#04x} at position "
            f"{exc.start}); TOML files must be UTF-8. Save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    except OSError as exc:
        raise PriorError(f"Cannot read the prior set file {str(p)!r}: {exc.strerror or exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriorError(f"{p}: not valid TOML ({exc}).") from None
    unknown_top = set(data) - {"description", "priors"}
    if unknown_top:
        k = sorted(unknown_top)[0]
        raise PriorError(
            f"{p}:{_line(text, k)}: unknown top-level key {k!r}; a set has 'description' and [priors.<key>] tables."
        )
    entries = {}
    for key, entry in data.get("priors", {}).items():
        where = f"{p}:{_line(text, key)} [priors.{key}]"
        if not isinstance(entry, dict):
            raise PriorError(f"{where}: must be a table with 'prior', 'scale' and 'rationale'.")
        extra = set(entry) - set(_FIELDS)
        if extra:
            bad = sorted(extra)[0]
            raise PriorError(f"{where}: unknown field {bad!r}; allowed: {', '.join(_FIELDS)}.{closest(bad, _FIELDS)}")
        if "prior" not in entry:
            raise PriorError(f"{where}: missing 'prior', e.g. prior = \"Normal(0, 2.5)\".")
        try:
            prior = from_string(entry["prior"])
        except PriorError as exc:
            raise PriorError(f"{where}: {exc}") from None
        scale = entry.get("scale", "none")
        if scale not in _SCALES:
            raise PriorError(f"{where}: scale must be 'data', 'mad' or 'none', got {scale!r}.")
        min_scale = entry.get("min_scale", 0.0)
        if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or min_scale < 0:
            raise PriorError(f"{where}: min_scale must be a number >= 0, got {min_scale!r}.")
        if min_scale and scale != "mad":
            raise PriorError(f"{where}: min_scale only applies with scale = \"mad\" (got scale = {scale!r}).")
        entries[key] = SetEntry(key, prior, scale, str(entry.get("rationale", "")), float(min_scale))
    return PriorSet(p.stem, str(data.get("description", "")), entries, str(p))


def _line(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if key in line:
            return i
    return 0
