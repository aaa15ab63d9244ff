#!/usr/bin/env python3
"""Keep the first cells of every notebook in sync with ``book/_config.yml``.

Every notebook in ``notebooks/`` starts with, in order:

1. a markdown cell tagged ``colab-badge``: an "Open in Colab" text link for this very file (a
   link, not the badge image, which would render broken in a book read offline);
2. the title (a markdown cell starting with ``#``), written by the author;
3. a code cell tagged ``parameters`` defining ``PROFILE = "auto"``, ``DEVICE = "auto"``,
   ``SEED = 0`` (papermill overrides them; authors may add more parameters below them);
4. a code cell tagged ``setup``: in Colab, pip-install the book's package from the repository;
   everywhere, resolve the profile and the device and seed everything.

The repository address and branch live in ONE place, ``repository.url`` and
``repository.branch`` of ``book/_config.yml``; this tool writes them into cells 1 and 4.
It also strips outputs and execution counts and sets the ``python3`` kernelspec.

Usage::

    python tools/sync_notebooks.py            # rewrite notebooks/*.ipynb in place
    python tools/sync_notebooks.py --check    # exit 1 listing notebooks that are out of sync
    python tools/sync_notebooks.py notebooks/01_inference.ipynb
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import uuid
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "book" / "_config.yml"
NOTEBOOKS = ROOT / "notebooks"

BADGE_TAG, PARAMETERS_TAG, SETUP_TAG = "colab-badge", "parameters", "setup"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
PARAMETER_DEFAULTS = {"PROFILE": '"auto"', "DEVICE": '"auto"', "SEED": "0"}
# cell metadata written by papermill / Jupyter that must not be committed
VOLATILE_CELL_METADATA = ("execution", "papermill", "collapsed", "scrolled", "ExecuteTime")
VOLATILE_NB_METADATA = ("papermill", "widgets", "toc-autonumbering")
# `NAME = value  # optional comment`, for the parameters cell
_PARAM_LINE = re.compile(r"""^(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^#\s]+)"""
                         r"(?P<comment>\s+#.*)?\s*$")


def read_repository(config_path: Path = CONFIG) -> tuple[str, str]:
    """``(url, branch)`` from ``repository`` in the book's ``_config.yml``."""
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; it holds repository.url and repository.branch.")
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    repo = cfg.get("repository") or {}
    url, branch = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", "")).strip()
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"repository.url in {config_path} must look like "
                         f"https://github.com/<owner>/<repo>, got {url!r}.")
    if not branch:
        raise ValueError(f"repository.branch is missing in {config_path}.")
    return url.removesuffix(".git"), branch


def badge_source(url: str, branch: str, filename: str) -> str:
    """Markdown of the "Open in Colab" link for ``notebooks/<filename>``.

    A text link, not Colab's badge image: the image comes from the internet and would show as
    a broken image in a book read offline.
    """
    owner_repo = url.removeprefix("https://github.com/")
    target = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{filename}"
    return f"**[Open this chapter in Colab]({target})** (runs it on Google's machines)."


def setup_source(url: str, branch: str) -> str:
    """Python source of the setup cell (plain Python: no magics)."""
    return f'''\
# Setup (written by tools/sync_notebooks.py: edit the tool, not this cell)
import sys

if "google.colab" in sys.modules:  # in Colab: install the book's package from the repository
    import subprocess

    _package = "git+{url}@{branch}"
    _pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", _package],
                          capture_output=True, text=True)
    print(_pip.stdout + _pip.stderr)
    _pip.check_returncode()  # never hide an install failure

import torch
from robust_utils.config import resolve_profile, pick_device, seed_everything

profile = resolve_profile(PROFILE)
device = pick_device(DEVICE)
seed_everything(SEED)
print(f"profile: {{profile.name}} {{profile.as_dict()}}")
print(f"device: {{device}}, torch {{torch.__version__}}, seed {{SEED}}")'''


def parameters_source(existing: str | None = None) -> str:
    """The parameters cell: the three defaults first, then any other lines the author wrote.

    An author's trailing comment on a default line is kept (``PROFILE = "auto"  # smoke | ...``);
    a changed value (``PROFILE = "smoke"``) is reset to the committed default.
    """
    comments = {}
    extra = []
    for line in (existing or "").splitlines():
        m = _PARAM_LINE.match(line)
        if m and m.group("name") in PARAMETER_DEFAULTS and m.group("name") not in comments:
            comments[m.group("name")] = m.group("comment") or ""
        else:
            extra.append(line)
    while extra and not extra[0].strip():
        extra.pop(0)
    lines = [f"{k} = {v}{comments.get(k, '')}" for k, v in PARAMETER_DEFAULTS.items()]
    return "\n".join(lines + extra).rstrip()


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def _tagged(source: str, kind: str, tag: str, cell_id: str):
    cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [tag]
    cell["id"] = cell_id
    return cell


def _is_title(cell) -> bool:
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith("# ")


def sync_notebook(nb, filename: str, url: str, branch: str):
    """Return a synced copy of ``nb`` (does not modify the argument)."""
    nb = copy.deepcopy(nb)
    found = {BADGE_TAG: None, PARAMETERS_TAG: None, SETUP_TAG: None}
    rest = []
    for cell in nb.cells:
        tag = next((t for t in (BADGE_TAG, PARAMETERS_TAG, SETUP_TAG) if t in _tags(cell)), None)
        if tag is not None and found[tag] is None:
            found[tag] = cell
        else:
            rest.append(cell)

    badge = found[BADGE_TAG] or _tagged("", "markdown", BADGE_TAG, "colab-badge")
    if badge.cell_type != "markdown":
        badge = _tagged("", "markdown", BADGE_TAG, badge.get("id", "colab-badge"))
    badge.source = badge_source(url, branch, filename)

    params = found[PARAMETERS_TAG] or _tagged("", "code", PARAMETERS_TAG, "parameters")
    params.source = parameters_source(params.source if found[PARAMETERS_TAG] else None)

    setup = found[SETUP_TAG] or _tagged("", "code", SETUP_TAG, "setup")
    setup.source = setup_source(url, branch)
    # The rendered book folds the setup cell's code away (its printed output stays visible).
    setup.metadata["tags"] = [SETUP_TAG, "hide-input"]

    head = [badge]
    if rest and _is_title(rest[0]):
        head.append(rest.pop(0))
    nb.cells = head + [params, setup] + rest

    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if not cell.metadata.get("tags", True):
            cell.metadata.pop("tags")
    for key in VOLATILE_NB_METADATA:
        nb.metadata.pop(key, None)
    if nb.nbformat == 4 and nb.nbformat_minor < 5:  # cell ids (nbformat 4.5) for every cell
        nb.nbformat_minor = 5
    used = {c.get("id") for c in nb.cells}
    for cell in nb.cells:
        if not cell.get("id"):
            cell["id"] = next(i for i in (uuid.uuid4().hex[:8] for _ in iter(int, 1)) if i not in used)
            used.add(cell["id"])
    if nb.metadata.get("kernelspec", {}).get("name") != KERNELSPEC["name"]:
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def _as_json(nb) -> dict:
    return json.loads(nbformat.writes(nb))


def out_of_sync(paths, url: str, branch: str) -> list[Path]:
    """The notebooks among ``paths`` that :func:`sync_notebook` would change."""
    stale = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if _as_json(sync_notebook(nb, path.name, url, branch)) != _as_json(nb):
            stale.append(path)
    return stale


def notebook_paths(folder: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 listing notebooks that are out of sync")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the book's _config.yml")
    args = parser.parse_args(argv)

    url, branch = read_repository(args.config)
    paths = args.paths or notebook_paths()
    if not paths:
        print("sync_notebooks: no notebooks found.")
        return 0
    if args.check:
        stale = out_of_sync(paths, url, branch)
        if stale:
            print("sync_notebooks: out of sync (run `python tools/sync_notebooks.py`):", file=sys.stderr)
            for p in stale:
                print(f"  {p}", file=sys.stderr)
            return 1
        print(f"sync_notebooks: {len(paths)} notebook(s) in sync.")
        return 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        synced = sync_notebook(nb, path.name, url, branch)
        if _as_json(synced) != _as_json(nb):
            nbformat.validate(synced)
            nbformat.write(synced, path)
            print(f"sync_notebooks: rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
