"""Results tables that fit the book's column and keep its theme.

A pandas ``Styler`` writes its own CSS, so in the rendered book it loses the theme's table style,
and a wide table pushes its last columns (often the chapter's own method) off the page.
:func:`html_table` writes plain HTML, which the theme styles, puts the columns that matter first,
formats numbers once, and splits a wide table into stacked tables of a few columns each.

Taught in the Introduction, section "Claims and verdicts".
"""
from __future__ import annotations

import html
import math
from typing import Sequence

from ._checks import check_positive_int

__all__ = ["html_table", "show_table"]


def _cell(v, digits: int) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # NumPy / torch scalars: no np.int64(65) reprs
        return _cell(v.item(), digits)
    return html.escape(str(v))


def html_table(df, *, digits: int = 3, first: Sequence[str] = (), max_cols: int | None = 6,
               caption: str | None = None, bold_max: bool | None = None) -> str:
    """Plain, themed HTML of a DataFrame: ``first`` columns first, at most ``max_cols`` per block.

    Parameters
    ----------
    df : pandas.DataFrame
        Index and columns as labels (a MultiIndex is joined with " / ").
    digits : int, default 3
        Decimals of float cells; NaN shows as an en dash.
    first : sequence of str
        Columns to put first (e.g. the chapter's own method); unknown names raise.
    max_cols : int or None, default 6
        Columns per block; a wider table is split into stacked blocks, each repeating the index.
    caption : str, optional
        Shown above the first block (Markdown is not interpreted; plain text).
    bold_max : bool, optional
        ``True`` bolds each row's largest number, ``False`` its smallest (say which way a score
        points in the caption); ``None`` bolds nothing. The extreme is taken over the whole row,
        also when the table is split into blocks.

    Taught in the Introduction, section "Claims and verdicts".
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    digits = check_positive_int(digits, "digits", minimum=0)
    label = lambda v: " / ".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    cols = [c for c in df.columns]
    names = {label(c): c for c in cols}
    missing = [f for f in first if f not in names]
    if missing:
        raise ValueError(f"first names unknown columns {missing}; the columns are {list(names)}.")
    order = [names[f] for f in first] + [c for c in cols if label(c) not in first]
    if max_cols is not None:
        max_cols = check_positive_int(max_cols, "max_cols")
    step = max_cols or len(order) or 1
    blocks = [order[i:i + step] for i in range(0, len(order), step)] or [[]]
    cells_df = df.astype(object)  # row access keeps each column's own type (no 129 -> 129.000)

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))

    targets = {}  # the extreme of each whole row, so that a split table bolds the same cell
    if bold_max is not None:
        for idx, row in cells_df.iterrows():
            nums = [v for v in row.tolist() if is_num(v)]
            targets[idx] = (max(nums) if bold_max else min(nums)) if nums else None
    parts = []
    for b, block in enumerate(blocks):
        head = "".join(f"<th>{html.escape(label(c))}</th>" for c in block)
        rows = []
        for idx, row in cells_df[block].iterrows():
            target = targets.get(idx)
            cells = "".join(
                f"<td><b>{_cell(v, digits)}</b></td>" if target is not None and v == target and not isinstance(v, bool)
                else f"<td>{_cell(v, digits)}</td>" for v in row.tolist())
            rows.append(f"<tr><th>{html.escape(label(idx))}</th>{cells}</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption and b == 0 else ""
        index_name = html.escape(label(df.index.name)) if df.index.name is not None else ""
        parts.append(f"<table>{cap}<thead><tr><th>{index_name}</th>{head}</tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    return "\n".join(parts)


def show_table(df, **kwargs) -> None:
    """Display :func:`html_table` of ``df`` in a notebook.

    Taught in the Introduction, section "Claims and verdicts".
    """
    from IPython.display import HTML, display

    display(HTML(html_table(df, **kwargs)))
