"""The ``hmodels`` command line.

Sub-commands: ``fit`` (fit a formula to a bundled dataset or a CSV, print rich tables, optionally
write a report and save the fit), ``datasets`` (the bundled data), ``priors`` (the shipped prior
sets, or one set's entries), ``report`` (a report from a saved fit) and ``demo`` (fit sleepstudy
and write a report). Bad input ends with exit code 2 and a one-line ``hmodels: error: ...``;
output paths (``--save``, ``--report``, ``-o``) are checked before any sampling. Ctrl-C, or a
sampler that returns a partial fit, ends with exit code 130 and writes no fit or report; files are
written atomically, so an interrupted write leaves no half-written file.

Examples
--------
.. code-block:: console

    $ hmodels fit "Reaction ~ Days + (Days | Subject)" --data sleepstudy --report sleep.html
    $ hmodels priors
    $ hmodels demo
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import warnings
from contextlib import suppress
from pathlib import Path

import pandas as pd

from .errors import HModelsError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


class CLIError(HModelsError):
    """Bad command-line input (a file that is missing, an option this build cannot honour)."""


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


def _read_data(name_or_path: str) -> pd.DataFrame:
    from . import datasets

    p = Path(name_or_path)
    if p.suffix.lower() == ".csv" or p.exists():
        if not p.exists():
            raise CLIError(f"Data file {name_or_path!r} does not exist.")
        if p.is_dir():
            raise CLIError(f"--data {name_or_path!r} is a directory; give a CSV file or a bundled dataset name.")
        try:
            return pd.read_csv(p)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise CLIError(f"Could not read {name_or_path!r} as CSV: {str(exc).splitlines()[0]}") from None
        except OSError as exc:
            raise CLIError(f"Could not read {name_or_path!r}: {exc.strerror or exc}.") from None
    return datasets.load(name_or_path)


def _table(df: pd.DataFrame, title: str, index: bool = True, digits: int = 3):
    """Build a rich Table from a DataFrame (numbers rounded; R-hat > 1.01 in red)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if (index and i == 0) or df.get(c) is None
                     or not pd.api.types.is_numeric_dtype(df[c]) else "right")
    for key, row in df.iterrows():
        cells = [str(key)] if index else []
        for c in df.columns:
            v = row[c]
            if isinstance(v, float):
                s = f"{v:.0f}" if str(c).startswith("ess") else (f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3g}")
                if c == "r_hat" and v > 1.01:
                    s = f"[bold red]{s}[/]"
                cells.append(s)
            else:
                cells.append(str(v))
        t.add_row(*cells)
    return t


def _print_fit(fit, console) -> None:
    s = fit.settings
    console.print(f"[bold]hmodels.Fit[/] {fit.spec.formula}  [{fit.family.name}, {fit.family.link}]")
    console.print(f"{fit.meta['n_obs']} observations; NUTS ({s.sampler}) {s.chains} chains x {s.draws} draws "
                  f"(+{s.tune} warm-up), seed {s.seed}; divergences: {fit.divergences}")
    cols = ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]
    console.print(_table(fit.fixed_effects()[cols], "Fixed effects (95% HDI)"))
    vc = fit.variance_components()
    if len(vc):
        console.print(_table(vc[cols].rename_axis("component"), "Variance components (95% HDI)"))
    for m in fit.convergence_messages():
        console.print(f"[bold red]Warning:[/] {m}")


def _report_format(path: str) -> str:
    fmt = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown"}.get(Path(path).suffix.lower())
    if fmt is None:
        raise CLIError(f"Report file {path!r} must end in .html or .md.")
    return fmt


def _check_output(path: str) -> Path:
    """Return the file to write, raising before anything is computed if ``path`` cannot be written."""
    from .io import check_target

    return check_target(path)


def _write_report(fit, path: str) -> Path:
    """Write the report atomically (a temporary file beside it, renamed over it once complete)."""
    fmt = _report_format(path)
    out = _check_output(path)
    text = fit.report(format=fmt)
    temp = out.with_name(f".{out.name[:120]}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    done = False
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, out)
        done = True
    except OSError as exc:
        raise CLIError(f"Could not write the report {path!r}: {exc.strerror or exc}.") from None
    finally:  # also on KeyboardInterrupt
        if not done:
            with suppress(OSError):
                temp.unlink()
    return out


def _load(path: str):
    from .io import load

    p = Path(path)
    if not p.exists():
        raise CLIError(f"Fit file {path!r} does not exist.")
    return load(p)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hmodels", description="Bayesian mixed-effects models on PyMC.")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a model and print its tables")
    f.add_argument("formula", help="e.g. 'Reaction ~ Days + (Days | Subject)'")
    f.add_argument("--data", required=True, help="a bundled dataset name or a CSV path")
    f.add_argument("--family", default="gaussian")
    f.add_argument("--link", default=None)
    f.add_argument("--priors", default=None, help="a prior set name or TOML path")
    f.add_argument("--draws", type=int, default=None,
                   help="draws per chain (default 1000, with rounds added until converged; giving it fixes them)")
    f.add_argument("--tune", type=int, default=None, help="warm-up per chain (default 1000)")
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--sampler", default=None, choices=["nutpie", "numpyro", "pymc"],
                   help="NUTS backend (default nutpie: hmodels' compiled log density)")
    f.add_argument("--method", default="auto", choices=["auto", "joint", "collapsed"],
                   help="integrate group effects out analytically where possible (auto), or not")
    f.add_argument("--target-accept", type=float, default=None, help="NUTS target acceptance (default: automatic)")
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("--report", default=None, metavar="OUT.html", help="write a report (.html or .md)")
    f.add_argument("--save", default=None, metavar="FIT.nc", help="save the fit to a file")
    sub.add_parser("datasets", help="list the bundled datasets")
    p = sub.add_parser("priors", help="list the shipped prior sets, or show one set's entries")
    p.add_argument("name", nargs="?", default=None, help="a set name or TOML path to show")
    r = sub.add_parser("report", help="write the report of a saved fit")
    r.add_argument("fit_file", help="a fit saved with --save or fit.save()")
    r.add_argument("-o", "--output", default=None, help="report path (default: FIT with .html)")
    d = sub.add_parser("demo", help="fit the sleep-deprivation study and write a report (about a minute)")
    d.add_argument("-o", "--output", default="hmodels_demo_report.html", help="report path")
    d.add_argument("--draws", type=int, default=500)
    d.add_argument("--chains", type=int, default=4)
    d.add_argument("--no-progress", action="store_true")
    return ap


def _is_partial(fit) -> bool:
    """Say so on stderr and return True if the sampler returned a partial fit (one to neither save nor report)."""
    if not (getattr(fit, "meta", None) or {}).get("partial"):
        return False
    print("hmodels: error: sampling stopped early and returned a partial fit; nothing was saved or "
          "reported. Run the fit again.", file=sys.stderr)
    return True


def _cmd_fit(args, console) -> int:
    from .model import Model

    if args.report:  # check the outputs before the (long) sampling, so that no fit is lost to a typo
        _report_format(args.report)
        _check_output(args.report)
    if args.save:
        _check_output(args.save)
    data = _read_data(args.data)
    model = Model(args.formula, data, family=args.family, link=args.link, priors=args.priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence problems are printed below, in the tables' place
        fit = model.fit(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                        sampler=args.sampler, target_accept=args.target_accept, method=args.method,
                        progressbar=not args.no_progress)
    if _is_partial(fit):
        return EXIT_INTERRUPTED
    _print_fit(fit, console)
    if args.save:
        fit.save(args.save)
        console.print(f"Saved the fit to {args.save}")
    if args.report:
        console.print(f"Wrote the report to {_write_report(fit, args.report)}")
    return EXIT_OK


def _cmd_datasets(console) -> int:
    from . import datasets

    console.print(_table(datasets.describe(), "Bundled datasets", index=False))
    return EXIT_OK


def _cmd_priors(args, console) -> int:
    from rich.table import Table

    from . import priors

    if args.name is None:
        t = Table(title="Shipped prior sets (use with --priors NAME)", title_justify="left", header_style="bold")
        t.add_column("name")
        t.add_column("entries", justify="right")
        t.add_column("description")
        for name in priors.list_sets():
            s = priors.load_set(name)
            t.add_row(name, str(len(s.entries)), s.description)
        console.print(t)
        return EXIT_OK
    s = priors.load_set(args.name)
    t = Table(title=f"Prior set {s.name!r}: {s.description}", title_justify="left", header_style="bold")
    for c in ("key", "prior", "scale", "rationale"):
        t.add_column(c)
    for e in s.entries.values():
        t.add_row(e.key, repr(e.prior), e.scale, e.rationale)
    console.print(t)
    return EXIT_OK


def _cmd_report(args, console) -> int:
    out = args.output or str(Path(args.fit_file).with_suffix(".html"))
    _report_format(out)
    _check_output(out)
    fit = _load(args.fit_file)
    console.print(f"Wrote the report to {_write_report(fit, out)}")
    return EXIT_OK


def _cmd_demo(args, console) -> int:
    from . import datasets
    from .model import Model

    formula = "Reaction ~ Days + (Days | Subject)"
    _report_format(args.output)  # before the minute of sampling
    _check_output(args.output)
    console.print(f"[bold]hmodels demo[/]: {formula} on the sleep-deprivation study (lme4::sleepstudy)")
    t0 = time.perf_counter()
    model = Model(formula, datasets.load("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=args.draws, tune=args.draws, chains=args.chains, seed=1,
                        progressbar=not args.no_progress)
    if _is_partial(fit):
        return EXIT_INTERRUPTED
    _print_fit(fit, console)
    console.print(f"Wrote the report to {_write_report(fit, args.output)}")
    console.print(f"Done in {time.perf_counter() - t0:.0f} s.")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hmodels`` command; returns the exit code.

    0: done; 2: bad input, or a file that cannot be read or written (a one-line message on stderr,
    no traceback); 130: interrupted (Ctrl-C), or the sampler returned a partial fit (nothing saved).

    Examples
    --------
    >>> from hmodels.cli import main
    >>> main(["priors"])  # doctest: +SKIP
    0
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and a one-line error
        return int(exc.code or 0)
    console = _console()
    try:
        if args.command == "datasets":
            return _cmd_datasets(console)
        if args.command == "priors":
            return _cmd_priors(args, console)
        if args.command == "fit":
            return _cmd_fit(args, console)
        if args.command == "report":
            return _cmd_report(args, console)
        if args.command == "demo":
            return _cmd_demo(args, console)
    except HModelsError as exc:
        print(f"hmodels: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file hmodels could not read or write, outside the checks above
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"hmodels: error: cannot read or write{where}: {' '.join(str(exc.strerror or exc).split())}.",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hmodels: interrupted (Ctrl-C); stopped without finishing, and no partly written file was left.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
