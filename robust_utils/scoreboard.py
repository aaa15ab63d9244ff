"""The reproduction scoreboard of the Conclusions page, built from the chapters' claims.

Each chapter run by the runner saves ``<chapter>.claims.json`` beside its executed copy
(:meth:`robust_utils.claims.ClaimsTable.save`). :func:`scoreboard_markdown` collects every such
file of a folder into one page section: the profile(s) the numbers come from, a count of
verdicts per chapter, and one row per claim linking back to the section that tests it. The
runner writes it after each run and the book's build writes it again before reading the pages
(so the Conclusions always show whatever chapters were run; none run: it says so).

Taught in the Conclusions, section "Reproduction scoreboard".
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

from .claims import VERDICTS, ClaimsTable, _verdict_html, _CSS

__all__ = ["SCOREBOARD_NAME", "collect_claims", "scoreboard_markdown", "write_scoreboard"]

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


def scoreboard_markdown(folder, link_prefix: str = "notebooks/") -> str:
    """The scoreboard as MyST Markdown (an HTML table inside), from the claims in ``folder``.

    ``link_prefix`` is the path from the page that shows the scoreboard to the chapters'
    pages (the Conclusions page sits beside the ``notebooks/`` folder of the book).

    Taught in the Conclusions, section "Reproduction scoreboard".
    """
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
            href = f"{link_prefix}{t.chapter}.html" + (f"#{anchor}" if anchor else "")
            where = esc(c.section or _chapter_title(folder, t.chapter))
            claim_rows.append(
                f"<tr><td>{esc(c.claim)}<br><a href='{href}'>{where}</a></td>"
                f"<td>{esc(c.source)}</td><td>{_verdict_html(c.verdict)}: {esc(c.decided_by)}"
                f"<div class='rni-rule'>rule: {esc(c.rule.description)}; protocol: "
                f"{esc(c.protocol)}</div></td></tr>")
    detail = ("<table class='rni-claims'><thead><tr><th style='width:38%'>Claim and section</th>"
              "<th style='width:22%'>Source</th><th style='width:40%'>Verdict</th></tr></thead>"
              f"<tbody>{''.join(claim_rows)}</tbody></table>")
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
