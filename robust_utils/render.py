"""What the runner does to an executed notebook before the book renders it.

* stderr outputs, empty stream outputs and progress-bar text or widgets are removed (a reader
  sees results, not ``100%|#####| 60/60 [00:03<00:00]`` debris or warnings of the run);
* the papermill ``parameters`` and ``injected-parameters`` cells, and the self-check cells
  (tagged ``check``: assertions that must still run), get the Jupyter Book tag ``remove-cell``;
* a banner goes under the title: profile, device, date and package version, and for the smoke
  profile a warning that its numbers only show that the code runs.

Taught in the Introduction, section "How to run the book".
"""
from __future__ import annotations

import datetime as _dt
import re

__all__ = ["CHECK_TAG", "BANNER_TAG", "clean_notebook", "banner_source", "add_banner",
           "is_progress_text", "dirty_outputs"]

#: Tag of a self-check cell: it runs (under nbval and the runner) but is not shown in the book.
CHECK_TAG = "check"
#: Tag of the banner cell the runner inserts.
BANNER_TAG = "rni-banner"
REMOVE_CELL = "remove-cell"
_HIDDEN_TAGS = ("parameters", "injected-parameters", CHECK_TAG)
# a tqdm bar ("45%|####5     | 27/60 [00:01<00:02, 13.2it/s]") or its carriage-return updates
_PROGRESS = re.compile(r"\d+%\|.*\||\|\s*\d+/\d+\s*\[|\d+(\.\d+)?\s*(it|s)/(s|it)\]|\r(?!\n)")
_WIDGET = "application/vnd.jupyter.widget-view+json"


def is_progress_text(text: str) -> bool:
    """Whether ``text`` looks like progress-bar output (tqdm's bar, rate or ``\\r`` updates).

    Taught in the Introduction, section "How to run the book".
    """
    return bool(_PROGRESS.search(text or ""))


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def _keep_output(out) -> bool:
    kind = out.get("output_type")
    if kind == "stream":
        text = _text(out.get("text"))
        return out.get("name") != "stderr" and bool(text.strip()) and not is_progress_text(text)
    if kind in ("display_data", "execute_result"):
        data = out.get("data", {})
        plain = _text(data.get("text/plain"))
        if _WIDGET in data and (is_progress_text(plain) or "Progress" in plain):
            return False
        return bool(data)
    return True  # errors stay: a failed notebook shows its traceback


def _strip_progress_lines(out) -> None:
    """Drop progress lines mixed into a stdout stream that also holds other text."""
    text = _text(out.get("text"))
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]
    out["text"] = "\n".join(ln for ln in lines if not is_progress_text(ln))


def clean_notebook(nb):
    """Clean an executed notebook in place (see the module docstring) and return it.

    Taught in the Introduction, section "How to run the book".
    """
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(t in tags for t in _HIDDEN_TAGS) and REMOVE_CELL not in tags:
            tags.append(REMOVE_CELL)
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout" and "\r" in _text(out.get("text")):
                _strip_progress_lines(out)
            if _keep_output(out):
                outputs.append(out)
        cell["outputs"] = outputs
    return nb


def dirty_outputs(nb) -> list[str]:
    """Descriptions of the outputs :func:`clean_notebook` would remove (empty: clean).

    Taught in the Introduction, section "How to run the book".
    """
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if not _keep_output(out):
                found.append(f"cell {i}: {out.get('output_type')} {out.get('name', '')} "
                             f"{_text(out.get('text') or out.get('data', {}).get('text/plain'))[:60]!r}")
    return found


def banner_source(profile: str, device: str, version: str, date: str | None = None,
                  device_name: str | None = None) -> str:
    """The banner's Markdown: a MyST admonition (a warning for the smoke profile).

    Taught in the Introduction, section "How to run the book".
    """
    date = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    dev = f"{device} ({device_name})" if device_name else device
    facts = (f"Profile **{profile}**, device **{dev}**, run on {date}, "
             f"`robust_utils` {version}.")
    if profile == "smoke":
        return (":::{admonition} Smoke run: these numbers are not results\n:class: warning\n"
                f"{facts} The smoke profile trains on tiny subsets for a moment: its numbers only "
                "show that the code runs. Run the laptop or full profile for numbers that mean "
                "something.\n:::")
    return f":::{{admonition}} How this page was run\n:class: note\n{facts}\n:::"


def add_banner(nb, source: str):
    """Insert (or replace) the banner cell under the title heading, else at the top.

    Taught in the Introduction, section "How to run the book".
    """
    import nbformat
    nb.cells = [c for c in nb.cells if BANNER_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata["tags"] = [BANNER_TAG]
    at = 0
    for i, c in enumerate(nb.cells[:3]):
        if c.get("cell_type") == "markdown" and _text(c.get("source")).lstrip().startswith("# "):
            at = i + 1
            break
    nb.cells.insert(at, cell)
    return nb
