"""Tests of robust_utils.cache: recipe keys, safe verified atomic checkpoints, get_model."""
import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch

from robust_utils import cache
from robust_utils.config import PROFILES
from robust_utils.cache import (CorruptCheckpointError, IncompatibleCheckpointError, Recipe,
                                cached_metadata, checkpoint_path, default_recipe, get_model,
                                list_cached, load_checkpoint, save_checkpoint)
from robust_utils.models import MLP, C3LTClassifier
from robust_utils.training import train_classifier

TINY = dict(arch="mlp", arch_kwargs={"hidden": (8,)}, epochs=1, batch_size=16, profile="smoke", n_train=32)


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Every test gets its own data folder: the real data/ is never touched."""
    monkeypatch.setenv("RNI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RNI_OFFLINE", "1")
    monkeypatch.delenv("RNI_PROFILE", raising=False)
    return tmp_path / "data"


class CountingTrainer:
    """A train_fn that trains on tiny random data and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, recipe, device, progress):
        self.calls += 1
        g = torch.Generator().manual_seed(recipe.seed)
        x = torch.rand(recipe.n_train, 1, 28, 28, generator=g)
        y = torch.randint(0, model.num_classes, (recipe.n_train,), generator=g)
        train_classifier(model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size,
                         device=device, seed=recipe.seed, progress=False)
        return {"test_accuracy": 0.5}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MLP(hidden=(8,))


# ----------------------------------------------------------------------------------- recipes
def test_key_is_readable_stable_and_safe():
    r = Recipe(**TINY)
    assert r.key == Recipe(**TINY).key
    assert re.fullmatch(r"mlp-fashion_mnist-smoke-e1-s0-n32-[0-9a-f]{8}", r.key)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", r.key)
    full = Recipe("c3lt_cnn", epochs=15)
    assert re.fullmatch(r"c3lt_cnn-fashion_mnist-laptop-e15-s0-all-[0-9a-f]{8}", full.key)
    held_out = Recipe("c3lt_cnn", classes=(0, 1, 2, 3, 5, 7, 8, 9), augment="flip")
    assert "-c0_1_2_3_5_7_8_9-flip-" in held_out.key


def test_key_changes_when_any_field_changes():
    base = Recipe(**TINY)
    changes = dict(arch="c3lt_cnn", arch_kwargs={"hidden": (9,)}, classes=(4, 6), epochs=2,
                   batch_size=8, lr=2e-3, optimizer="sgd", weight_decay=1e-4, schedule="step",
                   seed=1, profile="laptop", n_train=None, augment="gaussian_noise")
    fields = {f for f in base.to_dict()} - {"dataset"}  # only one dataset is registered
    assert set(changes) == fields
    keys = {base.key}
    for name, value in changes.items():
        if name == "arch":
            other = Recipe(**{**TINY, "arch": value, "arch_kwargs": {}})
        else:
            other = base.replace(**{name: value})
        keys.add(other.key)
    assert len(keys) == len(changes) + 1


def test_recipe_is_hashable_canonical_and_round_trips():
    a = Recipe(**TINY)
    b = Recipe(**{**TINY, "arch_kwargs": [("hidden", [8])]})
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a.arch_kwargs == (("hidden", (8,)),)
    d = json.loads(json.dumps(a.to_dict()))
    assert Recipe.from_dict(d) == a
    assert Recipe(**{**TINY, "augment": "none"}) == Recipe(**{**TINY, "augment": None})
    assert Recipe(**{**TINY, "lr": 1}).key == Recipe(**{**TINY, "lr": 1.0}).key
    assert {a: 1}[b] == 1


def test_recipe_errors():
    with pytest.raises(ValueError, match="c3lt_cnn, mlp, preact_resnet"):
        Recipe("vgg16")
    with pytest.raises(ValueError, match=r"unknown arch_kwargs \['depth'\].*valid: in_features"):
        Recipe("mlp", arch_kwargs={"depth": 3})
    with pytest.raises(ValueError, match=r"unknown Recipe field\(s\) \['colour'\]"):
        Recipe.from_dict({**Recipe(**TINY).to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="none, gaussian_noise, flip"):
        Recipe("mlp", augment="mixup")
    with pytest.raises(ValueError, match="distinct"):
        Recipe("mlp", classes=(1, 1))
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        Recipe("mlp", epochs=0)
    with pytest.raises(TypeError, match="hashed and written to JSON"):
        Recipe("mlp", arch_kwargs={"hidden": {8}})
    with pytest.raises(ValueError, match="fashion_mnist"):
        Recipe("mlp", dataset="imagenet")
    with pytest.raises(ValueError, match="unknown Recipe field"):
        Recipe(**TINY).replace(epoch=3)


def test_default_recipe_follows_the_profile(monkeypatch):
    r = default_recipe("c3lt_cnn", profile="smoke")
    smoke = PROFILES["smoke"]
    assert (r.epochs, r.n_train, r.batch_size, r.profile) == (smoke.epochs, smoke.n_train,
                                                              smoke.batch_size, "smoke")
    assert r.lr == cache.ARCH_DEFAULTS["c3lt_cnn"]["lr"] and r.optimizer == "adam"
    monkeypatch.setenv("RNI_PROFILE", "smoke")
    assert default_recipe("mlp") == default_recipe("mlp", profile="smoke")
    assert default_recipe("mlp", epochs=7, seed=2).epochs == 7
    assert default_recipe("mlp", seed=2).seed == 2
    with pytest.raises(ValueError, match="unknown Recipe field"):
        default_recipe("mlp", epoch=7)
    with pytest.raises(ValueError, match="unknown profile"):
        default_recipe("mlp", profile="huge")


def test_build_uses_held_out_class_count():
    m = Recipe("c3lt_cnn", classes=(0, 2, 4)).build()
    assert m.num_classes == 3
    assert torch.equal(Recipe(**TINY).build().head.weight, Recipe(**TINY).build().head.weight)


# ------------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip_is_exact(tmp_path):
    model = C3LTClassifier()
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"metrics": {"test_accuracy": 0.9}})
    other = C3LTClassifier(dropout=0.1)
    torch.nn.init.zeros_(other.fc1.weight)
    meta = load_checkpoint(path, other)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert meta["metrics"]["test_accuracy"] == 0.9
    assert meta["torch_version"] == torch.__version__ and meta["weights_file"] == "m.safetensors"
    assert re.fullmatch(r"[0-9a-f]{64}", meta["weights_sha256"]) and "created" in meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_checkpoint_is_safetensors_not_pickle(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # pickle / torch.save zip
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["head.weight"]["dtype"] == "F32" and header["head.weight"]["shape"] == [10, 8]
    assert header["__metadata__"] == {"format": "pt"}


def flip_byte(path: Path, offset: int = -5):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_byte_is_detected(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    flip_byte(path)
    with pytest.raises(CorruptCheckpointError, match="corrupted or was modified"):
        load_checkpoint(path, tiny_model())
    assert issubclass(CorruptCheckpointError, RuntimeError)


def test_tampered_or_missing_sidecar_is_detected(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["weights_sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    with pytest.raises(CorruptCheckpointError, match="corrupted or was modified"):
        load_checkpoint(path, tiny_model())
    side.write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="unreadable"):
        load_checkpoint(path, tiny_model())
    side.unlink()
    with pytest.raises(CorruptCheckpointError, match="no sidecar"):
        load_checkpoint(path, tiny_model())


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors", tiny_model())
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    with pytest.raises(IncompatibleCheckpointError, match="does not fit C3LTClassifier"):
        load_checkpoint(path, C3LTClassifier())
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        save_checkpoint(tmp_path / "m.pt", tiny_model())
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "m.safetensors", tiny_model(), {"bad": object()})
    with pytest.raises(ValueError, match="written by save_checkpoint"):
        save_checkpoint(tmp_path / "m.safetensors", tiny_model(), {"weights_sha256": "x"})


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd):  # the weights temp file is written, the sidecar's write fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder / "m.safetensors", tiny_model())
    assert list(folder.iterdir()) == []


def test_failed_overwrite_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model(seed=0))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(path, tiny_model(seed=1))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files
    load_checkpoint(path, tiny_model())


# -------------------------------------------------------------------------------- get_model
def test_get_model_trains_once_then_loads(isolated_data_dir):
    recipe = Recipe(**TINY)
    trainer = CountingTrainer()
    m1 = get_model(recipe, device="cpu", train_fn=trainer, progress=False)
    assert trainer.calls == 1 and not m1.training
    path = checkpoint_path(recipe)
    assert path == isolated_data_dir / "checkpoints" / f"{recipe.key}.safetensors" and path.exists()
    m2 = get_model(recipe, device="cpu", train_fn=trainer, progress=False)
    assert trainer.calls == 1 and not m2.training
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    meta = cached_metadata(recipe)
    assert meta["metrics"] == {"test_accuracy": 0.5} and Recipe.from_dict(meta["recipe"]) == recipe
    assert meta["key"] == recipe.key
    get_model(recipe, device="cpu", train_fn=trainer, progress=False, retrain=True)
    assert trainer.calls == 2
    listed = list_cached()
    assert [d["key"] for d in listed] == [recipe.key] and listed[0]["path"] == str(path)


def test_get_model_retrains_a_corrupted_checkpoint(tmp_path):
    recipe = Recipe(**TINY)
    trainer = CountingTrainer()
    get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    path = checkpoint_path(recipe, tmp_path)
    flip_byte(path)
    with pytest.warns(RuntimeWarning, match=re.escape(str(path))):
        model = get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    assert trainer.calls == 2
    load_checkpoint(path, tiny_model())  # the file was rewritten and verifies again
    assert isinstance(model, MLP)


def test_get_model_retrains_when_the_sidecar_hash_is_tampered(tmp_path):
    recipe = Recipe(**TINY)
    trainer = CountingTrainer()
    get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    side = checkpoint_path(recipe, tmp_path).with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["weights_sha256"] = "f" * 64
    side.write_text(json.dumps(meta))
    with pytest.warns(RuntimeWarning, match="failed verification"):
        get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    assert trainer.calls == 2


def test_get_model_errors(tmp_path):
    with pytest.raises(TypeError, match="default_recipe"):
        get_model("c3lt_cnn", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="train_fn must be callable"):
        get_model(Recipe(**TINY), train_fn=3, cache_dir=tmp_path, device="cpu")
    with pytest.raises(FileNotFoundError, match="get_model"):
        cached_metadata(Recipe(**TINY), cache_dir=tmp_path)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs the Debian Fashion-MNIST files (offline test)")
def test_get_model_default_training_on_real_data(tmp_path):
    recipe = Recipe("mlp", arch_kwargs={"hidden": (16,)}, classes=(1, 7), epochs=1, batch_size=32,
                    profile="smoke", n_train=400)
    model = get_model(recipe, device="cpu", progress=False, cache_dir=tmp_path)
    assert model.num_classes == 2
    meta = cached_metadata(recipe, cache_dir=tmp_path)
    assert meta["metrics"]["test_accuracy"] > 0.9  # trousers vs sneakers is easy
    assert meta["metrics"]["n_train"] < 400 and meta["metrics"]["n_test"] <= 500


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_checkpoint_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    finally:
        os.umask(old)
    for p in (path, path.with_suffix(".json")):
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_command_line_build_and_list(monkeypatch, capsys):
    calls = []

    def fake_get_model(recipe, **kw):
        calls.append((recipe, kw))
        save_checkpoint(cache.checkpoint_path(recipe), recipe.build(),
                        {"key": recipe.key, "recipe": recipe.to_dict(), "metrics": {"test_accuracy": 0.5}})

    monkeypatch.setattr(cache, "get_model", fake_get_model)
    assert cache.main(["build", "mlp", "--profile", "smoke", "--classes", "0,1,2"]) == 0
    recipe, kw = calls[0]
    assert recipe.classes == (0, 1, 2) and recipe.profile == "smoke" and kw["retrain"] is False
    assert "test_accuracy=0.5" in capsys.readouterr().out
    assert cache.main(["list"]) == 0
    assert recipe.key in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cache.main(["build", "vgg"])
    with pytest.raises(SystemExit, match="comma-separated"):
        cache.main(["build", "mlp", "--classes", "a,b"])
