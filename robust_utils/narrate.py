"""Sentences that state an outcome, generated from the run's numbers.

A chapter's prose must not assert a result that the run may contradict ("accuracy falls with
the severity", "GradTrust ranks first"): such a sentence is rendered from the numbers by these
helpers, so that it says what this run measured, under whichever profile. Each helper returns
a Markdown string; :func:`say` displays one in a notebook.

Example::

    say(f"Accuracy {change(acc[0], acc[5])} from level 0 to level 5, and the curve "
        f"{direction(acc)}.")

Taught in the Introduction, section "Claims and verdicts".
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Mapping, Sequence

import numpy as np

from ._checks import check_bool, check_number, check_positive_int

__all__ = ["fmt", "count", "compare", "change", "direction", "rank_sentence", "say"]


def _is_number(x) -> bool:
    return isinstance(x, (Real, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _as_float(x, name: str) -> float:
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:  # 0-d tensor / array
        x = x.item()
    if not _is_number(x):
        raise TypeError(f"{name} must be a real number, got {x!r} ({type(x).__name__}).")
    return float(x)


def fmt(x, digits: int = 3, percent: bool = False) -> str:
    """A number written with sensible precision: ``digits`` significant figures.

    Integers stay whole (``12000`` -> ``"12000"``); floats get ``digits`` significant figures
    without trailing zeros beyond them (``0.91234`` -> ``"0.912"``, ``3.0`` -> ``"3"``), very
    small or large magnitudes use powers of ten (``2.50e-5``); ``percent=True`` multiplies by
    100 and appends ``%`` (``0.8712`` -> ``"87.1%"``). NaN is written ``"n/a"`` and infinities
    ``"inf"`` / ``"-inf"``; strings are returned unchanged.

    Taught in the Introduction, section "Claims and verdicts".
    """
    digits = check_positive_int(digits, "digits")
    check_bool(percent, "percent")
    if isinstance(x, str):
        return x
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if not _is_number(x):
        raise TypeError(f"fmt takes a number or a string, got {x!r} ({type(x).__name__}).")
    if isinstance(x, (int, np.integer)) and not percent:
        return str(int(x))
    f = float(x) * (100.0 if percent else 1.0)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    suffix = "%" if percent else ""
    if f == 0:
        return "0" + suffix
    mag = math.floor(math.log10(abs(f)))
    if mag < -3 or mag >= digits + 3:
        return f"{f:.{max(digits - 1, 0)}e}".replace("e-0", "e-").replace("e+0", "e") + suffix
    decimals = max(digits - 1 - mag, 0)
    text = f"{f:.{decimals}f}"
    if "." in text and decimals > 0:
        text = text.rstrip("0").rstrip(".")
    return ("0" if text in ("-0", "") else text) + suffix


def count(n, word: str, plural: str | None = None) -> str:
    """``"1 epoch"``, ``"4 epochs"``: an integer count with its noun in the right number
    (``plural`` defaults to ``word + "s"``; a count of 0 takes the plural).

    Taught in the Introduction, section "Claims and verdicts".
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"count takes an integer count, got {n!r}; round it first.")
    if not isinstance(word, str) or not word:
        raise ValueError(f"word must be a non-empty string, got {word!r}.")
    return f"{fmt(int(n))} {word if n == 1 else (plural or word + 's')}"


def compare(a, b, higher: str = "higher than", lower: str = "lower than",
            same: str = "about the same as", tol: float = 0.0, relative: bool = False) -> str:
    """The word for how ``a`` compares with ``b``: ``higher``, ``lower`` or ``same``.

    ``a`` and ``b`` count as the same when ``|a - b| <= tol`` (``relative=True``: when
    ``|a - b| <= tol * max(|a|, |b|)``). Use it inside a template::

        f"Deep ensembles are {compare(auroc_ens, auroc_mc)} MC dropout "
        f"({fmt(auroc_ens)} against {fmt(auroc_mc)})."

    Taught in the Introduction, section "Claims and verdicts".
    """
    fa, fb = _as_float(a, "a"), _as_float(b, "b")
    tol = check_number(tol, "tol", minimum=0.0, strict=False)
    check_bool(relative, "relative")
    if math.isnan(fa) or math.isnan(fb):
        raise ValueError(f"cannot compare NaN values (a={fa}, b={fb}); find out where the NaN comes "
                         "from before writing a sentence about it.")
    bound = tol * max(abs(fa), abs(fb)) if relative else tol
    if abs(fa - fb) <= bound:
        return same
    return higher if fa > fb else lower


def change(before, after, rises: str = "rises", falls: str = "falls", flat: str = "stays at",
           tol: float = 0.0, digits: int = 3, percent: bool = False) -> str:
    """``"rises from 0.85 to 0.91"``, ``"falls from ..."`` or ``"stays at 0.85"``.

    ``tol`` is the change below which the value counts as unchanged (absolute).

    Taught in the Introduction, section "Claims and verdicts".
    """
    word = compare(after, before, higher=rises, lower=falls, same=flat, tol=tol)
    if word == flat:
        return f"{flat} {fmt(before, digits, percent)}"
    return f"{word} from {fmt(before, digits, percent)} to {fmt(after, digits, percent)}"


def direction(values: Sequence, tol: float = 0.0) -> str:
    """``"rises"``, ``"falls"``, ``"is flat"`` or ``"is not monotone"`` for a sequence of numbers.

    Steps smaller than ``tol`` (absolute) count as flat; a sequence whose steps are all flat is
    ``"is flat"``, one whose non-flat steps all go up ``"rises"``, all down ``"falls"``, and a
    sequence with steps both ways ``"is not monotone"``.

    Taught in the Introduction, section "Claims and verdicts".
    """
    vals = [_as_float(v, f"values[{i}]") for i, v in enumerate(_sequence(values, "values"))]
    if len(vals) < 2:
        raise ValueError(f"direction needs at least two values, got {len(vals)}.")
    if any(math.isnan(v) for v in vals):
        raise ValueError("values contain NaN; a direction cannot be stated.")
    tol = check_number(tol, "tol", minimum=0.0, strict=False)
    steps = [b - a for a, b in zip(vals, vals[1:])]
    up = any(s > tol for s in steps)
    down = any(s < -tol for s in steps)
    if up and down:
        return "is not monotone"
    if up:
        return "rises"
    if down:
        return "falls"
    return "is flat"


def _sequence(values, name: str) -> list:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        values = values.reshape(-1).tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers (list, tuple, array), "
                        f"got {type(values).__name__}.")
    return list(values)


def rank_sentence(scores: Mapping, higher_is_better: bool = True, digits: int = 3,
                  percent: bool = False) -> str:
    """The methods of ``scores`` ranked, best first, with their numbers.

    ``{"GradTrust": 0.91, "MSP": 0.85, "Entropy": 0.85}`` gives
    ``"**GradTrust** (0.91) ranks first, then MSP and Entropy (tied at 0.85)"``; with
    ``higher_is_better=False`` the smallest value ranks first (errors, calibration error).

    Taught in the Introduction, section "Claims and verdicts".
    """
    if not isinstance(scores, Mapping) or not scores:
        raise TypeError("scores must be a non-empty mapping of name -> number, e.g. "
                        "{'GradTrust': 0.91, 'MSP': 0.85}.")
    check_bool(higher_is_better, "higher_is_better")
    items = [(str(k), _as_float(v, f"scores[{k!r}]")) for k, v in scores.items()]
    if any(math.isnan(v) for _, v in items):
        raise ValueError("scores contain NaN; a ranking cannot be stated.")
    items.sort(key=lambda kv: -kv[1] if higher_is_better else kv[1])
    groups: list[tuple[list[str], float]] = []
    for name, value in items:
        if groups and fmt(groups[-1][1], digits, percent) == fmt(value, digits, percent):
            groups[-1][0].append(name)
        else:
            groups.append(([name], value))

    def words(names: list[str], value: float, bold: bool) -> str:
        shown = [f"**{n}**" if bold else n for n in names]
        joined = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        number = fmt(value, digits, percent)
        return f"{joined} ({number})" if len(names) == 1 else f"{joined} (tied at {number})"

    if len(groups) == 1:
        return words(*groups[0], bold=False) + (" all score the same" if len(items) > 1 else "")
    first = words(*groups[0], bold=True) + (" rank first" if len(groups[0][0]) > 1 else " ranks first")
    rest = ", then ".join(words(n, v, bold=False) for n, v in groups[1:])
    return f"{first}, then {rest}"


def say(text: str) -> None:
    """Display ``text`` as Markdown in a notebook.

    It returns nothing, so a ``say(...)`` that ends a cell is not shown a second time as the
    cell's value.

    Taught in the Introduction, section "Claims and verdicts".
    """
    if not isinstance(text, str):
        raise TypeError(f"say takes a Markdown string, got {type(text).__name__}.")
    from IPython.display import Markdown, display
    display(Markdown(text))
