"""Every "Taught in ..." line of a ``robust_utils`` docstring names a heading that exists.

Public docstrings end with a line such as::

    Taught in Part 2, section "ContrastCAM: why P, rather than Q?".
    Taught in the Introduction, section "The model cache".
    Taught in Part 3, sections "Single-pass uncertainty: distance to the training
    representations" and "GradTrust: counterfactual gradients as a trust score".

The reference may wrap over lines and name several sections (``sections "A", "B" and "C"``);
text after the quoted names (``; reused in Part 3``) is free prose and is not checked.

Where a place lives:

* ``Part N``            -> ``notebooks/0N_*.ipynb`` (headings of markdown cells), or
  ``book/parts/0N_*.md`` while that part has no notebook yet;
* ``the Introduction``  -> ``book/intro.md``;
* ``the Conclusions``   -> ``notebooks/08_conclusions.ipynb``.

A heading is a line starting with ``#`` (outside fenced code blocks). Normalisation rule, applied
to both the heading and the docstring's section name before an exact, case-sensitive comparison:

1. drop the leading ``#`` marks;
2. drop a leading section number of the book's numbered headings (``3. ``, ``5.2. ``; a bare number such as ``10 classes`` stays);
3. drop markdown emphasis and code marks: backticks, ``*``, and ``_`` at the edge of a word
   (``snake_case`` names keep their underscores);
4. collapse every run of whitespace (line wrapping included) to one space and strip both ends.

So ``## 3. Evaluation 1: heatmap masking`` is named ``"Evaluation 1: heatmap masking"``.

A second test asks every public function and class of every public module to carry a
"Taught in" reference, except the short, explained allow-list below.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest

import robust_utils

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"

# Public objects that need not carry a "Taught in" line, with the reason. Keep it short.
ALLOWED_WITHOUT_REFERENCE: dict[str, str] = {
    "robust_utils.cache.RecipeMismatchError":
        "exception, raised by cache.get_model (which carries the reference); not taught on its own",
    "robust_utils.checkpoints.CorruptCheckpointError":
        "exception, raised by checkpoints.load_checkpoint (which carries the reference)",
    "robust_utils.checkpoints.IncompatibleCheckpointError":
        "exception, raised by checkpoints.load_checkpoint (which carries the reference)",
    "robust_utils.runner.NotebookFailed":
        "exception, raised by runner.run_notebooks (which carries the reference)",
}

_PLACE = r"(?P<place>Part\s+(?P<part>\d+)|the\s+Introduction|the\s+Conclusions)"
_QUOTED = r'"[^"]+"'
_REFERENCE = re.compile(
    r"Taught\s+in\s+" + _PLACE + r",\s+(?P<kw>sections?)\s+"
    r"(?P<names>" + _QUOTED + r"(?:(?:\s*,\s*and\s+|\s*,\s*|\s+and\s+)" + _QUOTED + r")*)"
)
_TAUGHT = re.compile(r"Taught\s+in\b")


def normalise(text: str) -> str:
    """The normalisation rule of the module docstring (steps 1 to 4)."""
    text = " ".join(text.split())
    text = re.sub(r"^#+\s*", "", text)
    text = re.sub(r"^\d+(?:\.\d+)*\.\s+", "", text)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)
    return " ".join(text.split())


def _markdown_headings(text: str) -> list[str]:
    headings, fence = [], None
    for line in text.splitlines():
        stripped = line.lstrip()
        match = re.match(r"(`{3,}|~{3,})", stripped)
        if match:
            mark = match.group(1)
            if fence is None:
                fence = mark[0] * len(mark)
            elif stripped.startswith(fence) and not stripped[len(fence):].strip("`~").strip():
                fence = None
            continue
        if fence is None and re.match(r"#{1,6}(\s|$)", line):
            headings.append(normalise(line))
    return headings


def _headings_of(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        out: list[str] = []
        for cell in cells:
            if cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                out += _markdown_headings("".join(src) if isinstance(src, list) else src)
        return out
    return _markdown_headings(path.read_text(encoding="utf-8"))


def _place_file(place: str, part: str | None) -> Path | None:
    if part is not None:
        n = int(part)
        for folder, ext in ((NOTEBOOKS, "ipynb"), (BOOK / "parts", "md")):
            found = sorted(folder.glob(f"{n:02d}_*.{ext}"))
            if found:
                return found[0]
        return None
    return BOOK / "intro.md" if "Introduction" in place else NOTEBOOKS / "08_conclusions.ipynb"


def _modules() -> list:
    names = [robust_utils.__name__] + [
        f"{robust_utils.__name__}.{m.name}" for m in pkgutil.iter_modules(robust_utils.__path__)
    ]
    return [importlib.import_module(n) for n in sorted(names)]


def _is_public_module(module) -> bool:
    return not any(part.startswith("_") for part in module.__name__.split(".")[1:])


def _public_objects(module):
    """(name, object) of the public functions and classes defined in ``module``."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            yield name, obj


def _docstrings():
    """(qualified name, docstring) of every module, public object and public method."""
    for module in _modules():
        if module.__doc__:
            yield module.__name__, module.__doc__
        for name, obj in _public_objects(module):
            qual = f"{module.__name__}.{name}"
            if obj.__doc__:
                yield qual, obj.__doc__
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                elif isinstance(member, property):
                    member = member.fget
                if callable(member) and getattr(member, "__doc__", None):
                    yield f"{qual}.{attr}", member.__doc__


def _references():
    """(object, place, section, file or None) of every reference, and malformed lines."""
    refs, malformed = [], []
    for qual, doc in _docstrings():
        flat = " ".join(doc.split())
        for taught in _TAUGHT.finditer(flat):
            match = _REFERENCE.match(flat, taught.start())
            if match is None:
                malformed.append(f"{qual}: cannot parse {flat[taught.start():taught.start() + 90]!r}")
                continue
            names = re.findall(_QUOTED, match.group("names"))
            if match.group("kw") == "section" and len(names) != 1:
                malformed.append(f"{qual}: 'section' with {len(names)} names; write 'sections'")
            place = " ".join(match.group("place").split())
            path = _place_file(place, match.group("part"))
            for name in names:
                refs.append((qual, place, name.strip('"'), path))
    return refs, malformed


def test_references_parse_and_exist():
    refs, malformed = _references()
    assert len(refs) > 50, f"only {len(refs)} references found: is the parser broken?"
    headings: dict[Path, list[str]] = {}
    bad = []
    for qual, place, section, path in refs:
        if path is None or not path.exists():
            bad.append(f"{qual}: {place} has no notebook or page (section {section!r})")
            continue
        if path not in headings:
            headings[path] = _headings_of(path)
        if normalise(section) not in headings[path]:
            close = difflib.get_close_matches(normalise(section), headings[path], n=3, cutoff=0.0)
            bad.append(f"{qual}: {place} ({path.relative_to(ROOT)}) has no heading "
                       f"{section!r}; closest: {close}")
    problems = malformed + bad
    assert not problems, (
        f"{len(problems)} bad 'Taught in' references (of {len(refs)}):\n  " + "\n  ".join(problems))


def test_every_public_object_has_a_reference():
    missing, stale = [], set(ALLOWED_WITHOUT_REFERENCE)
    for module in _modules():
        if not _is_public_module(module) or module.__name__ == robust_utils.__name__:
            continue
        for name, obj in _public_objects(module):
            qual = f"{module.__name__}.{name}"
            stale.discard(qual)
            if qual in ALLOWED_WITHOUT_REFERENCE:
                continue
            if not _TAUGHT.search(" ".join((obj.__doc__ or "").split())):
                missing.append(qual)
    assert not missing, ("public objects without a 'Taught in' line (add one, or add them to "
                         "ALLOWED_WITHOUT_REFERENCE with a reason):\n  " + "\n  ".join(missing))
    assert not stale, f"ALLOWED_WITHOUT_REFERENCE names objects that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("heading, name", [
    ("## 3. Evaluation 1: heatmap masking", "Evaluation 1: heatmap masking"),
    ("### Steps 4–5: a detector per challenge set", "Steps 4–5: a detector per challenge set"),
    ("## 10. Through the *benchmarking* glass", "Through the benchmarking glass"),
    ("### The `snake_case` __name__", "The snake_case name"),
    ("# Part 5: Optimal-transport robustness", "Part 5: Optimal-transport robustness"),
])
def test_normalise(heading, name):
    assert normalise(heading) == name
