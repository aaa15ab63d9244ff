"""Shared helpers of the notebook generators (tools/nb07_source.py, tools/nb08_source.py).

Each generator calls :func:`md` and :func:`code` in reading order, then :func:`write`; run
``python tools/sync_notebooks.py`` on the result afterwards (badge, parameters, setup cell).
"""
import nbformat

cells = []


def md(s):
    cells.append(nbformat.v4.new_markdown_cell(s.strip("\n")))


def code(s, tags=None):
    c = nbformat.v4.new_code_cell(s.strip("\n"))
    if tags:
        c.metadata["tags"] = tags
    cells.append(c)


def write(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
