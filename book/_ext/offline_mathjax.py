"""Sphinx extension for the offline MathJax copy in ``book/_static/mathjax/``.

The book serves MathJax 3 from its own ``_static`` folder (``mathjax_path`` in ``_config.yml``) so
that math renders with no internet. That folder is not committed; ``tools/fetch_mathjax.sh``
fills it. This extension

* stops the build with instructions when the copy is missing (every equation would otherwise show
  as raw TeX without any warning), and
* removes MathJax's own files from ``html_js_files`` / ``html_css_files``: Jupyter Book 1 adds every
  ``*.js`` and ``*.css`` under ``_static/`` to every page, which would load all ~60 MathJax
  components as scripts. Sphinx loads MathJax once, through ``mathjax_path``.
"""
from __future__ import annotations

from pathlib import Path

from sphinx.errors import ExtensionError

PREFIX = "mathjax/"


def _is_mathjax(entry) -> bool:
    name = entry[0] if isinstance(entry, (tuple, list)) else entry
    return isinstance(name, str) and name.replace("\\", "/").startswith(PREFIX)


def _drop_autoloaded(app, config) -> None:
    config.html_js_files = [e for e in config.html_js_files if not _is_mathjax(e)]
    config.html_css_files = [e for e in config.html_css_files if not _is_mathjax(e)]


def _check(app) -> None:
    if app.builder.format != "html":
        return
    path = str(app.config.mathjax_path or "")
    if "://" in path or path.startswith("//"):
        return  # a CDN address: nothing local to check
    local = Path(app.srcdir) / "_static" / path
    if not local.is_file():
        raise ExtensionError(
            f"offline MathJax not found at {local}: run `tools/fetch_mathjax.sh` "
            "(`make book` runs it) to copy MathJax 3 into book/_static/mathjax/.")


def setup(app):
    app.connect("config-inited", _drop_autoloaded)
    app.connect("builder-inited", _check)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
