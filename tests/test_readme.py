"""The README's set-up commands are what CI runs, and its quickstart runs as written."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block(after_heading: str, lang: str) -> str:
    section = README.split(after_heading, 1)[1]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert match, f"no {lang} block after {after_heading!r}"
    return match.group(1)


def test_setup_commands_are_the_ones_ci_runs():
    commands = [ln for ln in _block("## Set-up (two commands)", "bash").splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text()
    for cmd in commands:
        assert cmd.replace("python3.12 -m venv", '"$PY" -m venv') in ci.replace('-q ".[test]"', '".[test]"'), cmd
    assert "pytest" in commands[1]


def test_quickstart_runs_as_written(tmp_path):
    code = _block("## Quickstart", "python")
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 10
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scope: dict = {}
            exec(compile(code, "README quickstart", "exec"), scope)
    finally:
        os.chdir(cwd)
    fit = scope["fit"]
    assert fit.divergences == 0 and fit.diagnose().ok
    report = (tmp_path / "sleepstudy_report.html").read_text()
    assert "Variance components" in report and "<img" in report
