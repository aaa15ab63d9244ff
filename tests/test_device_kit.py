"""The kit for a lent GPU machine (tools/device): pins, its epoch benchmark, the stage runner's guards."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "tools" / "device"


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_wheel_pins_are_the_tested_versions():
    wheels = _pins(DEVICE / "wheels.txt")
    lock = _pins(ROOT / "requirements" / "lock.txt")
    assert {"papermill", "ipykernel", "captum", "pot", "pyautoattack", "foolbox", "torchattacks"} <= set(wheels)
    # torch and the scientific stack come with the device image, never as wheels
    assert not {"torch", "torchvision", "numpy", "scipy", "matplotlib"} & set(wheels)
    bootstrap = (ROOT / "tools" / "bootstrap.sh").read_text()
    for name, version in wheels.items():
        if name == "torchattacks":  # installed with --no-deps by the bootstrap, not in the lock
            assert f"torchattacks=={version}" in bootstrap
        else:
            assert lock.get(name) == version, f"{name}: wheels.txt {version}, lock.txt {lock.get(name)}"


def test_bench_epochs_runs_and_reports_every_row(tmp_path):
    out = tmp_path / "epochs.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_epochs.py"), "--device", "cpu", "--n", "64", "--repeats", "1",
                    "--json", str(out)], check=True, cwd=ROOT, capture_output=True, timeout=900)
    rec = json.loads(out.read_text())
    assert rec["n_train"] == 64 and rec["device"] == "cpu"
    assert len(rec["rows"]) == 5
    for row in rec["rows"]:
        assert row["seconds_per_60k"] > 0
        assert (row["ratio_to_target"] is None) == (row["target_seconds"] is None)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_run_sh_stops_with_a_message_when_the_kit_is_missing(tmp_path):
    # a copy of the repository layout without .devsite: the script must say what to do and exit 2
    repo = tmp_path / "repo"
    (repo / "tools" / "device").mkdir(parents=True)
    shutil.copy(DEVICE / "run.sh", repo / "tools" / "device" / "run.sh")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "RNI_RESULTS": str(tmp_path / "results")}
    p = subprocess.run(["bash", str(repo / "tools" / "device" / "run.sh"), "check"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "run tools/device/kit.sh here and carry .devsite" in p.stdout
    assert (tmp_path / "out" / "log.txt").is_file()
