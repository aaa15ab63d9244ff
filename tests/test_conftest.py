"""The ``requires`` marker of conftest.py: a missing or broken optional library skips only the
tests marked with it; the other tests of the module still run."""
import shutil
import subprocess
import sys
from pathlib import Path

SAMPLE = '''
import pytest

@pytest.mark.requires("rni_no_such_module")
def test_needs_a_missing_module():
    raise AssertionError("must be skipped, not run")

@pytest.mark.requires("rni_broken_module")
def test_needs_a_broken_module():
    raise AssertionError("must be skipped, not run")

@pytest.mark.requires("json", "math")
def test_needs_present_modules():
    import json, math

def test_unmarked_runs():
    pass

@pytest.mark.requires()
def test_marker_without_names_is_an_error():
    pass
'''


def test_requires_skips_only_the_marked_tests(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    broken = tmp_path / "rni_broken_module"
    broken.mkdir()
    (broken / "__init__.py").write_text('raise ImportError("a broken install")\n')
    run = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-q", "-rs", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert "2 passed, 2 skipped, 1 error" in out, out
    assert "could not import 'rni_no_such_module'" in out, out
    assert "a broken install" in out, out
    assert "takes module names" in out, out
