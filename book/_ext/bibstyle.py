"""Author–year citations in the text *and* in the bibliography, with 2024a/2024b where needed.

sphinxcontrib-bibtex's ``author_year`` reference style writes "AlRegib and Prabhushankar [2024]"
in the text, but the bibliography list keeps the formatting style's labels ([1], [2], … with
``plain``), and two works by the same authors in the same year get the same in-text label.
This extension registers

* a pybtex label style and formatting style ``author_year`` (``bibtex_default_style``): the list
  is the ``plain`` style, sorted by author, year and title, labelled "Kwon et al., 2020a";
* a reference style ``author_year_abc`` (``bibtex_reference_style``): the text reads
  "Kwon et al. (2020a)" (``{cite:t}``) or "(Kwon et al., 2020a)" (``{cite:p}``, ``{cite}``),
  the year carrying the same letter as the list's label.

A letter is added only where two entries of ``references.bib`` share the authors as the text names
them (one, two, or the first author "et al.") and the year, in the list's order.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import node
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import BracketStyle, GroupReferenceStyle, PersonStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join, join2, post_text, pre_text, reference

_LABEL_YEAR = re.compile(r"(\d{4}[a-z]?|n\.d\.[a-z]?)$")


def _last_name(person) -> str:
    parts = list(person.rich_prelast_names) + list(person.rich_last_names)
    return " ".join(Text(p).render_as("text") for p in parts)


def author_year_base(entry) -> str:
    """The label without its letter: "Phung, 2023", "Kendall and Gal, 2017", "Kwon et al., 2020"."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(p) for p in persons]
    truncated = len(names) > 1 and names[-1].lower() == "others"  # "and others": the text says "et al."
    if not names:
        who = Text(entry.fields.get("title", entry.key)).render_as("text")
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2 and not truncated:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Author, year", with a, b, … where author and year repeat."""

    def format_labels(self, sorted_entries):
        sorted_entries = list(sorted_entries)
        bases = [author_year_base(e) for e in sorted_entries]
        counts = Counter(bases)
        seen: Counter = Counter()
        for base in bases:
            if counts[base] > 1:
                yield base + string.ascii_lowercase[seen[base]]
                seen[base] += 1
            else:
                yield base


class AuthorYearStyle(PlainStyle):
    """pybtex's ``plain`` list with author–year labels."""

    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


@node
def labelled_year(children, data) -> Text:
    """The year as the list's label has it ("2024a"), so text and list agree."""
    assert not children
    match = _LABEL_YEAR.search(str(data["formatted_entry"].label))
    if match:
        return Text(match.group(1))
    return Text(data["entry"].fields.get("year", "n.d."))


@dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[
                join(sep=self.author_year_sep)[
                    self.person.author_or_editor_or_title(full="s" in role_name),
                    labelled_year,
                ]
            ],
            post_text,
        ]


@dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text,
                    reference[labelled_year],
                    post_text,
                ],
                self.bracket.right,
            ],
        ]


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")", sep="; ")


@dataclass
class AuthorYearABCReferenceStyle(GroupReferenceStyle):
    """``author_year`` with round brackets and the list's 2024a/2024b years."""

    bracket_textual: BracketStyle = field(default_factory=_round)
    bracket_parenthetical: BracketStyle = field(default_factory=_round)
    bracket_author: BracketStyle = field(default_factory=_round)
    bracket_label: BracketStyle = field(default_factory=_round)
    bracket_year: BracketStyle = field(default_factory=_round)
    person: PersonStyle = field(default_factory=PersonStyle)

    def __post_init__(self):
        self.styles.extend(
            [
                _Parenthetical(bracket=self.bracket_parenthetical, person=self.person),
                _Textual(bracket=self.bracket_textual, person=self.person),
                ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
                ExtraLabelReferenceStyle(bracket=self.bracket_label),
                ExtraYearReferenceStyle(bracket=self.bracket_year),
                ExtraEmptyReferenceStyle(),
            ]
        )
        super().__post_init__()


pybtex.plugin.register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
pybtex.plugin.register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
register_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_abc", AuthorYearABCReferenceStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
