"""Sphinx extension: write the reproduction scoreboard before the pages are read.

The Conclusions page includes ``notebooks/scoreboard.md``. The runner writes it after every
run; this extension writes it again at the start of every build, from the claims files of the
chapters that were run (none: a sentence saying so), so the include always exists and is never
older than the executed pages.
"""
from __future__ import annotations

from pathlib import Path


def _write(app) -> None:
    from robust_utils.scoreboard import write_scoreboard
    folder = Path(app.srcdir) / "notebooks"
    write_scoreboard(folder)


def setup(app):
    app.connect("builder-inited", _write)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
