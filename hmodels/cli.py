"""The ``hmodels`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .errors import HModelsError

__all__ = ["main"]


def _read_data(name_or_path: str) -> pd.DataFrame:
    from . import datasets

    p = Path(name_or_path)
    if p.suffix.lower() == ".csv" or p.exists():
        if not p.exists():
            raise HModelsError(f"Data file {name_or_path!r} does not exist.")
        return pd.read_csv(p)
    return datasets.load(name_or_path)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hmodels", description="Bayesian mixed-effects models on PyMC.")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a model and print its tables")
    f.add_argument("formula", help="e.g. 'Reaction ~ Days + (Days | Subject)'")
    f.add_argument("--data", required=True, help="a bundled dataset name or a CSV path")
    f.add_argument("--family", default="gaussian")
    f.add_argument("--link", default=None)
    f.add_argument("--priors", default=None, help="a prior set name or TOML path")
    f.add_argument("--draws", type=int, default=1000)
    f.add_argument("--tune", type=int, default=1000)
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--sampler", default=None)
    f.add_argument("--target-accept", type=float, default=0.9)
    f.add_argument("--no-progress", action="store_true")
    sub.add_parser("datasets", help="list the bundled datasets")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hmodels`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "datasets":
            from . import datasets

            print(datasets.describe().to_string(index=False))
            return 0
        if args.command == "fit":
            from .model import Model

            data = _read_data(args.data)
            model = Model(args.formula, data, family=args.family, link=args.link, priors=args.priors)
            fit = model.fit(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                            sampler=args.sampler, target_accept=args.target_accept,
                            progressbar=not args.no_progress)
            print(repr(fit))
            return 0
    except HModelsError as exc:
        print(f"hmodels: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
