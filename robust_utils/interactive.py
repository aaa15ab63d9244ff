"""Interactive explorers that never block the book's runner.

In Jupyter or Colab, :func:`explore` is ``ipywidgets.interact``: a reader moves the controls
and the function redraws. Under the runner (which sets ``RNI_WIDGETS=static`` for the kernel),
and wherever ``RNI_WIDGETS`` is ``static`` or ``off``, no widget is built: the function is
called once with each control's initial value, so the executed page shows that one static
figure and nothing waits for a front end that is not there.

Taught in the Introduction, section "How to run the book".
"""
from __future__ import annotations

import os

__all__ = ["WIDGETS_ENV", "widgets_enabled", "explore"]

#: ``static`` / ``off``: draw once, no widgets (the runner sets ``static``).
WIDGETS_ENV = "RNI_WIDGETS"


def widgets_enabled() -> bool:
    """``False`` when ``RNI_WIDGETS`` is ``static`` or ``off`` (under the runner), else ``True``.

    Taught in the Introduction, section "How to run the book".
    """
    return os.environ.get(WIDGETS_ENV, "").strip().lower() not in ("static", "off", "0", "no")


def _initial(control):
    """The value a control starts with (a widget's ``value``; a plain value is itself)."""
    if hasattr(control, "value"):
        return control.value
    if isinstance(control, (list, tuple)) and control and not isinstance(control, str):
        first = control[0]
        return first[1] if isinstance(first, tuple) and len(first) == 2 else first
    return control


def explore(func, **controls):
    """``ipywidgets.interact(func, **controls)``, or one static call under the runner.

    ``controls`` are what ``interact`` takes (widgets, option lists, fixed values). Returns the
    ``interact`` result interactively, else ``func``'s result for the initial values.

    Taught in the Introduction, section "How to run the book".
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}.")
    if not widgets_enabled():
        return func(**{k: _initial(v) for k, v in controls.items()})
    import ipywidgets
    return ipywidgets.interact(func, **controls)
