"""Tests of robust_utils.cache and robust_utils.recipes: recipe keys, trainers, artifacts, dependencies, get_model, the command line."""
import json
import os
import re
from pathlib import Path

import pytest
import torch

from robust_utils import cache
from robust_utils.config import PROFILES
from robust_utils.cache import (Recipe, RecipeMismatchError, cached_metadata, checkpoint_path, default_recipe,
                                get_model, list_cached, load_checkpoint, save_checkpoint)
from robust_utils.models import MLP, register_architecture
from robust_utils.training import TRAINERS, register_trainer, train_classifier


def _check_margin(params):
    if params["margin"] <= 0:
        raise ValueError("margin must be > 0")


def _train_margin(model, recipe, *, device, progress, deps):
    """A registered trainer of the tests: tiny random data, no real objective."""
    return CountingTrainer()(model, recipe, device, progress)


def _test_pair(width: int = 3):
    """An artifact of two modules trained together (like a generator and a discriminator)."""
    return torch.nn.ModuleDict({"gen": torch.nn.Linear(2, width), "disc": torch.nn.Linear(width, 1)})


PAIR_CALLS = []


def _train_pair(model, recipe, *, device, progress, deps):
    PAIR_CALLS.append(recipe.seed)
    with torch.no_grad():
        model["gen"].weight.fill_(float(recipe.seed))
        if deps:
            model["disc"].weight.fill_(float(deps["teacher"]["gen"].weight.sum()))
    return {"deps_seen": sorted(deps)}


@pytest.fixture(autouse=True, scope="module")
def registered_test_objects():
    """A trainer with a parameter, an artifact of two modules and its trainer, for this module only."""
    from robust_utils.models import ARCHITECTURES
    register_trainer("test_margin", params={"margin": 1.0}, check=_check_margin)(_train_margin)
    register_architecture("test_pair", _test_pair)
    register_trainer("test_pair_fit")(_train_pair)
    yield
    for registry, name in ((TRAINERS, "test_margin"), (TRAINERS, "test_pair_fit"), (ARCHITECTURES, "test_pair")):
        registry.unregister(name)

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

    def __call__(self, model, recipe, device, progress, deps=None):
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
    assert re.fullmatch(r"mlp-fashion_mnist-smoke-e1-s0-n32-[0-9a-f]{12}", r.key)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", r.key)
    full = Recipe("c3lt_cnn", epochs=15)
    assert re.fullmatch(r"c3lt_cnn-fashion_mnist-laptop-e15-s0-all-[0-9a-f]{12}", full.key)
    held_out = Recipe("c3lt_cnn", classes=(0, 1, 2, 3, 5, 7, 8, 9), augment="flip")
    assert "-c0_1_2_3_5_7_8_9-flip-" in held_out.key


def test_key_changes_when_any_field_changes():
    base = Recipe(**TINY)
    changes = dict(arch="c3lt_cnn", arch_kwargs={"hidden": (9,)}, classes=(4, 6), epochs=2,
                   batch_size=8, lr=2e-3, optimizer="sgd", weight_decay=1e-4, schedule="step",
                   seed=1, profile="laptop", n_train=None, augment="gaussian_noise",
                   objective="test_margin", objective_params={"margin": 2.0},
                   depends_on={"teacher": Recipe(**{**TINY, "seed": 5})})
    # only one dataset is registered
    fields = {f for f in base.to_dict()} - {"dataset"}
    assert set(changes) == fields
    keys = {base.key}
    for name, value in changes.items():
        if name == "arch":
            other = Recipe(**{**TINY, "arch": value, "arch_kwargs": {}})
        elif name == "objective_params":
            other = base.replace(objective="test_margin", objective_params=value)
        else:
            other = base.replace(**{name: value})
        keys.add(other.key)
    assert len(keys) == len(changes) + 1
    # the objective's defaults are stored explicitly: naming the default is the same recipe
    assert base.replace(objective="test_margin").key == base.replace(
        objective="test_margin", objective_params={"margin": 1.0}).key


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
    with pytest.raises(ValueError, match="choose one of: c3lt_cnn, .*mlp, preact_resnet"):
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


# -------------------------------------------------------------------------------- hardening
@pytest.mark.parametrize("profile", ["x/../../escaped", "../up", "a/b", ""])
def test_profile_cannot_escape_the_cache(profile, tmp_path):
    with pytest.raises((ValueError, TypeError), match="file name|profile"):
        Recipe(**{**TINY, "profile": profile})


def test_profile_must_be_known():
    with pytest.raises(ValueError, match="unknown profile 'bogus'; choose one of: smoke, laptop, full"):
        Recipe(**{**TINY, "profile": "bogus"})


def test_every_key_is_a_plain_file_name_inside_the_cache(tmp_path):
    for r in [Recipe(**TINY), Recipe("c3lt_cnn", classes=(3, 1), augment="flip"),
              Recipe(**TINY).replace(depends_on={"t": Recipe(**TINY)})]:
        path = checkpoint_path(r, tmp_path)
        assert path.parent == tmp_path and "/" not in r.key and ".." not in r.key


def test_copied_checkpoint_under_another_key_is_an_error_naming_both(tmp_path):
    a, b = Recipe(**TINY), Recipe(**{**TINY, "seed": 1})
    get_model(a, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)
    pa, pb = checkpoint_path(a, tmp_path), checkpoint_path(b, tmp_path)
    pb.write_bytes(pa.read_bytes())  # the record names its weights, which verify
    with pytest.raises(RecipeMismatchError, match=rf"{re.escape(b.key)}.*seed: asked 1, file has 0"):
        get_model(b, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)


_RACER = """
import os, sys, time, torch
from robust_utils.cache import Recipe, get_model
from robust_utils.training import train_classifier
cache_dir, log = sys.argv[1], sys.argv[2]
def slow(model, recipe, device, progress, deps=None):
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(1.5)
    g = torch.Generator().manual_seed(os.getpid())  # each process would train other weights
    x = torch.rand(recipe.n_train, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (recipe.n_train,), generator=g)
    train_classifier(model, x, y, epochs=1, batch_size=16, device=device, progress=False)
    return {}
r = Recipe(**%r)
print(get_model(r, device="cpu", train_fn=slow, progress=False, cache_dir=cache_dir).head.weight.sum().item())
"""


def test_two_processes_train_a_missing_model_once(tmp_path):
    import subprocess
    import sys
    log, script = tmp_path / "trainings.log", tmp_path / "racer.py"
    script.write_text(_RACER % (TINY,))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "ck"), str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len(log.read_text().split()) == 1  # the second process waited on the lock and loaded
    assert outs[0][0] == outs[1][0]  # both got the one trained model


def test_malformed_record_is_listed_not_fatal(tmp_path, capsys, monkeypatch):
    recipe = Recipe(**TINY)
    get_model(recipe, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps([1, 2, 3]))
    (tmp_path / "garbage.json").write_text("{")
    listed = {d["key"]: d for d in list_cached(tmp_path)}
    assert "error" not in listed[recipe.key]
    assert "wrong shape" in listed["broken"]["error"] and "unreadable" in listed["garbage"]["error"]
    monkeypatch.setenv("RNI_DATA_DIR", str(tmp_path / "d"))
    (tmp_path / "d" / "checkpoints").mkdir(parents=True)
    (tmp_path / "d" / "checkpoints" / "broken.json").write_text("[]")
    assert cache.main(["list"]) == 0
    assert "broken  UNREADABLE" in capsys.readouterr().out


def test_unwritable_data_dir_while_the_data_exist_elsewhere(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("RNI_DATA_DIR", str(blocker / "data"))  # can never be created
    with pytest.raises(PermissionError, match="set the environment variable RNI_DATA_DIR"):
        get_model(Recipe(**TINY), device="cpu", train_fn=CountingTrainer(), progress=False)
    assert list_cached() == []
    if Path("/usr/share/datasets/fashion-mnist").is_dir():  # reading Debian's copy still works
        from robust_utils.data import load_fashion_mnist
        x, y = load_fashion_mnist("test", n=20)
        assert x.shape == (20, 1, 28, 28)


def test_command_line_errors_are_messages_not_tracebacks(capsys):
    with pytest.raises(SystemExit, match="unknown profile 'bogus'"):
        cache.main(["build", "mlp", "--profile", "bogus"])
    with pytest.raises(SystemExit, match="unknown recipe set 'part99'"):
        cache.main(["build", "--set", "part99", "--profile", "smoke"])
    with pytest.raises(SystemExit, match="either an architecture or --set"):
        cache.main(["build", "mlp", "--set", "part1", "--profile", "smoke"])
    with pytest.raises(SystemExit, match="name an architecture or a recipe set"):
        cache.main(["build", "--profile", "smoke"])


# ------------------------------------------------------------------- trainers and artifacts
def test_registered_trainer_and_its_parameters():
    r = Recipe(**TINY, objective="test_margin", objective_params={"margin": 3})
    assert r.objective_params == (("margin", 3),) and "-test_margin-" in r.key
    assert Recipe(**TINY, objective="test_margin").objective_params == (("margin", 1.0),)
    with pytest.raises(ValueError, match=r"unknown objective_params \['beta'\].*valid: margin"):
        Recipe(**TINY, objective="test_margin", objective_params={"beta": 1})
    with pytest.raises(ValueError, match="margin must be > 0"):
        Recipe(**TINY, objective="test_margin", objective_params={"margin": -1})
    with pytest.raises(ValueError, match="unknown objective 'nope'.*cross_entropy"):
        Recipe(**TINY, objective="nope")
    with pytest.raises(ValueError, match="already registered"):
        register_trainer("test_margin")(lambda *a, **k: {})
    assert "cross_entropy" in TRAINERS and Recipe(**TINY).objective == "cross_entropy"


def test_get_model_uses_the_recipes_trainer(tmp_path):
    r = Recipe(**TINY, objective="test_margin")
    get_model(r, device="cpu", progress=False, cache_dir=tmp_path)
    assert cached_metadata(r, tmp_path)["metrics"] == {"test_accuracy": 0.5}


def test_artifact_of_several_modules_round_trips(tmp_path):
    r = Recipe("test_pair", arch_kwargs={"width": 4}, objective="test_pair_fit", seed=2, profile="smoke")
    art = get_model(r, device="cpu", progress=False, cache_dir=tmp_path)
    assert isinstance(art, torch.nn.ModuleDict) and set(art) == {"gen", "disc"}
    again = get_model(r, device="cpu", progress=False, cache_dir=tmp_path, train_fn=lambda *a, **k: 1 / 0)
    assert torch.equal(again["gen"].weight, torch.full((4, 2), 2.0)) and not again.training


def test_dependencies_enter_the_key_and_retraining_one_invalidates_the_dependent(tmp_path):
    teacher = Recipe("test_pair", objective="test_pair_fit", seed=1, profile="smoke")
    student = Recipe("test_pair", objective="test_pair_fit", seed=3, profile="smoke",
                     depends_on={"teacher": teacher})
    other_teacher = teacher.replace(seed=4)
    assert student.key != student.replace(depends_on={"teacher": other_teacher}).key
    assert Recipe.from_dict(json.loads(json.dumps(student.to_dict()))) == student
    PAIR_CALLS.clear()
    calls = PAIR_CALLS
    counting = None  # the registered trainer of each recipe (it logs its calls)

    s = get_model(student, device="cpu", progress=False, cache_dir=tmp_path, train_fn=counting)
    assert calls == [1, 3]  # the teacher first, then the student with the teacher as a dependency
    assert torch.equal(s["disc"].weight, torch.full((1, 3), 6.0))
    meta = cached_metadata(student, tmp_path)
    assert meta["dependencies"]["teacher"]["key"] == teacher.key
    get_model(student, device="cpu", progress=False, cache_dir=tmp_path, train_fn=counting)
    assert calls == [1, 3]  # both cached
    # retrain the teacher to other weights: the student is stale and is retrained with a warning
    def other_weights(model, recipe, **kw):
        out = _train_pair(model, recipe, **kw)
        with torch.no_grad():
            model["gen"].weight.add_(1.0)
        return out
    get_model(teacher, device="cpu", progress=False, cache_dir=tmp_path, retrain=True, train_fn=other_weights)
    with pytest.warns(RuntimeWarning, match="stale"):
        s = get_model(student, device="cpu", progress=False, cache_dir=tmp_path, train_fn=counting)
    assert calls[-1] == 3 and torch.equal(s["disc"].weight, torch.full((1, 3), 12.0))
    with pytest.raises(TypeError, match="must be a Recipe"):
        Recipe(**TINY, depends_on={"t": "mlp"})


# -------------------------------------------------------------------------------- recipe sets
def test_recipe_sets_name_each_chapters_models():
    from robust_utils.recipes import RECIPE_SETS, recipe_set
    assert {"part1", "part2", "part3", "part4"} <= set(RECIPE_SETS)
    p3 = recipe_set("part3", "smoke", seed=0)
    assert [k for k in p3 if k.startswith("C3LT CNN (seed")] == [f"C3LT CNN (seed {s})" for s in range(3)]
    assert p3["high-error C3LT CNN"].epochs == 1 and p3["high-error C3LT CNN"].n_train == 500
    assert recipe_set("part3", "laptop")["PreAct ResNet"].arch_kwargs == (
        ("blocks_per_stage", (1, 1, 1)), ("widths", (8, 16, 32)))
    assert recipe_set("part3", "full")["PreAct ResNet"].arch_kwargs == ()
    assert recipe_set("part1", "smoke")["C3LT CNN (8 known classes)"].classes == (0, 1, 2, 3, 4, 5, 6, 7)
    assert all(r.profile == "smoke" for r in recipe_set("part4", "smoke").values())


def test_command_line_builds_a_set_with_a_json_summary(tmp_path, monkeypatch, capsys):
    trained = []

    def fake_get_model(recipe, **kw):
        trained.append(recipe.key)
        save_checkpoint(checkpoint_path(recipe), recipe.build(),
                        {"key": recipe.key, "recipe": recipe.to_dict(), "metrics": {"test_accuracy": 0.5},
                         "built": {"seconds": 1.5, "device": "cpu"}})

    monkeypatch.setattr(cache, "get_model", fake_get_model)
    out = tmp_path / "summary.json"
    assert cache.main(["build", "--set", "part1", "--set", "part2", "--profile", "smoke",
                       "--json", str(out), "--no-progress"]) == 0
    summary = json.loads(out.read_text())
    assert summary["profile"] == "smoke" and summary["device"] == "cpu"
    labels = [m["label"] for m in summary["models"]]
    # part 2's plain C3LT CNN is part 1's: built once
    assert labels == ["part1: C3LT CNN", "part1: C3LT CNN (8 known classes)", "part2: C3LT CNN + noise aug."]
    assert len(trained) == 3 and all(m["status"] == "trained" for m in summary["models"])
    assert summary["models"][0]["train_seconds"] == 1.5 and summary["models"][0]["metrics"]["test_accuracy"] == 0.5
    assert json.loads(capsys.readouterr().out) == summary


# -------------------------------------------------------------------------------- get_model
def test_get_model_trains_once_then_loads(isolated_data_dir):
    recipe = Recipe(**TINY)
    trainer = CountingTrainer()
    m1 = get_model(recipe, device="cpu", train_fn=trainer, progress=False)
    assert trainer.calls == 1 and not m1.training
    path = checkpoint_path(recipe)
    assert path == isolated_data_dir / "checkpoints" / f"{recipe.key}.json" and path.exists()
    m2 = get_model(recipe, device="cpu", train_fn=trainer, progress=False)
    assert trainer.calls == 1 and not m2.training
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    meta = cached_metadata(recipe)
    assert meta["metrics"] == {"test_accuracy": 0.5} and Recipe.from_dict(meta["recipe"]) == recipe
    assert meta["key"] == recipe.key and meta["built"]["device"] == "cpu"
    get_model(recipe, device="cpu", train_fn=trainer, progress=False, retrain=True)
    assert trainer.calls == 2
    listed = list_cached()
    assert [d["key"] for d in listed] == [recipe.key] and listed[0]["path"] == str(path)
    assert len(list(path.parent.glob("*.safetensors"))) == 1  # the retrain's old weights are swept


def test_get_model_retrains_a_corrupted_checkpoint(tmp_path):
    recipe = Recipe(**TINY)
    trainer = CountingTrainer()
    get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    path = checkpoint_path(recipe, tmp_path)
    weights = tmp_path / json.loads(path.read_text())["weights_file"]
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match=re.escape(str(path))):
        model = get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    assert trainer.calls == 2
    load_checkpoint(path, tiny_model())  # the checkpoint was rewritten and verifies again
    assert isinstance(model, MLP)


def test_get_model_retrains_when_the_record_hash_is_tampered(tmp_path):
    recipe = Recipe(**TINY)
    trainer = CountingTrainer()
    get_model(recipe, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    path = checkpoint_path(recipe, tmp_path)
    meta = json.loads(path.read_text())
    meta["weights_sha256"] = "f" * 64
    path.write_text(json.dumps(meta))
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
        path = save_checkpoint(tmp_path / "m.json", tiny_model())
    finally:
        os.umask(old)
    for p in (path, tmp_path / json.loads(path.read_text())["weights_file"]):
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
    out = capsys.readouterr()
    assert json.loads(out.out)["models"][0]["metrics"]["test_accuracy"] == 0.5
    assert "test_accuracy=0.5" in out.err
    assert cache.main(["list"]) == 0
    assert recipe.key in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cache.main(["build", "vgg"])
    with pytest.raises(SystemExit, match="comma-separated"):
        cache.main(["build", "mlp", "--classes", "a,b"])


# ------------------------------------------------------------------ found by a hostile review
def test_recipe_values_are_checked_before_any_training():
    with pytest.raises(ValueError, match=r"name a class >= 10.*classes 0..9"):
        Recipe(**{**TINY, "classes": (0, 11)})
    with pytest.raises(ValueError, match="finite values"):
        Recipe(**TINY, objective="test_margin", objective_params={"margin": float("inf")})
    with pytest.raises(ValueError, match="finite values"):
        Recipe(**{**TINY, "arch_kwargs": {"dropout": float("nan")}})
    with pytest.raises(ValueError, match="more than the 60000 training images"):
        Recipe(**{**TINY, "n_train": 10**9})
    # one value, one key: -0.0 and 0.0, all 60000 images and None, NumPy scalars and Python numbers
    assert Recipe(**{**TINY, "weight_decay": -0.0}).key == Recipe(**TINY).key
    assert Recipe(**{**TINY, "n_train": 60000}).key == Recipe(**{**TINY, "n_train": None}).key
    import numpy as np
    assert Recipe(**{**TINY, "arch_kwargs": {"hidden": (np.int64(8),)}}).key == Recipe(**TINY).key


def test_a_record_without_a_recipe_is_refused(tmp_path):
    a, b = Recipe(**TINY), Recipe(**{**TINY, "seed": 1})
    get_model(a, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)
    meta = json.loads(checkpoint_path(a, tmp_path).read_text())
    for field in ("recipe", "format_version"):
        meta.pop(field, None)
    meta["format_version"] = 2
    checkpoint_path(b, tmp_path).write_text(json.dumps(meta))
    with pytest.raises(RecipeMismatchError, match="names no recipe"):
        get_model(b, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)


def test_a_folder_in_the_checkpoints_place_fails_before_training(tmp_path):
    r = Recipe(**TINY)
    checkpoint_path(r, tmp_path).mkdir(parents=True)
    trainer = CountingTrainer()
    with pytest.raises(cache.CorruptCheckpointError, match="is a folder"):
        get_model(r, device="cpu", train_fn=trainer, progress=False, cache_dir=tmp_path)
    assert trainer.calls == 0
    checkpoint_path(default_recipe("mlp", profile="smoke")).mkdir(parents=True)  # in RNI_DATA_DIR
    with pytest.raises(SystemExit, match="error: .* is a folder"):  # a message, not a traceback
        cache.main(["build", "mlp", "--profile", "smoke", "--no-progress"])


def test_loading_sweeps_what_a_killed_save_left(tmp_path):
    r = Recipe(**TINY)
    get_model(r, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)
    left = [tmp_path / f".{r.key}.json.0123456789abcdef.tmp",
            tmp_path / f".{r.key}-0123456789abcdef.safetensors.0123456789abcdef.tmp"]
    for f in left:
        f.write_bytes(b"half")
    get_model(r, device="cpu", train_fn=CountingTrainer(), progress=False, cache_dir=tmp_path)
    assert not any(f.exists() for f in left)


def test_a_taken_name_is_never_silently_replaced():
    from robust_utils.models import ARCHITECTURES
    with pytest.raises(ValueError, match="already registered.*replace=True"):
        register_trainer("test_margin", params={"margin": 5.0})(_train_margin)  # other settings
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("test_pair", lambda width=3: _test_pair(width))
    register_trainer("test_margin", params={"margin": 1.0}, check=_check_margin)(_train_margin)  # same one: fine
    register_architecture("test_pair", _test_pair)
    register_architecture("test_pair", lambda: torch.nn.Linear(1, 1), replace=True)
    ARCHITECTURES.register("test_pair", _test_pair, replace=True)
