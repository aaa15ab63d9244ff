"""Tests of robust_utils.runner: tiny throwaway notebooks run through papermill."""
from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from robust_utils import runner


def _notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in cells:
        cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nbformat.write(nb, path)


PARAMS = ('PROFILE = "auto"\nDEVICE = "auto"\nSEED = 0', ["parameters"])


@pytest.fixture
def books(tmp_path):
    """A notebooks folder with a good notebook and a failing one, and an output folder."""
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(src / "01_good.ipynb", [
        ("markdown", "# Good", None),
        ("code", *PARAMS),
        ("code", "import os, pathlib\n"
                 "assert PROFILE == 'smoke', PROFILE\n"
                 "assert DEVICE == 'cpu', DEVICE\n"
                 "assert os.environ['RNI_PROFILE'] == 'smoke'\n"
                 "pathlib.Path('written.txt').write_text(PROFILE)\n"
                 "print('hello from', PROFILE)", None),
    ])
    _notebook(src / "02_bad.ipynb", [
        ("code", *PARAMS),
        ("code", "x = 1", None),
        ("code", "raise ValueError('boom in the second code cell')", None),
        ("code", "print('never reached')", None),
    ])
    return src, tmp_path / "out"


def test_list_notebooks_sorted_and_filtered(books):
    src, _ = books
    (src / ".hidden.ipynb").write_text("{}")
    (src / "_draft.ipynb").write_text("{}")
    assert runner.list_notebooks(src) == ["01_good", "02_bad"]


def test_list_notebooks_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runner.list_notebooks(tmp_path / "nope")


def test_run_good_notebook_writes_copy_and_summary(books):
    src, out = books
    records = runner.run_notebooks(["01_good"], profile="smoke", device="cpu", output_dir=out,
                                   notebooks_dir=src, echo=False)
    assert [r["status"] for r in records] == ["ok"]
    rec = records[0]
    assert rec["notebook"] == "01_good" and rec["profile"] == "smoke" and rec["device"] == "cpu"
    assert rec["error"] is None and rec["seconds"] >= 0
    # the working directory was the notebooks folder
    assert (src / "written.txt").read_text() == "smoke"
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)
    texts = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert any("hello from smoke" in t for t in texts)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'PROFILE = "smoke"' in injected[0].source
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["profile"] == "smoke" and summary["device"] == "cpu"
    assert summary["notebooks"] == records
    assert "torch" in summary["host"] and "cuda_device" in summary["host"]
    assert summary["timestamp"]
    # no temporary files left behind by the atomic write
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failure_stops_names_notebook_and_keeps_copy(books, tmp_path):
    src, out = books
    summary_path = tmp_path / "s" / "summary.json"
    _notebook(src / "03_after.ipynb", [("code", *PARAMS)])
    with pytest.raises(runner.NotebookFailed, match="02_bad.*boom") as info:
        runner.run_notebooks(None, profile="smoke", device="cpu", output_dir=out,
                             summary_path=summary_path, notebooks_dir=src, echo=False)
    assert info.value.notebook == "02_bad"
    assert info.value.output_path.exists()  # failed executed copy kept
    summary = json.loads(summary_path.read_text())
    status = {r["notebook"]: r["status"] for r in summary["notebooks"]}
    assert status == {"01_good": "ok", "02_bad": "failed", "03_after": "skipped"}
    bad = summary["notebooks"][1]
    assert "ValueError" in bad["error"] and "boom" in bad["error"]
    assert not (out / "03_after.ipynb").exists()


def test_keep_going_runs_the_rest_then_raises(books):
    src, out = books
    _notebook(src / "03_after.ipynb", [("code", *PARAMS)])
    with pytest.raises(runner.NotebookFailed, match="1 notebook\\(s\\) failed: 02_bad"):
        runner.run_notebooks(None, profile="smoke", device="cpu", output_dir=out,
                             notebooks_dir=src, keep_going=True, echo=False)
    summary = json.loads((out / "run_summary.json").read_text())
    assert [r["status"] for r in summary["notebooks"]] == ["ok", "failed", "ok"]


def test_unknown_name_lists_valid_names(books):
    src, out = books
    with pytest.raises(ValueError, match=r"unknown notebook name\(s\) \['99_nope'\].*01_good, 02_bad"):
        runner.run_notebooks(["99_nope"], profile="smoke", output_dir=out, notebooks_dir=src)


def test_unknown_profile_and_device(books):
    src, out = books
    with pytest.raises(ValueError, match="unknown profile 'huge'.*smoke"):
        runner.run_notebooks(None, profile="huge", output_dir=out, notebooks_dir=src)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runner.run_notebooks(None, profile="smoke", device="tpu", output_dir=out, notebooks_dir=src)
    with pytest.raises(ValueError, match="timeout"):
        runner.run_notebooks(None, profile="smoke", device="cpu", output_dir=out,
                             notebooks_dir=src, timeout=0)


def test_auto_profile_resolved_from_environment(books, monkeypatch):
    src, out = books
    monkeypatch.setenv("RNI_PROFILE", "smoke")
    records = runner.run_notebooks(["01_good.ipynb"], profile="auto", device="cpu", output_dir=out,
                                   notebooks_dir=src, echo=False)
    assert records[0]["profile"] == "smoke" and records[0]["status"] == "ok"


def test_cli_exit_codes(books, tmp_path):
    src, out = books
    base = [sys.executable, "-m", "robust_utils.runner", "--notebooks-dir", str(src),
            "--output-dir", str(out), "--device", "cpu", "--profile", "smoke"]
    bad = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "02_bad" in bad.stderr and "FAILED" in bad.stderr and "boom" in bad.stderr
    unknown = subprocess.run(base + ["--only", "nope"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "01_good, 02_bad" in unknown.stderr
    wrong_profile = subprocess.run(base + ["--profile", "huge"], capture_output=True, text=True,
                                   timeout=60)
    assert wrong_profile.returncode == 2 and "invalid choice" in wrong_profile.stderr
    listed = subprocess.run(base + ["--list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and listed.stdout.split() == ["01_good", "02_bad"]


# ---------------------------------------------------------------------------------------------
# what the runner does to executed copies: clean outputs, banner, claims, widgets, timeouts

@pytest.fixture
def rich_book(tmp_path):
    """A notebook that prints to stderr, shows a progress bar, builds a widget, has a check
    cell and saves its claims."""
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(src / "01_rich.ipynb", [
        ("markdown", "[Open in Colab](https://example.org)", ["colab-badge"]),
        ("markdown", "# Part 1 — Rich\n\n## 5. Gradients at inference", None),
        ("code", *PARAMS),
        ("code", "import os, sys\n"
                 "from robust_utils.config import progress_bar\n"
                 "from robust_utils.interactive import explore, widgets_enabled\n"
                 "print('result line')\n"
                 "print('a warning', file=sys.stderr)\n"
                 "for _ in progress_bar(range(3), desc='bar'): pass\n"
                 "env = {k: os.environ.get(k) for k in ('RNI_PROGRESS', 'RNI_WIDGETS', 'RNI_CLAIMS_DIR')}\n"
                 "print(env)", None),
        ("code", "import ipywidgets as widgets\n"
                 "explore(lambda level: print('drawn at level', level),\n"
                 "        level=widgets.IntSlider(value=3, min=0, max=5))", None),
        ("code", "assert 1 + 1 == 2", ["check"]),
        ("code", "from robust_utils.claims import ClaimsTable, at_least\n"
                 "t = ClaimsTable('01_rich')\n"
                 "t.add('detects', 'MIPR slides, \"Detection\"', {'a': 0.9, 'b': 0.401}, 'smaller',\n"
                 "      at_least(0.8), section='5. Gradients at inference')\n"
                 "print(t.save())", None),
    ])
    return src, tmp_path / "out"


def test_executed_copy_is_clean_with_banner_and_claims(rich_book):
    from robust_utils import render
    src, out = rich_book
    records = runner.run_notebooks(["01_rich"], profile="smoke", device="cpu", output_dir=out,
                                   notebooks_dir=src, echo=False)
    rec = records[0]
    assert rec["status"] == "ok" and rec["timeout"] == 600
    assert rec["claims"] == str(out / "01_rich.claims.json")
    assert rec["claims_counts"]["not reproduced"] == 1
    nb = nbformat.read(out / "01_rich.ipynb", as_version=4)
    assert render.dirty_outputs(nb) == []
    streams = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    assert all(o.name == "stdout" for o in streams)
    text = "".join(o.text for o in streams)
    assert "result line" in text and "a warning" not in text and "bar" not in text
    assert "'RNI_PROGRESS': 'off'" in text and "'RNI_WIDGETS': 'static'" in text
    assert "drawn at level 3" in text  # the widget cell drew once, statically
    tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
    assert "injected-parameters" in tags
    for c in nb.cells:
        t = c.metadata.get("tags", [])
        if {"parameters", "injected-parameters", "check"} & set(t):
            assert "remove-cell" in t, t
    # banner right under the title, a warning for smoke
    assert render.BANNER_TAG in nb.cells[2].metadata["tags"]
    banner = nb.cells[2].source
    assert "Profile **smoke**" in banner and "device **cpu**" in banner and ":class: warning" in banner
    assert "only show that the code runs" in banner and "`robust_utils` 0." in banner
    board = (out / "scoreboard.md").read_text()
    assert "01_rich.html#gradients-at-inference" in board and "Part 1 — Rich" in board


def test_stale_claims_are_not_recorded(books):
    src, out = books
    out.mkdir()
    (out / "01_good.claims.json").write_text('{"chapter": "01_good", "claims": []}')
    rec = runner.run_notebooks(["01_good"], profile="smoke", device="cpu", output_dir=out,
                               notebooks_dir=src, echo=False)[0]
    assert rec["claims"] is None and not (out / "01_good.claims.json").exists()
    assert "No chapter of this build recorded rule-based claims" in (out / "scoreboard.md").read_text()


def test_default_timeout_per_profile(books, monkeypatch):
    import papermill
    src, out = books
    seen = []
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda *a, **kw: (seen.append(kw["execution_timeout"]),
                                          nbformat.write(nbformat.read(a[0], as_version=4), a[1])))
    for profile, expected in (("smoke", 600), ("laptop", 1800)):
        runner.run_notebooks(["01_good"], profile=profile, device="cpu", output_dir=out,
                             notebooks_dir=src, echo=False)
        assert seen[-1] == expected
    runner.run_notebooks(["01_good"], profile="smoke", device="cpu", output_dir=out,
                         notebooks_dir=src, echo=False, timeout=42)
    assert seen[-1] == 42


def test_widgets_interactive_outside_the_runner(monkeypatch):
    from robust_utils import interactive
    monkeypatch.delenv("RNI_WIDGETS", raising=False)
    assert interactive.widgets_enabled()
    monkeypatch.setenv("RNI_WIDGETS", "static")
    assert not interactive.widgets_enabled()
    assert interactive.explore(lambda a, b, c: (a, b, c), a=[("x", 7), ("y", 8)], b=["p", "q"], c=5) == (7, "p", 5)
    with pytest.raises(TypeError, match="callable"):
        interactive.explore(3)


def test_progress_bar_off(monkeypatch, capsys):
    from robust_utils.config import progress_bar
    monkeypatch.setenv("RNI_PROGRESS", "off")
    assert list(progress_bar(range(4))) == [0, 1, 2, 3]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_chapter_recipe_sets_map_notebooks_to_parts():
    assert runner.chapter_recipe_sets(["01_inference", "02_x.ipynb", "01_again", "intro", "99_none"]) == \
        ["part1", "part2"]
    assert runner.chapter_recipe_sets([]) == []


def test_prebuild_builds_the_chapters_models_first_and_times_them(books, monkeypatch):
    from robust_utils import cache, recipes
    src, out = books
    calls = []

    def fake_build(rs, *, device="auto", progress=True, **kw):
        (label, r), = rs.items()
        calls.append((label, r.key, device))
        return [{"label": label, "key": r.key, "status": "cached", "seconds": 0.01, "device": device,
                 "recipe": {"dropped": True}}]

    monkeypatch.setattr(cache, "build", fake_build)
    records = runner.run_notebooks(["01_good"], profile="smoke", device="cpu", output_dir=out,
                                   notebooks_dir=src, echo=False, prebuild=True)
    assert [r["status"] for r in records] == ["ok"]
    expected = {r.key for r in recipes.recipe_set("part1", "smoke").values()}
    assert {k for _, k, _ in calls} == expected and len(calls) == len(expected)
    assert all(lbl.startswith("part1: ") and dev == "cpu" for lbl, _, dev in calls)
    summary = json.loads((out / "run_summary.json").read_text())
    assert [m["key"] for m in summary["models"]] == [k for _, k, _ in calls]
    assert all("recipe" not in m for m in summary["models"])
    assert summary["prebuild_seconds"] is not None and summary["prebuild_seconds"] >= 0
    # without --prebuild nothing is built and the summary says so
    calls.clear()
    runner.run_notebooks(["01_good"], profile="smoke", device="cpu", output_dir=out, notebooks_dir=src, echo=False)
    summary = json.loads((out / "run_summary.json").read_text())
    assert calls == [] and summary["models"] == [] and summary["prebuild_seconds"] is None
