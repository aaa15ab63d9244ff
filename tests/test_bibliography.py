"""The bibliography (book/references.bib) and the citations of the book agree.

* every entry links to the work: a DOI, a URL or an arXiv id (``eprint``), unless it is listed in
  ``NO_LINK`` with the reason;
* author lists are complete: no "and others" (it renders as "et al." and hides the authors),
  unless listed in ``INCOMPLETE_AUTHORS`` with the reason;
* every key cited with ``{cite}``, ``{cite:p}``, ``{cite:t}``, … in notebooks/*.ipynb and
  book/**/*.md exists in references.bib;
* the author–year labels that the book renders (book/_ext/bibstyle.py) are distinct.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

pybtex_database = pytest.importorskip("pybtex.database")

REPO = Path(__file__).resolve().parents[1]
BIB = REPO / "book" / "references.bib"

# Entries without a DOI, URL or arXiv id, and why.
NO_LINK = {
    "alregib2024mipr": "tutorial slides (MIPR 2024); no DOI, and no public page for them was confirmed",
    "phung2023smallchange": "colloquium talk (University of Melbourne, 2023); no DOI or public page confirmed",
}

# Entries whose author list could not be confirmed in full, and why.
INCOMPLETE_AUTHORS = {
    "quesada2024pointprompt": "only one secondary source lists the CVPR 2024 workshop paper's authors; "
    "complete it from the paper (CVF open access page in the entry's url)",
}

# {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ts}`a`, ... (MyST roles, also inside notebook JSON).
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")


@pytest.fixture(scope="module")
def bib():
    return pybtex_database.parse_file(str(BIB))


def _link(entry) -> bool:
    fields = {k.lower(): v for k, v in entry.fields.items()}
    return any(fields.get(name, "").strip() for name in ("doi", "url", "eprint"))


def test_every_entry_has_a_doi_url_or_arxiv_id(bib):
    missing = sorted(key for key, entry in bib.entries.items() if not _link(entry) and key not in NO_LINK)
    assert not missing, f"entries without doi/url/eprint (add one, or list them in NO_LINK with a reason): {missing}"


def test_allow_lists_name_existing_entries_that_still_need_them(bib):
    stale = [key for key in NO_LINK if key not in bib.entries or _link(bib.entries[key])]
    assert not stale, f"NO_LINK lists entries that do not exist or now have a link: {stale}"
    stale = [key for key in INCOMPLETE_AUTHORS if key not in bib.entries]
    assert not stale, f"INCOMPLETE_AUTHORS lists entries that do not exist: {stale}"


def test_no_author_list_ends_in_others(bib):
    bad = sorted(
        key
        for key, entry in bib.entries.items()
        for role in ("author", "editor")
        for person in entry.persons.get(role, [])
        if str(person).strip().lower() == "others" and key not in INCOMPLETE_AUTHORS
    )
    assert not bad, f"'and others' in the author list of: {bad} (write out all authors)"
    raw = BIB.read_text(encoding="utf-8")
    for key in re.findall(r"@\w+\{([^,]+),[^@]*?\band others\b", raw):
        assert key in INCOMPLETE_AUTHORS, key


def _cited_keys() -> dict[str, set[str]]:
    sources = sorted((REPO / "notebooks").glob("*.ipynb")) + sorted((REPO / "book").rglob("*.md"))
    cited: dict[str, set[str]] = {}
    for path in sources:
        if "_build" in path.parts:
            continue
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) for c in cells)
        else:
            text = path.read_text(encoding="utf-8")
        for group in CITE.findall(text):
            for key in group.split(","):
                if key.strip():
                    cited.setdefault(key.strip(), set()).add(str(path.relative_to(REPO)))
    return cited


def test_the_book_cites_something():
    assert _cited_keys(), "no {cite} roles found: has the citation syntax changed?"


def test_every_cited_key_exists(bib):
    missing = {key: sorted(where) for key, where in _cited_keys().items() if key not in bib.entries}
    assert not missing, f"cited but not in references.bib: {missing}"


def _bibstyle():
    path = REPO / "book" / "_ext" / "bibstyle.py"
    pytest.importorskip("sphinxcontrib.bibtex")
    if "bibstyle" in sys.modules:
        return sys.modules["bibstyle"]
    spec = importlib.util.spec_from_file_location("bibstyle", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bibstyle"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_author_year_labels_are_distinct(bib):
    import pybtex.plugin

    _bibstyle()
    style = pybtex.plugin.find_plugin("pybtex.style.formatting", "author_year")()
    by_key = {entry.key: str(entry.label) for entry in style.format_entries(bib.entries.values())}
    labels = list(by_key.values())
    assert len(labels) == len(set(labels)), sorted(label for label in labels if labels.count(label) > 1)
    # the two 2024 tutorials of AlRegib and Prabhushankar are told apart in text and list
    assert {by_key["alregib2024mipr"], by_key["alregib2024aaai"]} == {
        "AlRegib and Prabhushankar, 2024a",
        "AlRegib and Prabhushankar, 2024b",
    }
    assert by_key["phung2023smallchange"] == "Phung, 2023"
