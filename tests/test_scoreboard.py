"""The Conclusions' takeaways: each tied to real chapter sections, their claims gathered by hand-checked rules."""
import json
from pathlib import Path

import pytest

from robust_utils import claims as C
from robust_utils import scoreboard as S

ROOT = Path(__file__).resolve().parents[1]
SRC = "a source"


def _headings(chapter: str) -> set[str]:
    from test_docs_references import _headings_of
    return set(_headings_of(ROOT / "notebooks" / f"{chapter}.ipynb"))


@pytest.mark.parametrize("tk", S.TAKEAWAYS, ids=lambda t: t.text[:40])
def test_every_takeaway_section_is_a_heading_of_its_chapter(tk):
    from test_docs_references import normalise
    assert tk.sections, "a takeaway needs at least one section"
    for chapter, section in tk.sections:
        assert (ROOT / "notebooks" / f"{chapter}.ipynb").exists(), chapter
        assert normalise(section) in _headings(chapter), f"{chapter} has no heading {section!r}"


def _tables():
    t1 = C.ClaimsTable("01_inference", profile="laptop")
    t1.add("novel data hurts", SRC, 0.5, "p", C.at_least(0.1), section="4. How the classifier does on novel data")
    t1.add("unrelated", SRC, 0.5, "p", C.at_least(0.1), section="2. The classifier")
    t3 = C.ClaimsTable("03_uncertainty", profile="laptop")
    t3.add("corruption hurts", SRC, 0.05, "p", C.at_least(0.1), section="Corrupted inputs, per type and level")
    return [t1, t3]


def test_takeaway_rows_by_hand():
    tk = S.Takeaway("shift hurts", "slides", (("01_inference", "How the classifier does on novel data"),
                                             ("03_uncertainty", "Corrupted inputs, per type and level"),
                                             ("05_optimal_transport", "Evaluating every network")))
    (row,) = S.takeaway_rows(_tables(), [tk])
    assert [c["claim"] for c in row["claims"]] == ["novel data hurts", "corruption hurts"]  # numbering ignored
    assert row["counts"] == {"reproduced": 1, "partly": 0, "not reproduced": 1, "not comparable": 0}
    assert row["missing"] == [("05_optimal_transport", "Evaluating every network")]  # chapter not run
    assert row["claims"][0]["anchor"] == "how-the-classifier-does-on-novel-data"


def test_takeaways_markdown(tmp_path):
    empty = S.takeaways_markdown(tmp_path)
    assert empty.count("no claim of these sections was recorded") == len(S.TAKEAWAYS)
    for t in _tables():
        t.save(tmp_path)
    text = S.takeaways_markdown(tmp_path)
    assert "href='01_inference.html#how-the-classifier-does-on-novel-data'" in text
    assert "1 reproduced, 1 not reproduced" in text
    assert "unrelated" not in text


def test_takeaway_rows_bad_input():
    with pytest.raises(TypeError, match="ClaimsTable"):
        S.takeaway_rows([{"chapter": "01_inference"}])
    with pytest.raises(TypeError, match="Takeaway objects"):
        S.takeaway_rows(_tables(), ["text"])
