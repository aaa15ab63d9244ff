"""Known-answer tests of robust_utils.claims (rules, worst case, rows, JSON) and narrate."""
from __future__ import annotations

import json

import numpy as np

import pytest

from robust_utils import claims as C
from robust_utils import narrate as N
from robust_utils.scoreboard import scoreboard_markdown, write_scoreboard

SRC = 'MIPR slides, "Gradient-based detection"'


# ---------------------------------------------------------------------------- rules

@pytest.mark.parametrize("value, verdict", [(0.85, "reproduced"), (0.8, "reproduced"),
                                            (0.7, "partly"), (0.5, "not reproduced")])
def test_at_least(value, verdict):
    assert C.at_least(0.8, partly=0.6).decide(value)[0] == verdict


@pytest.mark.parametrize("value, verdict", [(0.02, "reproduced"), (0.07, "partly"), (0.2, "not reproduced")])
def test_at_most(value, verdict):
    assert C.at_most(0.05, partly=0.1).decide(value)[0] == verdict


def test_threshold_partly_on_the_wrong_side():
    with pytest.raises(ValueError, match="weaker side"):
        C.at_least(0.8, partly=0.9)
    with pytest.raises(ValueError, match="weaker side"):
        C.at_most(0.1, partly=0.05)


def test_worst_case_decides_and_is_named():
    # "detects ... True" while the minimum AUROC is 0.401 must not happen
    verdict, why = C.at_least(0.8).decide({"svhn": 0.95, "cifar10": 0.401, "mnist": 0.9})
    assert verdict == "not reproduced"
    assert "cifar10 (0.401 < 0.8)" in why and "2/3 reproduced" in why
    verdict, why = C.at_most(0.1).decide([0.05, 0.09, 0.01])
    assert verdict == "reproduced" and "#1 (0.09" in why  # the weakest value is named even when all pass


def test_within_relative_absolute_and_source_value():
    rule = C.within(rel=0.1, partly_rel=0.25)
    assert rule.decide(0.52, 0.5)[0] == "reproduced"
    assert rule.decide(0.6, 0.5)[0] == "partly"
    assert rule.decide(0.7, 0.5)[0] == "not reproduced"
    assert C.within(0.9, abs=0.02).decide(0.91)[0] == "reproduced"
    verdict, why = C.within(0.9, abs=0.02).decide(0.95)
    assert verdict == "not reproduced" and "0.05" in why
    with pytest.raises(ValueError, match="exactly one"):
        C.within(0.9)
    with pytest.raises(ValueError, match="source_value"):
        C.within(rel=0.1).decide(0.5, None)


def test_same_sign_direction_ranking_not_comparable():
    assert C.same_sign("negative").decide(-0.3)[0] == "reproduced"
    assert C.same_sign().decide(0.2, -1.0)[0] == "not reproduced"
    assert C.direction_is("falls").decide([0.9, 0.8, 0.5])[0] == "reproduced"
    verdict, why = C.direction_is("falls").decide([0.9, 0.8, 0.85, 0.5])
    assert verdict == "partly" and "1 of 3" in why
    assert C.direction_is("rises").decide([0.9, 0.8])[0] == "not reproduced"
    rank = C.ranking(["A", "B", "C"])
    assert rank.decide({"A": 3, "B": 2, "C": 1})[0] == "reproduced"
    assert rank.decide({"A": 3, "B": 1, "C": 2})[0] == "partly"
    assert rank.decide({"A": 1, "B": 2, "C": 3})[0] == "not reproduced"
    low = C.ranking(["A", "B"], higher_is_better=False)
    assert low.decide({"A": 0.1, "B": 0.2})[0] == "reproduced"
    # the sign between names is the one between their scores
    assert "A < B" in low.description and "A > B > C" in rank.description
    assert low.decide({"A": 0.3, "B": 0.2})[1] == "ours: B (0.2) < A (0.3)"
    assert rank.decide({"A": 3, "B": 2, "C": 1})[1] == "ours: A (3) > B (2) > C (1)"
    with pytest.raises(ValueError, match="lacks scores"):
        rank.decide({"A": 1})
    assert C.not_comparable("the paper reports top-5 error").decide(None) == (
        "not comparable", "the paper reports top-5 error")


def test_all_of_any_rule_worst_verdict():
    rule = C.all_of(C.within(abs=0.05), over="seeds")
    verdict, why = rule.decide({"s0": 0.9, "s1": 0.7, "s2": 0.88}, 0.9)
    assert verdict == "not reproduced" and "s1" in why and "seeds" in rule.description
    assert rule.decide([0.9, 0.91], 0.9)[0] == "reproduced"
    with pytest.raises(TypeError):
        C.all_of("at_least")


def test_nan_is_not_comparable_and_named():
    assert C.at_least(0.5).decide(float("nan")) == ("not comparable", "ours is NaN")
    assert C.at_least(0.5).decide({"a": 0.9, "b": float("nan")})[0] == "not comparable"


# ---------------------------------------------------------------------------- rows and tables

def _row(**over):
    kw = dict(claim="Gradients detect novel data", source=SRC, ours=0.93,
              protocol="Fashion-MNIST and a small CNN instead of CIFAR-10 and a ResNet",
              rule=C.at_least(0.9), section="5. Gradients at inference")
    kw.update(over)
    return C.Claim(**kw)


def test_claim_computes_verdict_and_anchor():
    row = _row()
    assert row.verdict == "reproduced" and row.decided_by == "0.93 >= 0.9"
    assert row.to_dict()["anchor"] == "gradients-at-inference"
    assert row.sentence().startswith("**Reproduced**: 0.93 >= 0.9")


@pytest.mark.parametrize("field, value, match", [
    ("source", "", "source must be a non-empty string"),
    ("source", None, "source"),
    ("protocol", "  ", "protocol"),
    ("claim", 3, "claim"),
])
def test_row_without_source_or_protocol_raises(field, value, match):
    with pytest.raises(ValueError, match=match):
        _row(**{field: value})


def test_row_without_rule_raises():
    with pytest.raises(TypeError, match="rule must be a Rule"):
        _row(rule=None)
    with pytest.raises(TypeError, match="rule must be a Rule"):
        _row(rule="at least 0.9")


def test_row_refuses_booleans_and_missing_numbers():
    with pytest.raises(TypeError, match="boolean"):
        _row(ours=True)
    with pytest.raises(ValueError, match="ours is None"):
        _row(ours=None)
    assert _row(ours=None, rule=C.not_comparable("no number")).verdict == "not comparable"


def test_table_counts_frame_html_and_json_round_trip(tmp_path):
    table = C.ClaimsTable("01_inference", profile="smoke")
    table.add("A", SRC, 0.93, "smaller", C.at_least(0.9), section="5. Gradients at inference")
    table.add("B", "Khorram & Fuxin 2022, Table 1", {"x": 0.6, "y": 0.95}, "smaller",
              C.at_least(0.9, partly=0.5), source_value=0.97)
    table.add("C", SRC, None, "other metric", C.not_comparable("top-5 error"))
    assert table.counts() == {"reproduced": 1, "partly": 1, "not reproduced": 0, "not comparable": 1}
    frame = table.to_frame()
    assert list(frame["verdict"]) == ["reproduced", "partly", "not comparable"]
    assert frame.loc[1, "ours"] == "x: 0.6, y: 0.95"
    page = table._repr_html_()
    assert "<table class='rni-claims'>" in page and "table-layout:fixed" in page
    assert "Khorram &amp; Fuxin 2022" in page and "rule: reproduced if ours &gt;= 0.9" in page
    path = table.to_json(tmp_path / "t.json")
    back = C.ClaimsTable.from_json(path)
    assert back.to_dict() == table.to_dict()
    assert json.loads(path.read_text())["counts"]["partly"] == 1


def test_save_uses_claims_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(C.CLAIMS_DIR_ENV, str(tmp_path))
    table = C.ClaimsTable("02_explainability", profile="laptop")
    table.add("A", SRC, 1.0, "same", C.at_least(0.5))
    assert table.save() == tmp_path / "02_explainability.claims.json"
    with pytest.raises(ValueError, match="file name"):
        C.ClaimsTable("../escape")


def test_from_json_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"notebooks": []}')
    with pytest.raises(ValueError, match="not a claims file"):
        C.ClaimsTable.from_json(tmp_path / "x.json")


# ---------------------------------------------------------------------------- scoreboard

def test_scoreboard_empty_and_filled(tmp_path):
    assert "No chapter of this build recorded rule-based claims" in scoreboard_markdown(tmp_path)
    table = C.ClaimsTable("01_inference", profile="smoke")
    table.add("Gradients detect novel data", SRC, {"a": 0.95, "b": 0.401}, "smaller",
              C.at_least(0.8), section="5. Gradients at inference")
    table.save(tmp_path)
    (tmp_path / "01_inference.ipynb").write_text(json.dumps(
        {"cells": [{"cell_type": "markdown", "source": ["# Part 1 — Inference\n"]}]}))
    text = write_scoreboard(tmp_path).read_text()
    assert "**smoke** profile" in text and "only show that the code runs" in text
    assert "href='notebooks/01_inference.html#gradients-at-inference'" in text
    assert "Part 1 — Inference" in text and "not reproduced" in text and "0.401" in text
    assert "<td>1</td>" in text  # one 'not reproduced' row counted
    folded = scoreboard_markdown(tmp_path, collapse_details=True)
    assert "<details><summary><b>Every claim" in folded and "(1 row; click to open)" in folded
    assert folded.count("Gradients detect novel data") == 1 and "<details>" not in text


# ---------------------------------------------------------------------------- narrate

@pytest.mark.parametrize("x, kw, text", [
    (0.91234, {}, "0.912"), (3.0, {}, "3"), (12000, {}, "12000"), (0.8712, {"percent": True}, "87.1%"),
    (float("nan"), {}, "n/a"), (2.5e-5, {}, "2.50e-5"), (123.456, {}, "123"), (0.5, {"digits": 2}, "0.5"),
    (-0.0421, {}, "-0.0421"), ("text", {}, "text"), (0, {}, "0"),
])
def test_fmt(x, kw, text):
    assert N.fmt(x, **kw) == text


def test_count_agrees_in_number():
    assert N.count(1, "epoch") == "1 epoch"
    assert N.count(4, "epoch") == "4 epochs" and N.count(0, "epoch") == "0 epochs"
    assert N.count(np.int64(2), "query", "queries") == "2 queries"
    with pytest.raises(TypeError, match="integer count"):
        N.count(1.5, "epoch")
    with pytest.raises(ValueError, match="non-empty"):
        N.count(2, "")


def test_compare_change_direction_rank():
    assert N.compare(0.9, 0.8) == "higher than"
    assert N.compare(0.8, 0.9, lower="worse than") == "worse than"
    assert N.compare(0.80, 0.81, tol=0.02) == "about the same as"
    assert N.compare(100, 104, tol=0.05, relative=True) == "about the same as"
    assert N.change(0.85, 0.91) == "rises from 0.85 to 0.91"
    assert N.change(0.91, 0.85) == "falls from 0.91 to 0.85"
    assert N.change(0.85, 0.851, tol=0.01) == "stays at 0.85"
    assert N.direction([1, 2, 3]) == "rises"
    assert N.direction([3, 2, 2]) == "falls"
    assert N.direction([1, 1.001], tol=0.01) == "is flat"
    assert N.direction([1, 3, 2]) == "is not monotone"
    assert (N.rank_sentence({"GradTrust": 0.91, "MSP": 0.85, "Entropy": 0.85})
            == "**GradTrust** (0.91) ranks first, then MSP and Entropy (tied at 0.85)")
    assert N.rank_sentence({"ECE a": 0.05, "ECE b": 0.02}, higher_is_better=False).startswith("**ECE b**")
    with pytest.raises(ValueError, match="NaN"):
        N.compare(float("nan"), 1.0)
    with pytest.raises(ValueError, match="at least two"):
        N.direction([1])
    with pytest.raises(TypeError):
        N.rank_sentence({})


def test_say_displays_markdown_and_returns_nothing(capsys):
    from robust_utils import narrate
    assert narrate.say("**AUROC** rises") is None
    with pytest.raises(TypeError, match="Markdown string"):
        narrate.say(0.5)
