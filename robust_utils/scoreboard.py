"""The reproduction scoreboard of the Conclusions page, built from the chapters' claims.

Each chapter run by the runner saves ``<chapter>.claims.json`` beside its executed copy
(:meth:`robust_utils.claims.ClaimsTable.save`). :func:`scoreboard_markdown` collects every such
file of a folder into one page section: the profile(s) the numbers come from, a count of
verdicts per chapter, and one row per claim linking back to the section that tests it. The
Conclusions notebook (``notebooks/08_conclusions.ipynb``, which the runner executes after the
chapters) shows it from the chapters' claims of the same run (none run: it says so); the runner
also writes it to ``scoreboard.md`` beside the executed copies after each run.

:data:`TAKEAWAYS` ties each key takeaway of the MIPR tutorial's conclusions (and one for the
robust-training chapters) to the chapter sections whose claims bear on it, and
:func:`takeaway_rows` / :func:`takeaways_markdown` gather those claims with their verdicts.

Taught in the Conclusions, section "Reproduction scoreboard".
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import re
from dataclasses import dataclass

from .claims import VERDICTS, ClaimsTable, _verdict_html, _CSS

__all__ = ["SCOREBOARD_NAME", "TAKEAWAYS", "Takeaway", "collect_claims", "scoreboard_markdown", "takeaway_rows",
           "takeaways_markdown", "write_scoreboard"]

#: File name of the generated scoreboard, in the folder of the executed copies.
SCOREBOARD_NAME = "scoreboard.md"


def collect_claims(folder) -> list[ClaimsTable]:
    """Every ``*.claims.json`` of ``folder`` as a :class:`ClaimsTable`, sorted by chapter.

    A file that cannot be read is skipped with a warning (the page still builds).

    Taught in the Conclusions, section "Reproduction scoreboard".
    """
    import warnings
    folder = Path(folder)
    tables = []
    for path in sorted(folder.glob("*.claims.json")) if folder.is_dir() else []:
        try:
            tables.append(ClaimsTable.from_json(path))
        except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            warnings.warn(f"skipping unreadable claims file {path.name}: {exc}", stacklevel=2)
    return sorted(tables, key=lambda t: t.chapter)


def _chapter_title(folder: Path, chapter: str) -> str:
    """The first ``# `` heading of the executed copy, else the chapter's name."""
    path = folder / f"{chapter}.ipynb"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "markdown":
                for line in "".join(cell.get("source", "")).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
    except (OSError, ValueError):
        pass
    return chapter


def _href(link_prefix: str, chapter: str, anchor: str) -> str:
    """The link from the showing page to a chapter's section (to the chapter when no anchor)."""
    return f"{link_prefix}{chapter}.html" + (f"#{anchor}" if anchor else "")


def scoreboard_markdown(folder, link_prefix: str = "notebooks/", collapse_details: bool = False) -> str:
    """The scoreboard as MyST Markdown (an HTML table inside), from the claims in ``folder``.

    ``link_prefix`` is the path from the page that shows the scoreboard to the chapters'
    pages (the Conclusions page sits beside the ``notebooks/`` folder of the book).

    ``collapse_details=True`` folds the table of every claim into a ``<details>`` element that
    the reader opens with a click (the per-chapter counts stay visible).

    Taught in the Conclusions, section "Reproduction scoreboard".
    """
    from ._checks import check_bool
    check_bool(collapse_details, "collapse_details")
    folder = Path(folder)
    tables = [t for t in collect_claims(folder) if len(t)]
    if not tables:
        return ("No chapter of this build recorded rule-based claims, so the scoreboard is empty. "
                "It fills in from every chapter that records them, under the profile it ran.\n")
    esc = html.escape
    profiles = sorted({t.profile or "unknown" for t in tables})
    lines = [f"The numbers below come from the **{', '.join(profiles)}** profile"
             f"{'s' if len(profiles) > 1 else ''}."]
    if "smoke" in profiles:
        lines.append("Smoke runs train on tiny subsets for a moment: their verdicts only show that "
                     "the code runs, not whether a claim holds.")
    head = "".join(f"<th>{esc(v)}</th>" for v in VERDICTS)
    rows, total = [], dict.fromkeys(VERDICTS, 0)
    for t in tables:
        counts = t.counts()
        for v in VERDICTS:
            total[v] += counts[v]
        title = esc(_chapter_title(folder, t.chapter))
        rows.append(f"<tr><td><a href='{link_prefix}{t.chapter}.html'>{title}</a>"
                    f" ({esc(t.profile or 'unknown')})</td>"
                    + "".join(f"<td>{counts[v]}</td>" for v in VERDICTS) + "</tr>")
    rows.append("<tr><td><b>All chapters</b></td>"
                + "".join(f"<td><b>{total[v]}</b></td>" for v in VERDICTS) + "</tr>")
    summary = (f"{_CSS}<table class='rni-claims'><thead><tr><th style='width:36%'>Chapter "
               f"(profile)</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    claim_rows = []
    for t in tables:
        for c in t.claims:
            anchor = c.to_dict()["anchor"]
            href = _href(link_prefix, t.chapter, anchor)
            where = esc(c.section or _chapter_title(folder, t.chapter))
            claim_rows.append(
                f"<tr><td>{esc(c.claim)}<br><a href='{href}'>{where}</a></td>"
                f"<td>{esc(c.source)}</td><td>{_verdict_html(c.verdict)}: {esc(c.decided_by)}"
                f"<div class='rni-rule'>rule: {esc(c.rule.description)}; protocol: "
                f"{esc(c.protocol)}</div></td></tr>")
    detail = ("<table class='rni-claims'><thead><tr><th style='width:38%'>Claim and section</th>"
              "<th style='width:22%'>Source</th><th style='width:40%'>Verdict</th></tr></thead>"
              f"<tbody>{''.join(claim_rows)}</tbody></table>")
    if collapse_details:
        n = sum(len(t) for t in tables)
        detail = (f"<details><summary><b>Every claim, with its source, verdict, rule and protocol ({n} "
                  f"row{'s' if n != 1 else ''}; click to open)</b></summary>{detail}</details>")
    return "\n\n".join(["\n".join(lines), summary, detail]) + "\n"


def write_scoreboard(folder, path=None, link_prefix: str = "notebooks/") -> Path:
    """Write :func:`scoreboard_markdown` of ``folder`` to ``path`` (default
    ``<folder>/scoreboard.md``), only when its text changed; returns the path.

    Taught in the Conclusions, section "Reproduction scoreboard".
    """
    folder = Path(folder)
    path = Path(path) if path is not None else folder / SCOREBOARD_NAME
    text = scoreboard_markdown(folder, link_prefix=link_prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# Key takeaways and the claims that bear on them
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Takeaway:
    """One key takeaway: its ``text``, where it comes from, and the ``(chapter, section)`` pairs
    whose claims test it (``section`` as the chapter's heading reads, with or without its number).

    Taught in the Conclusions, section "Key takeaways: the role of gradients".
    """
    text: str
    source: str
    sections: tuple[tuple[str, str], ...]


_MIPR = "MIPR 2024 tutorial, Key Takeaways"
#: The tutorial's takeaways (its slide "Key Takeaways: Role of Gradients", with the robustness
#: challenge first) and one for Parts 5-7, each tied to the sections whose claims test it.
TAKEAWAYS: tuple[Takeaway, ...] = (
    Takeaway("Robustness under distributional shift in domains, environments and adversaries is a challenge "
             "for neural networks", _MIPR,
             (("01_inference", "How the classifier does on novel data"),
              ("01_inference", "Why not retrain on the novel data? The second punch"),
              ("03_uncertainty", "Corrupted inputs, per type and level"),
              ("05_optimal_transport", "Evaluating every network"),
              ("05_optimal_transport", "Robust accuracy across attack strength"))),
    Takeaway("Gradients traverse a trained manifold: they approximate Fisher information and are local, "
             "directional information", _MIPR,
             (("01_inference", "Gradients at inference"),
              ("01_inference", "Gradients are local information, and the negative gradient is a descent direction"))),
    Takeaway("Gradients can be manipulated by providing contrast classes, and highlight the features of the "
             "prediction, of counterfactuals and of contrasts", _MIPR,
             (("02_explainability", "Do the maps do what their questions say? A deletion test"),
              ("02_explainability", "Sanity check: does the explanation depend on what the network learned?"),
              ("04_intervenability", "Evaluation 2: pixel-wise deletion and insertion"),
              ("04_intervenability", "Aligned CAMs"),
              ("04_intervenability", "CausalCAM against Grad-CAM and Grad-CAM++"))),
    Takeaway("Gradients carry implicit knowledge about all classes when only one data point is available at "
             "inference (introspection)", _MIPR,
             (("02_explainability", "When is introspection useful? Generalisation and calibration"),
              ("02_explainability", "The plug-in result: introspection on top of noise training"),
              ("02_explainability", "The plug-in result downstream: out-of-distribution detection"))),
    Takeaway("Gradients give directional information for anomaly and novelty detection", _MIPR,
             (("01_inference", "Gradient surprise on novel data"),
              ("01_inference", "Out-of-distribution inputs and new classes"))),
    Takeaway("Gradients quantify uncertainty for out-of-distribution, corruption and adversarial detection, "
             "and trust", _MIPR,
             (("03_uncertainty", "Step 3: gradient features of trained and challenging data"),
              ("03_uncertainty", "GradTrust: counterfactual gradients as a trust score"),
              ("03_uncertainty", "GradTrust against softmax confidence"))),
    Takeaway("Explanatory evaluation reduces uncertainty: interventions and the variance of explanations "
             "measure how far an explanation can be trusted", "MIPR 2024 tutorial, Memes to Wrap it Up",
             (("04_intervenability", "Evaluation 1: heatmap masking"),
              ("04_intervenability", "The dangers of incomplete interventions: SHAPE vs RISE"),
              ("04_intervenability", "VOICE: the uncertainty of an explanation"))),
    Takeaway("Training can make small input changes matter less, and what robust training buys shows in the "
             "explanations and counterfactuals", "Parts 5-7 (Phung 2023; Woods et al. 2019; Khorram & Fuxin 2022)",
             (("05_optimal_transport", "Do UDR methods outperform?"),
              ("06_adversarial_explanations", "Table 1 on Fashion-MNIST"),
              ("07_counterfactuals", "Table 1: COUT"),
              ("07_counterfactuals", "Realism: IM1, IM2, FID and KID"))),
)


def _bare(section: str) -> str:
    """A heading without its leading number (``"4. Foo"`` -> ``"Foo"``), whitespace collapsed."""
    return re.sub(r"^\d+(?:\.\d+)*\.\s+", "", " ".join(str(section).split()))


def takeaway_rows(tables, takeaways=TAKEAWAYS) -> list[dict]:
    """For each takeaway: its text and source, the claims of its sections found in ``tables``
    (``chapter``, ``claim`` with its ``section``, ``verdict``, ``decided_by``), and the count per verdict.

    ``tables`` are :class:`~robust_utils.claims.ClaimsTable` objects (e.g. :func:`collect_claims`);
    a section whose chapter was not run contributes nothing, and ``missing`` lists it.

    Taught in the Conclusions, section "Key takeaways: the role of gradients".
    """
    tables = list(tables)
    bad = [type(t).__name__ for t in tables if not isinstance(t, ClaimsTable)]
    if bad:
        raise TypeError(f"tables must be ClaimsTable objects (scoreboard.collect_claims(folder)), got {bad}.")
    by_chapter = {t.chapter: t for t in tables}
    rows = []
    for tk in takeaways:
        if not isinstance(tk, Takeaway):
            raise TypeError(f"takeaways must be Takeaway objects, got {type(tk).__name__}.")
        found, missing = [], []
        for chapter, section in tk.sections:
            t = by_chapter.get(chapter)
            hits = [c for c in t.claims if _bare(c.section) == _bare(section)] if t is not None else []
            if not hits:
                missing.append((chapter, section))
            found += [{"chapter": chapter, "claim": c.claim, "section": c.section, "verdict": c.verdict,
                       "decided_by": c.decided_by, "anchor": c.to_dict()["anchor"]} for c in hits]
        counts = {v: sum(r["verdict"] == v for r in found) for v in VERDICTS}
        rows.append({"takeaway": tk.text, "source": tk.source, "claims": found, "counts": counts,
                     "missing": missing})
    return rows


def takeaways_markdown(folder, link_prefix: str = "", takeaways=TAKEAWAYS) -> str:
    """The takeaways as an HTML table: each with the claims that bear on it, their verdicts and
    links to the sections that test them (``link_prefix``: the path from the showing page to the
    chapters' pages; the Conclusions notebook sits beside them).

    Taught in the Conclusions, section "Key takeaways: the role of gradients".
    """
    folder = Path(folder)
    rows = takeaway_rows(collect_claims(folder), takeaways)
    esc = html.escape
    body = []
    for r in rows:
        items = []
        for c in r["claims"]:
            href = _href(link_prefix, c["chapter"], c["anchor"])
            items.append(f"<li>{_verdict_html(c['verdict'])}: <a href='{href}'>{esc(c['claim'])}</a></li>")
        if not items:
            items = ["<li>no claim of these sections was recorded in this build</li>"]
        tally = ", ".join(f"{n} {v}" for v, n in r["counts"].items() if n) or "none"
        body.append(f"<tr><td><b>{esc(r['takeaway'])}</b><div class='rni-rule'>{esc(r['source'])}</div></td>"
                    f"<td>{tally}<ul style='margin:.2em 0 0 1em;padding:0'>{''.join(items)}</ul></td></tr>")
    return (f"{_CSS}<table class='rni-claims'><thead><tr><th style='width:34%'>Takeaway</th>"
            f"<th style='width:66%'>The claims that test it (verdict: claim)</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>\n")
