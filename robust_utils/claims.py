"""A chapter's claims: what the source says, what we measured, and a verdict computed by a rule.

Each row (:class:`Claim`) names the claim, its source (a tutorial slide, a paper's table or
figure), the source's number where there is one, ours, how our protocol differs (dataset,
model, scale) and a :class:`Rule` that turns the measured numbers into one of four verdicts:

``reproduced``, ``partly``, ``not reproduced``, ``not comparable``.

The rule is stated in the row (its ``description``) and the numbers that decided it are kept
(``decided_by``). A rule over several values (several data sets, several seeds) decides on the
worst one and names it, so a weak result cannot hide behind a good average.

A chapter collects its rows in a :class:`ClaimsTable`, shows it (``display(table)``) and calls
:meth:`ClaimsTable.save`, which writes ``<chapter>.claims.json`` into ``RNI_CLAIMS_DIR`` (set
by the book's runner to the folder of the executed copies), else into the working directory.
The Conclusions notebook (run last) collects those files into the reproduction scoreboard
(:mod:`robust_utils.scoreboard`).

Taught in the Introduction, section "Claims and verdicts".
"""
from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._checks import check_bool, check_choice, check_name, check_number
from .narrate import _is_number, fmt

__all__ = [
    "VERDICTS", "CLAIMS_DIR_ENV", "Rule", "Claim", "ClaimsTable",
    "at_least", "at_most", "within", "same_sign", "direction_is", "all_of", "ranking",
    "not_comparable", "section_anchor",
]

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_COMPARABLE = (
    "reproduced", "partly", "not reproduced", "not comparable")
#: The four verdicts, in the order the tables count them.
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_COMPARABLE)
#: Environment variable naming the folder :meth:`ClaimsTable.save` writes to.
CLAIMS_DIR_ENV = "RNI_CLAIMS_DIR"
# how bad a verdict is, for "the worst value decides"
_SEVERITY = {REPRODUCED: 0, PARTLY: 1, NOT_COMPARABLE: 2, NOT_REPRODUCED: 3}
_KINDS = ("at_least", "at_most", "within", "same_sign", "direction", "all_of", "ranking",
          "not_comparable")


def _text(v, name: str, *, required: bool = True) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v.strip()):
        raise ValueError(f"{name} must be a non-empty string, got {v!r}. Every claims row names "
                         f"its {name}" + (" (e.g. 'MIPR slides, \"Gradient-based detection\"' or "
                                          "'Khorram & Fuxin 2022, Table 1')." if name == "source"
                                          else "."))
    return v.strip()


def _number(v, name: str) -> float:
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if not _is_number(v):
        raise TypeError(f"{name} must be a number, got {v!r} ({type(v).__name__}).")
    return float(v)


@dataclass(frozen=True)
class Rule:
    """A verdict rule: a kind, its parameters and a human-readable description.

    Build rules with the constructors (:func:`at_least`, :func:`within`, ...), not directly;
    :meth:`decide` maps the measured value(s) to ``(verdict, decided_by)``.

    Taught in the Introduction, section "Claims and verdicts".
    """

    kind: str
    params: dict
    description: str

    def decide(self, ours, source_value=None) -> tuple[str, str]:
        """``(verdict, decided_by)`` for the measured ``ours`` (and the source's number)."""
        return _DECIDERS[self.kind](self.params, ours, source_value)

    def to_dict(self) -> dict:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        params = dict(self.params)
        if self.kind == "all_of":
            params["rule"] = params["rule"].to_dict()
        return {"kind": self.kind, "params": params, "description": self.description}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Rule":
        """The rule written by :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "kind" not in data:
            raise ValueError(f"not a rule record: {data!r}.")
        kind = check_choice(data["kind"], "rule kind", _KINDS)
        params = dict(data.get("params", {}))
        if kind == "all_of":
            params["rule"] = cls.from_dict(params["rule"])
        return cls(kind, params, _text(data.get("description"), "rule description"))


# ---------------------------------------------------------------------------------- constructors

def _threshold_rule(kind, threshold, partly, unit):
    threshold = check_number(threshold, "threshold", minimum=None)
    if partly is not None:
        partly = check_number(partly, "partly", minimum=None)
        if (kind == "at_least" and partly > threshold) or (kind == "at_most" and partly < threshold):
            raise ValueError(f"partly={partly:g} must be on the weaker side of threshold={threshold:g} "
                             f"({'<=' if kind == 'at_least' else '>='} it).")
    op = ">=" if kind == "at_least" else "<="
    desc = f"reproduced if ours {op} {fmt(threshold)}{unit}"
    if partly is not None:
        desc += f", partly if {op} {fmt(partly)}{unit}"
    return Rule(kind, {"threshold": threshold, "partly": partly}, desc)


def at_least(threshold, partly=None, unit: str = "") -> Rule:
    """Reproduced if ours >= ``threshold``; partly if >= ``partly``; else not reproduced.

    Given several values (a list or a dict such as AUROC per data set) the smallest decides.

    Taught in the Introduction, section "Claims and verdicts".
    """
    return _threshold_rule("at_least", threshold, partly, unit)


def at_most(threshold, partly=None, unit: str = "") -> Rule:
    """Reproduced if ours <= ``threshold``; partly if <= ``partly``; else not reproduced.

    Given several values the largest decides.

    Taught in the Introduction, section "Claims and verdicts".
    """
    return _threshold_rule("at_most", threshold, partly, unit)


def within(target=None, rel=None, abs=None, partly_rel=None, partly_abs=None) -> Rule:
    """Reproduced if ours is within a tolerance of ``target`` (default: the source's number).

    Give ``rel`` (fraction of ``|target|``) or ``abs`` (absolute), and optionally a looser
    ``partly_rel`` / ``partly_abs`` for a partial reproduction.

    Taught in the Introduction, section "Claims and verdicts".
    """
    if target is not None:
        target = check_number(target, "target", minimum=None)
    if (rel is None) == (abs is None):
        raise ValueError("within needs exactly one of rel= (e.g. 0.1 for 10%) or abs= (e.g. 0.02).")
    if partly_rel is not None and partly_abs is not None:
        raise ValueError("give at most one of partly_rel= and partly_abs=.")
    tol = {k: (check_number(v, k, minimum=0.0, strict=False) if v is not None else None)
           for k, v in (("rel", rel), ("abs", abs), ("partly_rel", partly_rel),
                        ("partly_abs", partly_abs))}
    where = "the source's number" if target is None else fmt(target)

    def say(r, a):
        return f"{fmt(r * 100)}%" if r is not None else f"±{fmt(a)}"
    desc = f"reproduced if ours is within {say(tol['rel'], tol['abs'])} of {where}"
    if partly_rel is not None or partly_abs is not None:
        desc += f", partly if within {say(tol['partly_rel'], tol['partly_abs'])}"
    return Rule("within", {"target": target, **tol}, desc)


def same_sign(expected: str | None = None) -> Rule:
    """Reproduced if ours has the expected sign (``"positive"`` / ``"negative"``), else not.

    Without ``expected`` the sign of the source's number is expected.

    Taught in the Introduction, section "Claims and verdicts".
    """
    if expected is not None:
        check_choice(expected, "expected", ("positive", "negative"))
    what = expected or "the sign of the source's number"
    return Rule("same_sign", {"expected": expected}, f"reproduced if ours is {what}")


def direction_is(expected: str) -> Rule:
    """For a sequence (e.g. accuracy per severity): reproduced if it moves as ``expected``
    (``"rises"`` / ``"falls"``) at every step, partly if only from first to last value.

    Taught in the Introduction, section "Claims and verdicts".
    """
    check_choice(expected, "expected", ("rises", "falls"))
    return Rule("direction", {"expected": expected},
                f"reproduced if ours {expected} at every step, partly if it {expected} "
                "from the first value to the last")


def all_of(rule: Rule, over: str = "values") -> Rule:
    """Apply ``rule`` to each of several values (a dict or list); the worst verdict decides.

    ``over`` names what the values are (``"data sets"``, ``"seeds"``) in the description.
    :func:`at_least` / :func:`at_most` do this by themselves when given several values.

    Taught in the Introduction, section "Claims and verdicts".
    """
    if not isinstance(rule, Rule) or rule.kind in ("all_of", "not_comparable"):
        raise TypeError("all_of takes one rule such as at_least(0.8) or within(abs=0.02).")
    over = _text(over, "over")
    return Rule("all_of", {"rule": rule, "over": over},
                f"for every one of the {over}: {rule.description}; the worst decides")


def ranking(expected: Sequence[str], higher_is_better: bool = True) -> Rule:
    """Reproduced if ours (a dict name -> score) ranks ``expected`` in that order (best
    first); partly if at least the best one is first; else not reproduced.

    Taught in the Introduction, section "Claims and verdicts".
    """
    if isinstance(expected, str) or not isinstance(expected, Sequence) or len(expected) < 2:
        raise TypeError("expected must be a list of at least two names, best first.")
    names = [_text(n, "expected name") for n in expected]
    if len(set(names)) != len(names):
        raise ValueError(f"expected names repeat: {names}.")
    check_bool(higher_is_better, "higher_is_better")
    return Rule("ranking", {"expected": names, "higher_is_better": higher_is_better},
                # the sign between the names is the one between their scores: > when higher is better
                f"reproduced if ours orders them {(' > ' if higher_is_better else ' < ').join(names)} "
                f"({'higher' if higher_is_better else 'lower'} is better), partly if {names[0]} "
                "is first")


def not_comparable(reason: str) -> Rule:
    """The verdict is ``not comparable``, for the stated ``reason`` (different metric, no
    number in the source, a protocol too far apart).

    Taught in the Introduction, section "Claims and verdicts".
    """
    reason = _text(reason, "reason")
    return Rule("not_comparable", {"reason": reason}, f"not comparable: {reason}")


# ---------------------------------------------------------------------------------- deciders

def _many(ours):
    """``[(label, value), ...]`` for a dict / list of values, else ``None``."""
    if isinstance(ours, Mapping):
        return [(str(k), v) for k, v in ours.items()]
    if hasattr(ours, "tolist") and getattr(ours, "ndim", 0) >= 1:
        ours = ours.tolist()
    if isinstance(ours, (list, tuple)):
        return [(f"#{i}", v) for i, v in enumerate(ours)]
    return None


def _worst(params, ours, source_value, inner: Rule, over: str):
    items = _many(ours)
    if not items:
        raise ValueError(f"the rule applies to several {over}; pass ours as a non-empty dict or list.")
    results = [(label, v, *inner.decide(v, source_value)) for label, v in items]
    sign = {"at_least": -1, "at_most": 1}.get(inner.kind, 0)  # ties: the weakest value decides

    def badness(r):
        value = r[1] if _is_number(r[1]) and not math.isnan(float(r[1])) else 0.0
        return (_SEVERITY[r[2]], sign * float(value))
    label, v, verdict, why = max(results, key=badness)
    counts = sum(r[2] == REPRODUCED for r in results)
    return verdict, f"worst of {len(results)} {over}: {label} ({why}); {counts}/{len(results)} reproduced"


def _threshold(kind):
    def decide(p, ours, source_value):
        if _many(ours) is not None:
            inner = Rule(kind, p, "")
            return _worst(p, ours, source_value, inner, "values")
        x = _number(ours, "ours")
        if math.isnan(x):
            return NOT_COMPARABLE, "ours is NaN"
        ok = (lambda t: x >= t) if kind == "at_least" else (lambda t: x <= t)
        op, nop = (">=", "<") if kind == "at_least" else ("<=", ">")
        if ok(p["threshold"]):
            return REPRODUCED, f"{fmt(x)} {op} {fmt(p['threshold'])}"
        if p["partly"] is not None and ok(p["partly"]):
            return PARTLY, f"{fmt(x)} {nop} {fmt(p['threshold'])} but {op} {fmt(p['partly'])}"
        return NOT_REPRODUCED, f"{fmt(x)} {nop} {fmt(p['partly'] if p['partly'] is not None else p['threshold'])}"
    return decide


def _within(p, ours, source_value):
    target = p["target"] if p["target"] is not None else source_value
    if target is None or isinstance(target, str):
        raise ValueError("within() without a target needs the claim's source_value to be a number.")
    target = _number(target, "target")
    x = _number(ours, "ours")
    if math.isnan(x):
        return NOT_COMPARABLE, "ours is NaN"
    gap = abs(x - target)

    def tol(r, a):
        return r * abs(target) if r is not None else a
    main = tol(p["rel"], p["abs"])
    loose = tol(p["partly_rel"], p["partly_abs"]) if (p["partly_rel"] is not None or
                                                      p["partly_abs"] is not None) else None
    said = f"|{fmt(x)} - {fmt(target)}| = {fmt(gap)}"
    if gap <= main:
        return REPRODUCED, f"{said} <= {fmt(main)}"
    if loose is not None and gap <= loose:
        return PARTLY, f"{said} > {fmt(main)} but <= {fmt(loose)}"
    return NOT_REPRODUCED, f"{said} > {fmt(loose if loose is not None else main)}"


def _same_sign(p, ours, source_value):
    x = _number(ours, "ours")
    if math.isnan(x):
        return NOT_COMPARABLE, "ours is NaN"
    expected = p["expected"]
    if expected is None:
        if source_value is None or isinstance(source_value, str) or _number(source_value, "source_value") == 0:
            raise ValueError("same_sign() without expected= needs a non-zero numeric source_value.")
        expected = "positive" if _number(source_value, "source_value") > 0 else "negative"
    ok = x > 0 if expected == "positive" else x < 0
    return (REPRODUCED if ok else NOT_REPRODUCED), f"ours = {fmt(x)}, expected {expected}"


def _direction(p, ours, source_value):
    items = _many(ours)
    if not items or len(items) < 2:
        raise ValueError("direction_is() needs ours as a list (or dict) of at least two values in order.")
    vals = [_number(v, f"ours[{k}]") for k, v in items]
    if any(math.isnan(v) for v in vals):
        return NOT_COMPARABLE, "ours contains NaN"
    sign = 1 if p["expected"] == "rises" else -1
    steps = [sign * (b - a) for a, b in zip(vals, vals[1:])]
    shown = " -> ".join(fmt(v) for v in vals)
    if all(s > 0 for s in steps):
        return REPRODUCED, f"{shown}: {p['expected']} at every step"
    if sign * (vals[-1] - vals[0]) > 0:
        bad = sum(s <= 0 for s in steps)
        return PARTLY, f"{shown}: {p['expected']} overall, not at {bad} of {len(steps)} steps"
    return NOT_REPRODUCED, f"{shown}: does not {p['expected'][:-1]} from first to last"


def _all_of(p, ours, source_value):
    return _worst(p, ours, source_value, p["rule"], p["over"])


def _ranking(p, ours, source_value):
    if not isinstance(ours, Mapping):
        raise TypeError("ranking() needs ours as a dict name -> score.")
    missing = [n for n in p["expected"] if n not in ours]
    if missing:
        raise ValueError(f"ours lacks scores for {missing}; it has {list(ours)}.")
    scores = {n: _number(ours[n], f"ours[{n!r}]") for n in p["expected"]}
    if any(math.isnan(v) for v in scores.values()):
        return NOT_COMPARABLE, "a score is NaN"
    order = sorted(scores, key=lambda n: -scores[n] if p["higher_is_better"] else scores[n])
    shown = (" > " if p["higher_is_better"] else " < ").join(f"{n} ({fmt(scores[n])})" for n in order)
    if order == p["expected"]:
        return REPRODUCED, f"ours: {shown}"
    if order[0] == p["expected"][0]:
        return PARTLY, f"ours: {shown}; first as expected, the rest differ"
    return NOT_REPRODUCED, f"ours: {shown}"


def _not_comparable(p, ours, source_value):
    return NOT_COMPARABLE, p["reason"]


_DECIDERS = {"at_least": _threshold("at_least"), "at_most": _threshold("at_most"),
             "within": _within, "same_sign": _same_sign, "direction": _direction,
             "all_of": _all_of, "ranking": _ranking, "not_comparable": _not_comparable}


# ---------------------------------------------------------------------------------- rows

def section_anchor(section: str) -> str:
    """The HTML id Sphinx gives the heading ``section`` (``"3. A suite of novel data"`` ->
    ``"a-suite-of-novel-data"``), for links back to a chapter's section.

    Taught in the Introduction, section "Claims and verdicts".
    """
    from docutils.nodes import make_id
    return make_id(_text(section, "section"))


def _jsonable(v, name):
    """Numbers, strings, lists and dicts of them, as JSON-ready values."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x, name) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, name) for x in v]
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        raise TypeError(f"{name} must be a number or text, got a boolean ({v}); a claims row "
                        "records the number the verdict comes from, not True/False.")
    if _is_number(v):
        return int(v) if float(v).is_integer() and not isinstance(v, float) else float(v)
    raise TypeError(f"{name} must be a number, text, or a list/dict of numbers; got {type(v).__name__}.")


def _show(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {_show(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_show(x) for x in v)
    return fmt(v) if not isinstance(v, str) else v


@dataclass
class Claim:
    """One row: a claim, its source, the source's number, ours, the protocol difference, the
    rule and the verdict the rule computes (``verdict``, ``decided_by``; set on creation).

    ``section`` is the heading of the chapter section that tests the claim (its text, as
    written; the link anchor is :func:`section_anchor` of it).

    Taught in the Introduction, section "Claims and verdicts".
    """

    claim: str
    source: str
    ours: Any
    protocol: str
    rule: Rule
    source_value: Any = None
    section: str = ""
    verdict: str = field(init=False)
    decided_by: str = field(init=False)

    def __post_init__(self):
        self.claim = _text(self.claim, "claim")
        self.source = _text(self.source, "source")
        self.protocol = _text(self.protocol, "protocol")
        self.section = _text(self.section, "section", required=False)
        if not isinstance(self.rule, Rule):
            raise TypeError(f"rule must be a Rule made by at_least(), at_most(), within(), same_sign(), "
                            f"direction_is(), all_of(), ranking() or not_comparable(); got {self.rule!r}.")
        self.ours = _jsonable(self.ours, "ours")
        self.source_value = _jsonable(self.source_value, "source_value")
        if self.ours is None and self.rule.kind != "not_comparable":
            raise ValueError("ours is None: record the measured number, or use not_comparable(reason).")
        self.verdict, self.decided_by = self.rule.decide(self.ours, self.source_value)

    def to_dict(self) -> dict:
        """A JSON-ready dict (the verdict included)."""
        return {"claim": self.claim, "source": self.source, "source_value": self.source_value,
                "ours": self.ours, "protocol": self.protocol, "rule": self.rule.to_dict(),
                "section": self.section, "anchor": section_anchor(self.section) if self.section else "",
                "verdict": self.verdict, "decided_by": self.decided_by}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Claim":
        """The row written by :meth:`to_dict`; the verdict is computed again from the numbers."""
        return cls(claim=data.get("claim"), source=data.get("source"), ours=data.get("ours"),
                   protocol=data.get("protocol"), rule=Rule.from_dict(data.get("rule") or {}),
                   source_value=data.get("source_value"), section=data.get("section") or "")

    def sentence(self) -> str:
        """``"Reproduced: 0.93 >= 0.9 (rule: ...)."``, Markdown for the chapter's prose."""
        return f"**{self.verdict.capitalize()}**: {self.decided_by} (rule: {self.rule.description})."


_CSS = ("<style>.rni-claims{table-layout:fixed;width:100%;border-collapse:collapse;font-size:.85em}"
        ".rni-claims th,.rni-claims td{vertical-align:top;padding:.3em .4em;overflow-wrap:anywhere;"
        "word-break:normal;white-space:normal;text-align:left;border-bottom:1px solid "
        "rgba(127,127,127,.35);color:inherit;background:transparent}"
        ".rni-verdict{font-weight:bold;white-space:nowrap}"
        ".rni-v-reproduced{color:#2e7d32}.rni-v-partly{color:#b26a00}"
        ".rni-v-not-reproduced{color:#c62828}.rni-v-not-comparable{color:#757575}"
        ".rni-rule{opacity:.8;font-size:.9em}</style>")


def _verdict_html(verdict: str) -> str:
    """The verdict as a coloured ``<span>`` (theme's text colours kept elsewhere)."""
    return (f'<span class="rni-verdict rni-v-{verdict.replace(" ", "-")}">'
            f"{html.escape(verdict)}</span>")


class ClaimsTable:
    """The claims of one chapter: add rows, display them, save them for the scoreboard.

    Taught in the Introduction, section "Claims and verdicts".
    """

    def __init__(self, chapter: str, profile: str | None = None):
        self.chapter = check_name(chapter, "chapter")
        self.profile = profile if profile is not None else os.environ.get("RNI_PROFILE", "")
        if not isinstance(self.profile, str):
            raise TypeError(f"profile must be a string such as 'smoke', got {profile!r}.")
        self.claims: list[Claim] = []

    def add(self, claim: str, source: str, ours, protocol: str, rule: Rule, source_value=None,
            section: str = "") -> Claim:
        """Build a :class:`Claim` from the arguments, append it and return it."""
        row = Claim(claim=claim, source=source, ours=ours, protocol=protocol, rule=rule,
                    source_value=source_value, section=section)
        self.claims.append(row)
        return row

    def __len__(self) -> int:
        return len(self.claims)

    def counts(self) -> dict[str, int]:
        """Rows per verdict, every verdict present (zeros included), in :data:`VERDICTS` order."""
        return {v: sum(c.verdict == v for c in self.claims) for v in VERDICTS}

    def to_frame(self):
        """A pandas DataFrame, one row per claim, one column per field."""
        import pandas as pd
        cols = ["claim", "section", "source", "source_value", "ours", "protocol", "rule",
                "verdict", "decided_by"]
        rows = [{**c.to_dict(), "rule": c.rule.description,
                 "source_value": _show(c.source_value) if c.source_value is not None else None,
                 "ours": _show(c.ours)} for c in self.claims]
        return pd.DataFrame(rows, columns=cols)

    def to_html(self) -> str:
        """A plain HTML table that wraps long text and keeps the book theme's colours."""
        esc = html.escape
        head = ("<tr><th style='width:26%'>Claim</th><th style='width:18%'>Source</th>"
                "<th style='width:14%'>Ours</th><th style='width:16%'>Protocol difference</th>"
                "<th style='width:26%'>Verdict</th></tr>")
        body = []
        for c in self.claims:
            src = esc(c.source) + (f"<br>source: {esc(_show(c.source_value))}"
                                   if c.source_value is not None else "")
            body.append(f"<tr><td>{esc(c.claim)}</td><td>{src}</td><td>{esc(_show(c.ours))}</td>"
                        f"<td>{esc(c.protocol)}</td><td>{_verdict_html(c.verdict)}: "
                        f"{esc(c.decided_by)}<div class='rni-rule'>rule: {esc(c.rule.description)}"
                        "</div></td></tr>")
        counts = ", ".join(f"{n} {v}" for v, n in self.counts().items() if n)
        caption = f"<caption>Claims of this chapter: {esc(counts or 'none yet')}</caption>"
        return f"{_CSS}<table class='rni-claims'>{caption}<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_dict(self) -> dict:
        """A JSON-ready dict: chapter, profile, counts and rows."""
        return {"chapter": self.chapter, "profile": self.profile, "counts": self.counts(),
                "claims": [c.to_dict() for c in self.claims]}

    def to_json(self, path) -> Path:
        """Write :meth:`to_dict` to ``path`` (atomically) and return the path."""
        from .runner import write_json_atomic
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_json(cls, path) -> "ClaimsTable":
        """Read a table written by :meth:`to_json`; verdicts are recomputed from the numbers."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, Mapping) or "chapter" not in data or not isinstance(data.get("claims"), list):
            raise ValueError(f"{path} is not a claims file (it needs 'chapter' and a 'claims' list).")
        table = cls(data["chapter"], profile=data.get("profile") or "")
        table.claims = [Claim.from_dict(row) for row in data["claims"]]
        return table

    def save(self, folder=None) -> Path:
        """Write ``<chapter>.claims.json`` into ``folder``, else ``$RNI_CLAIMS_DIR``, else the
        working directory; returns the path. The runner collects it into the scoreboard."""
        folder = Path(folder) if folder is not None else Path(os.environ.get(CLAIMS_DIR_ENV) or ".")
        return self.to_json(folder / f"{self.chapter}.claims.json")
