"""The ``hmodels`` command: tables, prior sets, one-line errors with non-zero exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hmodels as hm
from hmodels.cli import main


def _console_script() -> str | None:
    exe = Path(sys.executable).parent / "hmodels"
    return str(exe) if exe.exists() else shutil.which("hmodels")


@pytest.fixture
def typo_csv(tmp_path):
    path = tmp_path / "sleep.csv"
    hm.datasets.load("sleepstudy").to_csv(path, index=False)
    return path


def test_typo_in_column_name_names_the_column_and_closest(typo_csv, capsys):
    rc = main(["fit", "Reaction ~ Dayz + (1 | Subject)", "--data", str(typo_csv), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("hmodels: error:")
    assert "'Dayz'" in err and "Did you mean 'Days'?" in err


def test_typo_via_installed_console_script(typo_csv):
    exe = _console_script()
    if exe is None:
        pytest.skip("the hmodels console script is not installed (pip install the project)")
    res = subprocess.run([exe, "fit", "Reacton ~ Days + (1 | Subject)", "--data", str(typo_csv)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "'Reacton'" in lines[0] and "Did you mean 'Reaction'?" in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["fit", "y ~ x", "--data", "no_such_file.csv"], "does not exist"),
    (["fit", "y ~ x", "--data", "no_such_dataset"], "Unknown dataset"),
    (["fit", "Reaction ~ Days", "--data", "sleepstudy", "--report", "out.pdf"], "must end in .html or .md"),
    (["priors", "no_such_set"], "Unknown prior set"),
    (["report", "missing_fit.nc"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_unknown_option_is_an_argparse_error(capsys):
    assert main(["fit", "y ~ x"]) == 2  # --data is required
    assert "--data" in capsys.readouterr().err


def test_priors_lists_every_shipped_set_with_its_description(capsys):
    assert main(["priors"]) == 0
    out = capsys.readouterr().out
    for name in hm.priors.list_sets():
        assert name in out
    assert hm.priors.load_set("default").description[:40] in " ".join(out.split())


def test_priors_shows_one_set(capsys):
    assert main(["priors", "default"]) == 0
    out = capsys.readouterr().out
    assert "HalfNormal(1)" in out and "rationale" in out


def test_datasets_table(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in hm.datasets.list():
        assert name in out


def test_fit_prints_tables_and_writes_outputs(tmp_path, capsys):
    fit_cls = hm.Fit
    argv = ["fit", "Yield ~ 1 + (1 | Batch)", "--data", "dyestuff", "--draws", "200", "--tune", "300",
            "--chains", "2", "--no-progress"]
    report = tmp_path / "dyestuff.html"
    saved = tmp_path / "dyestuff.nc"
    if hasattr(fit_cls, "report"):
        argv += ["--report", str(report)]
    if hasattr(fit_cls, "save"):
        argv += ["--save", str(saved)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Fixed effects (95% HDI)" in out and "Variance components" in out
    assert "sd(Batch, Intercept)" in out and "Intercept" in out
    if hasattr(fit_cls, "report"):
        assert report.exists() and report.stat().st_size > 500
    if hasattr(fit_cls, "save"):
        assert saved.exists()
        out_html = tmp_path / "again.html"
        if hasattr(fit_cls, "report"):
            assert main(["report", str(saved), "-o", str(out_html)]) == 0
            assert out_html.exists()
