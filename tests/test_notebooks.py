"""Every notebook in notebooks/ executes top to bottom (each ends with assertions on its numbers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT_PER_CELL = 600


def test_notebooks_folder_is_not_empty():
    assert len(NOTEBOOKS) >= 4, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    book = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), \
        f"{path.name}: outputs must be stripped before committing"
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(book, timeout=TIMEOUT_PER_CELL, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError (with the failing cell) when a cell errors
    assert any(c.cell_type == "code" and "assert " in c.source for c in book.cells[-2:]), \
        f"{path.name}: the last cells should check the key numbers"
