"""The ``hmodels`` command: tables, prior sets, one-line errors with non-zero exit codes."""

from __future__ import annotations

import copy
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


# -- issue 17: bad paths are refused before sampling; Ctrl-C and partial fits save nothing ------------------------
FIT = ["fit", "Yield ~ 1 + (1 | Batch)", "--data", "dyestuff", "--draws", "100", "--tune", "100", "--chains", "2",
       "--no-progress"]


@pytest.fixture
def no_sampling(monkeypatch):
    """Model.fit fails the test: the command must stop before sampling."""
    def fit(self, *args, **kwargs):
        raise AssertionError("sampled before checking the command line")

    monkeypatch.setattr(hm.Model, "fit", fit)


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hmodels: error:") and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def test_data_that_is_a_directory(tmp_path, capsys, no_sampling):
    assert main(["fit", "y ~ x", "--data", str(tmp_path)]) == 2
    _one_line_error(capsys, str(tmp_path), "is a directory")


@pytest.mark.parametrize("option, name", [("--save", "fit.nc"), ("--report", "report.html")])
def test_output_into_a_missing_directory_is_refused_before_sampling(option, name, tmp_path, capsys, no_sampling):
    missing = tmp_path / "no_such_dir"
    assert main([*FIT, option, str(missing / name)]) == 2
    _one_line_error(capsys, str(missing), "does not exist")
    assert not missing.exists()


@pytest.mark.parametrize("command", [["demo", "--no-progress", "-o"], ["report", "fit.nc", "-o"]])
def test_report_and_demo_check_their_output_first(command, tmp_path, capsys, no_sampling):
    missing = tmp_path / "no_such_dir"
    assert main([*command, str(missing / "report.html")]) == 2
    _one_line_error(capsys, str(missing), "does not exist")


@pytest.mark.parametrize("option, name", [("--save", "fit.nc"), ("--report", "report.html")])
def test_output_onto_a_directory_is_refused_before_sampling(option, name, tmp_path, capsys, no_sampling):
    (tmp_path / name).mkdir()
    assert main([*FIT, option, str(tmp_path / name)]) == 2
    _one_line_error(capsys, "is a directory")


@pytest.fixture
def bad_prior_files(tmp_path):
    latin1 = tmp_path / "latin1.toml"
    text = 'description = "a priori, d\xe9j\xe0 vu"\n[priors.sd]\nprior = "HalfNormal(1)"\n'
    latin1.write_bytes(text.encode("latin-1"))
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return {"not UTF-8": latin1, "is a directory": folder}


@pytest.mark.parametrize("problem", ["not UTF-8", "is a directory"])
def test_unreadable_prior_file(problem, bad_prior_files, capsys, no_sampling):
    path = bad_prior_files[problem]
    assert main([*FIT, "--priors", str(path)]) == 2
    _one_line_error(capsys, str(path), problem)
    assert main(["priors", str(path)]) == 2
    _one_line_error(capsys, str(path), problem)


def test_ctrl_c_during_fit_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hm.Model, "fit", interrupted)
    try:
        rc = main([*FIT, "--save", str(tmp_path / "fit.nc"), "--report", str(tmp_path / "fit.html")])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main()")
    assert rc == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_partial_fit_exits_non_zero_and_saves_nothing(sleep_fit, tmp_path, capsys, monkeypatch):
    partial = copy.copy(sleep_fit)
    partial.meta = {**sleep_fit.meta, "partial": True}
    monkeypatch.setattr(hm.Model, "fit", lambda self, *args, **kwargs: partial)
    rc = main([*FIT, "--save", str(tmp_path / "fit.nc"), "--report", str(tmp_path / "fit.html")])
    assert rc == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "partial" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


SIGINT_CHILD = """
import os, signal, sys, time
import hmodels as hm
from hmodels.cli import main

def fit(self, *args, **kwargs):  # a real SIGINT, as Ctrl-C sends, in the middle of "sampling"
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)

hm.Model.fit = fit
sys.exit(main(sys.argv[1:]))
"""


def test_sigint_in_a_process_exits_130_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-c", SIGINT_CHILD, *FIT, "--save", str(tmp_path / "fit.nc")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "interrupted" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []
