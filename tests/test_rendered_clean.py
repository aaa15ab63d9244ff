"""Executed notebooks carry no stderr or progress-bar output into the book.

The runner's post-processing (robust_utils.render.clean_notebook) is checked on a tiny notebook
that writes to stderr, shows tqdm bars (text and widget) and prints empty lines; then, when the
book's executed copies exist (after `make book` or `rni-run`), each of them is checked too.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from robust_utils import render

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = sorted((ROOT / "book" / "notebooks").glob("[0-9]*.ipynb"))


def test_clean_notebook_removes_stderr_and_progress(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import sys, tqdm\nprint('kept')\nprint('noise', file=sys.stderr)"),
        nbformat.v4.new_code_cell("from tqdm.std import tqdm\n"
                                  "for _ in tqdm(range(50), file=sys.stdout, mininterval=0): pass\n"
                                  "for _ in tqdm(range(50)): pass\nprint('after the bar')"),
        nbformat.v4.new_code_cell("from tqdm.notebook import tqdm as nbtqdm\n"
                                  "for _ in nbtqdm(range(5)): pass"),
        nbformat.v4.new_code_cell("print('')"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert render.dirty_outputs(nb), "the test notebook should produce debris to clean"
    render.clean_notebook(nb)
    assert render.dirty_outputs(nb) == []
    texts = [o.get("text", "") for c in nb.cells for o in c.outputs if o.output_type == "stream"]
    assert "kept\n" in texts and any("after the bar" in t for t in texts)
    assert not any("%|" in t or "\r" in t for t in texts)
    assert nb.cells[3].outputs == []


def test_is_progress_text():
    assert render.is_progress_text(" 45%|####5     | 27/60 [00:01<00:02, 13.2it/s]")
    assert render.is_progress_text("\r 10/60 ")
    assert not render.is_progress_text("accuracy 0.91 (45% of the test set)\n")


@pytest.mark.skipif(not EXECUTED, reason="no executed copies in book/notebooks (run `make book`)")
@pytest.mark.parametrize("path", EXECUTED, ids=[p.stem for p in EXECUTED])
def test_book_copies_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    dirty = render.dirty_outputs(nb)
    assert not dirty, f"{path.name} carries stderr or progress-bar output: {dirty[:5]}"
    assert any(render.BANNER_TAG in c.metadata.get("tags", []) for c in nb.cells), \
        f"{path.name} has no run banner; execute it with the runner."
