"""Profiles, devices, seeds and paths."""
import pytest
import torch

from robust_utils import config as C


def test_profiles_are_ordered_by_cost():
    s, l, f = (C.PROFILES[k] for k in ("smoke", "laptop", "full"))
    assert s.n_train < 60000 and l.n_train is None and f.n_train is None
    assert s.epochs <= l.epochs <= f.epochs
    assert s.n_novel < l.n_novel <= f.n_novel


def test_resolve_profile(monkeypatch):
    monkeypatch.delenv(C.PROFILE_ENV, raising=False)
    expected = "full" if torch.cuda.is_available() else "laptop"
    assert C.resolve_profile("auto").name == expected
    assert C.resolve_profile(None).name == expected
    monkeypatch.setenv(C.PROFILE_ENV, "smoke")
    assert C.resolve_profile("auto").name == "smoke"
    # an explicit profile (a papermill parameter) beats the environment variable
    assert C.resolve_profile("laptop").name == "laptop"
    p = C.PROFILES["full"]
    assert C.resolve_profile(p) is p


def test_resolve_profile_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'fast'.*smoke"):
        C.resolve_profile("fast")
    monkeypatch.setenv(C.PROFILE_ENV, "huge")
    with pytest.raises(ValueError, match="RNI_PROFILE='huge'"):
        C.resolve_profile("auto")


def test_with_overrides():
    p = C.PROFILES["smoke"].with_overrides(epochs=3)
    assert p.epochs == 3 and p.name == "smoke"
    with pytest.raises(ValueError, match="unknown Profile field"):
        C.PROFILES["smoke"].with_overrides(epoch=3)


def test_pick_device(monkeypatch):
    monkeypatch.delenv("RNI_DEVICE", raising=False)
    assert C.pick_device("cpu").type == "cpu"
    assert C.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        C.pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            C.pick_device("cuda")
    monkeypatch.setenv("RNI_DEVICE", "cpu")
    assert C.pick_device(None).type == "cpu"


def test_seed_everything_reproducible():
    C.seed_everything(3)
    a = torch.rand(3)
    C.seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="non-negative integer"):
        C.seed_everything(-1)


def test_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv(C.DATA_ENV, str(tmp_path / "d"))
    # looking up the folder creates nothing: reading data that lie elsewhere needs no writable folder
    assert C.data_dir() == tmp_path / "d" and not (tmp_path / "d").exists()
    assert C.checkpoint_dir() == tmp_path / "d" / "checkpoints"
    assert C.writable_dir(C.checkpoint_dir()).is_dir()


def test_writable_dir_names_the_folder_and_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=r"cannot create the folder .*file/sub.*RNI_DATA_DIR"):
        C.writable_dir(blocker / "sub")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        C.writable_dir(blocker)


def test_seed_everything_uses_the_shared_seed_check():
    import numpy as np
    C.seed_everything(np.int64(2))
    with pytest.raises(TypeError, match="non-negative integer"):
        C.seed_everything(1.5)


def test_progress_bar_text_mode(monkeypatch, capsys):
    monkeypatch.setenv("RNI_PROGRESS", "text")
    bar = C.progress_bar(total=3, desc="work")
    for k in range(3):
        bar.update(1)
        bar.set_postfix(step=k)  # must not force a redraw per call
    bar.close()
    err = capsys.readouterr().err
    assert "work" in err and "3/3" in err
    assert err.count("work") <= 3, f"the text bar redrew too often: {err!r}"
    monkeypatch.delenv("RNI_PROGRESS")
    from tqdm.auto import tqdm as auto_tqdm
    bar = C.progress_bar(total=1, disable=True)
    assert isinstance(bar, auto_tqdm)
    bar.close()
