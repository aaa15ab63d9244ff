"""html_table: plain themed HTML, chosen columns first, wide tables split, numbers formatted once."""
import numpy as np
import pandas as pd
import pytest

from robust_utils.tables import html_table


def frame():
    return pd.DataFrame({"softmax": [0.81234, 0.5], "H on gradients": [0.9, float("nan")],
                         "count": [np.int64(65), 3]}, index=pd.Index(["ood", "noise"], name="set"))


def test_order_format_and_no_numpy_reprs():
    out = html_table(frame(), first=["H on gradients"], max_cols=None)
    assert out.index("H on gradients") < out.index("softmax")
    assert "0.812" in out and "–" in out and "np.int64" not in out and "<th>set</th>" in out
    assert "style" not in out  # no CSS of its own: the theme styles it


def test_wide_tables_are_split_and_row_extremes_bolded():
    out = html_table(frame(), max_cols=2, bold_max=True, caption="AUROC; higher = better")
    assert out.count("<table>") == 2 and out.count("<caption>") == 1
    assert "<b>65</b>" in out  # the largest number of the first row, in the second block
    scores = html_table(frame()[["softmax", "H on gradients"]], bold_max=True)
    assert "<b>0.900</b>" in scores
    assert html_table(frame()[["softmax"]], bold_max=False).count("<b>") == 2


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown columns"):
        html_table(frame(), first=["nope"])
    with pytest.raises(TypeError, match="DataFrame"):
        html_table([[1]])
    with pytest.raises(ValueError, match="max_cols"):
        html_table(frame(), max_cols=0)


def test_integers_stay_integers_and_split_tables_bold_the_row_extreme():
    df = pd.DataFrame({"a": [0.5], "b": [0.9], "n": [129]}, index=["r"])
    out = html_table(df, max_cols=1, bold_max=True)
    assert "<td>129</td>" not in out and "<b>129</b>" in out and "129.000" not in out
    assert "<b>0.900</b>" not in out  # 129 is the row's largest number, in the third block
